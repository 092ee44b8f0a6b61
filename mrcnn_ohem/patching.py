"""Where a config becomes arguments, and the reversible swap into a Matterport-style module.

The losses (:mod:`mrcnn_ohem.losses`) and targets (:mod:`mrcnn_ohem.targets`) take plain
arguments. This module resolves a config once (:func:`~mrcnn_ohem.config.ohem_settings`) and
binds the values into functions with Matterport's signatures:
:func:`make_rpn_class_loss_graph`, :func:`make_build_rpn_targets` and, for direct calls with a
config, :func:`build_rpn_targets`.

``patch(config, module)`` replaces two module-level functions:

- ``rpn_class_loss_graph(rpn_match, rpn_class_logits)`` by the OHEM loss bound to ``config``;
- ``build_rpn_targets(image_shape, anchors, gt_class_ids, gt_boxes, config)`` by the target
  builder that keeps every negative (:func:`mrcnn_ohem.targets.build_rpn_targets`).

The bound loss reports its selection statistics (:data:`SELECTION_METRICS`) through
:mod:`mrcnn_ohem.core.auxiliary` to any training loop that listens: the bundled model's
``train_step`` does, so they appear in its Keras logs, History and TensorBoard. A Matterport fork
trained by stock Keras ``fit`` does not listen: :func:`add_selection_metrics` adds them to its
training model as Keras metrics instead.

Two rules follow from how Matterport code looks these names up:

1. Patch **before** ``MaskRCNN(...)`` is constructed. The training graph's
   ``KL.Lambda(lambda x: rpn_class_loss_graph(*x))`` resolves the name when the model is built;
   a model built earlier keeps the plain loss.
2. Start data-loader **worker processes after** patching (Matterport's ``fit`` forks them in
   ``train()``, which is fine). A process started before the patch, or with the ``spawn``
   start method, imports the module afresh and builds Matterport's random 256-anchor targets.
"""
from __future__ import annotations

import importlib
import inspect
import math
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import tensorflow as tf

from mrcnn_ohem.config import OHEMSettings, ohem_settings
from mrcnn_ohem.core import auxiliary
from mrcnn_ohem.losses import ohem_rpn_class_loss
from mrcnn_ohem.targets import ohem_rpn_targets

__all__ = ["patch", "PatchHandle", "make_rpn_class_loss_graph", "make_build_rpn_targets",
           "build_rpn_targets", "config_anchors", "add_selection_metrics", "SELECTION_METRICS"]

#: Names under which the bound loss reports its selection statistics (batch means) to a
#: listening training loop (:mod:`mrcnn_ohem.core.auxiliary`): kept positives, kept negatives,
#: smallest kept loss.
SELECTION_METRICS = ("ohem_rpn_kept_positives", "ohem_rpn_kept_negatives", "ohem_rpn_threshold")
#: Resize modes in which every training input is exactly ``IMAGE_SHAPE`` (so one anchor set fits).
FIXED_SHAPE_RESIZE_MODES = ("square", "crop")

_FROM_CONFIG: Any = object()


# --- config -> functions with Matterport's signatures -----------------------------------------

def make_rpn_class_loss_graph(config: Any) -> Callable[[Any, Any], tf.Tensor]:
    """A drop-in ``rpn_class_loss_graph(rpn_match, rpn_class_logits)`` bound to a config.

    The config's ``OHEM_RPN_*`` settings are read and validated once, here; with
    ``OHEM_RPN_NMS_THRESHOLD`` set, the anchors are computed here too (:func:`config_anchors`).
    Inside an :func:`mrcnn_ohem.core.auxiliary.recording` (the bundled model's ``train_step``
    opens one) the loss also reports :data:`SELECTION_METRICS`.

    Args:
        config: a Matterport-style config, usually with :class:`~mrcnn_ohem.config.OHEMConfigMixin`.

    Returns:
        ``rpn_class_loss_graph(rpn_match, rpn_class_logits) -> scalar float32``, with the
        resolved settings as its ``ohem_settings`` attribute.

    Raises:
        ValueError: a setting is invalid, or NMS is on without a fixed image shape.
    """
    settings = ohem_settings(config)
    anchors = config_anchors(config) if settings.nms_threshold is not None else None
    return _bind_loss(settings, anchors)


def config_anchors(config: Any) -> np.ndarray:
    """The anchors a Matterport-style model trains ``config.IMAGE_SHAPE`` inputs with.

    Built from the config's ``RPN_ANCHOR_SCALES``, ``RPN_ANCHOR_RATIOS``, ``BACKBONE_STRIDES``
    and ``RPN_ANCHOR_STRIDE`` (a callable ``BACKBONE`` gives the feature shapes through
    ``COMPUTE_BACKBONE_SHAPE``), in the order the RPN outputs them: level by level, cell-major,
    ratios within a cell (Matterport's ``generate_pyramid_anchors``).

    Returns:
        [anchors, (y1, x1, y2, x2)] float32 in pixels.

    Raises:
        ValueError: ``IMAGE_RESIZE_MODE`` is not one of :data:`FIXED_SHAPE_RESIZE_MODES`, so the
            anchors differ from batch to batch.
    """
    mode = getattr(config, "IMAGE_RESIZE_MODE", "square")
    if mode not in FIXED_SHAPE_RESIZE_MODES:
        raise ValueError(
            f"IMAGE_RESIZE_MODE must be one of {list(FIXED_SHAPE_RESIZE_MODES)} when "
            f"OHEM_RPN_NMS_THRESHOLD is set (NMS needs the anchors of one fixed IMAGE_SHAPE); "
            f"received {mode!r}. Set OHEM_RPN_NMS_THRESHOLD = None or use a fixed-size mode.")
    # OHEM may depend on the bundled model's NumPy anchor generator, never the reverse.
    from mrcnn_ohem.maskrcnn.anchors import generate_pyramid_anchors

    shape = [int(v) for v in np.asarray(config.IMAGE_SHAPE)[:2]]
    strides = list(config.BACKBONE_STRIDES)
    if callable(getattr(config, "BACKBONE", None)):
        features = np.asarray(config.COMPUTE_BACKBONE_SHAPE(np.asarray(config.IMAGE_SHAPE)))
    else:
        features = np.array([[math.ceil(shape[0] / s), math.ceil(shape[1] / s)] for s in strides])
    anchors = generate_pyramid_anchors(config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS, features,
                                       strides, config.RPN_ANCHOR_STRIDE)
    return anchors.astype(np.float32)


def _bind_loss(settings: OHEMSettings, anchors: np.ndarray | None = None) -> Callable[[Any, Any], tf.Tensor]:
    options = dict(top_k=settings.top_k, per_image=settings.per_image,
                   positive_fraction=settings.positive_fraction)
    if settings.nms_threshold is not None:
        options.update(anchors=anchors, nms_threshold=settings.nms_threshold)
    if settings.max_negatives_per_positive is not None:
        options.update(max_negatives_per_positive=settings.max_negatives_per_positive,
                       min_negatives=settings.min_negatives)

    def rpn_class_loss_graph(rpn_match, rpn_class_logits):
        """OHEM RPN class loss (mrcnn_ohem); see ``mrcnn_ohem.losses.ohem_rpn_class_loss``.

        rpn_match: [batch, anchors, 1] int. rpn_class_logits: [batch, anchors, 2].
        """
        if not auxiliary.listening():
            return ohem_rpn_class_loss(rpn_match, rpn_class_logits, **options)
        loss, stats = ohem_rpn_class_loss(rpn_match, rpn_class_logits, return_stats=True, **options)
        for name, key in zip(SELECTION_METRICS, ("kept_positives", "kept_negatives", "threshold")):
            auxiliary.record(name, tf.reduce_mean(tf.cast(stats[key], tf.float32)))
        return loss

    rpn_class_loss_graph.ohem_settings = settings
    return rpn_class_loss_graph


def _target_arguments(config: Any) -> dict[str, Any]:
    """The plain arguments of :func:`~mrcnn_ohem.targets.ohem_rpn_targets` for ``config``."""
    return {
        "anchors_per_image": config.RPN_TRAIN_ANCHORS_PER_IMAGE,
        "bbox_std_dev": np.asarray(config.RPN_BBOX_STD_DEV, dtype=np.float32),
        "negative_pool": ohem_settings(config).negative_pool,
    }


def make_build_rpn_targets(config: Any) -> Callable[..., tuple[np.ndarray, np.ndarray]]:
    """A drop-in ``build_rpn_targets(image_shape, anchors, gt_class_ids, gt_boxes, config)``.

    Every setting is taken from ``config`` now; the ``config`` passed at call time (Matterport's
    data generator passes the model's) is accepted for the signature and not read again.
    """
    arguments = _target_arguments(config)

    def build_rpn_targets(image_shape, anchors, gt_class_ids, gt_boxes, config):
        """OHEM RPN targets (mrcnn_ohem): every negative kept; see mrcnn_ohem.targets."""
        return ohem_rpn_targets(anchors, gt_class_ids, gt_boxes, **arguments)

    return build_rpn_targets


def build_rpn_targets(
    image_shape: Any,
    anchors: np.ndarray,
    gt_class_ids: np.ndarray,
    gt_boxes: np.ndarray,
    config: Any,
    *,
    negative_pool: int | None = _FROM_CONFIG,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Matterport's ``build_rpn_targets`` signature over :func:`~mrcnn_ohem.targets.ohem_rpn_targets`.

    Args:
        image_shape: [height, width, channels] of the molded image (unused, as upstream).
        anchors: [num_anchors, (y1, x1, y2, x2)] in pixels.
        gt_class_ids: [num_gt] int; negative ids mark crowd boxes.
        gt_boxes: [num_gt, (y1, x1, y2, x2)] in pixels.
        config: reads ``RPN_TRAIN_ANCHORS_PER_IMAGE``, ``RPN_BBOX_STD_DEV`` and, unless
            ``negative_pool`` is given, ``OHEM_RPN_NEGATIVE_POOL`` (default None).
        negative_pool: None keeps every negative; n keeps a random n per image.
        rng: random generator; NumPy's global one when None.

    Returns:
        rpn_match [num_anchors] int32 and rpn_bbox [RPN_TRAIN_ANCHORS_PER_IMAGE, 4] float32.
    """
    arguments = _target_arguments(config)
    if negative_pool is not _FROM_CONFIG:
        arguments["negative_pool"] = negative_pool
    return ohem_rpn_targets(anchors, gt_class_ids, gt_boxes, rng=rng, **arguments)


def add_selection_metrics(keras_model: Any, layer_name: str = "rpn_class_loss") -> list[str]:
    """Report :data:`SELECTION_METRICS` on a fork's tf-keras training model trained by ``fit``.

    For Matterport-style models whose ``train_step`` is Keras' own (the bundled model needs no
    call: it listens by itself). The loss layer's function is applied once more to the loss
    layer's own inputs, while listening, and each statistic is added with
    ``keras_model.add_metric(..., aggregation="mean")``, so it appears in the logs, History and
    TensorBoard like the losses. This repeats the selection once per step (about the cost of the
    OHEM loss itself). Call it after ``patch()`` and model construction, before ``compile``.

    Args:
        keras_model: the functional training model (``MaskRCNN(...).keras_model``).
        layer_name: the ``Lambda`` layer that computes the RPN class loss.

    Returns:
        The metric names added.

    Raises:
        ValueError: the model has no such layer, or its loss reports nothing (not patched with
            OHEM).
    """
    try:
        layer = keras_model.get_layer(layer_name)
    except ValueError as err:
        raise ValueError(f"layer_name must name the RPN class loss layer of keras_model; received "
                         f"{layer_name!r}") from err
    function = getattr(layer, "function", None) or layer.call

    def selection_stats(inputs):
        with auxiliary.recording() as recorded:
            function(inputs)
        missing = [name for name in SELECTION_METRICS if name not in recorded.values]
        if missing:
            raise ValueError(f"the {layer_name!r} layer must compute the OHEM loss of a patched module "
                             f"(call mrcnn_ohem.patch before building the model); received no {missing}")
        return tf.stack([recorded.values[name] for name in SELECTION_METRICS])  # [3]

    lambda_layer = type(layer)  # keras.layers.Lambda of the fork's Keras
    stats = lambda_layer(selection_stats, name="ohem_rpn_selection_stats")(layer.input)
    for i, name in enumerate(SELECTION_METRICS):
        keras_model.add_metric(stats[i], name=name, aggregation="mean")
    return list(SELECTION_METRICS)


# --- the reversible patch -----------------------------------------------------------------------

#: name -> number of leading positional parameters the patched function must accept.
_TARGETS = {"rpn_class_loss_graph": 2, "build_rpn_targets": 5}
_LOCK = threading.Lock()
_ACTIVE: dict[str, PatchHandle] = {}


class PatchHandle:
    """What :func:`patch` returns: restores the originals, also as a context manager.

    Attributes:
        module: the patched module.
        originals: name -> the function that was there before (empty when nothing was patched).
    """

    def __init__(self, module: ModuleType, originals: dict[str, Callable]):
        self.module = module
        self.originals = originals

    @property
    def active(self) -> bool:
        """True while this handle's replacements are installed on the module."""
        return _ACTIVE.get(self.module.__name__) is self

    def restore(self) -> None:
        """Put the original functions back. Safe to call more than once."""
        with _LOCK:
            if not self.active:
                return
            for name, original in self.originals.items():
                setattr(self.module, name, original)
            del _ACTIVE[self.module.__name__]

    def __enter__(self) -> PatchHandle:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.restore()

    def __repr__(self) -> str:
        names = ", ".join(self.originals) or "nothing"
        return f"<PatchHandle {self.module.__name__}: {names}{'' if self.active else ' (restored)'}>"


def _resolve_module(module: ModuleType | str) -> ModuleType:
    if isinstance(module, ModuleType):
        return module
    if not isinstance(module, str):
        raise TypeError(
            f"module must be a module object or a dotted module name; received {type(module).__name__}"
        )
    try:
        return importlib.import_module(module)
    except ImportError as err:
        raise ImportError(
            f"patch() could not import module {module!r} ({err}). Pass the module object, or its "
            "dotted name as installed; code written for Matterport's TF2 forks needs "
            "TF_USE_LEGACY_KERAS=1 set before TensorFlow is imported."
        ) from err


def _check_target(module: ModuleType, name: str, arity: int) -> None:
    function = getattr(module, name, None)
    if function is None or not callable(function):
        raise AttributeError(
            f"module {module.__name__!r} has no function {name!r}; patch() expects a "
            "Matterport-style model module (mrcnn.model or a fork of it)"
        )
    try:
        parameters = list(inspect.signature(function).parameters.values())
    except (TypeError, ValueError):
        return  # builtins and C functions have no signature to check
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    variadic = any(p.kind == p.VAR_POSITIONAL for p in parameters)
    required = [p for p in positional if p.default is p.empty]
    if not variadic and (len(positional) < arity or len(required) > arity):
        raise TypeError(
            f"{module.__name__}.{name} must accept {arity} positional arguments "
            f"(Matterport's signature); received signature {inspect.signature(function)}"
        )


def patch(config: Any, module: ModuleType | str = "mrcnn.model") -> PatchHandle:
    """Install the OHEM RPN loss and targets on a Matterport-style model module.

    Args:
        config: a config with ``OHEM_*`` settings (see :class:`~mrcnn_ohem.config.OHEMConfigMixin`);
            a plain Matterport config uses the defaults.
        module: the module object, or its dotted name (default ``"mrcnn.model"``).

    Returns:
        A :class:`PatchHandle`. Patching a module that is already patched replaces the earlier
        OHEM functions (it never stacks) and the handle restores the true originals. With
        ``OHEM_RPN = False`` nothing is patched and the handle's ``restore()`` does nothing.

    Raises:
        ValueError: an ``OHEM_*`` setting is invalid, or ``OHEM_RPN_NMS_THRESHOLD`` is set while
            ``IMAGE_RESIZE_MODE`` gives no fixed image shape.
        ImportError / TypeError / AttributeError: the module cannot be imported or lacks a
            function with Matterport's signature. Nothing is changed in that case.
    """
    settings = ohem_settings(config)
    target_module = _resolve_module(module)
    for name, arity in _TARGETS.items():
        _check_target(target_module, name, arity)
    if not settings.enabled:
        return PatchHandle(target_module, {})

    replacements = {
        "rpn_class_loss_graph": make_rpn_class_loss_graph(config),
        "build_rpn_targets": make_build_rpn_targets(config),
    }
    with _LOCK:
        previous = _ACTIVE.get(target_module.__name__)
        if previous is not None:
            originals = previous.originals
        else:
            originals = {name: getattr(target_module, name) for name in replacements}
        handle = PatchHandle(target_module, originals)
        for name, function in replacements.items():
            setattr(target_module, name, function)
        _ACTIVE[target_module.__name__] = handle
    return handle
