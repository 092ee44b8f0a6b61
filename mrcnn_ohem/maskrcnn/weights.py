"""Weight files and run directories: Keras 2 ``.h5`` loading by name, and the last checkpoint.

Split from :mod:`.model`; ``MaskRCNN.load_weights`` and ``MaskRCNN.find_last`` call these.
Files written by tf-keras ``save_weights`` (``layer_names`` at the root) and by ``model.save``
(under ``model_weights``), Matterport's ``mask_rcnn_coco.h5`` among them, are read directly
with h5py, so the check that every shape fits happens before any weight is changed.
"""
from __future__ import annotations

import datetime
import logging
import os
import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import h5py
import numpy as np

from mrcnn_ohem._compat import import_tf_keras

keras = import_tf_keras()
logger = logging.getLogger(__name__)

__all__ = ["find_last", "parse_checkpoint_path", "read_h5_weights", "load_h5_weights"]


def find_last(model_dir: str, key: str) -> str:
    """Path of the last checkpoint of the newest run directory ``model_dir/<key>*``.

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

    Returns:
        (the run directory's start time, the file's 1-based epoch, which is the next 0-based
        epoch to train), or (None, 0) when ``path`` does not have that form.
    """
    m = re.match(r".*[/\\][\w-]+(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})[/\\]"
                 r"mask\_rcnn\_[\w-]+(\d{4})\.h5", path)
    if not m:
        return None, 0
    return datetime.datetime(*(int(m.group(i)) for i in range(1, 6))), int(m.group(6))


def read_h5_weights(filepath: str) -> OrderedDict[str, list[np.ndarray]]:
    """``{layer name: [weight arrays]}`` of a Keras 2 ``.h5`` file, in the file's layer order.

    Raises:
        FileNotFoundError: ``filepath`` does not exist.
    """
    if not os.path.isfile(filepath):
        raise FileNotFoundError(f"filepath: weight file {filepath!r} does not exist")
    with h5py.File(filepath, mode="r") as f:
        group = f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f \
            else f
        names = [_decode(n) for n in group.attrs["layer_names"]]
        return OrderedDict((n, [np.asarray(group[n][_decode(w)])
                                for w in group[n].attrs["weight_names"]])
                           for n in names if len(group[n].attrs["weight_names"]))


def load_h5_weights(keras_model: Any, filepath: str, *, by_name: bool = False,
                    exclude: Sequence[str] | None = None) -> None:
    """Load ``filepath`` into ``keras_model``; see ``MaskRCNN.load_weights`` for the rules.

    Raises:
        FileNotFoundError: ``filepath`` does not exist.
        ValueError: shapes differ, or (not by name) the layers differ; nothing is loaded then.
    """
    exclude = set(exclude or ())
    by_name = by_name or bool(exclude)
    layers = [layer for layer in keras_model.layers
              if layer.weights and layer.name not in exclude]
    stored = read_h5_weights(filepath)
    if by_name:
        missing = [layer.name for layer in layers if layer.name not in stored]
        pairs = [(layer, stored[layer.name]) for layer in layers if layer.name in stored]
        if missing:
            logger.info("load_weights: %d layer(s) not in %s keep their weights: %s",
                        len(missing), filepath, ", ".join(missing))
    else:
        model_names = [layer.name for layer in layers]
        if model_names != list(stored):
            raise ValueError(
                f"load_weights: the layers of {filepath} do not match the model's "
                f"(pass by_name=True to load the common ones). Missing from the file: "
                f"{[n for n in model_names if n not in stored]}; not in the model: "
                f"{[n for n in stored if n not in model_names]}")
        pairs = [(layer, stored[layer.name]) for layer in layers]
    _check_shapes(pairs, filepath)
    keras.backend.batch_set_value(
        [(w, v) for layer, values in pairs for w, v in zip(layer.weights, values)])


def _check_shapes(pairs: Sequence[tuple[Any, Sequence[np.ndarray]]], filepath: str) -> None:
    mismatched = []
    for layer, values in pairs:
        expected = [tuple(w.shape) for w in layer.weights]
        received = [tuple(v.shape) for v in values]
        if expected != received:
            mismatched.append(f"{layer.name} (model {expected}, file {received})")
    if mismatched:
        raise ValueError(
            f"load_weights: {len(mismatched)} layer(s) of {filepath} have weights of other "
            f"shapes than the model's; pass exclude=[...] to skip them: "
            + "; ".join(mismatched))


def _decode(value: Any) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)
