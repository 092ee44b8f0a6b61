"""Training targets in NumPy: RPN anchor labels and deltas, and (for ``USE_RPN_ROIS=False``)
random ROIs with their classifier and mask targets.

``build_rpn_targets`` keeps Matterport Mask R-CNN's signature and behaviour: anchors are
labelled by Matterport's rules (:func:`mrcnn_ohem.core.matching.match_anchors`, shared with the OHEM
target builder so both label identically), then randomly subsampled to at most
``RPN_TRAIN_ANCHORS_PER_IMAGE`` non-neutral anchors, positives at most half of them. The data
generator looks this function up on the ``model`` module at call time, so a patched
replacement takes effect there. Random draws come from
:func:`mrcnn_ohem.core.randomness.numpy_random`: NumPy's global generator, as upstream, unless a
seeded ``DataGenerator`` gave the image a generator of its own.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from mrcnn_ohem.core.boxes import NEGATIVE, POSITIVE, box_refinement, compute_overlaps
from mrcnn_ohem.core.matching import encode_rpn_bbox, match_anchors, subsample_labels
from mrcnn_ohem.core.randomness import numpy_random
from mrcnn_ohem.core.thresholds import ROI_POSITIVE_IOU

from .utils import resize

__all__ = ["build_rpn_targets", "generate_random_rois", "build_detection_targets"]


def build_rpn_targets(image_shape: Sequence[int], anchors: np.ndarray,
                      gt_class_ids: np.ndarray, gt_boxes: np.ndarray,
                      config: Any) -> tuple[np.ndarray, np.ndarray]:
    """RPN training targets of one image, Matterport's sampled version.

    Args:
        image_shape: [height, width, channels] of the model input (unused, as upstream).
        anchors: [num_anchors, (y1, x1, y2, x2)] in pixels.
        gt_class_ids: [num_gt] int; negative ids are crowd boxes.
        gt_boxes: [num_gt, (y1, x1, y2, x2)] in pixels.
        config: reads ``RPN_TRAIN_ANCHORS_PER_IMAGE`` and ``RPN_BBOX_STD_DEV``.

    Returns:
        rpn_match: [num_anchors] int32, 1 positive, -1 negative, 0 neutral; at most
            ``RPN_TRAIN_ANCHORS_PER_IMAGE`` non-neutral, at most half of them positive.
        rpn_bbox: [RPN_TRAIN_ANCHORS_PER_IMAGE, (dy, dx, log(dh), log(dw))] float32, the
            deltas of the positive anchors in anchor order divided by ``RPN_BBOX_STD_DEV``,
            zero rows after them.
    """
    budget = int(config.RPN_TRAIN_ANCHORS_PER_IMAGE)
    match = match_anchors(anchors, gt_class_ids, gt_boxes)
    rpn_match = match.rpn_match
    subsample_labels(rpn_match, POSITIVE, budget // 2)
    subsample_labels(rpn_match, NEGATIVE, budget - int(np.sum(rpn_match == POSITIVE)))
    rpn_bbox = encode_rpn_bbox(anchors, rpn_match, match, budget, config.RPN_BBOX_STD_DEV)
    return rpn_match, rpn_bbox


def generate_random_rois(image_shape: Sequence[int], count: int, gt_class_ids: np.ndarray,
                         gt_boxes: np.ndarray) -> np.ndarray:
    """Random proposals standing in for the RPN's: 90% near GT boxes, the rest anywhere.

    Near a GT box means inside the box grown by its own height and width on every side,
    clipped to the image. Every ROI has a height and width of at least one pixel.

    Args:
        image_shape: [height, width, channels].
        count: number of ROIs.
        gt_class_ids: [num_gt] (unused, as upstream).
        gt_boxes: [num_gt, (y1, x1, y2, x2)] in pixels.

    Returns:
        [count, (y1, x1, y2, x2)] int32 in pixels.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    num_gt = gt_boxes.shape[0]
    per_box = int(0.9 * count / num_gt) if num_gt else 0
    rois = []
    for y1, x1, y2, x2 in np.asarray(gt_boxes, dtype=np.int64):
        h, w = y2 - y1, x2 - x1
        rois.append(_random_boxes(per_box, max(y1 - h, 0), min(y2 + h, height),
                                  max(x1 - w, 0), min(x2 + w, width)))
    rois.append(_random_boxes(count - per_box * num_gt, 0, height, 0, width))
    return np.concatenate(rois, axis=0).astype(np.int32)


def _random_boxes(count: int, y_low: int, y_high: int, x_low: int, x_high: int) -> np.ndarray:
    """[count, (y1, x1, y2, x2)] boxes with distinct corners inside [low, high)."""
    ys = _random_spans(count, y_low, y_high)
    xs = _random_spans(count, x_low, x_high)
    return np.stack([ys[:, 0], xs[:, 0], ys[:, 1], xs[:, 1]], axis=1)


def _random_spans(count: int, low: int, high: int) -> np.ndarray:
    """[count, (start, end)] with low <= start < end <= max(high - 1, low + 1)."""
    high = max(high, low + 2)  # room for two distinct values
    spans = np.sort(numpy_random().randint(low, high, (count, 2)), axis=1)
    same = spans[:, 0] == spans[:, 1]
    while np.any(same):
        spans[same] = np.sort(numpy_random().randint(low, high, (int(same.sum()), 2)), axis=1)
        same = spans[:, 0] == spans[:, 1]
    return spans


def build_detection_targets(rpn_rois: np.ndarray, gt_class_ids: np.ndarray,
                            gt_boxes: np.ndarray, gt_masks: np.ndarray, config: Any
                            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Classifier and mask head targets for given ROIs (debugging / ``USE_RPN_ROIS=False``).

    ROIs with IoU > 0.5 to a GT box are positive, the others negative; positives are capped
    at ``TRAIN_ROIS_PER_IMAGE * ROI_POSITIVE_RATIO`` and the rest filled with negatives
    (repeated when there are too few), as in Matterport.

    Args:
        rpn_rois: [N, (y1, x1, y2, x2)] proposals in pixels, N >= 1.
        gt_class_ids: [num_gt] int; zeros are padding.
        gt_boxes: [num_gt, (y1, x1, y2, x2)] in pixels.
        gt_masks: [height, width, num_gt] bool, full size or mini masks
            (``config.USE_MINI_MASK``).
        config: reads ``TRAIN_ROIS_PER_IMAGE``, ``ROI_POSITIVE_RATIO``, ``NUM_CLASSES``,
            ``BBOX_STD_DEV``, ``MASK_SHAPE``, ``USE_MINI_MASK``, ``IMAGE_SHAPE``.

    Returns:
        rois: [TRAIN_ROIS_PER_IMAGE, (y1, x1, y2, x2)].
        class_ids: [TRAIN_ROIS_PER_IMAGE] int32, 0 for negatives.
        bboxes: [TRAIN_ROIS_PER_IMAGE, NUM_CLASSES, (dy, dx, log(dh), log(dw))] float32,
            filled at the positive ROI's class, divided by ``BBOX_STD_DEV``.
        masks: [TRAIN_ROIS_PER_IMAGE, mask_height, mask_width, NUM_CLASSES] float32.

    Raises:
        ValueError: no ROIs, or no GT instance with a class id > 0.
    """
    if rpn_rois.shape[0] == 0:
        raise ValueError("rpn_rois: expected at least one ROI, received none")
    instance_ids = np.flatnonzero(gt_class_ids > 0)
    if instance_ids.size == 0:
        raise ValueError("gt_class_ids: expected at least one instance with a class id > 0, "
                         f"received {np.asarray(gt_class_ids).tolist()}")
    gt_class_ids = gt_class_ids[instance_ids].astype(np.int32)
    gt_boxes = gt_boxes[instance_ids]
    gt_masks = gt_masks[:, :, instance_ids]
    num_rois = int(config.TRAIN_ROIS_PER_IMAGE)

    overlaps = compute_overlaps(rpn_rois, gt_boxes)  # [N, num_gt]
    assignment = overlaps.argmax(axis=1)  # [N], each ROI's best GT box
    best_iou = overlaps[np.arange(overlaps.shape[0]), assignment]
    keep, is_fg = _sample_rois(best_iou, num_rois, config.ROI_POSITIVE_RATIO)

    rois = rpn_rois[keep]
    roi_gt = assignment[keep]
    roi_class_ids = np.where(is_fg, gt_class_ids[roi_gt], 0).astype(np.int32)
    pos = np.flatnonzero(is_fg)
    bboxes = np.zeros((num_rois, config.NUM_CLASSES, 4), dtype=np.float32)
    if pos.size:
        deltas = box_refinement(rois[pos], gt_boxes[roi_gt[pos]])
        bboxes[pos, roi_class_ids[pos]] = deltas / np.asarray(config.BBOX_STD_DEV, dtype=np.float32)
    masks = _mask_targets(rois, pos, roi_gt[pos], roi_class_ids[pos], gt_boxes, gt_masks, config)
    return rois, roi_class_ids, bboxes, masks


def _sample_rois(best_iou: np.ndarray, num_rois: int, positive_ratio: float) -> tuple[np.ndarray, np.ndarray]:
    """Matterport's ROI sampling: positives (IoU > 0.5) capped at ``num_rois * positive_ratio``,
    negatives (IoU < 0.5) fill the rest, and with too few ROIs negatives (else positives) repeat.

    Args:
        best_iou: [N] each ROI's highest IoU with a GT box.

    Returns:
        keep: [num_rois] int indices into the ROIs, positives first; is_fg: [num_rois] bool.
    """
    fg_ids = np.flatnonzero(best_iou > ROI_POSITIVE_IOU)
    bg_ids = np.flatnonzero(best_iou < ROI_POSITIVE_IOU)  # exactly 0.5 is neither, as upstream
    fg_count = int(num_rois * positive_ratio)
    keep_fg = numpy_random().choice(fg_ids, fg_count, replace=False) if fg_ids.size > fg_count else fg_ids
    remaining = num_rois - keep_fg.size
    keep_bg = numpy_random().choice(bg_ids, remaining, replace=False) if bg_ids.size > remaining else bg_ids
    keep = np.concatenate([keep_fg, keep_bg])
    if keep.size < num_rois:
        # Too few ROIs for the budget: repeat negatives (or positives if there are none).
        pool = keep_bg if keep_bg.size else keep_fg
        keep = np.concatenate([keep, numpy_random().choice(pool, num_rois - keep.size)])
    return keep, np.isin(keep, keep_fg)


def _mask_targets(rois: np.ndarray, pos: np.ndarray, pos_gt: np.ndarray, pos_class_ids: np.ndarray,
                  gt_boxes: np.ndarray, gt_masks: np.ndarray, config: Any) -> np.ndarray:
    """[len(rois), mask_height, mask_width, NUM_CLASSES] float32: each positive ROI's crop of
    its GT mask (``gt_masks[..., pos_gt]``, pasted back to image size first if mini masks),
    resized to ``MASK_SHAPE`` at its class; zeros elsewhere."""
    mask_h, mask_w = config.MASK_SHAPE[:2]
    masks = np.zeros((rois.shape[0], mask_h, mask_w, config.NUM_CLASSES), dtype=np.float32)
    for i, gt_id, class_id in zip(pos, pos_gt, pos_class_ids):
        full = gt_masks[:, :, gt_id]
        if config.USE_MINI_MASK:
            # Paste the mini mask back into an image-sized canvas at its GT box.
            full = np.zeros(tuple(config.IMAGE_SHAPE[:2]), dtype=bool)
            y1, x1, y2, x2 = (int(v) for v in gt_boxes[gt_id])
            if y2 > y1 and x2 > x1:
                full[y1:y2, x1:x2] = resize(gt_masks[:, :, gt_id].astype(np.float32), (y2 - y1, x2 - x1)) >= 0.5
        y1, x1, y2, x2 = (int(v) for v in rois[i])
        crop = full[y1:y2, x1:x2].astype(np.float32)
        if crop.size:
            masks[i, :, :, class_id] = resize(crop, (mask_h, mask_w))
    return masks
