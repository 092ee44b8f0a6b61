"""Run folders and checkpoint names in Matterport's layout, without TensorFlow.

``<model_dir>/<name>YYYYmmddTHHMM/mask_rcnn_<name>_<epoch:04d>.h5``: :func:`find_last` finds a
run's newest checkpoint, :func:`parse_checkpoint_path` reads the start time and epoch back.
Command lines use them to check ``--model last`` (and ``--model imagenet``: Keras' ResNet-50 file,
:func:`imagenet_weights_path`) before TensorFlow is imported.
"""
from __future__ import annotations

import datetime
import os
import re

__all__ = ["find_last", "parse_checkpoint_path", "IMAGENET_WEIGHTS_FILE", "default_imagenet_path",
           "imagenet_weights_path"]

#: Keras' ResNet-50 ImageNet file without the classifier, which Matterport's
#: ``get_imagenet_weights`` downloaded into ``~/.keras/models``; this package never downloads it.
IMAGENET_WEIGHTS_FILE = "resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"


def find_last(model_dir: str, key: str) -> str:
    """Path of the last checkpoint of the newest run directory ``model_dir/<key>*``.

    Args:
        model_dir: the folder that holds the run directories (``MaskRCNN.model_dir``).
        key: the run directories' name prefix (the config's ``NAME`` in lower case); the last
            of the matching names in sorted order, i.e. the newest timestamp, is the newest run.

    Returns:
        The path of its last ``mask_rcnn*`` file in sorted order (the highest epoch).

    Raises:
        FileNotFoundError: no run directory, or no checkpoint in the newest one.
    """
    runs = sorted(d for d in (os.listdir(model_dir) if os.path.isdir(model_dir) else [])
                  if d.startswith(key) and os.path.isdir(os.path.join(model_dir, d)))
    if not runs:
        raise FileNotFoundError(f"Could not find a model directory starting with {key!r} "
                                f"under {model_dir}")
    run = os.path.join(model_dir, runs[-1])
    checkpoints = sorted(f for f in os.listdir(run) if f.startswith("mask_rcnn"))
    if not checkpoints:
        raise FileNotFoundError(f"Could not find weight files in {run}")
    return os.path.join(run, checkpoints[-1])


def parse_checkpoint_path(path: str) -> tuple[datetime.datetime | None, int]:
    """Start time and epoch of a checkpoint ``.../<name>YYYYmmddTHHMM/mask_rcnn_<name>_<epoch>.h5``.

    Args:
        path: the checkpoint's path (``/`` or ``\\`` separators); ``<epoch>`` has four digits.

    Returns:
        (the run directory's start time, the file's 1-based epoch, which is the next 0-based
        epoch to train), or (None, 0) when ``path`` does not have that form.
    """
    m = re.match(r".*[/\\][\w-]+(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})[/\\]"
                 r"mask\_rcnn\_[\w-]+(\d{4})\.h5", path)
    if not m:
        return None, 0
    return datetime.datetime(*(int(m.group(i)) for i in range(1, 6))), int(m.group(6))


def default_imagenet_path() -> str:
    """Where Keras keeps :data:`IMAGENET_WEIGHTS_FILE`: ``$KERAS_HOME/models`` (default ``~/.keras``)."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    return os.path.join(home, "models", IMAGENET_WEIGHTS_FILE)


def imagenet_weights_path(path: str | None = None) -> str:
    """``path``, or :func:`default_imagenet_path`, when the file is there.

    Args:
        path: the ResNet-50 ImageNet weight file; None (or empty) for
            :func:`default_imagenet_path`.

    Raises:
        FileNotFoundError: it is not; says which file and where it goes (nothing is downloaded).
    """
    path = path or default_imagenet_path()
    if os.path.isfile(path):
        return path
    raise FileNotFoundError(
        f"ImageNet weights: {path} does not exist, and this package never downloads. Put Keras' "
        f"ResNet-50 ImageNet file {IMAGENET_WEIGHTS_FILE!r} there (or give its path).")
