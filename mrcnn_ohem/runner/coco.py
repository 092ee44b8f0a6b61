"""``python -m mrcnn_ohem.runner.coco``: the ``mrcnn-ohem-coco`` command line as a module.

See :func:`mrcnn_ohem.runner.commands.coco_main`.
"""
import sys

from mrcnn_ohem.runner.commands import coco_main

if __name__ == "__main__":
    sys.exit(coco_main(prog="python -m mrcnn_ohem.runner.coco"))
