"""The ``train`` / ``evaluate`` / ``predict`` command line of the COCO and shapes commands.

``mrcnn-ohem-coco`` and ``mrcnn-ohem-shapes`` (:mod:`.commands`, also ``samples/coco/coco.py`` and
``samples/shapes/shapes.py``) call :func:`build_parser` with their defaults and hand it to
:func:`main`. Each subcommand has options of its own (``train --help`` lists train's only).

One run config follows a run: ``train`` records what shapes the model (classes, image size,
backbone, anchors, mask-head width, BatchNorm, precision: :data:`~.settings.RUN_OPTIONS`) in the
run folder's ``run.json``; ``evaluate`` and ``predict`` take those values from the run they load
and refuse a flag that contradicts one, naming both values (:mod:`.runconfig`). OHEM options imply
their switch (``--ohem-top-k 64`` turns ``--ohem`` on, ``--ohem-roi-pool`` ``--ohem-roi``) and are
refused with ``--no-ohem`` / ``--no-ohem-roi``.

Everything that can be checked without TensorFlow (options, paths, the run to load) is checked
before it is imported, so a mistake costs a fraction of a second.
"""
from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence

from mrcnn_ohem.maskrcnn.config import BACKBONES
from mrcnn_ohem.runner import runconfig
from mrcnn_ohem.runner.settings import CPU_MASK_HEAD_FILTERS, LAYER_CHOICES, MIXED_PRECISION_CHOICES

logger = logging.getLogger(__name__)

__all__ = ["build_parser", "main", "COMMANDS"]

#: The subcommands, with their one-line help.
COMMANDS = {
    "train": "train a model (from random weights, ImageNet, a .h5 file or the last checkpoint)",
    "evaluate": "score a trained model with COCOeval (bbox and mask AP, RPN AR@100)",
    "predict": "draw a trained model's detections on your images and write them as COCO results",
}


def build_parser(prog: str, description: str, *, prefix: str = "coco", image_size: int = 512,
                 backbone: str = "resnet50", dataset: str | None = None,
                 anchor_fraction: float = 32 / 1024,
                 extra: Callable[[argparse.ArgumentParser, str], None] | None = None,
                 defaults: dict | None = None) -> argparse.ArgumentParser:
    """The command line with its ``train``, ``evaluate`` and ``predict`` subcommands.

    Args:
        prog, description: shown in ``--help``.
        prefix: run name prefix (``<prefix>_ohem`` / ``<prefix>_baseline``).
        image_size, backbone: what a new run trains with unless ``--image-size`` /
            ``--backbone`` say otherwise (``evaluate`` and ``predict`` take the run's).
        dataset: default ``--dataset`` (None makes it required for ``train`` and ``evaluate``).
        anchor_fraction: without ``--anchor-base``, the smallest anchor side is this fraction
            of the image size (at least 8 px); the default keeps Matterport's 32 px at 1024 px.
        extra: called as ``extra(subparser, command)`` to add a script's own options.
        defaults: other defaults for every subcommand (e.g. ``{"learning_rate": 0.02}``).

    Returns:
        The parser; ``parse_args`` gives the namespace :func:`main` checks and runs.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,evaluate,predict}")
    for command, summary in COMMANDS.items():
        sub = commands.add_parser(command, help=summary, description=f"{description} {summary.capitalize()}.")
        if command != "predict":
            _add_data_options(sub, dataset)
        _add_model_options(sub, command, anchor_fraction)
        if command == "train":
            _add_training_options(sub)
            _add_ohem_options(sub)
        else:
            sub.add_argument("--detection-min-confidence", type=float, default=0.0 if command == "evaluate" else 0.5,
                             help="keep detections at least this confident (default: "
                                  + ("0, as COCO scoring wants" if command == "evaluate" else "0.5") + ")")
        if command == "predict":
            sub.add_argument("--images", nargs="+", required=True, metavar="PATH",
                             help="image files, or folders of .jpg/.jpeg/.png files")
            sub.add_argument("--out", required=True, metavar="DIR",
                             help="folder for the drawn images and detections.json (COCO results format)")
            sub.add_argument("--dataset", default=dataset, metavar="DIR",
                             help="only for weights outside a run folder: the COCO-format root that names "
                                  "the classes (with --classes)")
            sub.add_argument("--year", default="2017", help="dataset year suffix (default 2017)")
        sub.add_argument("--seed", type=int, default=0, help="seed of Python, NumPy and TensorFlow (default 0)")
        sub.add_argument("--no-progress", action="store_true", help="no progress bars")
        sub.add_argument("-v", "--verbose", action="store_true",
                         help="debug logging, and TensorFlow's own C++ log lines (hidden by default; "
                              "setting TF_CPP_MIN_LOG_LEVEL yourself also shows them)")
        if extra is not None:
            extra(sub, command)
        sub.set_defaults(prefix=prefix, anchor_fraction=anchor_fraction,
                         sample_defaults={"image_size": image_size, "backbone": backbone}, **(defaults or {}))
    return parser


def _add_data_options(sub: argparse.ArgumentParser, dataset: str | None) -> None:
    sub.add_argument("--dataset", required=dataset is None, default=dataset, metavar="DIR",
                     help="COCO-format root: annotations/instances_<subset><year>.json + <subset><year>/")
    sub.add_argument("--year", default="2017", help="dataset year suffix (default 2017)")
    sub.add_argument("--subset", default=None, help="subset to use (default: train for train, val for evaluate)")
    sub.add_argument("--limit", type=int, default=None, help="use only the first N images (by COCO id)")
    sub.add_argument("--strict", action="store_true",
                     help="stop before building the model if the dataset has damaged records (listed); "
                          "default: skip them with a warning, counted in run.json")


def _add_model_options(sub: argparse.ArgumentParser, command: str, anchor_fraction: float) -> None:
    """--model, --logs, --name and the options recorded in run.json (None: not given)."""
    if command == "train":
        sub.add_argument("--model", default=None, metavar="none|last|imagenet|PATH",
                         help="weights to start from: 'none' (random, the default), 'last' (resume this run "
                              "name's newest checkpoint, with the run's settings), 'imagenet' (Keras' ResNet-50 "
                              "ImageNet file, see --imagenet-weights) or a .h5 path. A .h5 loads by layer "
                              "name; with --classes, an 81-class Matterport COCO file (mask_rcnn_coco.h5) "
                              "gives each chosen category its own row of the class heads; any other "
                              "class-count mismatch leaves the class heads out, with a warning")
        sub.add_argument("--imagenet-weights", default=None, metavar="PATH",
                         help="with --model imagenet: the file (default: resnet50_weights_tf_dim_ordering_tf_"
                              "kernels_notop.h5 in ~/.keras/models; nothing is downloaded)")
        sub.add_argument("--exclude", default=None, metavar="heads|LAYER,...",
                         help="layers of --model not to load: 'heads' (mrcnn_class_logits, mrcnn_bbox_fc, "
                              "mrcnn_mask) or comma-separated layer names; overrides the automatic class-head "
                              "mapping")
    else:
        sub.add_argument("--model", default="last", metavar="last|PATH|none",
                         help="weights to load: 'last' (the newest checkpoint of the newest run of this "
                              "command's prefix, or of --name), a .h5 path, or 'none' (random). The run's "
                              "run.json supplies its classes and model settings")
    sub.add_argument("--logs", default="logs", metavar="DIR", help="run and checkpoint folder (default ./logs)")
    sub.add_argument("--name", default=None, help="run name (default <prefix>_ohem, <prefix>_baseline, ...)")
    fixed = "" if command == "train" else "; default: the run's"
    sub.add_argument("--classes", nargs="+", default=None, metavar="NAME_OR_ID",
                     help=f"category names and/or COCO ids (commas also separate){fixed or '; default: all'}")
    sub.add_argument("--image-size", type=int, default=None, help=f"square input side, a multiple of 64{fixed}")
    sub.add_argument("--backbone", choices=BACKBONES, default=None, help=f"backbone{fixed}")
    sub.add_argument("--anchor-base", type=int, default=None,
                     help="smallest RPN anchor side; the 5 levels use base * (1, 2, 4, 8, 16) "
                          f"(default: {anchor_fraction:g} x image size, at least 8{fixed})")
    sub.add_argument("--mask-head-filters", type=int, default=None,
                     help=f"mask-head convolution width (default 256 as upstream for ResNets, "
                          f"{CPU_MASK_HEAD_FILTERS} for tiny/compact{fixed})")
    sub.add_argument("--train-bn", action=argparse.BooleanOptionalAction, default=None,
                     help="train BatchNorm, normalizing every batch with its own statistics in training and at "
                          "inference (TRAIN_BN = True), or freeze it (TRAIN_BN = False); default: trained for "
                          "tiny/compact and for any backbone started from random weights (frozen initial "
                          "statistics do not learn), frozen for a ResNet started from weights" + fixed)
    sub.add_argument("--mixed-precision", choices=sorted(MIXED_PRECISION_CHOICES), default=None,
                     help="compute in float16 or bfloat16 with float32 weights (Config.MIXED_PRECISION)" + fixed)


def _add_training_options(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--epochs", type=int, default=1, help="train until this epoch (cumulative)")
    sub.add_argument("--steps-per-epoch", type=int, default=100)
    sub.add_argument("--batch-size", type=int, default=1, help="images per step (IMAGES_PER_GPU)")
    sub.add_argument("--train-rois", type=int, default=None,
                     help="TRAIN_ROIS_PER_IMAGE (default 200, or 32 for tiny/compact)")
    sub.add_argument("--layers", choices=LAYER_CHOICES, default="all", help="layers to train")
    sub.add_argument("--learning-rate", type=float, default=0.001)
    sub.add_argument("--empty-images", type=int, default=0, metavar="N",
                     help="also train on up to N images with none of the selected classes (background-only; "
                          "TRAIN_BACKGROUND_IMAGES = True); default 0")


def _add_ohem_options(sub: argparse.ArgumentParser) -> None:
    group = sub.add_argument_group(
        "OHEM", "off unless switched on; every --ohem-* option of the RPN implies --ohem, and the --ohem-roi-* "
                "options imply --ohem-roi")
    group.add_argument("--ohem", action=argparse.BooleanOptionalAction, default=None,
                       help="OHEM on the RPN objectness loss (via mrcnn_ohem.patch); default off")
    group.add_argument("--ohem-top-k", type=int, default=None, help="OHEM_RPN_TOP_K (default RPN anchors per image)")
    group.add_argument("--ohem-positive-fraction", type=float, default=None, help="OHEM_RPN_POSITIVE_FRACTION")
    group.add_argument("--ohem-negative-pool", type=int, default=None, help="OHEM_RPN_NEGATIVE_POOL")
    group.add_argument("--ohem-pooled", action="store_const", const=True, default=None,
                       help="one top-k over the whole batch (OHEM_RPN_PER_IMAGE = False)")
    group.add_argument("--ohem-nms", type=float, default=None, metavar="IOU",
                       help="OHEM_RPN_NMS_THRESHOLD: drop hard anchors overlapping a harder one by IoU > IOU "
                            "(e.g. 0.7)")
    group.add_argument("--ohem-max-neg-per-pos", type=float, default=None, metavar="RATIO",
                       help="OHEM_RPN_MAX_NEGATIVES_PER_POSITIVE: at most RATIO x kept positives negatives per image")
    group.add_argument("--ohem-min-negatives", type=int, default=None, metavar="N",
                       help="OHEM_RPN_MIN_NEGATIVES: floor of that cap (default 0)")
    group.add_argument("--rpn-loss", choices=("ohem", "focal"), default="ohem",
                       help="RPN objectness loss of the patched RPN (OHEM_RPN_LOSS): 'ohem' top-k, or 'focal' over "
                            "every anchor (implies the RPN patch, with every negative kept)")
    group.add_argument("--ohem-roi", action=argparse.BooleanOptionalAction, default=None,
                       help="OHEM on the RoI head (OHEM_ROI): the heads see a pool, the class loss keeps the hardest")
    group.add_argument("--ohem-roi-pool", type=int, default=None,
                       help="OHEM_ROI_POOL, RoIs per image in the pool (default 512, at most POST_NMS_ROIS_TRAINING)")
    group.add_argument("--ohem-roi-top-k", type=int, default=None,
                       help="OHEM_ROI_TOP_K, hardest RoIs kept by the class loss (default TRAIN_ROIS_PER_IMAGE)")
    group.add_argument("--ohem-roi-ranking", choices=("class", "class+box"), default=None,
                       help="OHEM_ROI_RANKING: rank RoIs by the class loss (default) or, as the OHEM paper, by class + "
                            "box loss with both losses on the kept RoIs")
    group.add_argument("--ohem-roi-nms", type=float, default=None, metavar="IOU",
                       help="OHEM_ROI_NMS_THRESHOLD: NMS among the RoIs by loss before the top-k (the paper: 0.7)")


def main(argv: Sequence[str] | None, parser: argparse.ArgumentParser,
         prepare: Callable[[argparse.Namespace], None] | None = None) -> int:
    """Run a ``train`` / ``evaluate`` / ``predict`` command line; return the process exit code.

    The options are parsed and checked (paths and the run to load included) before TensorFlow
    is imported.

    Args:
        argv: arguments (None: ``sys.argv[1:]``).
        parser: from :func:`build_parser` (possibly extended by the script).
        prepare: called with the parsed options before the checks (e.g. to generate data).

    Returns:
        0 done, 2 bad input (missing files, unknown classes, contradicting flags, ...),
        130 interrupted.
    """
    from mrcnn_ohem._compat import quiet_tensorflow

    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if prepare is not None and args.command != "predict":
            prepare(args)
        runconfig.resolve(args)
    except (FileNotFoundError, ValueError) as err:
        logger.error("%s", err)
        return 2
    quiet_tensorflow(args.verbose)  # before TensorFlow is imported: no C++ start-up lines
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    from mrcnn_ohem.datasets.coco_eval import format_table
    from mrcnn_ohem.runner import predict, train_eval

    try:
        if args.command == "train":
            summary = train_eval.train(args)
            skipped = ", ".join(f"{n} {kind}(s)" for kind, n in summary.get("skipped", {}).items() if n) or "none"
            print(f"{summary['name']}: {summary['steps']} steps, {summary['seconds_per_step']:.3f} s/step, "
                  f"last checkpoint {summary['checkpoint']}, damaged records skipped: {skipped}")
        elif args.command == "evaluate":
            metrics = train_eval.evaluate(args)
            print(format_table({metrics["name"]: metrics}, extra=["seconds_per_image"]))
            print(f"metrics written to {metrics['metrics_path']}")
        else:
            written = predict.predict(args)
            print(f"{written['images']} image(s), {written['detections']} detection(s) drawn in {written['out']}; "
                  f"COCO results in {written['results']}")
    except KeyboardInterrupt:
        logger.warning("Interrupted.")
        return 130
    except (FileNotFoundError, ValueError) as err:
        logger.error("%s", err, exc_info=args.verbose)
        return 2
    return 0
