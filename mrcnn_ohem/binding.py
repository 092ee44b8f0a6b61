"""Where a config becomes arguments: functions with Matterport's signatures, bound to a config.

The losses (:mod:`mrcnn_ohem.losses`, :mod:`mrcnn_ohem.roi`) and targets
(:mod:`mrcnn_ohem.targets`) take plain arguments. This module resolves a config once
(:func:`~mrcnn_ohem.config.ohem_settings`) and binds the values into drop-in replacements:
:func:`make_rpn_class_loss_graph`, :func:`make_build_rpn_targets`,
:func:`make_mrcnn_class_loss_graph` and, for direct calls with a config, :func:`build_rpn_targets`.
:func:`mrcnn_ohem.patching.patch` installs them on a model module.

The bound RPN loss reports its selection statistics (:data:`SELECTION_METRICS`) through
:mod:`mrcnn_ohem.core.auxiliary` to any training loop that listens: the bundled model's
``train_step`` does, so they appear in its Keras logs, History and TensorBoard; for a fork,
:func:`mrcnn_ohem.surgery.add_selection_metrics` adds them as Keras metrics.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import tensorflow as tf

from mrcnn_ohem.config import OHEMSettings, RPNLossSettings, ohem_roi_settings, ohem_settings, rpn_loss_settings
from mrcnn_ohem.core import auxiliary
from mrcnn_ohem.losses import focal_rpn_class_loss, ohem_rpn_class_loss
from mrcnn_ohem.roi import ohem_mrcnn_class_loss, select_hard_rois
from mrcnn_ohem.targets import ohem_rpn_targets

__all__ = ["make_rpn_class_loss_graph", "make_build_rpn_targets", "build_rpn_targets",
           "make_mrcnn_class_loss_graph", "make_select_training_rois", "config_anchors", "roi_target_arguments",
           "check_config_attributes", "SELECTION_METRICS", "ROI_SELECTION_METRICS", "FIXED_SHAPE_RESIZE_MODES"]

#: Names under which the bound loss reports its selection statistics (batch means) to a
#: listening training loop (:mod:`mrcnn_ohem.core.auxiliary`): kept positives, kept negatives,
#: smallest kept loss.
SELECTION_METRICS = ("ohem_rpn_kept_positives", "ohem_rpn_kept_negatives", "ohem_rpn_threshold")
#: The same for the RoI-head class loss (``OHEM_ROI``): kept positive and negative RoIs per image.
ROI_SELECTION_METRICS = ("ohem_roi_kept_positives", "ohem_roi_kept_negatives")
#: Resize modes in which every training input is exactly ``IMAGE_SHAPE`` (so one anchor set fits).
FIXED_SHAPE_RESIZE_MODES = ("square", "crop")

_FROM_CONFIG: Any = object()

#: The Matterport ``Config`` attributes each switch reads, and what reads them.
_RPN_ATTRIBUTES = {"RPN_TRAIN_ANCHORS_PER_IMAGE": "the OHEM RPN targets (positive cap, rpn_bbox rows)",
                   "RPN_BBOX_STD_DEV": "the OHEM RPN targets (rpn_bbox scaling)"}
_NMS_ATTRIBUTES = {name: "OHEM_RPN_NMS_THRESHOLD (the anchors NMS compares)" for name in (
    "IMAGE_SHAPE", "BACKBONE_STRIDES", "RPN_ANCHOR_SCALES", "RPN_ANCHOR_RATIOS", "RPN_ANCHOR_STRIDE")}
_ROI_ATTRIBUTES = {name: "OHEM_ROI (the RoI pool's targets)" for name in (
    "TRAIN_ROIS_PER_IMAGE", "ROI_POSITIVE_RATIO", "BBOX_STD_DEV", "MASK_SHAPE", "USE_MINI_MASK")}


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

    Args:
        config: a Matterport-style config with a fixed-shape ``IMAGE_RESIZE_MODE``.

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

    Args:
        config: reads ``RPN_TRAIN_ANCHORS_PER_IMAGE``, ``RPN_BBOX_STD_DEV`` and
            ``OHEM_RPN_NEGATIVE_POOL``.

    Returns:
        The function; it returns rpn_match [num_anchors] int32 and rpn_bbox
        [RPN_TRAIN_ANCHORS_PER_IMAGE, 4] float32.
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
    ``ohem_roi_settings`` attribute. Inside an :func:`mrcnn_ohem.core.auxiliary.recording` it
    reports :data:`ROI_SELECTION_METRICS` (batch means of the kept counts per image).

    Args:
        config: a config with ``OHEM_ROI*`` settings and ``TRAIN_ROIS_PER_IMAGE``.

    Returns:
        The function; it returns the scalar float32 loss.

    Raises:
        ValueError: an ``OHEM_ROI*`` setting is invalid, or ``TRAIN_ROIS_PER_IMAGE`` is missing
            while ``OHEM_ROI_TOP_K`` is None.
    """
    roi = ohem_roi_settings(config)
    if roi.top_k is None:
        raise ValueError("TRAIN_ROIS_PER_IMAGE must be an integer >= 1 when OHEM_ROI_TOP_K is None; received None")

    def mrcnn_class_loss_graph(target_class_ids, pred_class_logits, active_class_ids):
        """RoI-head OHEM class loss (mrcnn_ohem); see ``mrcnn_ohem.roi.ohem_mrcnn_class_loss``.

        target_class_ids: [batch, rois] int. pred_class_logits: [batch, rois, classes].
        active_class_ids: [batch, classes].
        """
        if not auxiliary.listening():
            return ohem_mrcnn_class_loss(target_class_ids, pred_class_logits, active_class_ids, top_k=roi.top_k)
        loss, stats = ohem_mrcnn_class_loss(target_class_ids, pred_class_logits, active_class_ids,
                                            top_k=roi.top_k, return_stats=True)
        for name, key in zip(ROI_SELECTION_METRICS, ("kept_positives", "kept_negatives")):
            auxiliary.record(name, tf.reduce_mean(tf.cast(stats[key], tf.float32)))
        return loss

    mrcnn_class_loss_graph.ohem_roi_settings = roi
    return mrcnn_class_loss_graph


def make_select_training_rois(config: Any) -> Callable[..., tf.Tensor] | None:
    """The bundled model's ``select_training_rois`` hook for the paper's RoI setting, or None.

    With ``OHEM_ROI`` on and ``OHEM_ROI_RANKING = "class+box"`` or an ``OHEM_ROI_NMS_THRESHOLD``,
    returns ``select_training_rois(target_class_ids, target_bbox, rois, pred_class_logits,
    pred_bbox, active_class_ids)`` -> [batch, rois] int32 class ids in which the RoIs not kept
    are padding (:func:`~mrcnn_ohem.roi.select_hard_rois`); the model hands those ids to its
    class and box losses. Otherwise None (the class loss alone selects).

    Args:
        config: a config with ``OHEM_ROI*`` settings and ``TRAIN_ROIS_PER_IMAGE``.

    Returns:
        The function (it returns [batch, rois] int32 class ids), or None.
    """
    roi = ohem_roi_settings(config)
    if not roi.selects_for_box_loss:
        return None

    def select_training_rois(target_class_ids, target_bbox, rois, pred_class_logits, pred_bbox, active_class_ids):
        """The OHEM paper's RoI selection (mrcnn_ohem); see ``mrcnn_ohem.roi.select_hard_rois``."""
        return select_hard_rois(target_class_ids, target_bbox, rois, pred_class_logits, pred_bbox,
                                active_class_ids, top_k=roi.top_k, rank_by_box=roi.ranking == "class+box",
                                nms_threshold=roi.nms_threshold)

    select_training_rois.ohem_roi_settings = roi
    return select_training_rois


def roi_target_arguments(config: Any) -> dict[str, Any]:
    """The plain arguments of :func:`~mrcnn_ohem.roi.ohem_roi_targets` for ``config``.

    Args:
        config: a config with ``OHEM_ROI*`` settings and Matterport's ``TRAIN_ROIS_PER_IMAGE``,
            ``ROI_POSITIVE_RATIO``, ``BBOX_STD_DEV``, ``MASK_SHAPE`` and ``USE_MINI_MASK``.
    """
    roi = ohem_roi_settings(config)
    return {
        "train_rois_per_image": roi.train_rois_per_image,
        "roi_positive_ratio": float(config.ROI_POSITIVE_RATIO),
        "pool_size": roi.pool,
        "bbox_std_dev": [float(v) for v in np.reshape(config.BBOX_STD_DEV, [4])],
        "mask_shape": [int(v) for v in config.MASK_SHAPE],
        "use_mini_mask": bool(config.USE_MINI_MASK),
    }


def check_config_attributes(config: Any, settings: OHEMSettings, roi: Any) -> None:
    """Raise AttributeError naming the first Matterport attribute a switched-on part needs.

    Args:
        config: the config ``patch()`` was given.
        settings: its resolved ``OHEM_RPN*`` settings.
        roi: its resolved ``OHEM_ROI*`` settings.

    Raises:
        AttributeError: names the attribute, what reads it, and the config's class.
    """
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
