"""OHEM for the second stage (the RoI head), the setting of the OHEM paper, in pure TensorFlow.

Two steps, each a plain function of tensors that never sees a Config (the patch in
:mod:`mrcnn_ohem.patching` binds a config's values into them):

1. **Sampling a pool** (:func:`ohem_roi_targets`, one image). Matterport's detection-target
   step keeps ``TRAIN_ROIS_PER_IMAGE`` (T) RoIs per image: at most ``int(T * ROI_POSITIVE_RATIO)``
   random positives (IoU >= 0.5 with a non-crowd GT box) and negatives in proportion. Here the
   positives are sampled exactly the same way, so the box and mask losses, which only read
   positives, see what they would see without OHEM; the rest of a pool of ``pool_size`` RoIs is
   random negatives (IoU < 0.5, away from crowds) instead of a third of T.
2. **Keeping the hardest** (:func:`ohem_mrcnn_class_loss`). The classifier loss of every real
   pool RoI is ranked with its gradient stopped and only the ``top_k`` hardest per image are
   averaged, mmdetection's ``OHEMSampler`` idea in a single network (the paper runs a second,
   read-only copy of the head to rank; here the training forward pass ranks).
3. **The paper's setting** (:func:`select_hard_rois`, ``OHEM_ROI_RANKING = "class+box"`` or
   ``OHEM_ROI_NMS_THRESHOLD``). The RoIs are ranked by class plus box loss, de-duplicated by NMS
   among themselves, and the kept ones train the class *and* the box loss. Matterport's graph
   hands the two losses separate inputs, so only a model that chooses the RoIs before both
   losses can do this: the bundled model's ``select_training_rois`` hook. The mask loss keeps
   Matterport's positives.

Shapes follow Matterport: boxes ``(y1, x1, y2, x2)`` normalised to [0, 1], zero padded.

Padding. A pool short of negatives ends in all-zero RoIs. Matterport gives such rows the target
class id 0, which is also background, so its class loss trains them as background. The pool
here gives them :data:`PADDING_CLASS_ID` (-1) instead, so the OHEM class loss, which sees only
the target ids, never spends its budget on them. Every other consumer of the ids, the box and
mask losses of Matterport and of the bundled model, selects ``target_class_ids > 0`` and so
ignores -1 exactly as it ignores 0. Matterport's plain class loss would reject -1 (it is out of
the label range), which is why the pool and :func:`ohem_mrcnn_class_loss` are installed together.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from mrcnn_ohem.core import selection
from mrcnn_ohem.core.checks import check_int, check_number
from mrcnn_ohem.core.thresholds import CROWD_IOU, ROI_POSITIVE_IOU
from mrcnn_ohem.losses import _float_logits
from mrcnn_ohem.maskrcnn.losses import smooth_l1_loss

__all__ = ["ohem_mrcnn_class_loss", "ohem_roi_targets", "select_hard_rois", "PADDING_CLASS_ID"]

#: Target class id of a pool's padding rows (all-zero RoIs); never a candidate of the class loss.
PADDING_CLASS_ID = -1


# --- sampling the pool ---------------------------------------------------------------------------

def _iou(boxes1: tf.Tensor, boxes2: tf.Tensor) -> tf.Tensor:
    """IoU [N1, N2] of ``boxes1`` [N1, 4] and ``boxes2`` [N2, 4]; 0 where a union is empty."""
    a = boxes1[:, tf.newaxis, :]  # [N1, 1, 4]
    b = boxes2[tf.newaxis, :, :]  # [1, N2, 4]
    height = tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
    width = tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0)
    intersection = height * width
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    return tf.math.divide_no_nan(intersection, area_a + area_b - intersection)


def _best_iou(iou: tf.Tensor) -> tf.Tensor:
    """Row maxima of ``iou`` [N, G], 0 for every row when G == 0."""
    return tf.reduce_max(tf.pad(iou, [(0, 0), (0, 1)]), axis=1)


def _deltas(boxes: tf.Tensor, gt_boxes: tf.Tensor) -> tf.Tensor:
    """Box coding ``(dy, dx, log(dh), log(dw))`` that moves ``boxes`` [N, 4] onto ``gt_boxes``."""
    height = boxes[:, 2] - boxes[:, 0]
    width = boxes[:, 3] - boxes[:, 1]
    gt_height = gt_boxes[:, 2] - gt_boxes[:, 0]
    gt_width = gt_boxes[:, 3] - gt_boxes[:, 1]
    dy = (gt_boxes[:, 0] + 0.5 * gt_height - boxes[:, 0] - 0.5 * height) / height
    dx = (gt_boxes[:, 1] + 0.5 * gt_width - boxes[:, 1] - 0.5 * width) / width
    return tf.stack([dy, dx, tf.math.log(gt_height / height), tf.math.log(gt_width / width)], axis=1)


def _non_zero_rows(boxes: tf.Tensor) -> tf.Tensor:
    """[N] bool, False for all-zero (padding) rows of ``boxes`` [N, 4]."""
    return tf.reduce_sum(tf.abs(boxes), axis=1) > 0


def ohem_roi_targets(
    proposals: Any,
    gt_class_ids: Any,
    gt_boxes: Any,
    gt_masks: Any,
    *,
    train_rois_per_image: int,
    roi_positive_ratio: float,
    pool_size: int,
    bbox_std_dev: Sequence[float],
    mask_shape: Sequence[int],
    use_mini_mask: bool,
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor, tf.Tensor]:
    """One image's RoI pool and its class, box and mask targets (Matterport's outputs, pool-sized).

    Positives: a random ``min(int(train_rois_per_image * roi_positive_ratio), positives)`` of the
    proposals whose best IoU with a non-crowd GT box is >= 0.5, as Matterport samples them.
    Negatives: a random ``min(pool_size - kept positives, negatives)`` of the proposals with
    best IoU < 0.5 that overlap no crowd box (IoU < 0.001). An image without positives gets a
    pool of negatives only (Matterport then samples no RoI at all). Rows are positives, then
    negatives, then padding up to ``pool_size``: all-zero RoIs whose class id is
    :data:`PADDING_CLASS_ID` (-1), where Matterport writes 0.

    Args:
        proposals: [N, (y1, x1, y2, x2)] float32 normalised, zero padded.
        gt_class_ids: [MAX_GT_INSTANCES] int; 0 is padding, negative ids mark crowd boxes.
        gt_boxes: [MAX_GT_INSTANCES, (y1, x1, y2, x2)] float32 normalised, zero padded.
        gt_masks: [height, width, MAX_GT_INSTANCES] bool; mini masks if ``use_mini_mask``.
        train_rois_per_image: Matterport's ``TRAIN_ROIS_PER_IMAGE``, which caps the positives.
        roi_positive_ratio: Matterport's ``ROI_POSITIVE_RATIO`` in (0, 1].
        pool_size: RoIs returned (the heads' training batch per image), >= the positive cap.
        bbox_std_dev: [4] ``BBOX_STD_DEV``; the deltas are divided by it.
        mask_shape: (height, width) of the mask targets, ``MASK_SHAPE``.
        use_mini_mask: whether ``gt_masks`` are mini masks cropped to their box.

    Returns:
        rois [pool_size, 4] float32, class_ids [pool_size] int32 (the GT class for positives, 0
        for negatives, -1 for padding), deltas [pool_size, (dy, dx, log(dh), log(dw))] float32,
        masks [pool_size, mask_h, mask_w] float32 of 0/1; deltas and masks are zero except for
        positives.

    Raises:
        ValueError: ``pool_size`` smaller than the positive cap, or an option out of range.
    """
    train_rois_per_image = check_int("train_rois_per_image", train_rois_per_image, 1)
    roi_positive_ratio = check_number("roi_positive_ratio", roi_positive_ratio, 0.0, 1.0, low_open=True)
    max_positives = int(train_rois_per_image * roi_positive_ratio)
    pool_size = check_int("pool_size", pool_size, max(1, max_positives),
                          hint=" (the positive cap int(train_rois_per_image * roi_positive_ratio))")
    mask_shape = [int(v) for v in mask_shape]

    proposals = tf.boolean_mask(tf.stop_gradient(tf.cast(proposals, tf.float32)),
                                _non_zero_rows(tf.cast(proposals, tf.float32)))
    gt_boxes = tf.cast(gt_boxes, tf.float32)
    gt_class_ids = tf.cast(gt_class_ids, tf.int32)
    is_crowd = gt_class_ids < 0
    is_instance = (gt_class_ids > 0) & _non_zero_rows(gt_boxes)
    crowd_boxes = tf.boolean_mask(gt_boxes, is_crowd)
    instance_index = tf.where(is_instance)[:, 0]  # [G]
    gt_boxes = tf.gather(gt_boxes, instance_index)  # [G, 4]
    gt_class_ids = tf.gather(gt_class_ids, instance_index)  # [G]
    gt_masks = tf.gather(gt_masks, instance_index, axis=2)  # [h, w, G]

    iou = _iou(proposals, gt_boxes)  # [N, G]
    best = _best_iou(iou)  # [N]
    no_crowd = _best_iou(_iou(proposals, crowd_boxes)) < CROWD_IOU
    positive_index = tf.random.shuffle(tf.where(best >= ROI_POSITIVE_IOU)[:, 0])[:max_positives]
    positive_count = tf.shape(positive_index)[0]
    negative_index = tf.random.shuffle(tf.where((best < ROI_POSITIVE_IOU) & no_crowd)[:, 0])
    negative_index = negative_index[:pool_size - positive_count]

    positive_rois = tf.gather(proposals, positive_index)  # [P, 4]
    # The appended zero column is never the arg-max of a positive (IoU >= 0.5 with a real box)
    # and keeps the arg-max defined when the image has no GT box.
    assignment = tf.argmax(tf.pad(tf.gather(iou, positive_index), [(0, 0), (0, 1)]), axis=1)  # [P]
    roi_gt_boxes = tf.gather(gt_boxes, assignment)  # [P, 4]
    roi_class_ids = tf.gather(gt_class_ids, assignment)  # [P]
    deltas = _deltas(positive_rois, roi_gt_boxes) / tf.constant(list(bbox_std_dev), tf.float32)

    crop_boxes = positive_rois
    if use_mini_mask:  # RoI coordinates relative to its GT box, where the mini mask lives
        gy1, gx1, gy2, gx2 = tf.unstack(roi_gt_boxes, axis=1)
        y1, x1, y2, x2 = tf.unstack(positive_rois, axis=1)
        crop_boxes = tf.stack([(y1 - gy1) / (gy2 - gy1), (x1 - gx1) / (gx2 - gx1),
                               (y2 - gy1) / (gy2 - gy1), (x2 - gx1) / (gx2 - gx1)], axis=1)
    instance_masks = tf.transpose(tf.cast(gt_masks, tf.float32), [2, 0, 1])[..., tf.newaxis]  # [G, h, w, 1]
    masks = tf.image.crop_and_resize(tf.gather(instance_masks, assignment), crop_boxes,
                                     tf.range(positive_count), mask_shape)
    masks = tf.round(masks[..., 0])  # [P, mask_h, mask_w] of 0/1

    rois = tf.concat([positive_rois, tf.gather(proposals, negative_index)], axis=0)
    rest = pool_size - positive_count  # negatives and padding
    negative_count = tf.shape(negative_index)[0]
    rois = tf.pad(rois, [(0, pool_size - tf.shape(rois)[0]), (0, 0)])
    roi_class_ids = tf.concat([tf.cast(roi_class_ids, tf.int32), tf.zeros([negative_count], tf.int32),
                               tf.fill([rest - negative_count], PADDING_CLASS_ID)], axis=0)
    deltas = tf.pad(deltas, [(0, rest), (0, 0)])
    masks = tf.pad(masks, [(0, rest), (0, 0), (0, 0)])
    rois.set_shape([pool_size, 4])
    roi_class_ids.set_shape([pool_size])
    deltas.set_shape([pool_size, 4])
    masks.set_shape([pool_size, *mask_shape])
    return rois, roi_class_ids, deltas, masks


# --- keeping the hardest -------------------------------------------------------------------------

def _class_loss_inputs(
    target_class_ids: Any, pred_class_logits: Any, active_class_ids: Any
) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Validate ranks and dtypes; return targets [batch, rois] int32, logits [batch, rois,
    classes] float32 and active [batch, classes] float32."""
    logits = _float_logits("pred_class_logits", pred_class_logits)
    if logits.shape.rank is not None and logits.shape.rank != 3:
        raise ValueError("pred_class_logits must have shape [batch, rois, classes]; "
                         f"received shape {logits.shape.as_list()}")
    targets = tf.convert_to_tensor(target_class_ids)
    if targets.shape.rank is not None and targets.shape.rank != 2:
        raise ValueError("target_class_ids must have shape [batch, rois]; "
                         f"received shape {targets.shape.as_list()}")
    active = tf.convert_to_tensor(active_class_ids)
    if active.shape.rank is not None and active.shape.rank != 2:
        raise ValueError("active_class_ids must have shape [batch, classes]; "
                         f"received shape {active.shape.as_list()}")
    return tf.cast(targets, tf.int32), logits, tf.cast(active, tf.float32)


def _per_roi_class_losses(targets: tf.Tensor, logits: tf.Tensor, active: tf.Tensor
                          ) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """Per-RoI class loss, its ``pred_active`` weight and the real-row mask.

    Args:
        targets: [batch, rois] int32 class ids, negative for padding.
        logits: [batch, rois, classes] float32.
        active: [batch, classes] float32.

    Returns:
        losses [batch, rois] (cross-entropy times ``pred_active``, 0 on padding),
        pred_active [batch, rois] float32 (0 on padding), real [batch, rois] bool.
    """
    real = targets >= 0  # [batch, rois]
    pred_class_ids = tf.argmax(logits, axis=2, output_type=tf.int32)  # [batch, rois]
    pred_active = tf.gather(active, pred_class_ids, batch_dims=1)  # [batch, rois], each image's row
    pred_active = tf.where(real, pred_active, 0.0)
    # Padding rows get label 0 only to keep the op in range; they are never candidates.
    losses = pred_active * tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.maximum(targets, 0), logits=logits)  # [batch, rois]
    return losses, pred_active, real


def _kept_counts(targets: tf.Tensor, kept: tf.Tensor) -> dict[str, tf.Tensor]:
    """Kept positives and negatives per image: targets [batch, rois] int32, kept [batch, rois] bool."""
    def count(mask: tf.Tensor) -> tf.Tensor:
        return tf.reduce_sum(tf.cast(kept & mask, tf.int32), axis=1)

    return {"kept_positives": count(targets > 0), "kept_negatives": count(tf.equal(targets, 0))}


def _as_row_mask(indices: tf.Tensor, keep: tf.Tensor, width: Any) -> tf.Tensor:
    """[batch, width] bool, True at the ``indices`` [batch, k] whose ``keep`` [batch, k] is True."""
    hit = tf.equal(indices[:, :, tf.newaxis], tf.range(width, dtype=indices.dtype)[tf.newaxis, tf.newaxis, :])
    return tf.reduce_any(hit & keep[:, :, tf.newaxis], axis=1)


def ohem_mrcnn_class_loss(
    target_class_ids: Any,
    pred_class_logits: Any,
    active_class_ids: Any,
    *,
    top_k: int,
    return_stats: bool = False,
) -> tf.Tensor | tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """The classifier-head loss over the hardest ``top_k`` real RoIs of each image.

    Rows whose target id is negative (:data:`PADDING_CLASS_ID`, the pool's padding) are never
    candidates. Per real RoI the loss is the softmax cross-entropy times ``pred_active``: 1 if
    the predicted (arg-max) class is active in that image's own row of ``active_class_ids``,
    else 0, as the bundled model's plain ``mrcnn_class_loss_graph`` does. (Upstream Matterport
    reads the first image's row for the whole batch, ``tf.gather(active_class_ids[0], ...)``;
    the two agree when every image of the batch has the same active classes, as with one
    dataset.) Per image the ``min(top_k, real rois)`` largest of these are kept, ranked without
    gradient, ties to the lower RoI index. Result: sum of the kept losses over the batch /
    max(1, sum of the kept ``pred_active``). With ``top_k`` >= rois and no padding it equals the
    bundled plain loss (upstream gives NaN, and this 0.0, when no RoI is predicted as an active
    class).

    Args:
        target_class_ids: [batch, rois] int class ids: 0 background, > 0 a class, negative
            (-1) padding.
        pred_class_logits: [batch, rois, classes] float logits; float16/bfloat16 are computed
            in float32.
        active_class_ids: [batch, classes] 1 for classes of the image's dataset, else 0.
        top_k: RoIs kept per image (>= 1).
        return_stats: also return the kept counts.

    Returns:
        Scalar float32; 0.0 with a zero gradient when nothing kept is active. With
        ``return_stats``, ``(loss, {"kept_positives": [batch] int32, "kept_negatives": [batch]
        int32})``.

    Raises:
        ValueError: ``top_k`` < 1 or a tensor of the wrong rank.
        TypeError: ``pred_class_logits`` is not floating point.
    """
    top_k = check_int("top_k", top_k, 1)
    targets, logits, active = _class_loss_inputs(target_class_ids, pred_class_logits, active_class_ids)
    losses, pred_active, real = _per_roi_class_losses(targets, logits, active)
    indices, keep = selection.hardest(losses, real, top_k)
    kept_losses = tf.where(keep, tf.gather(losses, indices, batch_dims=1), 0.0)
    kept_active = tf.where(keep, tf.gather(pred_active, indices, batch_dims=1), 0.0)
    loss = tf.reduce_sum(kept_losses) / tf.maximum(tf.reduce_sum(kept_active), 1.0)
    if not return_stats:
        return loss
    return loss, _kept_counts(targets, _as_row_mask(indices, keep, tf.shape(targets)[1]))


# --- choosing the RoIs before the losses (the paper's setting) -----------------------------------

def _per_roi_box_losses(targets: tf.Tensor, target_bbox: Any, pred_bbox: Any) -> tf.Tensor:
    """Smooth-L1 summed over the 4 deltas of each positive RoI's own class; 0 elsewhere.

    Args:
        targets: [batch, rois] int32 class ids.
        target_bbox: [batch, rois, 4] target deltas.
        pred_bbox: [batch, rois, classes, 4] predicted deltas.

    Returns:
        [batch, rois] float32.
    """
    pred_bbox = tf.cast(tf.convert_to_tensor(pred_bbox), tf.float32)
    if pred_bbox.shape.rank is not None and pred_bbox.shape.rank != 4:
        raise ValueError("pred_bbox must have shape [batch, rois, classes, 4]; "
                         f"received shape {pred_bbox.shape.as_list()}")
    target_bbox = tf.cast(tf.convert_to_tensor(target_bbox), tf.float32)
    if target_bbox.shape.rank is not None and target_bbox.shape.rank != 3:
        raise ValueError("target_bbox must have shape [batch, rois, 4]; "
                         f"received shape {target_bbox.shape.as_list()}")
    own = tf.gather(pred_bbox, tf.maximum(targets, 0), batch_dims=2)  # [batch, rois, 4]
    # The element-wise loss of the box head itself, so the ranking scores what the box loss trains.
    return tf.where(targets > 0, tf.reduce_sum(smooth_l1_loss(target_bbox, own), axis=2), 0.0)


def select_hard_rois(
    target_class_ids: Any,
    target_bbox: Any,
    rois: Any,
    pred_class_logits: Any,
    pred_bbox: Any,
    active_class_ids: Any,
    *,
    top_k: int,
    rank_by_box: bool = True,
    nms_threshold: float | None = None,
    return_stats: bool = False,
) -> tf.Tensor | tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """Choose each image's hard RoIs before the losses, for the class and box loss alike.

    The OHEM paper's selection (Shrivastava et al., 2016, section 3): every RoI of the pool is
    scored by its loss with the gradient stopped, the class loss of
    :func:`ohem_mrcnn_class_loss` plus, with ``rank_by_box``, the Smooth-L1 box loss summed
    over the 4 deltas of its own class (positives only; background has no box loss). With
    ``nms_threshold`` the RoIs are visited from the hardest down and one is dropped when its
    IoU with a kept one is > ``nms_threshold`` (the paper: 0.7), so near-copies of one hard
    region do not fill the budget. Per image the ``min(top_k, survivors)`` hardest are kept.

    The result is ``target_class_ids`` with every real RoI that was not kept relabelled
    :data:`PADDING_CLASS_ID` (-1). Handed to the class loss (:func:`ohem_mrcnn_class_loss`,
    whose ``top_k`` then keeps them all) and to the box loss (which reads ``ids > 0`` only),
    both losses train on the kept RoIs, as the paper's single backward pass does.

    Args:
        target_class_ids: [batch, rois] int class ids: 0 background, > 0 a class, negative
            padding (never kept).
        target_bbox: [batch, rois, (dy, dx, log(dh), log(dw))] target deltas, divided by
            ``BBOX_STD_DEV`` as Matterport's targets are.
        rois: [batch, rois, (y1, x1, y2, x2)] the RoIs, normalised (read only with NMS).
        pred_class_logits: [batch, rois, classes] float logits.
        pred_bbox: [batch, rois, classes, 4] predicted deltas.
        active_class_ids: [batch, classes] 1 for classes of the image's dataset, else 0.
        top_k: RoIs kept per image (>= 1).
        rank_by_box: add the box loss to the ranking score.
        nms_threshold: None (no de-duplication) or an IoU in (0, 1].
        return_stats: also return the kept counts.

    Returns:
        [batch, rois] int32 class ids; with ``return_stats``, ``(ids, {"kept_positives": [batch]
        int32, "kept_negatives": [batch] int32})``.

    Raises:
        ValueError: ``top_k`` < 1, ``nms_threshold`` out of range, or a tensor of the wrong rank.
        TypeError: ``pred_class_logits`` is not floating point.
    """
    top_k = check_int("top_k", top_k, 1)
    nms_threshold = check_number("nms_threshold", nms_threshold, 0.0, 1.0, low_open=True, allow_none=True)
    targets, logits, active = _class_loss_inputs(target_class_ids, pred_class_logits, active_class_ids)
    scores, _, real = _per_roi_class_losses(targets, logits, active)
    if rank_by_box:
        scores += _per_roi_box_losses(targets, target_bbox, pred_bbox)
    scores = tf.stop_gradient(scores)
    if nms_threshold is None:
        indices, keep = selection.hardest(scores, real, top_k)
        kept = _as_row_mask(indices, keep, tf.shape(targets)[1])
    else:
        rois = tf.stop_gradient(tf.cast(tf.convert_to_tensor(rois), tf.float32))
        if rois.shape.rank is not None and rois.shape.rank != 3:
            raise ValueError(f"rois must have shape [batch, rois, 4]; received shape {rois.shape.as_list()}")
        kept = selection.first_survivors(scores, real, rois, nms_threshold, top_k)
    ids = tf.where(kept, targets, PADDING_CLASS_ID)
    if not return_stats:
        return ids
    return ids, _kept_counts(targets, kept)
