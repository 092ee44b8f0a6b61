"""Where a config becomes arguments, and the reversible swap into a Matterport-style module.

The losses (:mod:`mrcnn_ohem.losses`) and targets (:mod:`mrcnn_ohem.targets`) take plain
arguments. This module resolves a config once (:func:`~mrcnn_ohem.config.ohem_settings`) and
binds the values into functions with Matterport's signatures:
:func:`make_rpn_class_loss_graph`, :func:`make_build_rpn_targets` and, for direct calls with a
config, :func:`build_rpn_targets`.

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
  Matterport's builder constructs ``DetectionTargetLayer(config, name="proposal_targets")``
  by module-global name, so the subclass reaches the bundled model and forks alike; its base
  ``__init__`` is handed a copy of the config whose ``TRAIN_ROIS_PER_IMAGE`` is the pool size,
  so whatever a fork's layer derives from it (output shapes, padding) is pool-sized too. The
  heads downstream take any number of RoIs; the box and mask losses read positives only, and
  the pool holds exactly the positives Matterport would sample. Where the module also has
  Matterport's ``build_fpn_mask_graph`` and ``mrcnn_mask_loss_graph`` (and ``KL.Lambda``), they
  are wrapped so that the mask head and its loss see only the pool's first
  ``TRAIN_ROIS_PER_IMAGE`` rows, which hold every positive (:func:`make_mask_head_trim`): the
  mask loss is unchanged and the mask head costs what it costs without OHEM. A module without
  them keeps its mask head on the whole pool (same loss, more work).

The bound loss reports its selection statistics (:data:`SELECTION_METRICS`) through
:mod:`mrcnn_ohem.core.auxiliary` to any training loop that listens: the bundled model's
``train_step`` does, so they appear in its Keras logs, History and TensorBoard. A Matterport fork
trained by stock Keras ``fit`` does not listen: :func:`add_selection_metrics` adds them to its
training model as Keras metrics instead.

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

import copy
import importlib
import inspect
import logging
import math
import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

import numpy as np
import tensorflow as tf

from mrcnn_ohem._compat import check_keras2
from mrcnn_ohem.config import OHEMSettings, RPNLossSettings, ohem_roi_settings, ohem_settings, rpn_loss_settings
from mrcnn_ohem.core import auxiliary
from mrcnn_ohem.losses import focal_rpn_class_loss, ohem_rpn_class_loss
from mrcnn_ohem.roi import ohem_mrcnn_class_loss, ohem_roi_targets
from mrcnn_ohem.targets import ohem_rpn_targets

__all__ = ["patch", "PatchHandle", "make_rpn_class_loss_graph", "make_build_rpn_targets",
           "build_rpn_targets", "make_mrcnn_class_loss_graph", "make_detection_target_layer",
           "make_mask_head_trim", "config_anchors", "add_selection_metrics", "SELECTION_METRICS"]

#: Names under which the bound loss reports its selection statistics (batch means) to a
#: listening training loop (:mod:`mrcnn_ohem.core.auxiliary`): kept positives, kept negatives,
#: smallest kept loss.
SELECTION_METRICS = ("ohem_rpn_kept_positives", "ohem_rpn_kept_negatives", "ohem_rpn_threshold")
#: Resize modes in which every training input is exactly ``IMAGE_SHAPE`` (so one anchor set fits).
FIXED_SHAPE_RESIZE_MODES = ("square", "crop")

_FROM_CONFIG: Any = object()
logger = logging.getLogger(__name__)

#: The Matterport ``Config`` attributes each switch reads, and what reads them.
_RPN_ATTRIBUTES = {"RPN_TRAIN_ANCHORS_PER_IMAGE": "the OHEM RPN targets (positive cap, rpn_bbox rows)",
                   "RPN_BBOX_STD_DEV": "the OHEM RPN targets (rpn_bbox scaling)"}
_NMS_ATTRIBUTES = {name: "OHEM_RPN_NMS_THRESHOLD (the anchors NMS compares)" for name in (
    "IMAGE_SHAPE", "BACKBONE_STRIDES", "RPN_ANCHOR_SCALES", "RPN_ANCHOR_RATIOS", "RPN_ANCHOR_STRIDE")}
_ROI_ATTRIBUTES = {name: "OHEM_ROI (the RoI pool's targets)" for name in (
    "TRAIN_ROIS_PER_IMAGE", "ROI_POSITIVE_RATIO", "BBOX_STD_DEV", "MASK_SHAPE", "USE_MINI_MASK")}


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
        resolved settings as its ``ohem_settings`` attribute: the OHEM loss, or the focal loss
        (:func:`~mrcnn_ohem.losses.focal_rpn_class_loss`) when ``OHEM_RPN_LOSS = "focal"``.

    Raises:
        ValueError: a setting is invalid, or NMS is on without a fixed image shape.
    """
    settings = ohem_settings(config)
    loss = rpn_loss_settings(config)
    if loss.loss == "focal":
        return _bind_focal_loss(settings, loss)
    anchors = config_anchors(config) if settings.nms_threshold is not None else None
    return _bind_loss(settings, anchors)


def _bind_focal_loss(settings: OHEMSettings, loss: RPNLossSettings) -> Callable[[Any, Any], tf.Tensor]:
    def rpn_class_loss_graph(rpn_match, rpn_class_logits):
        """Focal RPN class loss (mrcnn_ohem); see ``mrcnn_ohem.losses.focal_rpn_class_loss``.

        rpn_match: [batch, anchors, 1] int. rpn_class_logits: [batch, anchors, 2].
        """
        rpn_class_loss_graph.graphs_built += 1
        return focal_rpn_class_loss(rpn_match, rpn_class_logits, alpha=loss.focal_alpha,
                                    gamma=loss.focal_gamma)

    rpn_class_loss_graph.ohem_settings = settings
    rpn_class_loss_graph.rpn_loss_settings = loss
    rpn_class_loss_graph.graphs_built = 0  # calls so far: a model graph was built with it
    return rpn_class_loss_graph


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
        rpn_class_loss_graph.graphs_built += 1
        if not auxiliary.listening():
            return ohem_rpn_class_loss(rpn_match, rpn_class_logits, **options)
        loss, stats = ohem_rpn_class_loss(rpn_match, rpn_class_logits, return_stats=True, **options)
        for name, key in zip(SELECTION_METRICS, ("kept_positives", "kept_negatives", "threshold")):
            auxiliary.record(name, tf.reduce_mean(tf.cast(stats[key], tf.float32)))
        return loss

    rpn_class_loss_graph.ohem_settings = settings
    rpn_class_loss_graph.graphs_built = 0  # calls so far: a model graph was built with it
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


def make_mrcnn_class_loss_graph(config: Any) -> Callable[[Any, Any, Any], tf.Tensor]:
    """A drop-in ``mrcnn_class_loss_graph(target_class_ids, pred_class_logits, active_class_ids)``.

    Keeps the hardest ``OHEM_ROI_TOP_K`` RoIs per image (default ``TRAIN_ROIS_PER_IMAGE``); see
    :func:`~mrcnn_ohem.roi.ohem_mrcnn_class_loss`. The resolved settings are its
    ``ohem_roi_settings`` attribute.
    """
    roi = ohem_roi_settings(config)
    if roi.top_k is None:
        raise ValueError("TRAIN_ROIS_PER_IMAGE must be an integer >= 1 when OHEM_ROI_TOP_K is None; received None")

    def mrcnn_class_loss_graph(target_class_ids, pred_class_logits, active_class_ids):
        """RoI-head OHEM class loss (mrcnn_ohem); see ``mrcnn_ohem.roi.ohem_mrcnn_class_loss``.

        target_class_ids: [batch, rois] int. pred_class_logits: [batch, rois, classes].
        active_class_ids: [batch, classes].
        """
        return ohem_mrcnn_class_loss(target_class_ids, pred_class_logits, active_class_ids, top_k=roi.top_k)

    mrcnn_class_loss_graph.ohem_roi_settings = roi
    return mrcnn_class_loss_graph


def _roi_target_arguments(config: Any) -> dict[str, Any]:
    """The plain arguments of :func:`~mrcnn_ohem.roi.ohem_roi_targets` for ``config``."""
    roi = ohem_roi_settings(config)
    return {
        "train_rois_per_image": roi.train_rois_per_image,
        "roi_positive_ratio": float(config.ROI_POSITIVE_RATIO),
        "pool_size": roi.pool,
        "bbox_std_dev": [float(v) for v in np.reshape(config.BBOX_STD_DEV, [4])],
        "mask_shape": [int(v) for v in config.MASK_SHAPE],
        "use_mini_mask": bool(config.USE_MINI_MASK),
    }


def make_detection_target_layer(config: Any, base: type) -> type:
    """A subclass of a Matterport-style ``DetectionTargetLayer`` that samples OHEM RoI pools.

    Constructed as Matterport's builder does, ``Layer(config, name="proposal_targets")``, it
    returns ``[rois, target_class_ids, target_bbox, target_mask]`` with ``OHEM_ROI_POOL`` rows
    per image (:func:`~mrcnn_ohem.roi.ohem_roi_targets`). Every setting is read from ``config``
    now; the base class's ``__init__`` receives a copy of the construction-time config whose
    ``TRAIN_ROIS_PER_IMAGE`` is the pool size, so a fork that derives shapes from it agrees.

    Args:
        config: a config with ``OHEM_ROI*`` settings and Matterport's RoI attributes.
        base: the module's own ``DetectionTargetLayer`` class (a Keras layer).

    Returns:
        The subclass, named like ``base``, with the bound arguments as ``ohem_arguments``.
    """
    arguments = _roi_target_arguments(config)
    pool = arguments["pool_size"]
    mask_shape = arguments["mask_shape"]

    def __init__(self, config=None, *args, **kwargs):
        if config is not None:
            config = copy.copy(config)
            config.TRAIN_ROIS_PER_IMAGE = pool
        base.__init__(self, config, *args, **kwargs)

    def call(self, inputs):
        proposals, gt_class_ids, gt_boxes, gt_masks = inputs[:4]
        signature = (tf.TensorSpec([pool, 4], tf.float32), tf.TensorSpec([pool], tf.int32),
                     tf.TensorSpec([pool, 4], tf.float32), tf.TensorSpec([pool, *mask_shape], tf.float32))
        outputs = tf.map_fn(
            lambda image: ohem_roi_targets(*image, **arguments),
            (tf.cast(proposals, tf.float32), tf.cast(gt_class_ids, tf.int32), tf.cast(gt_boxes, tf.float32),
             gt_masks),
            fn_output_signature=signature)
        return [tf.stop_gradient(o) for o in outputs]

    def compute_output_shape(self, input_shape):
        return [(None, pool, 4), (None, pool), (None, pool, 4), (None, pool, *mask_shape)]

    def compute_mask(self, inputs, mask=None):
        return [None, None, None, None]

    namespace = {
        "__init__": __init__, "call": call, "compute_output_shape": compute_output_shape,
        "compute_mask": compute_mask, "ohem_arguments": arguments, "__module__": __name__,
        "__doc__": f"{base.__name__} with OHEM RoI pools of {pool} per image (mrcnn_ohem); "
                   "see mrcnn_ohem.roi.ohem_roi_targets.",
    }
    return type(base.__name__, (base,), namespace)


def make_mask_head_trim(target_layer: type, rows: int, lambda_layer: type, build_mask_graph: Callable,
                        mask_loss_graph: Callable) -> tuple[Callable, Callable]:
    """Wrap Matterport's mask head and mask loss so that they see the first ``rows`` pool rows.

    The OHEM pool (:func:`~mrcnn_ohem.roi.ohem_roi_targets`) puts its positives first, at most
    ``int(TRAIN_ROIS_PER_IMAGE * ROI_POSITIVE_RATIO)`` of them, and the mask loss reads positives
    only; so with ``rows = TRAIN_ROIS_PER_IMAGE`` the mask loss is exactly the one on the whole
    pool, while the mask head's convolutions run on as many RoIs as without OHEM.

    Args:
        target_layer: the patched ``DetectionTargetLayer`` class; only RoIs that are its first
            output are trimmed (the inference graph's detections are not).
        rows: pool rows the mask head keeps per image.
        lambda_layer: the module's Keras ``Lambda`` class (``KL.Lambda``).
        build_mask_graph: the module's ``build_fpn_mask_graph(rois, feature_maps, image_meta,
            pool_size, num_classes, ...)``.
        mask_loss_graph: the module's ``mrcnn_mask_loss_graph(target_masks, target_class_ids,
            pred_masks)``.

    Returns:
        (build_fpn_mask_graph, mrcnn_mask_loss_graph) with the originals' signatures.
    """
    def build_fpn_mask_graph(rois, *args, **kwargs):
        """Matterport's mask head; on an OHEM RoI pool, on its first rows only (mrcnn_ohem)."""
        history = getattr(rois, "_keras_history", None)  # (layer, node_index, tensor_index)
        if history is not None and isinstance(history[0], target_layer) and history[2] == 0:
            rois = lambda_layer(lambda t: t[:, :rows], name="ohem_mask_rois")(rois)
        return build_mask_graph(rois, *args, **kwargs)

    def mrcnn_mask_loss_graph(target_masks, target_class_ids, pred_masks):
        """Matterport's mask loss on the rows the mask head saw (mrcnn_ohem).

        target_masks: [batch, pool, height, width]. target_class_ids: [batch, pool].
        pred_masks: [batch, rois <= pool, height, width, classes].
        """
        count = tf.shape(pred_masks)[1]
        return mask_loss_graph(target_masks[:, :count], target_class_ids[:, :count], pred_masks)

    return build_fpn_mask_graph, mrcnn_mask_loss_graph


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

#: name -> number of leading positional parameters the patched function must accept, per switch.
_RPN_TARGETS = {"rpn_class_loss_graph": 2, "build_rpn_targets": 5}
_ROI_TARGETS = {"mrcnn_class_loss_graph": 3}
#: Layer classes replaced by a subclass; Matterport constructs them as ``Layer(config, name=...)``.
_ROI_LAYERS = ("DetectionTargetLayer",)
#: Optional with ``OHEM_ROI``: wrapped by :func:`make_mask_head_trim` when all are present.
_ROI_MASK_TARGETS = {"build_fpn_mask_graph": 5, "mrcnn_mask_loss_graph": 3}
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


def _check_config_attributes(config: Any, settings: OHEMSettings, roi: Any) -> None:
    """Raise AttributeError naming the first Matterport attribute a switched-on part needs."""
    needed: dict[str, str] = {}
    if settings.enabled:
        needed.update(_RPN_ATTRIBUTES)
        if settings.nms_threshold is not None:
            needed.update(_NMS_ATTRIBUTES)
    if roi.enabled:
        needed.update(_ROI_ATTRIBUTES)
    for name, user in needed.items():
        if not hasattr(config, name):
            raise AttributeError(
                f"config must define {name} (Matterport's Config does), which {user} reads; received a "
                f"{type(config).__name__} without it. Subclass your project's Config, or set {name}.")


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
            ``IMAGE_RESIZE_MODE`` gives no fixed image shape.
        AttributeError: ``config`` lacks a Matterport attribute that a switched-on part reads.
        ValueError: the module was built against Keras 3 (a fork imported without
            ``TF_USE_LEGACY_KERAS=1`` on TensorFlow 2.16+), on which its graph cannot run.
        ImportError / TypeError / AttributeError: the module cannot be imported or lacks a
            function with Matterport's signature. Nothing is changed in that case.
    """
    settings = ohem_settings(config)
    roi = ohem_roi_settings(config)
    _check_config_attributes(config, settings, roi)
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
        parts.append(f"OHEM RoI pool={roi.pool} top_k={roi.top_k}")
    return "; ".join(parts)
