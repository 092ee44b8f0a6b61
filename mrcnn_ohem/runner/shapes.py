"""``python -m mrcnn_ohem.runner.shapes``: the ``mrcnn-ohem-shapes`` command line as a module.

See :func:`mrcnn_ohem.runner.commands.shapes_main`.
"""
import sys

from mrcnn_ohem.runner.commands import shapes_main

if __name__ == "__main__":
    sys.exit(shapes_main(prog="python -m mrcnn_ohem.runner.shapes"))
