"""The installed command lines: ``mrcnn-ohem-coco`` and ``mrcnn-ohem-shapes``.

Both are thin layers over :func:`mrcnn_ohem.runner.cli.build_parser` and
:func:`mrcnn_ohem.runner.cli.main`, so they take the same ``train`` / ``evaluate`` / ``predict`` options as
``samples/coco/coco.py`` and ``samples/shapes/shapes.py`` (which call the functions here). After
``pip install mrcnn-ohem`` they run as console scripts, or as modules::

    mrcnn-ohem-coco train --dataset /data/coco --classes person dog --ohem --epochs 4
    python -m mrcnn_ohem.runner.coco evaluate --dataset /data/coco --classes person dog --model last
    mrcnn-ohem-shapes train --ohem --epochs 3 --steps-per-epoch 100
    python -m mrcnn_ohem.runner.shapes evaluate --model last
    mrcnn-ohem-shapes predict --model last --images data/shapes/val2017 --out predictions

Exit codes (from :func:`~mrcnn_ohem.runner.cli.main`): 0 done, 2 bad input, 130 interrupted.
"""
from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence

from mrcnn_ohem.runner import cli

logger = logging.getLogger(__name__)

__all__ = ["build_coco_parser", "coco_main", "build_shapes_parser", "generate_shapes", "shapes_main"]


# ---- COCO ------------------------------------------------------------------------------------


def build_coco_parser(prog: str = "mrcnn-ohem-coco") -> argparse.ArgumentParser:
    """The COCO command line: the shared options at COCO defaults.

    Defaults: 512-pixel images, the ``resnet50`` backbone, run names ``coco_ohem`` /
    ``coco_baseline``; ``--dataset`` is required.

    Args:
        prog: program name shown in ``--help`` and in error messages.

    Returns:
        The parser; its ``parse_args`` returns the namespace that
        :func:`~mrcnn_ohem.runner.train_eval.train` and ``evaluate`` read.
    """
    return cli.build_parser(
        prog, "Train / evaluate Mask R-CNN (optionally with OHEM) on a COCO-format dataset.",
        prefix="coco", image_size=512, backbone="resnet50",
    )


def coco_main(argv: Sequence[str] | None = None, *, prog: str = "mrcnn-ohem-coco") -> int:
    """Run ``mrcnn-ohem-coco``: parse ``argv``, train or evaluate, return the exit code.

    Args:
        argv: the arguments after the program name (None: ``sys.argv[1:]``).
        prog: program name shown in ``--help``.

    Returns:
        0 when the command finished, 2 on bad input (missing files, unknown classes, ...),
        130 when interrupted.
    """
    return cli.main(argv, build_coco_parser(prog))


# ---- generated shapes ------------------------------------------------------------------------


def build_shapes_parser(prog: str = "mrcnn-ohem-shapes") -> argparse.ArgumentParser:
    """The shapes command line: the shared options at CPU-sized defaults, plus data generation.

    Defaults: 128-pixel images, the ``compact`` backbone, smallest anchors a quarter of the image
    side (32 px at 128 px: dense positives for the 16-41 px shapes), learning rate 0.02, data in
    ``data/shapes``. Adds ``--train-images``, ``--val-images`` and ``--data-seed``.

    Args:
        prog: program name shown in ``--help`` and in error messages.

    Returns:
        The parser.
    """
    def data_options(sub: argparse.ArgumentParser, command: str) -> None:
        if command == "predict":
            return
        sub.add_argument("--train-images", type=int, default=200, help="generated training images")
        sub.add_argument("--val-images", type=int, default=50, help="generated validation images")
        sub.add_argument("--data-seed", type=int, default=0, help="seed of the generated images")

    return cli.build_parser(
        prog, "Train / evaluate Mask R-CNN (optionally with OHEM) on generated shapes.",
        prefix="shapes", image_size=128, backbone="compact", dataset="data/shapes",
        anchor_fraction=0.25, extra=data_options, defaults={"learning_rate": 0.02},
    )


def generate_shapes(args: argparse.Namespace) -> None:
    """Write (or reuse) the ``train`` and ``val`` COCO folders under ``args.dataset``.

    The training folder is seeded with ``2 * data_seed`` and holds ``train_images`` scenes plus
    ``empty_images`` background-only ones; the validation folder is seeded with
    ``2 * data_seed + 1`` and holds ``val_images`` scenes, none of them empty.

    Args:
        args: parsed options of :func:`build_shapes_parser` (``dataset``, ``year``,
            ``image_size``, ``train_images``, ``val_images``, ``data_seed``, ``empty_images``).
    """
    from mrcnn_ohem.datasets.shapes import ensure_coco_folder  # NumPy and scikit-image: not for --help

    for subset, count, offset in (("train", args.train_images, 0), ("val", args.val_images, 1)):
        background = getattr(args, "empty_images", 0) if subset == "train" else 0
        path = ensure_coco_folder(args.dataset, subset, count, args.image_size,
                                  seed=args.data_seed * 2 + offset, year=args.year,
                                  background_images=background)
        logger.info("Shapes %s: %s", subset, path)


def shapes_main(argv: Sequence[str] | None = None, *, prog: str = "mrcnn-ohem-shapes") -> int:
    """Run ``mrcnn-ohem-shapes``: parse ``argv``, generate the data, train or evaluate.

    Args:
        argv: the arguments after the program name (None: ``sys.argv[1:]``).
        prog: program name shown in ``--help``.

    Returns:
        0 when the command finished, 2 on bad input, 130 when interrupted.
    """
    return cli.main(argv, build_shapes_parser(prog), prepare=generate_shapes)
