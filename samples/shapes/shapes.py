"""Train and evaluate Mask R-CNN, with or without OHEM, on the generated shapes dataset.

The data (target squares, circles and triangles among look-alike distractors, see
:mod:`mrcnn_ohem.datasets.shapes`) is written once as a COCO-format folder and then read back
through the same code path as real COCO (:mod:`mrcnn_ohem.runner.train_eval`). Run from the
repository root with the package installed::

    python samples/shapes/shapes.py train --ohem --epochs 3 --steps-per-epoch 100
    python samples/shapes/shapes.py evaluate --ohem --model last
    python samples/shapes/shapes.py train --no-ohem --classes circle triangle
    python samples/shapes/shapes.py train --ohem --ohem-min-negatives 64 --empty-images 40

Defaults are CPU-sized: 128-pixel images, the ``compact`` backbone with BatchNorm trained,
32-pixel smallest anchors, learning rate 0.02, data in ``data/shapes``.
"""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from mrcnn_ohem.datasets.shapes import ensure_coco_folder
from mrcnn_ohem.runner import cli

logger = logging.getLogger("shapes")


def build_parser() -> argparse.ArgumentParser:
    """The shared train/evaluate options plus how much data to generate."""
    parser = cli.build_parser(
        "shapes.py", "Train / evaluate Mask R-CNN (optionally with OHEM) on generated shapes.",
        prefix="shapes", image_size=128, backbone="compact", dataset="data/shapes",
        anchor_fraction=0.25,  # 32 px anchors at 128 px: dense positives for 16-41 px shapes
    )
    parser.add_argument("--train-images", type=int, default=200, help="generated training images")
    parser.add_argument("--val-images", type=int, default=50, help="generated validation images")
    parser.add_argument("--data-seed", type=int, default=0, help="seed of the generated images")
    parser.set_defaults(learning_rate=0.02)
    return parser


def generate(args: argparse.Namespace) -> None:
    """Write (or reuse) the train and val folders under ``--dataset``."""
    for subset, count, offset in (("train", args.train_images, 0), ("val", args.val_images, 1)):
        # --empty-images N: the training folder also gets N background-only scenes to pick from.
        background = args.empty_images if subset == "train" else 0
        path = ensure_coco_folder(args.dataset, subset, count, args.image_size,
                                  seed=args.data_seed * 2 + offset, year=args.year,
                                  background_images=background)
        logger.info("Shapes %s: %s", subset, path)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), generate the data, run the command."""
    return cli.main(argv, build_parser(), prepare=generate)


if __name__ == "__main__":
    sys.exit(main())
