"""Train and evaluate Mask R-CNN, with or without OHEM, on the generated shapes dataset.

The data (target squares, circles and triangles among look-alike distractors, see
:mod:`mrcnn_ohem.datasets.shapes`) is written once as a COCO-format folder and then read back
through the same code path as real COCO (:mod:`mrcnn_ohem.runner.train_eval`). Run from the
repository root with the package installed (after ``pip install mrcnn-ohem`` the same command
line is ``mrcnn-ohem-shapes``, or ``python -m mrcnn_ohem.runner.shapes``)::

    python samples/shapes/shapes.py train --ohem --epochs 3 --steps-per-epoch 100
    python samples/shapes/shapes.py evaluate --ohem --model last
    python samples/shapes/shapes.py train --no-ohem --classes circle triangle
    python samples/shapes/shapes.py train --ohem --ohem-min-negatives 64 --empty-images 40

Defaults are CPU-sized: 128-pixel images, the ``compact`` backbone with BatchNorm trained,
32-pixel smallest anchors, learning rate 0.02, data in ``data/shapes``.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mrcnn_ohem.runner import commands


def build_parser() -> argparse.ArgumentParser:
    """The shared train/evaluate options plus how much data to generate."""
    return commands.build_shapes_parser("shapes.py")


def generate(args: argparse.Namespace) -> None:
    """Write (or reuse) the train and val folders under ``--dataset``."""
    commands.generate_shapes(args)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), generate the data, run the command."""
    return commands.shapes_main(argv, prog="shapes.py")


if __name__ == "__main__":
    sys.exit(main())
