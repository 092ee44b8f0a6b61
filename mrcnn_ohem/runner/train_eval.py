"""Train and evaluate the bundled Mask R-CNN on a COCO-format folder, with or without OHEM.

:func:`train` and :func:`evaluate` take the options parsed by
:func:`mrcnn_ohem.runner.cli.build_parser` and return plain dicts; :func:`make_config` turns
those options into a ``Config`` (the one place a run's settings are decided, used by the
benchmarks too).

Runs and checkpoints follow Matterport's layout: ``<logs>/<name>YYYYmmddTHHMM/
mask_rcnn_<name>_<epoch:04d>.h5``, one file per finished epoch. ``name`` defaults to
``<prefix>_ohem`` or ``<prefix>_baseline``, so ``--model last`` finds the last run of the same
kind. Training also writes ``history.json`` (per-step losses and seconds) in the run folder;
evaluation writes ``metrics_<subset><year>_<checkpoint>.json`` next to the checkpoint (or in
``--logs`` for ``--model none``) and prints a table.

Configs keep Matterport's defaults for the ResNet backbones. The CPU backbones (``tiny`` and
``compact``) get smaller heads and fewer RoIs (:data:`CPU_SETTINGS`), a 64-filter mask head
(``Config.MASK_HEAD_FILTERS``), and train their
BatchNorm statistics (``TRAIN_BN = None``): they start from random weights, and with the
statistics frozen at their initial values the heads barely learn (measured: mask loss stuck
near 0.5 after 600 steps, against 0.15 with them trained).

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
from mrcnn_ohem.runner.callbacks import StepRecorder
from mrcnn_ohem.runner.cli import CPU_BACKBONES, CPU_MASK_HEAD_FILTERS

keras = import_tf_keras()

logger = logging.getLogger(__name__)

#: Settings for the CPU-sized backbones (small heads, fewer RoIs); ResNets use Matterport's.
CPU_SETTINGS = {
    "TOP_DOWN_PYRAMID_SIZE": 64,
    "FPN_CLASSIF_FC_LAYERS_SIZE": 128,
    "TRAIN_ROIS_PER_IMAGE": 32,
    "POST_NMS_ROIS_TRAINING": 300,
    "POST_NMS_ROIS_INFERENCE": 200,
    "PRE_NMS_LIMIT": 1000,
    "MAX_GT_INSTANCES": 20,
    "DETECTION_MAX_INSTANCES": 20,
    "MINI_MASK_SHAPE": (28, 28),
}


def class_tokens(classes: Sequence[str] | None) -> tuple[list[int] | None, list[str] | None]:
    """``--classes`` values (space- or comma-separated) -> (class_ids, class_names) for ``load_coco``."""
    if not classes:
        return None, None
    from mrcnn_ohem.datasets.coco import split_class_tokens

    tokens = [t for value in classes for t in str(value).split(",")]
    ids, names = split_class_tokens(tokens)
    return ids or None, names or None


def run_name(args: argparse.Namespace) -> str:
    """The config NAME: ``--name`` or ``<prefix>_ohem`` / ``<prefix>_baseline``."""
    return args.name or f"{args.prefix}_{'ohem' if args.ohem else 'baseline'}"


############################################################
#  Config and data
############################################################


def make_config(args: argparse.Namespace, num_classes: int, mode: str) -> Any:
    """A ``Config`` (an ``OHEMConfig`` with ``--ohem``) for the parsed options.

    Args:
        args: parsed options of :func:`build_parser`.
        num_classes: classes including the background.
        mode: ``"training"`` or ``"inference"`` (inference runs one image per step).
    """
    import mrcnn_ohem
    from mrcnn_ohem.maskrcnn.config import Config

    size = int(args.image_size)
    base = args.anchor_base or max(8, round(args.anchor_fraction * size))
    settings: dict[str, Any] = {
        "NAME": run_name(args),
        "NUM_CLASSES": int(num_classes),
        "BACKBONE": args.backbone,
        "IMAGE_MIN_DIM": size,
        "IMAGE_MAX_DIM": size,
        "RPN_ANCHOR_SCALES": tuple(base * 2**i for i in range(5)),
        "GPU_COUNT": 1,
        "IMAGES_PER_GPU": int(args.batch_size) if mode == "training" else 1,
        "STEPS_PER_EPOCH": int(args.steps_per_epoch),
        "LEARNING_RATE": float(args.learning_rate),
        "DETECTION_MIN_CONFIDENCE": float(args.detection_min_confidence),
    }
    cpu = args.backbone in CPU_BACKBONES
    if cpu:
        settings.update(CPU_SETTINGS)
    bases: tuple[type, ...] = (Config,)
    settings["MASK_HEAD_FILTERS"] = int(args.mask_head_filters or (
        CPU_MASK_HEAD_FILTERS if cpu else Config.MASK_HEAD_FILTERS))
    if args.train_rois is not None:
        settings["TRAIN_ROIS_PER_IMAGE"] = int(args.train_rois)
    train_bn = args.train_bn if args.train_bn is not None else cpu
    settings["TRAIN_BN"] = None if train_bn else False
    if args.ohem:
        bases = (mrcnn_ohem.OHEMConfig,)
        settings.update(
            OHEM_RPN=True,
            OHEM_RPN_TOP_K=args.ohem_top_k,
            OHEM_RPN_PER_IMAGE=not args.ohem_pooled,
            OHEM_RPN_POSITIVE_FRACTION=args.ohem_positive_fraction,
            OHEM_RPN_NEGATIVE_POOL=args.ohem_negative_pool,
        )
    return type("RunConfig", bases, settings)()


def load_dataset(args: argparse.Namespace, subset: str) -> tuple[Any, Any]:
    """Load and prepare ``subset`` of ``--dataset`` with ``--classes`` and ``--limit``.

    Returns:
        (CocoDataset, pycocotools COCO)
    """
    from mrcnn_ohem.datasets.coco import CocoDataset

    class_ids, class_names = class_tokens(args.classes)
    dataset = CocoDataset()
    coco = dataset.load_coco(args.dataset, subset, year=args.year, class_ids=class_ids,
                             class_names=class_names, limit=args.limit, return_coco=True)
    dataset.prepare()
    logger.info("Loaded %s%s: %d images, %d classes", subset, args.year, dataset.num_images,
                dataset.num_classes - 1)
    return dataset, coco


def _resolve_weights(model: Any, choice: str | None, default: str) -> str | None:
    """Path of the weights to load for ``--model`` (None for random init)."""
    choice = default if choice is None else choice
    if choice.lower() == "none":
        return None
    if choice.lower() == "last":
        return model.find_last()
    if not Path(choice).is_file():
        raise FileNotFoundError(f"--model: weight file {choice} does not exist (use 'last', 'none' or a .h5 path).")
    return choice


############################################################
#  Training
############################################################


def _build_model(modellib: Any, mode: str, config: Any, args: argparse.Namespace,
                 default_weights: str) -> tuple[Any, str | None]:
    """Build ``MaskRCNN(mode)`` for ``config`` and load ``--model`` by name.

    Returns:
        The model and the weights path it loaded (None: random initialisation).
    """
    model = modellib.MaskRCNN(mode, config, model_dir=str(args.logs))
    weights = _resolve_weights(model, args.model, default_weights)
    if weights:
        logger.info("Loading weights %s", weights)
        model.load_weights(weights, by_name=True)
    return model, weights


def train(args: argparse.Namespace) -> dict[str, Any]:
    """Train per the parsed options; return the run summary (also stored in ``history.json``).

    Returns:
        ``{"name", "log_dir", "checkpoint", "epochs", "steps", "seconds_per_step", "history",
        "ohem"}``: ``steps`` run by this call, ``seconds_per_step`` their median after the first
        (which builds the graph), ``history`` per-step losses of the whole run (a resumed run
        keeps the rows of the epochs it resumed from).

    Raises:
        KeyboardInterrupt: after saving the epoch in progress (see the module docstring).
    """
    import mrcnn_ohem
    from mrcnn_ohem.maskrcnn import model as modellib

    keras.utils.set_random_seed(int(args.seed))
    dataset, _ = load_dataset(args, args.subset or "train")
    config = make_config(args, dataset.num_classes, "training")
    if args.verbose:
        config.display()
    handle = mrcnn_ohem.patch(config, module=modellib) if args.ohem else contextlib.nullcontext()
    with handle:
        model, _ = _build_model(modellib, "training", config, args, default_weights="none")
        start_epoch = model.epoch
        if start_epoch >= args.epochs:
            logger.warning("Checkpoint is at epoch %d >= --epochs %d: nothing to train.", start_epoch, args.epochs)
        recorder = StepRecorder((args.epochs - start_epoch) * config.STEPS_PER_EPOCH, not args.no_progress)
        logger.info("Training %s (%s) from epoch %d to %d, %d steps per epoch, log dir %s",
                    config.NAME, "OHEM" if args.ohem else "baseline", start_epoch, args.epochs,
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
    }
    if log_dir.is_dir() and model.is_chief:  # multi-worker: only the chief writes the run folder
        (log_dir / "history.json").write_text(json.dumps(summary, indent=1))
    if interrupted:
        raise KeyboardInterrupt
    return summary


############################################################
#  Evaluation
############################################################


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    """Evaluate per the parsed options; write the metrics JSON and return the metrics.

    Returns:
        :func:`~mrcnn_ohem.datasets.coco_eval.evaluate_coco`'s dict plus ``"weights"``,
        ``"metrics_path"``, ``"name"``, ``"subset"``.
    """
    from mrcnn_ohem.datasets.coco_eval import evaluate_coco
    from mrcnn_ohem.maskrcnn import model as modellib

    keras.utils.set_random_seed(int(args.seed))
    subset = args.subset or "val"
    dataset, coco = load_dataset(args, subset)
    config = make_config(args, dataset.num_classes, "inference")
    model, weights = _build_model(modellib, "inference", config, args, default_weights="last")
    if not weights:
        logger.warning("Evaluating a randomly initialised model (--model none).")
    metrics = evaluate_coco(model, dataset, coco, progress=not args.no_progress)
    folder = Path(weights).parent if weights else Path(args.logs)
    folder.mkdir(parents=True, exist_ok=True)
    stem = Path(weights).stem if weights else "random_init"
    path = folder / f"metrics_{subset}{args.year}_{stem}.json"
    metrics.update({"name": config.NAME, "weights": weights, "subset": f"{subset}{args.year}",
                    "metrics_path": str(path)})
    path.write_text(json.dumps(metrics, indent=1))
    return metrics


