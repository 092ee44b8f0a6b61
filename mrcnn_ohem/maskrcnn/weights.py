"""Weight files and run directories: Keras 2 ``.h5`` loading by name, and the last checkpoint.

Split from :mod:`.model`; ``MaskRCNN.load_weights`` calls these (run folders and checkpoint names
are :mod:`.checkpoints`', which needs no TensorFlow).
Files written by tf-keras ``save_weights`` (``layer_names`` at the root) and by ``model.save``
(under ``model_weights``), Matterport's ``mask_rcnn_coco.h5`` among them, are read directly
with h5py, so the check that every shape fits happens before any weight is changed.
"""
from __future__ import annotations

import logging
import os
import re
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import h5py
import numpy as np

from mrcnn_ohem._compat import import_tf_keras

from .checkpoints import IMAGENET_WEIGHTS_FILE, default_imagenet_path, find_last, parse_checkpoint_path  # noqa: F401

keras = import_tf_keras()
logger = logging.getLogger(__name__)

__all__ = ["find_last", "parse_checkpoint_path", "read_h5_weights", "load_h5_weights", "CLASS_HEADS", "class_head_rows",
           "read_class_head_rows", "select_class_rows", "IMAGENET_WEIGHTS_FILE", "default_imagenet_path",
           "matterport_backbone_name"]


#: The class-specific layers -> values per class on their last weight axis (the bbox head
#: holds 4 deltas per class, in class-major order: class 0's dy, dx, log(dh), log(dw), class 1's ...).
CLASS_HEADS = {"mrcnn_class_logits": 1, "mrcnn_bbox_fc": 4, "mrcnn_mask": 1}


def read_class_head_rows(filepath: str) -> int | None:
    """Number of classes of the class-specific heads in a weight file, reading shapes only.

    Args:
        filepath: a Keras 2 ``.h5`` weight file.

    Returns:
        The row count (81 for Matterport's ``mask_rcnn_coco.h5``), or None without such heads.

    Raises:
        FileNotFoundError: ``filepath`` does not exist.
        ValueError: the heads disagree on the number of classes.
    """
    if not os.path.isfile(filepath):
        raise FileNotFoundError(f"filepath: weight file {filepath!r} does not exist")
    with h5py.File(filepath, mode="r") as f:
        group = _weights_group(f)
        shapes = {name: [group[name][_decode(w)] for w in group[name].attrs["weight_names"]]
                  for name in CLASS_HEADS if name in group}
        return class_head_rows({name: values for name, values in shapes.items() if values})


def _weights_group(f: Any) -> Any:
    return f["model_weights"] if "layer_names" not in f.attrs and "model_weights" in f else f


def read_h5_weights(filepath: str) -> OrderedDict[str, list[np.ndarray]]:
    """The weights of a Keras 2 ``.h5`` file, by layer, in the file's layer order.

    Args:
        filepath: a file written by tf-keras ``save_weights`` or ``model.save``.

    Returns:
        ``{layer name: [weight arrays]}``: each array with its shape in the file (e.g. a
        convolution's kernel [kernel_h, kernel_w, in_channels, out_channels] and bias
        [out_channels]), in the layer's weight order; layers without weights are left out.

    Raises:
        FileNotFoundError: ``filepath`` does not exist.
    """
    if not os.path.isfile(filepath):
        raise FileNotFoundError(f"filepath: weight file {filepath!r} does not exist")
    with h5py.File(filepath, mode="r") as f:
        group = _weights_group(f)
        names = [_decode(n) for n in group.attrs["layer_names"]]
        return OrderedDict((n, [np.asarray(group[n][_decode(w)])
                                for w in group[n].attrs["weight_names"]])
                           for n in names if len(group[n].attrs["weight_names"]))


def class_head_rows(stored: dict[str, Sequence[np.ndarray]]) -> int | None:
    """Number of classes of the class-specific heads in ``stored`` (None: no such heads).

    Args:
        stored: ``{layer name: [weight arrays]}`` as returned by :func:`read_h5_weights`.

    Raises:
        ValueError: the heads disagree on the number of classes.
    """
    rows = {name: stored[name][-1].shape[-1] // per_class
            for name, per_class in CLASS_HEADS.items() if name in stored}
    if len(set(rows.values())) > 1:
        raise ValueError(f"load_weights: the class-specific heads disagree on the number of "
                         f"classes: {rows}")
    return next(iter(rows.values()), None)


def select_class_rows(values: Sequence[np.ndarray], class_indices: Sequence[int],
                      per_class: int) -> list[np.ndarray]:
    """Keep the rows ``class_indices`` of a class-specific layer's weights.

    Args:
        values: the layer's arrays (kernel ``[..., file_classes * per_class]``, bias
            ``[file_classes * per_class]``); the class axis is the last one of each.
        class_indices: [model_classes] rows to keep, in the model's class order.
        per_class: values per class on the last axis (4 for the bbox head).

    Returns:
        The arrays, each [..., len(class_indices) * per_class]: the leading axes unchanged.
    """
    out = []
    for value in values:
        grouped = value.reshape(*value.shape[:-1], -1, per_class)  # [..., file_classes, per_class]
        taken = np.take(grouped, np.asarray(class_indices, dtype=np.int64), axis=-2)
        out.append(taken.reshape(*value.shape[:-1], len(class_indices) * per_class))
    return out


def _apply_class_indices(keras_model: Any, stored: OrderedDict[str, list[np.ndarray]],
                         class_indices: Sequence[int], filepath: str) -> None:
    """Replace the class heads' arrays in ``stored`` by the rows ``class_indices`` (in place).

    Raises:
        ValueError: the model or file has no class heads, ``class_indices`` has the wrong
            length, holds a non-integer or an index out of the file's range.
    """
    layers = {layer.name: layer for layer in keras_model.layers}
    heads = [name for name in CLASS_HEADS if name in layers and name in stored]
    if not heads:
        raise ValueError(f"class_indices: neither the model nor {filepath} has the class-specific "
                         f"heads {list(CLASS_HEADS)}")
    model_classes = layers[heads[0]].weights[-1].shape[-1] // CLASS_HEADS[heads[0]]
    file_classes = class_head_rows(stored)
    indices = list(class_indices)
    if len(indices) != model_classes:
        raise ValueError(f"class_indices must hold one file row per model class ({model_classes}, "
                         f"background first); received {len(indices)}: {indices}")
    bad = [i for i in indices if isinstance(i, bool) or not isinstance(i, (int, np.integer))
           or not 0 <= i < file_classes]
    if bad:
        raise ValueError(f"class_indices must be integers in [0, {file_classes}) (the file's "
                         f"class rows); received {bad} in {indices}")
    for name in heads:
        stored[name] = select_class_rows(stored[name], indices, CLASS_HEADS[name])


def load_h5_weights(keras_model: Any, filepath: str, *, by_name: bool = False,
                    exclude: Sequence[str] | None = None,
                    class_indices: Sequence[int] | None = None) -> None:
    """Load ``filepath`` into ``keras_model``; see ``MaskRCNN.load_weights`` for the rules.

    Every shape is checked before any weight is set.

    Args:
        keras_model: the Keras model to load into.
        filepath: a Keras 2 ``.h5`` weight file.
        by_name: match layers by name (a ``keras.applications`` ResNet file's names are
            translated with :func:`matterport_backbone_name`); else the file must hold exactly
            the model's weighted layers, in order. ``exclude`` and ``class_indices`` imply it.
        exclude: names of layers not to load.
        class_indices: [model_classes] the file's row of the class-specific heads for each
            class of the model, background first (see :func:`select_class_rows`).

    Raises:
        FileNotFoundError: ``filepath`` does not exist.
        ValueError: shapes differ, (not by name) the layers differ, or ``class_indices`` is
            invalid; nothing is loaded then.
    """
    exclude = set(exclude or ())
    by_name = by_name or bool(exclude) or class_indices is not None
    layers = [layer for layer in keras_model.layers
              if layer.weights and layer.name not in exclude]
    stored = read_h5_weights(filepath)
    if by_name:  # a keras.applications ResNet file names its layers another way
        stored = OrderedDict((matterport_backbone_name(name) or name, values) for name, values in stored.items())
    if class_indices is not None:
        _apply_class_indices(keras_model, stored, class_indices, filepath)
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


def matterport_backbone_name(name: str) -> str | None:
    """Matterport's name of a ``keras.applications`` ResNet layer, or None for other names.

    Keras' ResNet files come in two namings: the original one, which Matterport's backbone
    copies (``conv1``, ``bn_conv1``, ``res2a_branch2a``, ``bn2a_branch1``), and the one of
    today's ``keras.applications.ResNet50/101`` (``conv1_conv``, ``conv1_bn``,
    ``conv2_block1_1_conv``, ``conv2_block1_0_bn``). Stage and block number map to stage and
    block letter, part 0 to ``branch1`` (the shortcut) and parts 1-3 to ``branch2a``-``branch2c``.

    Examples: ``conv1_conv -> conv1``, ``conv4_block23_3_bn -> bn4w_branch2c``.

    Args:
        name: a layer name from a weight file.
    """
    if name in ("conv1_conv", "conv1_bn"):
        return "conv1" if name.endswith("conv") else "bn_conv1"
    match = re.fullmatch(r"conv([2-5])_block(\d+)_([0-3])_(conv|bn)", name)
    if match is None:
        return None
    stage, block, part, kind = match.groups()
    branch = "branch1" if part == "0" else "branch2" + "abc"[int(part) - 1]
    return f"{'res' if kind == 'conv' else 'bn'}{stage}{chr(ord('a') + int(block) - 1)}_{branch}"


def _decode(value: Any) -> str:
    return value.decode("utf8") if isinstance(value, bytes) else str(value)
