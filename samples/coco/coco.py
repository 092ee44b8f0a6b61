"""Train and evaluate Mask R-CNN, with or without OHEM, on COCO or any COCO-format folder.

Run from the repository root with the package installed (``make venv``); after
``pip install mrcnn-ohem`` the same command line is ``mrcnn-ohem-coco`` (or
``python -m mrcnn_ohem.runner.coco``)::

    # Train on two categories of COCO 2017 from random weights, OHEM on
    python samples/coco/coco.py train --dataset /data/coco --classes person dog --ohem \
        --epochs 4 --steps-per-epoch 500 --backbone resnet50 --image-size 512

    # Resume the last OHEM run, then evaluate the newest run (OHEM or not) on val2017
    python samples/coco/coco.py train --dataset /data/coco --classes person dog --ohem --model last --epochs 8
    python samples/coco/coco.py evaluate --dataset /data/coco --classes person dog --model last

    # Fine-tune Matterport's 81-class weights on two categories: heads first, then everything
    python samples/coco/coco.py train --dataset /data/coco --classes person dog \
        --model mask_rcnn_coco.h5 --layers heads --epochs 2
    python samples/coco/coco.py train --dataset /data/coco --classes person dog --model last --layers all --epochs 4

The folder follows the official COCO layout (``annotations/instances_<subset><year>.json`` and
``<subset><year>/``); nothing is downloaded. Options, run folders, checkpoints and the metrics
JSON are described in :mod:`mrcnn_ohem.runner.train_eval`; ``--help`` lists everything.
(Command names and options follow Matterport's ``samples/coco/coco.py``.)
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from mrcnn_ohem.runner import commands


def build_parser() -> argparse.ArgumentParser:
    """The command line of this script (:func:`mrcnn_ohem.runner.commands.build_coco_parser`)."""
    return commands.build_coco_parser("coco.py")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the command, return the exit code."""
    return commands.coco_main(argv, prog="coco.py")


if __name__ == "__main__":
    sys.exit(main())
