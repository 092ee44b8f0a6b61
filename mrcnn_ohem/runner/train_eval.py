"""Train and evaluate the bundled Mask R-CNN on a COCO-format folder, with or without OHEM.

:func:`train` and :func:`evaluate` take the options parsed by
:func:`mrcnn_ohem.runner.cli.build_parser` and return plain dicts; :func:`make_config` turns
those options into a ``Config`` (the one place a run's settings are decided, used by the
benchmarks too).

Runs and checkpoints follow Matterport's layout: ``<logs>/<name>YYYYmmddTHHMM/
mask_rcnn_<name>_<epoch:04d>.h5``, one file per finished epoch. ``name`` defaults to
``<prefix>_ohem`` or ``<prefix>_baseline``, so ``--model last`` finds the last run of the same
kind. Training also writes ``history.json`` (per-step losses and seconds, and with OHEM the
selection statistics ``ohem_rpn_kept_positives`` / ``_kept_negatives`` / ``_threshold``) in the run folder;
evaluation writes ``metrics_<subset><year>_<checkpoint>_<N>img.json`` (N images scored) next to
the checkpoint (or in ``--logs`` for ``--model none``), recording the settings it ran with, and
prints a table.

Training writes ``run.json`` in the run folder: name, classes (names and COCO ids), the model
options (:data:`~.settings.RUN_OPTIONS`) and the OHEM settings. ``evaluate`` and ``predict`` take
the model options and classes from the run they load (:mod:`.runconfig`, which also resolves
``--model last``: for evaluation the newest run of the prefix, trained with or without OHEM).
``--model PATH`` loads by layer name. When the file's class heads have another number of classes
than ``--classes`` gives, :func:`class_head_plan` maps an 81-class Matterport COCO file's rows to
the chosen COCO categories, or else leaves the class heads out; ``--exclude`` overrides.
``--model imagenet`` loads Keras' ResNet-50 ImageNet file into the backbone by name.

Configs keep Matterport's defaults for the ResNet backbones. The CPU backbones (``tiny`` and
``compact``) get smaller heads and fewer RoIs (:data:`CPU_SETTINGS`), a 64-filter mask head
(``Config.MASK_HEAD_FILTERS``), and train BatchNorm with ``TRAIN_BN = True``: every batch is
normalized with its own statistics, in training and at inference (one image per batch there).
They start from random weights: with the statistics frozen at their initial values
(``TRAIN_BN = False``) the heads barely learn (measured: mask loss stuck near 0.5 after 600
steps, against 0.15 with them trained). With ``TRAIN_BN = None`` (batch statistics in training,
the moving averages at inference) the same trained weights score far lower: measured
2026-12-02 on the quality benchmark's synthetic shapes (128 px, 600 steps of 2 images, one
checkpoint evaluated both ways), bbox AP50 0.025 and AR@100 0.231 with the moving averages
against 0.137 and 0.527 with each image's own statistics. With 2 images a batch, the moving
averages never match what the network was trained on (each generated image has its own
background colour).

Interrupting training (Ctrl+C) saves the weights of the epoch in progress as that epoch's
checkpoint (it then counts as finished) unless no step of it ran; ``--model last`` resumes
from it. Runs are seeded: Python, NumPy and TensorFlow via ``keras.utils.set_random_seed``,
and the data order via ``MaskRCNN.train(..., seed=)``.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrcnn_ohem._compat import import_tf_keras
from mrcnn_ohem.runner import runconfig
from mrcnn_ohem.runner.callbacks import StepRecorder
from mrcnn_ohem.runner.runconfig import find_last_run, rpn_patched, run_name, uses_patch  # noqa: F401
from mrcnn_ohem.runner.settings import CPU_BACKBONES, CPU_SETTINGS, MIXED_PRECISION_CHOICES, RUN_OPTIONS

keras = import_tf_keras()

logger = logging.getLogger(__name__)

def class_tokens(classes: Sequence[str] | None) -> tuple[list[int] | None, list[str] | None]:
    """``--classes`` values (space- or comma-separated) -> (class_ids, class_names) for ``load_coco``.

    Args:
        classes: the ``--classes`` values, each a COCO category id or name, or several joined
            by commas; None or empty for every class.

    Returns:
        ``(class_ids, class_names)``, each None when it would be empty.
    """
    if not classes:
        return None, None
    from mrcnn_ohem.datasets.coco import split_class_tokens

    tokens = [t for value in classes for t in str(value).split(",")]
    ids, names = split_class_tokens(tokens)
    return ids or None, names or None


############################################################
#  Config and data
############################################################


def make_config(args: argparse.Namespace, num_classes: int, mode: str) -> Any:
    """A ``Config`` (an ``OHEMConfig`` with ``--ohem``, ``--rpn-loss focal`` or ``--ohem-roi``) for
    the parsed options.

    Args:
        args: parsed options of :func:`build_parser`.
        num_classes: classes including the background.
        mode: ``"training"`` or ``"inference"`` (inference runs one image per step).
    """
    import mrcnn_ohem
    from mrcnn_ohem.maskrcnn.config import Config

    runconfig.fill_defaults(args)
    size = int(args.image_size)
    base = int(args.anchor_base)
    settings: dict[str, Any] = {
        "NAME": run_name(args),
        "NUM_CLASSES": int(num_classes),
        "BACKBONE": args.backbone,
        "IMAGE_MIN_DIM": size,
        "IMAGE_MAX_DIM": size,
        "RPN_ANCHOR_SCALES": tuple(base * 2**i for i in range(5)),
        "GPU_COUNT": 1,
        "IMAGES_PER_GPU": int(getattr(args, "batch_size", 1)) if mode == "training" else 1,
        "STEPS_PER_EPOCH": int(getattr(args, "steps_per_epoch", 1)),
        "LEARNING_RATE": float(getattr(args, "learning_rate", Config.LEARNING_RATE)),
        "DETECTION_MIN_CONFIDENCE": float(getattr(args, "detection_min_confidence", 0.0)),
    }
    cpu = args.backbone in CPU_BACKBONES
    if cpu:
        settings.update(CPU_SETTINGS)
    bases: tuple[type, ...] = (Config,)
    settings["MASK_HEAD_FILTERS"] = int(args.mask_head_filters)
    if getattr(args, "train_rois", None) is not None:
        settings["TRAIN_ROIS_PER_IMAGE"] = int(args.train_rois)
    if getattr(args, "empty_images", 0):
        settings["TRAIN_BACKGROUND_IMAGES"] = True
    settings["TRAIN_BN"] = bool(args.train_bn)
    if args.mixed_precision:
        settings["MIXED_PRECISION"] = MIXED_PRECISION_CHOICES[args.mixed_precision]
    if uses_patch(args):
        bases = (mrcnn_ohem.OHEMConfig,)
        settings.update(
            OHEM_RPN=rpn_patched(args),
            OHEM_RPN_TOP_K=args.ohem_top_k,
            OHEM_RPN_PER_IMAGE=not args.ohem_pooled,
            OHEM_RPN_POSITIVE_FRACTION=args.ohem_positive_fraction,
            OHEM_RPN_NEGATIVE_POOL=args.ohem_negative_pool,
            OHEM_RPN_LOSS=getattr(args, "rpn_loss", "ohem"),
            OHEM_RPN_NMS_THRESHOLD=getattr(args, "ohem_nms", None),
            OHEM_RPN_MAX_NEGATIVES_PER_POSITIVE=getattr(args, "ohem_max_neg_per_pos", None),
            OHEM_RPN_MIN_NEGATIVES=getattr(args, "ohem_min_negatives", 0),
        )
        if getattr(args, "ohem_roi", False):
            pool = args.ohem_roi_pool
            if pool is None:  # no more RoIs than proposals, but room for TRAIN_ROIS_PER_IMAGE
                pool = max(min(mrcnn_ohem.OHEMConfig.OHEM_ROI_POOL, settings.get(
                    "POST_NMS_ROIS_TRAINING", Config.POST_NMS_ROIS_TRAINING)), settings.get(
                    "TRAIN_ROIS_PER_IMAGE", Config.TRAIN_ROIS_PER_IMAGE))
            settings.update(OHEM_ROI=True, OHEM_ROI_POOL=pool, OHEM_ROI_TOP_K=args.ohem_roi_top_k,
                            OHEM_ROI_RANKING=getattr(args, "ohem_roi_ranking", None) or "class",
                            OHEM_ROI_NMS_THRESHOLD=getattr(args, "ohem_roi_nms", None))
    return type("RunConfig", bases, settings)()


def load_dataset(args: argparse.Namespace, subset: str, empty_images: int = 0) -> tuple[Any, Any]:
    """Load and prepare ``subset`` of ``--dataset`` with ``--classes`` and ``--limit``.

    ``empty_images`` (training: ``--empty-images``) adds up to that many images with none of
    the classes (see ``CocoDataset.load_coco``). Damaged records are skipped with a warning
    (``dataset.skipped``), or with ``--strict`` raise a ``ValueError`` before any model is built.

    Args:
        args: parsed options (``dataset``, ``year``, ``classes``, ``limit``, ``strict``,
            ``no_progress``).
        subset: e.g. ``"train"`` or ``"val"``.
        empty_images: images without any of the classes to add (0 for none).

    Returns:
        (CocoDataset, pycocotools COCO)
    """
    from mrcnn_ohem.datasets.coco import CocoDataset

    class_ids, class_names = class_tokens(args.classes)
    dataset = CocoDataset()
    coco = dataset.load_coco(args.dataset, subset, year=args.year, class_ids=class_ids,
                             class_names=class_names, limit=args.limit, return_coco=True,
                             empty_images=int(empty_images), strict=bool(getattr(args, "strict", False)),
                             progress=not getattr(args, "no_progress", True))
    dataset.prepare()
    logger.info("Loaded %s%s: %d images, %d classes, %d damaged record(s) skipped", subset, args.year,
                dataset.num_images, dataset.num_classes - 1, len(dataset.skipped))
    return dataset, coco


############################################################
#  Training
############################################################


def class_head_plan(weights: str, dataset: Any, exclude: str | None) -> dict[str, Any]:
    """How to load the class-specific heads of ``weights`` for ``dataset``'s classes.

    Args:
        weights: the ``.h5`` file.
        dataset: the prepared dataset (its ``class_info``: background first, then the classes).
        exclude: ``--exclude``: None (automatic), ``"heads"`` or comma-separated layer names.

    Returns:
        ``load_weights`` keyword arguments: ``{"exclude": [...]}`` and/or
        ``{"class_indices": [...]}``. Automatic: the same number of classes loads as it is; a
        file with 81 class rows (Matterport's COCO order) and COCO classes are mapped row by row
        (logged as ``person -> row 1, ...``); any other mismatch excludes the class heads
        (logged as a warning).
    """
    from mrcnn_ohem.datasets.coco import COCO_CATEGORY_IDS, SOURCE
    from mrcnn_ohem.maskrcnn.weights import CLASS_HEADS, read_class_head_rows

    if exclude is not None:
        names = list(CLASS_HEADS) if exclude.strip() == "heads" else [
            n.strip() for n in exclude.split(",") if n.strip()]
        logger.info("Not loading %s from %s (--exclude).", ", ".join(names), weights)
        return {"exclude": names}
    rows = read_class_head_rows(weights)
    classes = dataset.class_info
    if rows is None or rows == len(classes):
        return {}
    ids = [c["id"] for c in classes[1:]]
    if rows == len(COCO_CATEGORY_IDS) + 1 and all(
            c["source"] == SOURCE and c["id"] in COCO_CATEGORY_IDS for c in classes[1:]):
        indices = [0] + [1 + COCO_CATEGORY_IDS.index(i) for i in ids]
        logger.info("Class heads from %s (81 rows, Matterport's COCO order): %s", weights,
                    ", ".join(f"{c['name']} -> row {r}" for c, r in zip(classes[1:], indices[1:])))
        return {"class_indices": indices}
    logger.warning("%s has class heads for %d classes, the model %d (%s): %s start from random "
                   "weights. Pass --exclude to choose the layers yourself.", weights, rows,
                   len(classes), ", ".join(c["name"] for c in classes), ", ".join(CLASS_HEADS))
    return {"exclude": list(CLASS_HEADS)}


def build_model(modellib: Any, mode: str, config: Any, args: argparse.Namespace,
                dataset: Any = None) -> tuple[Any, str | None]:
    """Build ``MaskRCNN(mode)`` for ``config`` and load the resolved ``--model`` by name.

    With ``dataset``, the class heads follow :func:`class_head_plan` (``--exclude``).

    Args:
        modellib: the model module whose ``MaskRCNN`` is built (the bundled
            :mod:`mrcnn_ohem.maskrcnn.model`, patched or not).
        mode: ``"training"`` or ``"inference"``.
        config: the model config (:func:`make_config`).
        args: resolved options (``logs``, ``weights_path``, ``exclude``).
        dataset: the prepared dataset whose classes the heads must fit; None loads every layer
            of the file by name.

    Returns:
        The model and the weights path it loaded (None: random initialisation).
    """
    model = modellib.MaskRCNN(mode, config, model_dir=str(args.logs))
    weights = args.weights_path
    if weights:
        logger.info("Loading weights %s", weights)
        plan = class_head_plan(weights, dataset, getattr(args, "exclude", None)) \
            if dataset is not None else {}
        model.load_weights(weights, by_name=True, **plan)
    return model, weights


def run_settings(config: Any, args: argparse.Namespace, dataset: Any) -> dict[str, Any]:
    """What a training run writes to ``run.json``: its name, classes (names, with BG first, and
    COCO ids), the model options ``evaluate`` and ``predict`` read back, the OHEM settings and
    the damaged records skipped.

    Args:
        config: the run's config (its ``NAME`` and ``OHEM_*`` attributes).
        args: resolved options (the :data:`~.settings.RUN_OPTIONS` and ``model``).
        dataset: the prepared training dataset (its classes and skipped records).
    """
    ohem = bool(getattr(config, "OHEM_RPN", False) or getattr(config, "OHEM_ROI", False))
    return {
        "name": config.NAME,
        "ohem": ohem,
        "ohem_settings": {key: getattr(config, key) for key in sorted(dir(config))
                          if key.startswith("OHEM_") and not callable(getattr(config, key))} if ohem else None,
        "classes": [c["name"] for c in dataset.class_info],
        "class_ids": [c["id"] for c in dataset.class_info[1:]],
        "run_options": {name: getattr(args, name) for name in RUN_OPTIONS},
        "weights": args.model,
        "skipped": skip_summary(dataset),
    }


def skip_summary(dataset: Any) -> dict[str, Any]:
    """The damaged records ``dataset`` skipped so far: counts by kind and the records themselves.

    Args:
        dataset: a dataset; one without a ``skipped`` list counts as having skipped nothing.
    """
    from mrcnn_ohem.datasets.errors import count_skips

    records = getattr(dataset, "skipped", [])
    return {"counts": count_skips(records), "records": [record.to_dict() for record in records]}


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Train per the parsed options; return the run summary (also stored in ``history.json``).

    Args:
        args: the parsed ``train`` options (:func:`~mrcnn_ohem.runner.cli.build_parser`);
            resolved in place first (:func:`~.runconfig.resolve`).

    Returns:
        ``{"name", "log_dir", "checkpoint", "epochs", "steps", "seconds_per_step", "history",
        "ohem", "skipped"}``: ``steps`` run by this call, ``seconds_per_step`` their median after
        the first (which builds the graph), ``history`` per-step losses of the whole run (a
        resumed run keeps the rows of the epochs it resumed from), ``skipped`` the damaged
        records of the dataset counted by kind (``run.json`` lists them).

    Raises:
        KeyboardInterrupt: after saving the epoch in progress (see the module docstring).
    """
    import mrcnn_ohem
    from mrcnn_ohem.maskrcnn import model as modellib

    runconfig.resolve(args)
    keras.utils.set_random_seed(int(args.seed))
    dataset, _ = load_dataset(args, args.subset or "train", getattr(args, "empty_images", 0))
    config = make_config(args, dataset.num_classes, "training")
    if args.verbose:
        config.display()
    handle = mrcnn_ohem.patch(config, module=modellib) if uses_patch(args) else contextlib.nullcontext()
    with handle:
        model, _ = build_model(modellib, "training", config, args, dataset=dataset)
        start_epoch = model.epoch
        Path(model.log_dir).mkdir(parents=True, exist_ok=True)
        (Path(model.log_dir) / "run.json").write_text(
            json.dumps(run_settings(config, args, dataset), indent=1, default=str))
        if start_epoch >= args.epochs:
            logger.warning("Checkpoint is at epoch %d >= --epochs %d: nothing to train.", start_epoch, args.epochs)
        recorder = StepRecorder((args.epochs - start_epoch) * config.STEPS_PER_EPOCH, not args.no_progress)
        logger.info("Training %s (%s) from epoch %d to %d, %d steps per epoch, log dir %s",
                    config.NAME, "OHEM" if uses_patch(args) else "baseline", start_epoch, args.epochs,
                    config.STEPS_PER_EPOCH, model.log_dir)
        interrupted = False
        try:
            if start_epoch < args.epochs:
                model.train(dataset, None, learning_rate=config.LEARNING_RATE, epochs=int(args.epochs),
                            layers=args.layers, custom_callbacks=[recorder], verbose=0,
                            seed=int(args.seed))
        except KeyboardInterrupt:
            interrupted = True
            if recorder.steps_in_epoch and model.is_chief:
                path = model.checkpoint_path.format(epoch=recorder.epoch + 1)
                Path(path).parent.mkdir(parents=True, exist_ok=True)
                model.keras_model.save_weights(path)
                logger.warning("Interrupted in epoch %d after %d step(s); saved %s (resume with --model last).",
                               recorder.epoch + 1, recorder.steps_in_epoch, path)
    seconds = [s["seconds"] for s in recorder.steps[1:]] or [s["seconds"] for s in recorder.steps]
    log_dir = Path(model.log_dir)
    checkpoints = sorted(log_dir.glob("mask_rcnn_*.h5")) if log_dir.is_dir() else []
    # A resumed run continues the history of the epochs it keeps.
    earlier = []
    if start_epoch > 0 and (log_dir / "history.json").is_file():
        previous = json.loads((log_dir / "history.json").read_text())
        earlier = [row for row in previous.get("history", []) if row.get("epoch", 0) < start_epoch]
    summary = {
        "name": config.NAME,
        "ohem": bool(args.ohem),
        "log_dir": str(log_dir),
        "checkpoint": str(checkpoints[-1]) if checkpoints else None,
        "epochs": int(args.epochs),
        "steps": len(recorder.steps),  # run by this call; "history" holds the whole run
        "seconds_per_step": float(np.median(seconds)) if seconds else math.nan,
        "history": earlier + recorder.steps,
        "skipped": skip_summary(dataset)["counts"],  # found loading, then unreadable when read
    }
    if log_dir.is_dir() and model.is_chief:  # multi-worker: only the chief writes the run folder
        (log_dir / "history.json").write_text(json.dumps(summary, indent=1))
        (log_dir / "run.json").write_text(json.dumps(run_settings(config, args, dataset), indent=1, default=str))
    if interrupted:
        raise KeyboardInterrupt
    return summary


############################################################
#  Evaluation
############################################################


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate per the parsed options; write the metrics JSON and return the metrics.

    The model options and classes come from the evaluated run (:func:`~.runconfig.resolve`). The
    metrics file is named by what was scored, ``metrics_<subset><year>_<checkpoint>_<N>img.json``,
    so evaluations of other subsets, checkpoints or image counts never overwrite each other.

    Args:
        args: the parsed ``evaluate`` options (:func:`~mrcnn_ohem.runner.cli.build_parser`);
            resolved in place first (:func:`~.runconfig.resolve`).

    Returns:
        :func:`~mrcnn_ohem.datasets.coco_eval.evaluate_coco`'s dict plus ``"weights"``,
        ``"metrics_path"``, ``"name"``, ``"subset"``, ``"images"`` (how many were scored),
        ``"settings"`` (the model options, classes, limit and confidence threshold used), the
        run's ``"ohem"`` and ``"ohem_settings"``, and ``"skipped_records"`` (damaged records left
        out of the score, counted by kind).
    """
    from mrcnn_ohem.datasets.coco_eval import evaluate_coco
    from mrcnn_ohem.maskrcnn import model as modellib

    runconfig.resolve(args)
    keras.utils.set_random_seed(int(args.seed))
    subset = args.subset or "val"
    dataset, coco = load_dataset(args, subset)
    config = make_config(args, dataset.num_classes, "inference")
    model, weights = build_model(modellib, "inference", config, args, dataset=dataset)
    run = args.run
    if not weights:
        logger.warning("Evaluating a randomly initialised model (--model none).")
    elif run:
        logger.info("Evaluating run %s (%s)", Path(weights).parent.name, "OHEM " + ", ".join(
            f"{k}={v}" for k, v in (run.get("ohem_settings") or {}).items()) if run.get("ohem") else "baseline")
    metrics = evaluate_coco(model, dataset, coco, progress=not args.no_progress)
    folder = Path(weights).parent if weights else Path(args.logs)
    folder.mkdir(parents=True, exist_ok=True)
    stem = Path(weights).stem if weights else "random_init"
    path = folder / f"metrics_{subset}{args.year}_{stem}_{dataset.num_images}img.json"
    settings = {name: getattr(args, name) for name in RUN_OPTIONS}
    settings.update(classes=[c["name"] for c in dataset.class_info[1:]], limit=args.limit,
                    detection_min_confidence=args.detection_min_confidence)
    metrics.update({"name": (run or {}).get("name", config.NAME), "weights": weights,
                    "subset": f"{subset}{args.year}", "images": dataset.num_images, "metrics_path": str(path),
                    "settings": settings, "ohem": (run or {}).get("ohem"),
                    "ohem_settings": (run or {}).get("ohem_settings"),
                    "run": {k: v for k, v in (run or {}).items() if k != "path"} or None,
                    "skipped_records": skip_summary(dataset)["counts"]})
    path.write_text(json.dumps(metrics, indent=1))
    return metrics
