"""Swap OHEM into a Matterport-style model module, reversibly.

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
from types import ModuleType
from typing import Any, Callable

from mrcnn_ohem import targets
from mrcnn_ohem.config import ohem_settings
from mrcnn_ohem.losses import make_rpn_class_loss_graph

__all__ = ["patch", "PatchHandle"]

#: name -> number of leading positional parameters the patched function must accept.
_TARGETS = {"rpn_class_loss_graph": 2, "build_rpn_targets": 5}
_LOCK = threading.Lock()
_ACTIVE: dict[str, "PatchHandle"] = {}


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

    def __enter__(self) -> "PatchHandle":
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

    loss_graph = make_rpn_class_loss_graph(config)
    pool = settings.negative_pool

    def build_rpn_targets(image_shape, anchors, gt_class_ids, gt_boxes, config):
        """OHEM RPN targets (mrcnn_ohem): every negative kept; see mrcnn_ohem.targets."""
        return targets.build_rpn_targets(
            image_shape, anchors, gt_class_ids, gt_boxes, config, negative_pool=pool
        )

    replacements = {"rpn_class_loss_graph": loss_graph, "build_rpn_targets": build_rpn_targets}
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
