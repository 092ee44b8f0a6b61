"""The five Mask R-CNN training losses, as pure TensorFlow functions.

Names, arguments and math follow Matterport Mask R-CNN (``mrcnn/model.py``) so that code
written against ``mrcnn.model`` -- and :func:`mrcnn_ohem.patch`, which swaps
``rpn_class_loss_graph`` on the model module -- keeps working. Differences, all on edge cases
upstream gets wrong under TensorFlow 2:

* every mean is ``sum / max(count, 1)`` through ``tf.math.divide_no_nan``, so an empty
  selection gives a 0 that stays connected to the graph instead of NaN;
* ``rpn_bbox_loss_graph`` pairs the positive anchors with the rows of ``target_bbox``
  image by image and caps each image's count at the number of rows, so it works whatever the
  number of non-neutral anchors (OHEM targets keep every negative);
* ``mrcnn_class_loss_graph`` looks up the active classes of each image (upstream uses the
  first image's for the whole batch).

Nothing here reads a ``Config``; the model builder passes the numbers in.
"""
from __future__ import annotations

from typing import Any

import tensorflow as tf

#: Clipping used by the mask binary cross-entropy, as Keras' ``backend.epsilon()``.
EPSILON = 1e-7


def _safe_mean(values: tf.Tensor) -> tf.Tensor:
    """Mean of all entries of ``values``; 0.0 (connected to the graph) when it is empty."""
    count = tf.cast(tf.size(values), values.dtype)
    return tf.math.divide_no_nan(tf.reduce_sum(values), count)


def smooth_l1_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Element-wise Smooth-L1 (Huber with delta 1): ``0.5 d^2`` if ``|d| < 1`` else ``|d| - 0.5``.

    Args:
        y_true: [..., 4] float32 targets (any shape).
        y_pred: [..., 4], the same shape as ``y_true``.

    Returns:
        [..., 4], the shape of ``y_true``: the per-element loss.
    """
    diff = tf.abs(tf.cast(y_true, tf.float32) - tf.cast(y_pred, tf.float32))
    small = tf.cast(diff < 1.0, tf.float32)
    return small * 0.5 * tf.square(diff) + (1.0 - small) * (diff - 0.5)


def batch_pack_graph(x: tf.Tensor, counts: tf.Tensor, num_rows: Any = None) -> tf.Tensor:
    """Take the first ``counts[i]`` rows of ``x[i]`` for every image and concatenate them.

    Args:
        x: [batch, rows, ...] tensor.
        counts: [batch] int, how many leading rows to keep per image (at most ``rows``).
        num_rows: ignored; kept so Matterport calls ``batch_pack_graph(x, counts, n)`` work.
            The batch size is read from ``x`` at run time.

    Returns:
        [sum(counts), ...] the kept rows, image after image.
    """
    del num_rows
    rows = tf.shape(x)[1]
    keep = tf.range(rows)[tf.newaxis, :] < tf.cast(counts, tf.int32)[:, tf.newaxis]  # [batch, rows]
    return tf.boolean_mask(x, keep)


def rpn_class_loss_graph(rpn_match: tf.Tensor, rpn_class_logits: tf.Tensor) -> tf.Tensor:
    """RPN anchor classifier loss: mean softmax cross-entropy over non-neutral anchors.

    Args:
        rpn_match: [batch, anchors, 1] int, 1 = positive, -1 = negative, 0 = neutral.
        rpn_class_logits: [batch, anchors, 2] float32 BG/FG logits.

    Returns:
        Scalar float32; 0.0 when every anchor is neutral.
    """
    rpn_match = tf.squeeze(tf.cast(rpn_match, tf.int32), -1)  # [batch, anchors]
    anchor_class = tf.cast(tf.equal(rpn_match, 1), tf.int32)
    used = tf.where(tf.not_equal(rpn_match, 0))  # [n, 2] (image, anchor)
    logits = tf.gather_nd(rpn_class_logits, used)  # [n, 2]
    labels = tf.gather_nd(anchor_class, used)  # [n]
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    return _safe_mean(loss)


def rpn_bbox_loss_graph(
    config: Any, target_bbox: tf.Tensor, rpn_match: tf.Tensor, rpn_bbox: tf.Tensor
) -> tf.Tensor:
    """RPN box regression loss: Smooth-L1 between positive anchors' deltas and their targets.

    ``target_bbox[i]`` holds the targets of image ``i``'s positive anchors in anchor order,
    zero padded. Only positives are used, whatever the number of negatives; an image with more
    positives than target rows uses its first ``rows`` positives.

    Args:
        config: unused (Matterport's signature); the batch size is read from the tensors.
        target_bbox: [batch, rows, (dy, dx, log(dh), log(dw))] float32, zero padded.
        rpn_match: [batch, anchors, 1] int, 1 = positive, -1 = negative, 0 = neutral.
        rpn_bbox: [batch, anchors, (dy, dx, log(dh), log(dw))] predicted deltas.

    Returns:
        Scalar float32, the mean over the 4 coordinates of all used positives; 0.0 if none.
    """
    del config
    rpn_match = tf.squeeze(tf.cast(rpn_match, tf.int32), -1)  # [batch, anchors]
    positive = tf.cast(tf.equal(rpn_match, 1), tf.int32)
    rows = tf.shape(target_bbox)[1]
    rank = tf.cumsum(positive, axis=1, exclusive=True)  # index of each positive in its image
    keep = tf.logical_and(positive > 0, rank < rows)  # [batch, anchors]
    predicted = tf.gather_nd(rpn_bbox, tf.where(keep))  # [n, 4]
    counts = tf.minimum(tf.reduce_sum(positive, axis=1), rows)  # [batch]
    target = batch_pack_graph(target_bbox, counts)  # [n, 4]
    return _safe_mean(smooth_l1_loss(target, predicted))


def mrcnn_class_loss_graph(
    target_class_ids: tf.Tensor, pred_class_logits: tf.Tensor, active_class_ids: tf.Tensor
) -> tf.Tensor:
    """Classifier-head loss: cross-entropy, ignoring ROIs predicted as a class absent from the
    image's dataset.

    Args:
        target_class_ids: [batch, num_rois] int class IDs, 0 for background and padding.
        pred_class_logits: [batch, num_rois, num_classes] float32 logits.
        active_class_ids: [batch, num_classes] 1 for classes of the image's dataset, else 0.

    Returns:
        Scalar float32: sum of kept losses / number kept; 0.0 if none is kept.
    """
    target_class_ids = tf.cast(target_class_ids, tf.int64)
    pred_class_ids = tf.argmax(pred_class_logits, axis=2)  # [batch, num_rois]
    active = tf.cast(active_class_ids, tf.float32)
    pred_active = tf.gather(active, pred_class_ids, batch_dims=1)  # [batch, num_rois]
    loss = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=target_class_ids, logits=pred_class_logits
    )
    return tf.math.divide_no_nan(tf.reduce_sum(loss * pred_active), tf.reduce_sum(pred_active))


def _positive_rois(target_class_ids: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    """Flat indices of ROIs with a positive class, and [n, (roi, class)] pairs for gather_nd."""
    target_class_ids = tf.reshape(tf.cast(target_class_ids, tf.int64), [-1])
    positive_ix = tf.where(target_class_ids > 0)[:, 0]
    positive_class_ids = tf.gather(target_class_ids, positive_ix)
    return positive_ix, tf.stack([positive_ix, positive_class_ids], axis=1)


def mrcnn_bbox_loss_graph(
    target_bbox: tf.Tensor, target_class_ids: tf.Tensor, pred_bbox: tf.Tensor
) -> tf.Tensor:
    """Box-head loss: Smooth-L1 on the deltas of each positive ROI's own class.

    Args:
        target_bbox: [batch, num_rois, (dy, dx, log(dh), log(dw))] float32.
        target_class_ids: [batch, num_rois] int, 0 for background and padding.
        pred_bbox: [batch, num_rois, num_classes, (dy, dx, log(dh), log(dw))].

    Returns:
        Scalar float32 mean over positives' 4 coordinates; 0.0 without positives.
    """
    num_classes = tf.shape(pred_bbox)[2]
    target_bbox = tf.reshape(target_bbox, [-1, 4])
    pred_bbox = tf.reshape(pred_bbox, [-1, num_classes, 4])  # [batch * num_rois, classes, 4]
    positive_ix, indices = _positive_rois(target_class_ids)
    y_true = tf.gather(target_bbox, positive_ix)
    y_pred = tf.gather_nd(pred_bbox, indices)
    return _safe_mean(smooth_l1_loss(y_true, y_pred))


def mrcnn_mask_loss_graph(
    target_masks: tf.Tensor, target_class_ids: tf.Tensor, pred_masks: tf.Tensor
) -> tf.Tensor:
    """Mask-head loss: binary cross-entropy on each positive ROI's own class mask.

    Args:
        target_masks: [batch, num_rois, height, width] float32 of 0/1, zero padded.
        target_class_ids: [batch, num_rois] int, 0 for background and padding.
        pred_masks: [batch, num_rois, height, width, num_classes] float32 in [0, 1].

    Returns:
        Scalar float32 mean over positives' mask pixels; 0.0 without positives.
    """
    mask_shape = tf.shape(target_masks)
    pred_shape = tf.shape(pred_masks)
    target_masks = tf.reshape(target_masks, [-1, mask_shape[2], mask_shape[3]])
    pred_masks = tf.reshape(pred_masks, [-1, pred_shape[2], pred_shape[3], pred_shape[4]])
    pred_masks = tf.transpose(pred_masks, [0, 3, 1, 2])  # [rois, classes, height, width]
    positive_ix, indices = _positive_rois(target_class_ids)
    y_true = tf.cast(tf.gather(target_masks, positive_ix), tf.float32)
    y_pred = tf.clip_by_value(tf.gather_nd(pred_masks, indices), EPSILON, 1.0 - EPSILON)
    bce = -(y_true * tf.math.log(y_pred) + (1.0 - y_true) * tf.math.log(1.0 - y_pred))
    return _safe_mean(bce)
