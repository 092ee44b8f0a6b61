"""The shared ``train`` / ``evaluate`` command line of the sample scripts.

``samples/coco/coco.py``, ``samples/shapes/shapes.py`` and the demo are thin wrappers: they
call :func:`build_parser` (Matterport's ``samples/coco`` vocabulary plus the OHEM knobs), maybe
add options of their own, and hand it to :func:`main`, which runs
:func:`~mrcnn_ohem.runner.train_eval.train` or :func:`~mrcnn_ohem.runner.train_eval.evaluate`.
"""
from __future__ import annotations

import argparse
import logging
from collections.abc import Callable, Sequence

from mrcnn_ohem.maskrcnn.config import BACKBONES

logger = logging.getLogger(__name__)

__all__ = ["build_parser", "main", "LAYER_CHOICES", "CPU_BACKBONES", "CPU_MASK_HEAD_FILTERS"]

LAYER_CHOICES = ("heads", "3+", "4+", "5+", "all")
#: The small backbones that get CPU-sized heads (see ``train_eval.CPU_SETTINGS``).
CPU_BACKBONES = ("tiny", "compact")
#: Mask-head width of the CPU backbones. Matterport's 256 filters (kept for the ResNets, whose
#: weight files expect them) are most of a CPU step; 64 makes a 128-px step ~1.7x faster.
CPU_MASK_HEAD_FILTERS = 64


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
                        help="weights to start from: 'last' checkpoint (train: of this run name; evaluate: "
                             "of the newest run of this prefix, with or without --ohem), a .h5 path, or "
                             "'none' for random init (default: none for train, last for evaluate). A .h5 "
                             "loads by layer name; with --classes, an 81-class Matterport COCO file "
                             "(mask_rcnn_coco.h5) gives each chosen category its own row of the class "
                             "heads (logged as 'person -> row 1, ...'); any other class-count mismatch "
                             "leaves the class heads out, with a warning")
    parser.add_argument("--exclude", default=None, metavar="heads|LAYER,...",
                        help="layers of --model not to load: 'heads' (mrcnn_class_logits, mrcnn_bbox_fc, "
                             "mrcnn_mask) or comma-separated layer names; overrides the automatic class-head "
                             "mapping")
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
    parser.add_argument("--rpn-loss", choices=("ohem", "focal"), default="ohem",
                        help="RPN objectness loss of the patched RPN (OHEM_RPN_LOSS): 'ohem' top-k, or "
                             "'focal' over every anchor (implies the RPN patch, with every negative kept)")
    parser.add_argument("--ohem-roi", action=argparse.BooleanOptionalAction, default=False,
                        help="OHEM on the RoI head (OHEM_ROI): the heads see a pool, the class loss keeps "
                             "the hardest")
    parser.add_argument("--ohem-roi-pool", type=int, default=None,
                        help="OHEM_ROI_POOL, RoIs per image in the pool (default 512, at most "
                             "POST_NMS_ROIS_TRAINING)")
    parser.add_argument("--ohem-roi-top-k", type=int, default=None,
                        help="OHEM_ROI_TOP_K, hardest RoIs kept by the class loss (default TRAIN_ROIS_PER_IMAGE)")
    parser.add_argument("--ohem-nms", type=float, default=None, metavar="IOU",
                        help="OHEM_RPN_NMS_THRESHOLD: drop hard anchors overlapping a harder one by IoU > IOU "
                             "(e.g. 0.7)")
    parser.add_argument("--ohem-max-neg-per-pos", type=float, default=None, metavar="RATIO",
                        help="OHEM_RPN_MAX_NEGATIVES_PER_POSITIVE: at most RATIO x kept positives negatives per image")
    parser.add_argument("--ohem-min-negatives", type=int, default=0, metavar="N",
                        help="OHEM_RPN_MIN_NEGATIVES: floor of that cap (default 0)")
    parser.add_argument("--empty-images", type=int, default=0, metavar="N",
                        help="also train on up to N images with none of the selected classes (background-only; "
                             "TRAIN_BACKGROUND_IMAGES = True); default 0")
    parser.add_argument("--image-size", type=int, default=image_size, help="square input side, a multiple of 64")
    parser.add_argument("--backbone", choices=BACKBONES, default=backbone)
    parser.add_argument("--anchor-base", type=int, default=None,
                        help="smallest RPN anchor side; the 5 levels use base * (1, 2, 4, 8, 16) "
                             f"(default: {anchor_fraction:g} x image size, at least 8)")
    parser.add_argument("--mask-head-filters", type=int, default=None,
                        help=f"mask-head convolution width (default 256 as upstream for ResNets, "
                             f"{CPU_MASK_HEAD_FILTERS} for tiny/compact); evaluate with the value you trained with")
    parser.add_argument("--train-rois", type=int, default=None,
                        help="TRAIN_ROIS_PER_IMAGE (default 200, or 32 for tiny/compact)")
    parser.add_argument("--train-bn", action=argparse.BooleanOptionalAction, default=None,
                        help="train BatchNorm, normalizing every batch with its own statistics in training and "
                             "at inference (TRAIN_BN = True), or freeze it (TRAIN_BN = False); default: frozen "
                             "for ResNets (pretrained statistics), trained for tiny/compact (trained from scratch, "
                             "which fails with frozen statistics)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--layers", choices=LAYER_CHOICES, default="all", help="layers to train")
    parser.add_argument("--learning-rate", type=float, default=0.001)
    parser.add_argument("--detection-min-confidence", type=float, default=0.0,
                        help="evaluate: keep detections at least this confident (COCO scoring wants 0)")
    parser.add_argument("--strict", action="store_true",
                        help="stop before building the model if the dataset has damaged records (listed); "
                             "default: skip them with a warning, counted in run.json")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="debug logging, and TensorFlow's own C++ log lines (hidden by default; "
                             "setting TF_CPP_MIN_LOG_LEVEL yourself also shows them)")
    parser.set_defaults(prefix=prefix, anchor_fraction=anchor_fraction)
    return parser


def main(argv: Sequence[str] | None, parser: argparse.ArgumentParser,
         prepare: Callable[[argparse.Namespace], None] | None = None) -> int:
    """Run a ``train`` / ``evaluate`` command line; return the process exit code.

    Args:
        argv: arguments (None: ``sys.argv[1:]``).
        parser: from :func:`build_parser` (possibly extended by the script).
        prepare: called with the parsed options before the command runs (e.g. to generate data).

    Exit codes: 0 done, 2 bad input (missing files, unknown classes, ...), 130 interrupted.
    """
    from mrcnn_ohem._compat import quiet_tensorflow

    args = parser.parse_args(argv)
    quiet_tensorflow(args.verbose)  # before TensorFlow is imported: no C++ start-up lines

    from mrcnn_ohem.datasets.coco_eval import format_table
    from mrcnn_ohem.runner.train_eval import evaluate, train

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if prepare is not None:
            prepare(args)
        if args.command == "train":
            summary = train(args)
            skipped = ", ".join(f"{n} {kind}(s)" for kind, n in summary.get("skipped", {}).items() if n) or "none"
            print(f"{summary['name']}: {summary['steps']} steps, {summary['seconds_per_step']:.3f} s/step, "
                  f"last checkpoint {summary['checkpoint']}, damaged records skipped: {skipped}")
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
