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
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import tensorflow as tf

from mrcnn_ohem.config import OHEMSettings, ohem_settings
from mrcnn_ohem.losses import ohem_rpn_class_loss
from mrcnn_ohem.targets import ohem_rpn_targets

__all__ = ["patch", "PatchHandle", "make_rpn_class_loss_graph", "make_build_rpn_targets",
           "build_rpn_targets"]

_FROM_CONFIG: Any = object()


# --- config -> functions with Matterport's signatures -----------------------------------------

def make_rpn_class_loss_graph(config: Any) -> Callable[[Any, Any], tf.Tensor]:
    """A drop-in ``rpn_class_loss_graph(rpn_match, rpn_class_logits)`` bound to a config.

    The config's ``OHEM_RPN_*`` settings are read and validated once, here.

    Args:
        config: a Matterport-style config, usually with :class:`~mrcnn_ohem.config.OHEMConfigMixin`.

    Returns:
        ``rpn_class_loss_graph(rpn_match, rpn_class_logits) -> scalar float32``, with the
        resolved settings as its ``ohem_settings`` attribute.
    """
    settings = ohem_settings(config)
    return _bind_loss(settings)


def _bind_loss(settings: OHEMSettings) -> Callable[[Any, Any], tf.Tensor]:
    def rpn_class_loss_graph(rpn_match, rpn_class_logits):
        """OHEM RPN class loss (mrcnn_ohem); see ``mrcnn_ohem.losses.ohem_rpn_class_loss``.

        rpn_match: [batch, anchors, 1] int. rpn_class_logits: [batch, anchors, 2].
        """
        return ohem_rpn_class_loss(
            rpn_match,
            rpn_class_logits,
            top_k=settings.top_k,
            per_image=settings.per_image,
            positive_fraction=settings.positive_fraction,
        )

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
        ValueError: an ``OHEM_*`` setting is invalid.
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
        "rpn_class_loss_graph": _bind_loss(settings),
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
