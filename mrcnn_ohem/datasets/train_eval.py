"""Train and evaluate the bundled Mask R-CNN on a COCO-format folder, with or without OHEM.

The command lines ``samples/coco/coco.py``, ``samples/shapes/shapes.py`` and the demo are thin
wrappers around this module: :func:`build_parser` declares the options (Matterport's
``samples/coco`` vocabulary plus the OHEM knobs), :func:`train` and :func:`evaluate` do the
work and return plain dicts, :func:`main` ties them to a parsed command line.

Runs and checkpoints follow Matterport's layout: ``<logs>/<name>YYYYmmddTHHMM/
mask_rcnn_<name>_<epoch:04d>.h5``, one file per finished epoch. ``name`` defaults to
``<prefix>_ohem`` or ``<prefix>_baseline``, so ``--model last`` finds the last run of the same
kind. Training also writes ``history.json`` (per-step losses and seconds) in the run folder;
evaluation writes ``metrics_<subset><year>_<checkpoint>.json`` next to the checkpoint (or in
``--logs`` for ``--model none``) and prints a table.

Configs keep Matterport's defaults for the ResNet backbones. The CPU backbones (the bundled
``tiny`` and this module's :func:`compact_graph`) get smaller heads and fewer RoIs
(:data:`CPU_SETTINGS`), a 64-filter mask head (``MASK_HEAD_FILTERS``, applied through the
bundled model's ``heads.MASK_HEAD_FILTERS`` while the graph is built), and train their
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
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

logger = logging.getLogger(__name__)

BACKBONE_CHOICES = ("resnet50", "resnet101", "tiny", "compact")
LAYER_CHOICES = ("heads", "3+", "4+", "5+", "all")
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
#: Mask-head width of the CPU backbones. Matterport's 256 filters (kept for the ResNets, whose
#: weight files expect them) are most of a CPU step; 64 makes a 128-px step ~1.7x faster.
CPU_MASK_HEAD_FILTERS = 64


############################################################
#  A compact CPU backbone
############################################################


def compact_graph(input_image: Any, stage5: bool = True, train_bn: bool | None = False,
                  widths: Sequence[int] = (32, 48, 64, 96, 128)) -> list:
    """A small plain CNN for CPU runs: per stage a stride-2 and a stride-1 3x3 convolution.

    Stronger than the bundled ``"tiny"`` backbone (one convolution per stage) at a cost that is
    still small next to the 256-channel mask head. Follows Matterport's backbone contract
    (``Config.BACKBONE`` callable, C1..C5 at strides 2..32); layers are named
    ``res{stage}{a,b}_compact`` / ``bn{stage}{a,b}_compact`` so the ``3+``/``4+``/``5+`` presets
    select stages as for ResNet.

    Args:
        input_image: [batch, height, width, 3] Keras tensor.
        stage5: build C5 (else it is None).
        train_bn: ``Config.TRAIN_BN`` (passed as BatchNorm's ``training``).
        widths: channels of stages 1..5.

    Returns:
        [C1, C2, C3, C4, C5] Keras tensors.
    """
    from mrcnn_ohem.maskrcnn.backbone import BatchNorm

    layers = _keras().layers
    x = input_image
    outputs = []
    for stage, width in zip(range(1, 6), widths):
        if stage == 5 and not stage5:
            outputs.append(None)
            break
        for part, stride in (("a", 2), ("b", 1)):
            name = "conv1" if stage == 1 and part == "a" else f"res{stage}{part}_compact"
            bn_name = "bn_conv1" if stage == 1 and part == "a" else f"bn{stage}{part}_compact"
            x = layers.Conv2D(width, (3, 3), strides=stride, padding="same", name=name)(x)
            x = BatchNorm(name=bn_name)(x, training=train_bn)
            x = layers.Activation("relu")(x)
        outputs.append(x)
    return outputs


def _pyramid_shapes(image_shape: Sequence[int]) -> np.ndarray:
    """[5, (height, width)] feature sizes of ``compact_graph`` + FPN at strides 4..64."""
    return np.array([[math.ceil(image_shape[0] / s), math.ceil(image_shape[1] / s)] for s in (4, 8, 16, 32, 64)])


############################################################
#  Command line
############################################################


def build_parser(prog: str, description: str, *, prefix: str = "coco", image_size: int = 512,
                 backbone: str = "resnet50", dataset: str | None = None,
                 anchor_fraction: float = 32 / 1024) -> argparse.ArgumentParser:
    """The shared ``train`` / ``evaluate`` command line.

    Args:
        prog, description: shown in ``--help``.
        prefix: default run name prefix (``<prefix>_ohem`` / ``<prefix>_baseline``).
        image_size, backbone: defaults of ``--image-size`` and ``--backbone``.
        dataset: default ``--dataset`` (None makes it required).
        anchor_fraction: without ``--anchor-base``, the smallest anchor side is this fraction
            of ``--image-size`` (at least 8 px); the default keeps Matterport's 32 px at 1024 px.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("command", choices=("train", "evaluate"), help="what to do")
    parser.add_argument("--dataset", required=dataset is None, default=dataset, metavar="DIR",
                        help="COCO-format root: annotations/instances_<subset><year>.json + <subset><year>/")
    parser.add_argument("--year", default="2017", help="dataset year suffix (default 2017)")
    parser.add_argument("--subset", default=None,
                        help="subset to use (default: train for train, val for evaluate)")
    parser.add_argument("--classes", nargs="+", default=None, metavar="NAME_OR_ID",
                        help="category names and/or COCO ids to keep (default: all); commas also separate")
    parser.add_argument("--limit", type=int, default=None, help="use only the first N images (by COCO id)")
    parser.add_argument("--model", default=None, metavar="last|PATH|none",
                        help="weights to start from: 'last' checkpoint of this run name, a .h5 path, or "
                             "'none' for random init (default: none for train, last for evaluate)")
    parser.add_argument("--logs", default="logs", metavar="DIR", help="run and checkpoint folder (default ./logs)")
    parser.add_argument("--name", default=None, help=f"run name (default {prefix}_ohem / {prefix}_baseline)")
    parser.add_argument("--epochs", type=int, default=1, help="train until this epoch (cumulative)")
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=1, help="images per step (IMAGES_PER_GPU)")
    parser.add_argument("--ohem", action=argparse.BooleanOptionalAction, default=False,
                        help="OHEM on the RPN objectness loss (via mrcnn_ohem.patch)")
    parser.add_argument("--ohem-top-k", type=int, default=None, help="OHEM_RPN_TOP_K (default RPN anchors per image)")
    parser.add_argument("--ohem-positive-fraction", type=float, default=None, help="OHEM_RPN_POSITIVE_FRACTION")
    parser.add_argument("--ohem-negative-pool", type=int, default=None, help="OHEM_RPN_NEGATIVE_POOL")
    parser.add_argument("--ohem-pooled", action="store_true",
                        help="one top-k over the whole batch (OHEM_RPN_PER_IMAGE = False)")
    parser.add_argument("--image-size", type=int, default=image_size, help="square input side, a multiple of 64")
    parser.add_argument("--backbone", choices=BACKBONE_CHOICES, default=backbone)
    parser.add_argument("--anchor-base", type=int, default=None,
                        help="smallest RPN anchor side; the 5 levels use base * (1, 2, 4, 8, 16) "
                             f"(default: {anchor_fraction:g} x image size, at least 8)")
    parser.add_argument("--mask-head-filters", type=int, default=None,
                        help=f"mask-head convolution width (default 256 as upstream for ResNets, "
                             f"{CPU_MASK_HEAD_FILTERS} for tiny/compact); evaluate with the value you trained with")
    parser.add_argument("--train-rois", type=int, default=None,
                        help="TRAIN_ROIS_PER_IMAGE (default 200, or 32 for tiny/compact)")
    parser.add_argument("--train-bn", action=argparse.BooleanOptionalAction, default=None,
                        help="update BatchNorm statistics while training (TRAIN_BN = None) or freeze them "
                             "(TRAIN_BN = False); default: frozen for ResNets (pretrained statistics), "
                             "trained for tiny/compact (trained from scratch, which fails with frozen ones)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", choices=LAYER_CHOICES, default="all", help="layers to train")
    parser.add_argument("--learning-rate", type=float, default=0.001)
    parser.add_argument("--detection-min-confidence", type=float, default=0.0,
                        help="evaluate: keep detections at least this confident (COCO scoring wants 0)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.set_defaults(prefix=prefix, anchor_fraction=anchor_fraction)
    return parser


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
    if args.backbone in ("tiny", "compact"):
        settings.update(CPU_SETTINGS)
    if args.backbone == "compact":
        # staticmethod: the config stores plain functions, not methods bound to the config.
        settings.update(BACKBONE=staticmethod(compact_graph), COMPUTE_BACKBONE_SHAPE=staticmethod(_pyramid_shapes),
                        BACKBONE_STRIDES=[4, 8, 16, 32, 64])
    bases: tuple[type, ...] = (Config,)
    cpu_filters = CPU_MASK_HEAD_FILTERS if args.backbone in ("tiny", "compact") else None
    settings["MASK_HEAD_FILTERS"] = args.mask_head_filters or cpu_filters or _default_mask_filters()
    if args.train_rois is not None:
        settings["TRAIN_ROIS_PER_IMAGE"] = int(args.train_rois)
    train_bn = args.train_bn if args.train_bn is not None else args.backbone in ("tiny", "compact")
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


def _default_mask_filters() -> int:
    from mrcnn_ohem.maskrcnn import heads

    return int(heads.MASK_HEAD_FILTERS)


@contextlib.contextmanager
def _mask_head_width(config: Any):
    """Build graphs with ``config.MASK_HEAD_FILTERS`` mask-head filters while the block runs.

    The bundled model reads the module constant ``heads.MASK_HEAD_FILTERS`` when it builds the
    mask head (Matterport hard-codes 256); it is set here and restored afterwards.
    """
    from mrcnn_ohem.maskrcnn import heads

    original = heads.MASK_HEAD_FILTERS
    heads.MASK_HEAD_FILTERS = int(config.MASK_HEAD_FILTERS)
    try:
        yield
    finally:
        heads.MASK_HEAD_FILTERS = original


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


def _keras():
    from mrcnn_ohem._compat import import_tf_keras

    return import_tf_keras()


def _make_recorder(total_steps: int, show: bool):
    """A Keras callback recording per-step losses and seconds, with a tqdm bar."""
    from tqdm.auto import tqdm

    keras = _keras()

    class StepRecorder(keras.callbacks.Callback):
        """Per-step values are recovered from Keras' running epoch means:
        ``x_t = t * mean_t - (t - 1) * mean_{t-1}``."""

        def __init__(self):
            super().__init__()
            self.steps: list[dict[str, float]] = []
            self.epoch = 0
            self.steps_in_epoch = 0
            self._means: dict[str, float] = {}
            self._tick = 0.0
            self._bar = None

        def on_train_begin(self, logs=None):
            self._bar = tqdm(total=total_steps, desc="train", unit="step", disable=not show)

        def on_epoch_begin(self, epoch, logs=None):
            self.epoch, self.steps_in_epoch, self._means = epoch, 0, {}

        def on_train_batch_begin(self, batch, logs=None):
            self._tick = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            seconds = time.perf_counter() - self._tick
            t = batch + 1
            row = {"epoch": self.epoch, "seconds": seconds}
            for key, mean in (logs or {}).items():
                mean = float(mean)
                row[key] = t * mean - (t - 1) * self._means.get(key, 0.0)
                self._means[key] = mean
            self.steps.append(row)
            self.steps_in_epoch = t
            if self._bar is not None:
                self._bar.update(1)
                self._bar.set_postfix(loss=f"{row.get('loss', float('nan')):.3f}", refresh=False)

        def on_train_end(self, logs=None):
            if self._bar is not None:
                self._bar.close()

    return StepRecorder()


def _build_model(modellib: Any, mode: str, config: Any, args: argparse.Namespace,
                 default_weights: str) -> tuple[Any, str | None]:
    """Build ``MaskRCNN(mode)`` with the run's mask-head width and load ``--model`` by name.

    Returns:
        The model and the weights path it loaded (None: random initialisation).
    """
    with _mask_head_width(config):
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

    keras = _keras()
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
        recorder = _make_recorder((args.epochs - start_epoch) * config.STEPS_PER_EPOCH, not args.no_progress)
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
            if recorder.steps_in_epoch:
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
    if log_dir.is_dir():
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

    keras = _keras()
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


def main(argv: Sequence[str] | None, parser: argparse.ArgumentParser,
         prepare: Callable[[argparse.Namespace], None] | None = None) -> int:
    """Run a ``train`` / ``evaluate`` command line; return the process exit code.

    Args:
        argv: arguments (None: ``sys.argv[1:]``).
        parser: from :func:`build_parser` (possibly extended by the script).
        prepare: called with the parsed options before the command runs (e.g. to generate data).

    Exit codes: 0 done, 2 bad input (missing files, unknown classes, ...), 130 interrupted.
    """
    from mrcnn_ohem.datasets.coco_eval import format_table

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if prepare is not None:
            prepare(args)
        if args.command == "train":
            summary = train(args)
            print(f"{summary['name']}: {summary['steps']} steps, {summary['seconds_per_step']:.3f} s/step, "
                  f"last checkpoint {summary['checkpoint']}")
        else:
            metrics = evaluate(args)
            print(format_table({metrics["name"]: metrics}, extra=["seconds_per_image"]))
            print(f"metrics written to {metrics['metrics_path']}")
    except KeyboardInterrupt:
        logger.warning("Interrupted.")
        return 130
    except (FileNotFoundError, ValueError) as err:
        logger.error("%s", err, exc_info=args.verbose)
        return 2
    return 0
