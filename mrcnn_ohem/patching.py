"""The reversible swap of OHEM into a Matterport-style model module: :func:`patch`.

``patch(config, module)`` replaces module-level names, each group only when the config turns
it on:

- ``OHEM_RPN``: ``rpn_class_loss_graph(rpn_match, rpn_class_logits)`` by the OHEM loss bound
  to ``config`` (or, with ``OHEM_RPN_LOSS = "focal"``, by the focal loss), and
  ``build_rpn_targets(image_shape, anchors, gt_class_ids, gt_boxes, config)`` by the target
  builder that keeps every negative (:func:`mrcnn_ohem.targets.ohem_rpn_targets`);
- ``OHEM_ROI``: ``DetectionTargetLayer`` by a subclass of the module's own class that samples
  a pool of ``OHEM_ROI_POOL`` RoIs per image (:func:`mrcnn_ohem.roi.ohem_roi_targets`), and
  ``mrcnn_class_loss_graph(target_class_ids, pred_class_logits, active_class_ids)`` by the
  loss over the hardest ``OHEM_ROI_TOP_K`` (:func:`mrcnn_ohem.roi.ohem_mrcnn_class_loss`).
  Where the module also has Matterport's ``build_fpn_mask_graph`` and ``mrcnn_mask_loss_graph``
  (and ``KL.Lambda``), they are wrapped so that the mask head and its loss see only the pool's
  first ``TRAIN_ROIS_PER_IMAGE`` rows (:mod:`mrcnn_ohem.surgery`); a module without them keeps
  its mask head on the whole pool (same loss, more work).
  With ``OHEM_ROI_RANKING = "class+box"`` or an ``OHEM_ROI_NMS_THRESHOLD`` (the OHEM paper's
  setting) also ``select_training_rois``, a hook only the bundled model has: its training graph
  chooses the hard RoIs before the losses and trains the class and box losses on them.

The replacements are built by :mod:`mrcnn_ohem.binding` (a config becomes arguments) and
:mod:`mrcnn_ohem.surgery` (Keras classes and graph wrappers); this module checks the target,
installs them and keeps the registry that makes a patch reversible and non-stacking. Their
names stay importable from here.

Three rules follow from how Matterport code looks these names up:

1. Patch **before** ``MaskRCNN(...)`` is constructed. The training graph's
   ``KL.Lambda(lambda x: rpn_class_loss_graph(*x))`` resolves the name when the model is built;
   a model built earlier keeps the plain loss.
2. Keep the patch in place **until training ends** with a fork. Its data generator looks
   ``build_rpn_targets`` up when it runs, so a model built inside ``with patch(...)`` and trained
   after the block would feed its OHEM loss Matterport's random 256 anchors; :meth:`PatchHandle.restore`
   warns when that can happen. The bundled ``MaskRCNN`` binds its targets when it is built, with
   its losses, so it trains consistently either way.
3. Start data-loader **worker processes after** patching (Matterport's ``fit`` forks them in
   ``train()``, which is fine). A process started before the patch, or with the ``spawn``
   start method, imports the module afresh and builds Matterport's random 256-anchor targets.

``patch()`` and ``restore()`` each log one INFO line on the ``mrcnn_ohem`` logger naming what
they replaced and the settings.
"""
from __future__ import annotations

import importlib
import inspect
import logging
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

from mrcnn_ohem._compat import check_keras2
from mrcnn_ohem.binding import (  # noqa: F401  (public names of this module since 0.1)
    SELECTION_METRICS,
    build_rpn_targets,
    check_config_attributes,
    config_anchors,
    make_build_rpn_targets,
    make_mrcnn_class_loss_graph,
    make_rpn_class_loss_graph,
    make_select_training_rois,
)
from mrcnn_ohem.config import OHEMSettings, RPNLossSettings, ohem_roi_settings, ohem_settings, rpn_loss_settings
from mrcnn_ohem.surgery import add_selection_metrics, make_detection_target_layer, make_mask_head_trim

__all__ = ["patch", "PatchHandle", "make_rpn_class_loss_graph", "make_build_rpn_targets",
           "build_rpn_targets", "make_mrcnn_class_loss_graph", "make_detection_target_layer",
           "make_mask_head_trim", "config_anchors", "add_selection_metrics", "SELECTION_METRICS"]

logger = logging.getLogger(__name__)


# --- the reversible patch -----------------------------------------------------------------------

#: name -> number of leading positional parameters the patched function must accept, per switch.
_RPN_TARGETS = {"rpn_class_loss_graph": 2, "build_rpn_targets": 5}
_ROI_TARGETS = {"mrcnn_class_loss_graph": 3}
#: Layer classes replaced by a subclass; Matterport constructs them as ``Layer(config, name=...)``.
_ROI_LAYERS = ("DetectionTargetLayer",)
#: Optional with ``OHEM_ROI``: wrapped by :func:`make_mask_head_trim` when all are present.
_ROI_MASK_TARGETS = {"build_fpn_mask_graph": 5, "mrcnn_mask_loss_graph": 3}
#: With the paper's RoI setting: the bundled model's hook (None there until patched).
_ROI_SELECTION_HOOK = "select_training_rois"
_LOCK = threading.Lock()
_ACTIVE: dict[str, PatchHandle] = {}


class PatchHandle:
    """What :func:`patch` returns: restores the originals, also as a context manager.

    Attributes:
        module: the patched module.
        originals: name -> the function that was there before (empty when nothing was patched).

    Args:
        module: the patched module.
        originals: name -> the function that was there before.
    """

    def __init__(self, module: ModuleType, originals: dict[str, Callable]):
        self.module = module
        self.originals = originals

    @property
    def active(self) -> bool:
        """True while this handle's replacements are installed on the module."""
        return _ACTIVE.get(self.module.__name__) is self

    def restore(self) -> None:
        """Put the original functions back. Safe to call more than once.

        Warns when a model was built with the patched RPN loss and the module's ``MaskRCNN`` does
        not keep its targets (a Matterport fork's ``train()`` looks ``build_rpn_targets`` up when
        it runs): that model would train its OHEM loss on Matterport's random-256 targets.
        """
        with _LOCK:
            if not self.active:
                return
            loss = getattr(self.module, "rpn_class_loss_graph", None)
            for name, original in self.originals.items():
                setattr(self.module, name, original)
            del _ACTIVE[self.module.__name__]
        logger.info("mrcnn_ohem.patch: restored the original %s on %s", ", ".join(self.originals),
                    self.module.__name__)
        if getattr(loss, "graphs_built", 0) and not getattr(self.module, "BINDS_DATA_FUNCTIONS_AT_BUILD", False):
            logger.warning(
                "mrcnn_ohem.patch: restored %s while a model built with the OHEM RPN loss may still train: "
                "its data generator now builds Matterport's random %s-anchor targets, which starve that loss. "
                "Keep the patch in place until training ends (call train() inside the with block).",
                self.module.__name__, "RPN_TRAIN_ANCHORS_PER_IMAGE")

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


def _parameters(module: ModuleType, name: str, kind: str, accepts: Callable[[Any], bool]) -> list | None:
    """``module.name``'s parameters, after checking it is a ``kind`` ("function" or "class").

    Returns None when it has no inspectable signature (builtins and C functions).
    """
    target = getattr(module, name, None)
    if not accepts(target):
        raise AttributeError(
            f"module {module.__name__!r} has no {kind} {name!r}; patch() expects a "
            "Matterport-style model module (mrcnn.model or a fork of it)"
        )
    try:
        return list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return None


def _check_target(module: ModuleType, name: str, arity: int) -> None:
    parameters = _parameters(module, name, "function", callable)
    if parameters is None:
        return
    positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    variadic = any(p.kind == p.VAR_POSITIONAL for p in parameters)
    required = [p for p in positional if p.default is p.empty]
    if not variadic and (len(positional) < arity or len(required) > arity):
        raise TypeError(
            f"{module.__name__}.{name} must accept {arity} positional arguments "
            f"(Matterport's signature); received signature {inspect.signature(getattr(module, name))}"
        )


def _has_targets(module: ModuleType, targets: dict[str, int]) -> bool:
    """Whether every function of ``targets`` (name -> arity) passes :func:`_check_target`."""
    try:
        for name, arity in targets.items():
            _check_target(module, name, arity)
    except (AttributeError, TypeError):
        return False
    return True


def _check_layer(module: ModuleType, name: str) -> None:
    parameters = _parameters(module, name, "class", inspect.isclass)
    if parameters is None:
        return
    takes_config = bool(parameters) and parameters[0].kind in (
        inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.VAR_POSITIONAL)
    if not takes_config:
        raise TypeError(
            f"{module.__name__}.{name} must be constructed as {name}(config, name=...) "
            f"(Matterport's signature); received signature {inspect.signature(getattr(module, name))}"
        )


def _check_selection_hook(module: ModuleType) -> None:
    """Raise ValueError unless ``module`` builds its RoI losses through ``select_training_rois``."""
    if not hasattr(module, _ROI_SELECTION_HOOK):
        raise ValueError(
            f"OHEM_ROI_RANKING = 'class+box' and OHEM_ROI_NMS_THRESHOLD need a model whose training graph "
            f"chooses the RoIs before its class and box losses (the bundled mrcnn_ohem.maskrcnn.model, through "
            f"{_ROI_SELECTION_HOOK}); received module {module.__name__}, which has no {_ROI_SELECTION_HOOK}: "
            f"its box loss cannot see which RoIs were kept. Use OHEM_ROI_RANKING = 'class' and "
            f"OHEM_ROI_NMS_THRESHOLD = None with it.")


def patch(config: Any, module: ModuleType | str = "mrcnn.model") -> PatchHandle:
    """Install what the config turns on (RPN OHEM or focal, RoI OHEM) on a Matterport-style module.

    Args:
        config: a config with ``OHEM_*`` settings (see :class:`~mrcnn_ohem.config.OHEMConfigMixin`);
            a plain Matterport config uses the defaults.
        module: the module object, or its dotted name (default ``"mrcnn.model"``).

    Returns:
        A :class:`PatchHandle`. Patching a module that is already patched replaces the earlier
        OHEM functions (it never stacks: a name the new config leaves off gets its original
        back) and the handle restores the true originals. With ``OHEM_RPN = False`` the RPN
        names are left alone, with ``OHEM_ROI = False`` (the default) the RoI names; with both
        off nothing is patched and the handle's ``restore()`` does nothing.

    Raises:
        ValueError: an ``OHEM_*`` setting is invalid, or ``OHEM_RPN_NMS_THRESHOLD`` is set while
            ``IMAGE_RESIZE_MODE`` gives no fixed image shape, or the paper's RoI setting
            (``OHEM_ROI_RANKING = "class+box"``, ``OHEM_ROI_NMS_THRESHOLD``) meets a module
            without the ``select_training_rois`` hook (a Matterport fork).
        AttributeError: ``config`` lacks a Matterport attribute that a switched-on part reads.
        ValueError: the module was built against Keras 3 (a fork imported without
            ``TF_USE_LEGACY_KERAS=1`` on TensorFlow 2.16+), on which its graph cannot run.
        ImportError / TypeError / AttributeError: the module cannot be imported or lacks a
            function with Matterport's signature. Nothing is changed in that case.
    """
    settings = ohem_settings(config)
    roi = ohem_roi_settings(config)
    check_config_attributes(config, settings, roi)
    target_module = _resolve_module(module)
    check_keras2(target_module)
    functions = dict(_RPN_TARGETS) if settings.enabled else {}
    layers: tuple[str, ...] = ()
    if roi.enabled:
        functions.update(_ROI_TARGETS)
        layers = _ROI_LAYERS
    for name, arity in functions.items():
        _check_target(target_module, name, arity)
    for name in layers:
        _check_layer(target_module, name)
    names = [*functions, *layers]
    if roi.selects_for_box_loss:
        _check_selection_hook(target_module)
        names.append(_ROI_SELECTION_HOOK)
    lambda_layer = getattr(getattr(target_module, "KL", None), "Lambda", None)
    trim_mask = roi.enabled and lambda_layer is not None and _has_targets(target_module, _ROI_MASK_TARGETS)
    if trim_mask:
        names += list(_ROI_MASK_TARGETS)
    if not names:
        return PatchHandle(target_module, {})

    with _LOCK:
        previous = _ACTIVE.get(target_module.__name__)
        earlier = previous.originals if previous is not None else {}
        originals = {name: earlier.get(name, getattr(target_module, name)) for name in names}
        replacements: dict[str, Any] = {}
        if settings.enabled:
            replacements["rpn_class_loss_graph"] = make_rpn_class_loss_graph(config)
            replacements["build_rpn_targets"] = make_build_rpn_targets(config)
        if roi.enabled:
            replacements["mrcnn_class_loss_graph"] = make_mrcnn_class_loss_graph(config)
            replacements["DetectionTargetLayer"] = make_detection_target_layer(
                config, originals["DetectionTargetLayer"])
        if roi.selects_for_box_loss:
            replacements[_ROI_SELECTION_HOOK] = make_select_training_rois(config)
        if trim_mask:
            replacements["build_fpn_mask_graph"], replacements["mrcnn_mask_loss_graph"] = make_mask_head_trim(
                replacements["DetectionTargetLayer"], roi.train_rois_per_image, lambda_layer,
                originals["build_fpn_mask_graph"], originals["mrcnn_mask_loss_graph"])
        for name, original in earlier.items():
            if name not in replacements:
                setattr(target_module, name, original)
        handle = PatchHandle(target_module, originals)
        for name, function in replacements.items():
            setattr(target_module, name, function)
        _ACTIVE[target_module.__name__] = handle
    logger.info("mrcnn_ohem.patch: replaced %s on %s (%s)", ", ".join(replacements), target_module.__name__,
                _describe(settings, rpn_loss_settings(config), roi))
    return handle


def _describe(settings: OHEMSettings, loss: RPNLossSettings, roi: Any) -> str:
    """One line of the switched-on settings, for the log."""
    parts = []
    if settings.enabled and loss.loss == "focal":
        parts.append(f"focal RPN loss alpha={loss.focal_alpha} gamma={loss.focal_gamma}")
    elif settings.enabled:
        parts.append("OHEM RPN " + " ".join(f"{key}={value}" for key, value in settings._asdict().items()
                                            if key != "enabled"))
    if roi.enabled:
        parts.append(f"OHEM RoI pool={roi.pool} top_k={roi.top_k} ranking={roi.ranking} "
                     f"nms_threshold={roi.nms_threshold}")
    return "; ".join(parts)
