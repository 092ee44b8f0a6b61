"""Graph utilities and the four custom layers of Mask R-CNN, in pipeline order.

Proposals (:class:`ProposalLayer`) -> ROI pooling (:class:`PyramidROIAlign`) -> training
targets (:class:`DetectionTargetLayer`) or final detections (:class:`DetectionLayer`).
Names, inputs and outputs follow Matterport Mask R-CNN. Boxes are ``(y1, x1, y2, x2)``;
inside the graph they are normalised to [0, 1] (see :func:`norm_boxes_graph`).

The layers take plain numbers (``proposal_count=...``); for compatibility with Matterport code
they also accept ``config=`` and read the same numbers from it. Per-image work runs through
:func:`map_images` (``tf.map_fn``), so any batch size works, including the per-replica batch
of a ``tf.distribute`` strategy. The four layers compute in float32 whatever the global dtype
policy (see :mod:`.precision`).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from mrcnn_ohem._compat import import_tf_keras
from mrcnn_ohem.core.thresholds import CROWD_IOU, ROI_POSITIVE_IOU

from .losses import batch_pack_graph  # noqa: F401  (Matterport exposes it with the layers)
from .utils import box_refinement_graph

keras = import_tf_keras()
KL = keras.layers


############################################################
#  Graph utilities
############################################################

def log2_graph(x: tf.Tensor) -> tf.Tensor:
    """Base-2 logarithm of ``x``, element-wise.

    Args:
        x: [...] float tensor of any shape (positive values for a finite result).

    Returns:
        [...] the shape and dtype of ``x``.
    """
    return tf.math.log(x) / tf.math.log(2.0)


def apply_box_deltas_graph(boxes: tf.Tensor, deltas: tf.Tensor) -> tf.Tensor:
    """Move and scale ``boxes`` by ``deltas`` (Matterport's box coding).

    Args:
        boxes: [N, (y1, x1, y2, x2)] float32.
        deltas: [N, (dy, dx, log(dh), log(dw))] float32.

    Returns:
        [N, (y1, x1, y2, x2)] the refined boxes.
    """
    height = boxes[:, 2] - boxes[:, 0]
    width = boxes[:, 3] - boxes[:, 1]
    center_y = boxes[:, 0] + 0.5 * height + deltas[:, 0] * height
    center_x = boxes[:, 1] + 0.5 * width + deltas[:, 1] * width
    height = height * tf.exp(deltas[:, 2])
    width = width * tf.exp(deltas[:, 3])
    y1 = center_y - 0.5 * height
    x1 = center_x - 0.5 * width
    return tf.stack([y1, x1, y1 + height, x1 + width], axis=1, name="apply_box_deltas_out")


def clip_boxes_graph(boxes: tf.Tensor, window: Any) -> tf.Tensor:
    """Clip boxes to a window: each coordinate is limited to the window's range.

    Args:
        boxes: [N, (y1, x1, y2, x2)] float.
        window: [(y1, x1, y2, x2)] in the coordinates of ``boxes`` (cast to their dtype).

    Returns:
        [N, (y1, x1, y2, x2)] of the dtype of ``boxes``.
    """
    window = tf.cast(window, boxes.dtype)
    low = tf.stack([window[0], window[1], window[0], window[1]])
    high = tf.stack([window[2], window[3], window[2], window[3]])
    return tf.maximum(tf.minimum(boxes, high), low, name="clipped_boxes")


def overlaps_graph(boxes1: tf.Tensor, boxes2: tf.Tensor) -> tf.Tensor:
    """IoU of every box in ``boxes1`` with every box in ``boxes2``.

    A pair whose union is empty gets 0.

    Args:
        boxes1: [N1, (y1, x1, y2, x2)] float.
        boxes2: [N2, (y1, x1, y2, x2)] float, same dtype.

    Returns:
        [N1, N2] IoU, of the dtype of the boxes.
    """
    b1 = boxes1[:, tf.newaxis, :]  # [N1, 1, 4]
    b2 = boxes2[tf.newaxis, :, :]  # [1, N2, 4]
    y1 = tf.maximum(b1[..., 0], b2[..., 0])
    x1 = tf.maximum(b1[..., 1], b2[..., 1])
    y2 = tf.minimum(b1[..., 2], b2[..., 2])
    x2 = tf.minimum(b1[..., 3], b2[..., 3])
    intersection = tf.maximum(y2 - y1, 0.0) * tf.maximum(x2 - x1, 0.0)
    area1 = (b1[..., 2] - b1[..., 0]) * (b1[..., 3] - b1[..., 1])
    area2 = (b2[..., 2] - b2[..., 0]) * (b2[..., 3] - b2[..., 1])
    return tf.math.divide_no_nan(intersection, area1 + area2 - intersection)


def trim_zeros_graph(boxes: tf.Tensor, name: str = "trim_zeros") -> tuple[tf.Tensor, tf.Tensor]:
    """Drop all-zero (padding) rows of boxes.

    Args:
        boxes: [N, 4] float, zero padded.
        name: name of the ``tf.boolean_mask`` operation.

    Returns:
        (boxes [M, 4], non_zeros [N] bool marking the rows kept).
    """
    non_zeros = tf.reduce_sum(tf.abs(boxes), axis=1) > 0
    return tf.boolean_mask(boxes, non_zeros, name=name), non_zeros


def norm_boxes_graph(boxes: tf.Tensor, shape: Any) -> tf.Tensor:
    """Pixel boxes -> normalised boxes, Matterport's convention.

    In pixels ``(y2, x2)`` lies just outside the box; normalised, it lies inside, so
    ``y_norm = (y - shift) / (h - 1)`` with shift 0 for ``y1`` and 1 for ``y2``.

    Args:
        boxes: [..., (y1, x1, y2, x2)] in pixels.
        shape: [(height, width)] in pixels.

    Returns:
        [..., (y1, x1, y2, x2)] float32 normalised.
    """
    h, w = tf.split(tf.cast(shape, tf.float32), 2)
    scale = tf.concat([h, w, h, w], axis=-1) - 1.0
    shift = tf.constant([0.0, 0.0, 1.0, 1.0])
    return tf.divide(tf.cast(boxes, tf.float32) - shift, scale)


def denorm_boxes_graph(boxes: tf.Tensor, shape: Any) -> tf.Tensor:
    """Normalised boxes -> int32 pixel boxes; inverse of :func:`norm_boxes_graph`.

    Args:
        boxes: [..., (y1, x1, y2, x2)] float32 normalised.
        shape: [(height, width)] in pixels.

    Returns:
        [..., (y1, x1, y2, x2)] int32 in pixels (rounded).
    """
    h, w = tf.split(tf.cast(shape, tf.float32), 2)
    scale = tf.concat([h, w, h, w], axis=-1) - 1.0
    shift = tf.constant([0.0, 0.0, 1.0, 1.0])
    return tf.cast(tf.round(boxes * scale + shift), tf.int32)


def parse_image_meta_graph(meta: tf.Tensor) -> dict[str, tf.Tensor]:
    """Split image metadata into its parts (see ``compose_image_meta``).

    Args:
        meta: [batch, 12 + num_classes] image meta rows.

    Returns:
        dict of ``image_id`` [batch], ``original_image_shape`` [batch, 3], ``image_shape``
        [batch, 3], ``window`` [batch, (y1, x1, y2, x2)] in pixels, ``scale`` [batch],
        ``active_class_ids`` [batch, num_classes], all slices of ``meta`` (its dtype).
    """
    return {
        "image_id": meta[:, 0],
        "original_image_shape": meta[:, 1:4],
        "image_shape": meta[:, 4:7],
        "window": meta[:, 7:11],
        "scale": meta[:, 11],
        "active_class_ids": meta[:, 12:],
    }


def map_images(
    fn: Callable[..., Any], inputs: Sequence[tf.Tensor], signature: Any, draws: bool = False
) -> Any:
    """Run ``fn`` on each image of a batch and stack the results (``tf.map_fn``).

    Args:
        fn: takes one slice of each tensor in ``inputs``, returns tensors of fixed shapes.
        inputs: tensors [batch, ...] sharing the leading batch axis.
        signature: ``tf.TensorSpec`` (or a tuple of them) of one image's result.
        draws: ``fn`` draws random numbers from stateful ops (``tf.random.shuffle``). The
            images then run one after the other, image 0 first: every image shares each such
            op and its random stream, and with images running side by side (``tf.map_fn``'s
            default) the order in which they reach it, and so which image gets which draws,
            follows the thread scheduling, which neither a seed nor TensorFlow's op determinism
            fixes. (Matterport's ``batch_slice`` unrolls the batch into one op per image.)

    Returns:
        A tensor [batch, ...] per ``signature`` entry: ``fn``'s results stacked along a new
        leading batch axis (a tuple when ``signature`` is one).
    """
    return tf.map_fn(lambda args: fn(*args), tuple(inputs), fn_output_signature=signature,
                     parallel_iterations=1 if draws else None)


def _config_value(config: Any, name: str, value: Any) -> Any:
    return getattr(config, name) if config is not None else value


def _float32(kwargs: dict) -> dict:
    """Layer keyword arguments with ``dtype="float32"`` unless one is given: the four layers
    below decode, suppress and crop boxes, which need float32 under any global dtype policy
    (``crop_and_resize`` rejects bfloat16, and bfloat16 rounds a pixel coordinate of 1001 to 1000)."""
    return {"dtype": "float32", **kwargs}


############################################################
#  Proposal layer
############################################################

class ProposalLayer(KL.Layer):
    """Turn RPN scores and deltas into at most ``proposal_count`` proposals per image.

    Keeps the ``pre_nms_limit`` best-scored anchors, applies their deltas, clips to [0, 1] and
    runs non-maximum suppression. Proposals carry no gradient (they are inputs to the heads).

    Args:
        proposal_count: proposals kept per image after NMS (Matterport passes
            ``POST_NMS_ROIS_TRAINING`` or ``POST_NMS_ROIS_INFERENCE``).
        nms_threshold: IoU above which NMS drops the lower-scored proposal
            (``RPN_NMS_THRESHOLD``).
        config: for Matterport code: when given, ``PRE_NMS_LIMIT`` and ``RPN_BBOX_STD_DEV`` are
            read from it instead of the two keywords below.
        pre_nms_limit: best-scored anchors kept before the deltas are applied and NMS runs.
        rpn_bbox_std_dev: [4] the deltas are multiplied by it (``RPN_BBOX_STD_DEV``).
        **kwargs: Keras ``Layer`` arguments (``name``, ...); ``dtype`` defaults to float32.

    Inputs:
        rpn_probs: [batch, num_anchors, (bg prob, fg prob)]
        rpn_bbox: [batch, num_anchors, (dy, dx, log(dh), log(dw))]
        anchors: [batch, num_anchors, (y1, x1, y2, x2)] normalised.

    Returns:
        [batch, proposal_count, (y1, x1, y2, x2)] normalised, zero padded.
    """

    def __init__(self, proposal_count: int, nms_threshold: float, config: Any = None, *,
                 pre_nms_limit: int = 6000,
                 rpn_bbox_std_dev: Sequence[float] = (0.1, 0.1, 0.2, 0.2), **kwargs):
        super().__init__(**_float32(kwargs))
        self.proposal_count = int(proposal_count)
        self.nms_threshold = float(nms_threshold)
        self.pre_nms_limit = int(_config_value(config, "PRE_NMS_LIMIT", pre_nms_limit))
        self.rpn_bbox_std_dev = [float(v) for v in np.reshape(
            _config_value(config, "RPN_BBOX_STD_DEV", rpn_bbox_std_dev), [4])]

    def get_config(self) -> dict:
        return {**super().get_config(), "proposal_count": self.proposal_count,
                "nms_threshold": self.nms_threshold, "pre_nms_limit": self.pre_nms_limit,
                "rpn_bbox_std_dev": self.rpn_bbox_std_dev}

    def call(self, inputs):
        """Proposals of each image of the batch.

        Args:
            inputs: ``[rpn_probs, rpn_bbox, anchors]``, the three tensors of the class
                docstring: [batch, num_anchors, 2], [batch, num_anchors, 4] and
                [batch, num_anchors, 4] normalised.

        Returns:
            [batch, proposal_count, (y1, x1, y2, x2)] float32 normalised, best score first,
            zero padded, with the gradient stopped.
        """
        scores = inputs[0][:, :, 1]  # [batch, num_anchors] foreground probability
        deltas = inputs[1] * tf.constant(self.rpn_bbox_std_dev, tf.float32)
        anchors = inputs[2]
        limit = tf.minimum(self.pre_nms_limit, tf.shape(anchors)[1])
        top = tf.math.top_k(scores, limit, sorted=True, name="top_anchors").indices
        scores = tf.gather(scores, top, batch_dims=1)
        deltas = tf.gather(deltas, top, batch_dims=1)
        anchors = tf.gather(anchors, top, batch_dims=1)
        window = tf.constant([0.0, 0.0, 1.0, 1.0])

        def one_image(image_anchors, image_deltas, image_scores):
            boxes = clip_boxes_graph(apply_box_deltas_graph(image_anchors, image_deltas), window)
            keep = tf.image.non_max_suppression(
                boxes, image_scores, self.proposal_count, self.nms_threshold,
                name="rpn_non_max_suppression")
            proposals = tf.gather(boxes, keep)
            padding = tf.maximum(self.proposal_count - tf.shape(proposals)[0], 0)
            return tf.pad(proposals, [(0, padding), (0, 0)])

        proposals = map_images(one_image, [anchors, deltas, scores],
                               tf.TensorSpec([self.proposal_count, 4], tf.float32))
        return tf.stop_gradient(proposals)

    def compute_output_shape(self, input_shape):
        return (None, self.proposal_count, 4)


############################################################
#  ROIAlign layer
############################################################

class PyramidROIAlign(KL.Layer):
    """ROIAlign on the feature pyramid: each box is pooled from the level matching its size.

    The level is ``4 + log2(sqrt(h * w) / (224 / sqrt(image_area)))`` clamped to 2..5 (FPN
    paper, equation 1, in normalised coordinates); pooling is ``tf.image.crop_and_resize``
    (one bilinear sample per bin, as Matterport).

    Args:
        pool_shape: ``(pool_height, pool_width)`` of each pooled box (Matterport:
            ``(POOL_SIZE, POOL_SIZE)`` or ``(MASK_POOL_SIZE, MASK_POOL_SIZE)``).
        **kwargs: Keras ``Layer`` arguments (``name``, ...); ``dtype`` defaults to float32.

    Inputs:
        boxes: [batch, num_boxes, (y1, x1, y2, x2)] normalised, possibly zero padded.
        image_meta: [batch, meta length], see ``compose_image_meta``.
        feature_maps: P2..P5, each [batch, height, width, channels].

    Returns:
        [batch, num_boxes, pool_height, pool_width, channels]
    """

    def __init__(self, pool_shape: Sequence[int], **kwargs):
        super().__init__(**_float32(kwargs))
        self.pool_shape = tuple(int(v) for v in pool_shape)

    def get_config(self) -> dict:
        return {**super().get_config(), "pool_shape": list(self.pool_shape)}

    def call(self, inputs):
        """Pool every box from its pyramid level.

        Args:
            inputs: ``[boxes, image_meta, P2, P3, P4, P5]``: boxes [batch, num_boxes, 4]
                normalised, image_meta [batch, meta length] (the image area is read from the
                first row; every image of a batch has the same shape), and the feature maps,
                each [batch, height, width, channels].

        Returns:
            [batch, num_boxes, pool_height, pool_width, channels] float32; the boxes carry no
            gradient, the feature maps do.
        """
        boxes, image_meta, feature_maps = inputs[0], inputs[1], inputs[2:]
        boxes = tf.stop_gradient(boxes)
        image_shape = parse_image_meta_graph(image_meta)["image_shape"][0]
        image_area = image_shape[0] * image_shape[1]
        y1, x1, y2, x2 = tf.unstack(boxes, axis=2)
        area = tf.maximum((y2 - y1) * (x2 - x1), 1e-12)
        level = log2_graph(tf.sqrt(area) / (224.0 / tf.sqrt(image_area)))
        level = tf.cast(tf.clip_by_value(4.0 + tf.round(level), 2.0, 5.0), tf.int32)  # [batch, n]

        num_boxes = tf.shape(boxes)[1]
        pooled, positions = [], []
        for i, feature_map in enumerate(feature_maps):
            ix = tf.where(tf.equal(level, i + 2))  # [k, (image, box)]
            pooled.append(tf.image.crop_and_resize(
                feature_map, tf.gather_nd(boxes, ix), tf.cast(ix[:, 0], tf.int32),
                self.pool_shape, method="bilinear"))
            positions.append(tf.cast(ix[:, 0], tf.int32) * num_boxes + tf.cast(ix[:, 1], tf.int32))
        pooled = tf.concat(pooled, axis=0)  # grouped by level
        # Every box has exactly one level, so `positions` is a permutation of range(batch * n).
        pooled = tf.gather(pooled, tf.math.invert_permutation(tf.concat(positions, axis=0)))
        shape = tf.concat([tf.shape(boxes)[:2], tf.shape(pooled)[1:]], axis=0)
        pooled = tf.reshape(pooled, shape)
        pooled.set_shape(self.compute_output_shape([b.shape for b in inputs]))
        return pooled

    def compute_output_shape(self, input_shape):
        boxes_shape = tf.TensorShape(input_shape[0])
        channels = tf.TensorShape(input_shape[2])[-1]
        return tf.TensorShape([boxes_shape[0], boxes_shape[1], *self.pool_shape, channels])


############################################################
#  Detection target layer (training)
############################################################

def detection_targets_graph(proposals, gt_class_ids, gt_boxes, gt_masks, *,
                            train_rois_per_image: int, roi_positive_ratio: float,
                            bbox_std_dev: Sequence[float], mask_shape: Sequence[int],
                            use_mini_mask: bool, background_rois: bool = False):
    """Sample ROIs of one image and build their class, box and mask targets.

    Positives have IoU >= 0.5 with a (non-crowd) GT box, at most
    ``train_rois_per_image * roi_positive_ratio`` of them, picked at random; negatives (IoU <
    0.5, away from crowds) fill up to the positive ratio, so an image without positives gets no
    ROI at all -- unless ``background_rois`` (``Config.TRAIN_BACKGROUND_IMAGES``) is set and
    the image has no instance: then ``train_rois_per_image - max positives`` negatives, so a
    background-only image teaches the heads "background". Crowds are GT boxes with a negative
    class ID.

    Args:
        proposals: [N, (y1, x1, y2, x2)] normalised, zero padded.
        gt_class_ids: [MAX_GT_INSTANCES] int, zero padded.
        gt_boxes: [MAX_GT_INSTANCES, (y1, x1, y2, x2)] normalised, zero padded.
        gt_masks: [height, width, MAX_GT_INSTANCES] bool (mini masks if ``use_mini_mask``).
        train_rois_per_image: T, the number of rows of every output (``TRAIN_ROIS_PER_IMAGE``).
        roi_positive_ratio: positives are at most ``int(T * roi_positive_ratio)``, and make up
            this fraction of the sampled ROIs (``ROI_POSITIVE_RATIO``).
        bbox_std_dev: [4] the box deltas are divided by it (``BBOX_STD_DEV``).
        mask_shape: ``(mask_h, mask_w)`` of the mask targets (``MASK_SHAPE``).
        use_mini_mask: ``gt_masks`` are mini masks, each covering its GT box
            (``USE_MINI_MASK``).
        background_rois: an image without instances gets ``T - int(T * roi_positive_ratio)``
            negatives instead of none (``TRAIN_BACKGROUND_IMAGES``).

    Returns:
        rois [T, (y1, x1, y2, x2)] float32 normalised, class_ids [T] int32, deltas
        [T, (dy, dx, log(dh), log(dw))] float32, masks [T, mask_h, mask_w] float32 of 0/1;
        positives first, then negatives (class id 0, zero deltas and masks), then zero
        padding.
    """
    proposals, _ = trim_zeros_graph(tf.stop_gradient(proposals), name="trim_proposals")
    gt_boxes, non_zeros = trim_zeros_graph(gt_boxes, name="trim_gt_boxes")
    gt_class_ids = tf.boolean_mask(gt_class_ids, non_zeros)
    gt_masks = tf.gather(gt_masks, tf.where(non_zeros)[:, 0], axis=2)

    crowd_boxes = tf.boolean_mask(gt_boxes, gt_class_ids < 0)
    instance = gt_class_ids > 0
    gt_class_ids = tf.boolean_mask(gt_class_ids, instance)
    gt_boxes = tf.boolean_mask(gt_boxes, instance)
    gt_masks = tf.gather(gt_masks, tf.where(instance)[:, 0], axis=2)

    overlaps = overlaps_graph(proposals, gt_boxes)  # [N, G]
    no_crowd = tf.reduce_max(tf.concat([overlaps_graph(proposals, crowd_boxes),
                                        tf.zeros_like(proposals[:, :1])], 1), axis=1) < CROWD_IOU
    roi_iou_max = tf.reduce_max(tf.concat([overlaps, tf.zeros_like(proposals[:, :1])], 1), 1)
    positive_indices = tf.where(roi_iou_max >= ROI_POSITIVE_IOU)[:, 0]
    negative_indices = tf.where(tf.logical_and(roi_iou_max < ROI_POSITIVE_IOU, no_crowd))[:, 0]

    max_positive = int(train_rois_per_image * roi_positive_ratio)
    positive_indices = tf.random.shuffle(positive_indices)[:max_positive]
    positive_count = tf.shape(positive_indices)[0]
    negative_count = tf.cast(tf.cast(positive_count, tf.float32) / roi_positive_ratio,
                             tf.int32) - positive_count
    if background_rois:  # no instance at all: the negative share of the budget, not nothing
        negative_count = tf.where(tf.size(gt_class_ids) > 0, negative_count,
                                  train_rois_per_image - max_positive)
    negative_indices = tf.random.shuffle(negative_indices)[:negative_count]
    positive_rois = tf.gather(proposals, positive_indices)
    negative_rois = tf.gather(proposals, negative_indices)

    positive_overlaps = tf.gather(overlaps, positive_indices)  # [P, G]
    assignment = tf.cond(tf.shape(positive_overlaps)[1] > 0,
                         lambda: tf.argmax(positive_overlaps, axis=1),
                         lambda: tf.zeros([0], tf.int64))
    roi_gt_boxes = tf.gather(gt_boxes, assignment)
    roi_gt_class_ids = tf.cast(tf.gather(gt_class_ids, assignment), tf.int32)
    deltas = box_refinement_graph(positive_rois, roi_gt_boxes) / tf.constant(
        list(bbox_std_dev), tf.float32)

    masks_nhw1 = tf.expand_dims(tf.transpose(tf.cast(gt_masks, tf.float32), [2, 0, 1]), -1)
    roi_masks = tf.gather(masks_nhw1, assignment)  # [P, height, width, 1]
    crop_boxes = positive_rois
    if use_mini_mask:  # ROI coordinates relative to its GT box, where the mini mask lives
        gy1, gx1, gy2, gx2 = tf.unstack(roi_gt_boxes, axis=1)
        y1, x1, y2, x2 = tf.unstack(positive_rois, axis=1)
        gh, gw = gy2 - gy1, gx2 - gx1
        crop_boxes = tf.stack([(y1 - gy1) / gh, (x1 - gx1) / gw,
                               (y2 - gy1) / gh, (x2 - gx1) / gw], axis=1)
    masks = tf.image.crop_and_resize(roi_masks, crop_boxes, tf.range(tf.shape(roi_masks)[0]),
                                     tuple(mask_shape))
    masks = tf.round(tf.squeeze(masks, axis=3))  # [P, mask_h, mask_w] of 0/1

    rois = tf.concat([positive_rois, negative_rois], axis=0)
    n = tf.shape(negative_rois)[0]
    pad = tf.maximum(train_rois_per_image - tf.shape(rois)[0], 0)
    rois = tf.pad(rois, [(0, pad), (0, 0)])
    roi_gt_class_ids = tf.pad(roi_gt_class_ids, [(0, n + pad)])
    deltas = tf.pad(deltas, [(0, n + pad), (0, 0)])
    masks = tf.pad(masks, [(0, n + pad), (0, 0), (0, 0)])
    return rois, roi_gt_class_ids, deltas, masks


class DetectionTargetLayer(KL.Layer):
    """Sample proposals and build the heads' training targets, image by image.

    Args:
        config: for Matterport code: when given, ``TRAIN_ROIS_PER_IMAGE``,
            ``ROI_POSITIVE_RATIO``, ``BBOX_STD_DEV``, ``MASK_SHAPE``, ``USE_MINI_MASK`` and
            (when it has one) ``TRAIN_BACKGROUND_IMAGES`` are read from it instead of the
            keywords below.
        train_rois_per_image: T (see :func:`detection_targets_graph` for this and the rest).
        roi_positive_ratio: the positive share of the sampled ROIs.
        bbox_std_dev: [4] the box deltas are divided by it.
        mask_shape: ``(mask_h, mask_w)`` of the mask targets.
        use_mini_mask: ``gt_masks`` are mini masks.
        background_rois: give images without instances negative ROIs.
        **kwargs: Keras ``Layer`` arguments (``name``, ...); ``dtype`` defaults to float32.

    Inputs:
        proposals: [batch, N, (y1, x1, y2, x2)] normalised, zero padded.
        gt_class_ids: [batch, MAX_GT_INSTANCES] int.
        gt_boxes: [batch, MAX_GT_INSTANCES, (y1, x1, y2, x2)] normalised.
        gt_masks: [batch, height, width, MAX_GT_INSTANCES] bool.

    Returns:
        rois [batch, T, 4], target_class_ids [batch, T] int32, target_bbox [batch, T, 4],
        target_mask [batch, T, mask_h, mask_w]; T = ``TRAIN_ROIS_PER_IMAGE``.
    """

    def __init__(self, config: Any = None, *, train_rois_per_image: int = 200,
                 roi_positive_ratio: float = 0.33,
                 bbox_std_dev: Sequence[float] = (0.1, 0.1, 0.2, 0.2),
                 mask_shape: Sequence[int] = (28, 28), use_mini_mask: bool = True,
                 background_rois: bool = False, **kwargs):
        super().__init__(**_float32(kwargs))
        self.train_rois_per_image = int(
            _config_value(config, "TRAIN_ROIS_PER_IMAGE", train_rois_per_image))
        self.roi_positive_ratio = float(
            _config_value(config, "ROI_POSITIVE_RATIO", roi_positive_ratio))
        self.bbox_std_dev = [float(v) for v in np.reshape(
            _config_value(config, "BBOX_STD_DEV", bbox_std_dev), [4])]
        self.mask_shape = [int(v) for v in _config_value(config, "MASK_SHAPE", mask_shape)]
        self.use_mini_mask = bool(_config_value(config, "USE_MINI_MASK", use_mini_mask))
        self.background_rois = bool(getattr(config, "TRAIN_BACKGROUND_IMAGES", background_rois)
                                    if config is not None else background_rois)

    def get_config(self) -> dict:
        return {**super().get_config(), "train_rois_per_image": self.train_rois_per_image,
                "roi_positive_ratio": self.roi_positive_ratio, "bbox_std_dev": self.bbox_std_dev,
                "mask_shape": self.mask_shape, "use_mini_mask": self.use_mini_mask,
                "background_rois": self.background_rois}

    def call(self, inputs):
        """Targets of each image of the batch (:func:`detection_targets_graph`).

        Args:
            inputs: ``[proposals, gt_class_ids, gt_boxes, gt_masks]``, the four tensors of the
                class docstring ([batch, N, 4], [batch, MAX_GT_INSTANCES],
                [batch, MAX_GT_INSTANCES, 4], [batch, height, width, MAX_GT_INSTANCES]).

        Returns:
            ``[rois, target_class_ids, target_bbox, target_mask]``: [batch, T, 4] float32,
            [batch, T] int32, [batch, T, 4] float32 and [batch, T, mask_h, mask_w] float32,
            with the gradient stopped.
        """
        t = self.train_rois_per_image
        signature = (tf.TensorSpec([t, 4], tf.float32), tf.TensorSpec([t], tf.int32),
                     tf.TensorSpec([t, 4], tf.float32), tf.TensorSpec([t, *self.mask_shape],
                                                                      tf.float32))

        def one_image(proposals, class_ids, boxes, masks):
            return detection_targets_graph(
                proposals, class_ids, boxes, masks, train_rois_per_image=t,
                roi_positive_ratio=self.roi_positive_ratio, bbox_std_dev=self.bbox_std_dev,
                mask_shape=self.mask_shape, use_mini_mask=self.use_mini_mask,
                background_rois=self.background_rois)

        proposals, class_ids, boxes, masks = inputs
        outputs = map_images(one_image, [tf.cast(proposals, tf.float32),
                                         tf.cast(class_ids, tf.int32),
                                         tf.cast(boxes, tf.float32), masks], signature, draws=True)
        return [tf.stop_gradient(o) for o in outputs]

    def compute_output_shape(self, input_shape):
        t = self.train_rois_per_image
        return [(None, t, 4), (None, t), (None, t, 4), (None, t, *self.mask_shape)]

    def compute_mask(self, inputs, mask=None):
        return [None, None, None, None]


############################################################
#  Detection layer (inference)
############################################################

def refine_detections_graph(rois, probs, deltas, window, *, bbox_std_dev: Sequence[float],
                            min_confidence: float, max_instances: int, nms_threshold: float):
    """Final detections of one image: best class per ROI, refined, per-class NMS, top scores.

    Per-class NMS runs as a single NMS on boxes shifted by ``2 * class_id``: boxes of
    different classes then never overlap, which keeps exactly the boxes that one NMS per class
    keeps, and the result comes out sorted by score.

    Args:
        rois: [N, (y1, x1, y2, x2)] normalised.
        probs: [N, num_classes] class probabilities.
        deltas: [N, num_classes, (dy, dx, log(dh), log(dw))] class-specific deltas.
        window: [(y1, x1, y2, x2)] normalised image area without padding.
        bbox_std_dev: [4] the deltas are multiplied by it (``BBOX_STD_DEV``).
        min_confidence: detections scored below it are dropped; 0 keeps every score
            (``DETECTION_MIN_CONFIDENCE``).
        max_instances: detections kept, the highest scores (``DETECTION_MAX_INSTANCES``).
        nms_threshold: IoU above which the per-class NMS drops the lower-scored box
            (``DETECTION_NMS_THRESHOLD``).

    Returns:
        [max_instances, (y1, x1, y2, x2, class_id, score)] normalised, best score first, zero
        padded; ROIs classified as background never appear.
    """
    class_ids = tf.argmax(probs, axis=1, output_type=tf.int32)
    class_scores = tf.gather(probs, class_ids, batch_dims=1)
    class_deltas = tf.gather(deltas, class_ids, batch_dims=1)
    refined = apply_box_deltas_graph(rois, class_deltas * tf.constant(list(bbox_std_dev)))
    refined = clip_boxes_graph(refined, window)

    keep = class_ids > 0
    if min_confidence:
        keep = tf.logical_and(keep, class_scores >= min_confidence)
    keep = tf.where(keep)[:, 0]
    kept_boxes = tf.gather(refined, keep)
    kept_scores = tf.gather(class_scores, keep)
    kept_classes = tf.gather(class_ids, keep)
    shifted = kept_boxes + 2.0 * tf.cast(kept_classes, tf.float32)[:, tf.newaxis]
    chosen = tf.image.non_max_suppression(shifted, kept_scores, max_instances, nms_threshold)
    detections = tf.concat([
        tf.gather(kept_boxes, chosen),
        tf.cast(tf.gather(kept_classes, chosen), tf.float32)[:, tf.newaxis],
        tf.gather(kept_scores, chosen)[:, tf.newaxis],
    ], axis=1)
    gap = max_instances - tf.shape(detections)[0]
    return tf.pad(detections, [(0, gap), (0, 0)])


class DetectionLayer(KL.Layer):
    """Classified proposals -> final detections (inference).

    Args:
        config: for Matterport code: when given, ``BBOX_STD_DEV``,
            ``DETECTION_MIN_CONFIDENCE``, ``DETECTION_MAX_INSTANCES`` and
            ``DETECTION_NMS_THRESHOLD`` are read from it instead of the keywords below.
        bbox_std_dev: [4] the deltas are multiplied by it.
        detection_min_confidence: detections scored below it are dropped (0 keeps all).
        detection_max_instances: detections per image (the highest scores).
        detection_nms_threshold: IoU threshold of the per-class NMS.
        **kwargs: Keras ``Layer`` arguments (``name``, ...); ``dtype`` defaults to float32.

    Inputs:
        rois: [batch, N, (y1, x1, y2, x2)] normalised.
        mrcnn_class: [batch, N, num_classes] probabilities.
        mrcnn_bbox: [batch, N, num_classes, (dy, dx, log(dh), log(dw))].
        image_meta: [batch, meta length].

    Returns:
        [batch, DETECTION_MAX_INSTANCES, (y1, x1, y2, x2, class_id, score)] normalised.
    """

    def __init__(self, config: Any = None, *,
                 bbox_std_dev: Sequence[float] = (0.1, 0.1, 0.2, 0.2),
                 detection_min_confidence: float = 0.7, detection_max_instances: int = 100,
                 detection_nms_threshold: float = 0.3, **kwargs):
        super().__init__(**_float32(kwargs))
        self.bbox_std_dev = [float(v) for v in np.reshape(
            _config_value(config, "BBOX_STD_DEV", bbox_std_dev), [4])]
        self.detection_min_confidence = float(
            _config_value(config, "DETECTION_MIN_CONFIDENCE", detection_min_confidence))
        self.detection_max_instances = int(
            _config_value(config, "DETECTION_MAX_INSTANCES", detection_max_instances))
        self.detection_nms_threshold = float(
            _config_value(config, "DETECTION_NMS_THRESHOLD", detection_nms_threshold))

    def get_config(self) -> dict:
        return {**super().get_config(), "bbox_std_dev": self.bbox_std_dev,
                "detection_min_confidence": self.detection_min_confidence,
                "detection_max_instances": self.detection_max_instances,
                "detection_nms_threshold": self.detection_nms_threshold}

    def call(self, inputs):
        """Detections of each image of the batch (:func:`refine_detections_graph`).

        Args:
            inputs: ``[rois, mrcnn_class, mrcnn_bbox, image_meta]``, the four tensors of the
                class docstring ([batch, N, 4], [batch, N, num_classes],
                [batch, N, num_classes, 4], [batch, meta length]); each image's window comes
                from its meta row, normalised by the first image's shape.

        Returns:
            [batch, DETECTION_MAX_INSTANCES, (y1, x1, y2, x2, class_id, score)] float32
            normalised, zero padded.
        """
        rois, mrcnn_class, mrcnn_bbox, image_meta = inputs
        meta = parse_image_meta_graph(image_meta)
        window = norm_boxes_graph(meta["window"], meta["image_shape"][0][:2])  # [batch, 4]

        def one_image(image_rois, probs, deltas, image_window):
            return refine_detections_graph(
                image_rois, probs, deltas, image_window, bbox_std_dev=self.bbox_std_dev,
                min_confidence=self.detection_min_confidence,
                max_instances=self.detection_max_instances,
                nms_threshold=self.detection_nms_threshold)

        return map_images(one_image, [rois, mrcnn_class, mrcnn_bbox, window],
                          tf.TensorSpec([self.detection_max_instances, 6], tf.float32))

    def compute_output_shape(self, input_shape):
        return (None, self.detection_max_instances, 6)
