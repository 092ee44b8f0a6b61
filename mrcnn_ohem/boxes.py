"""Box geometry in NumPy, shared by every anchor-labelling step.

Boxes are ``(y1, x1, y2, x2)`` in pixels with ``y2``/``x2`` exclusive, as in Matterport
Mask R-CNN. This module knows nothing of OHEM or of any model, so both the bundled Mask R-CNN
and :mod:`mrcnn_ohem.targets` build on it.
"""
from __future__ import annotations

import numpy as np

#: RPN match labels, as Matterport's ``rpn_match`` encodes them.
POSITIVE = 1
NEGATIVE = -1
NEUTRAL = 0


def box_areas(boxes: np.ndarray) -> np.ndarray:
    """Areas of ``boxes`` [N, (y1, x1, y2, x2)] -> [N] float."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def compute_overlaps(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """IoU of every box in ``boxes1`` with every box in ``boxes2``.

    Vectorised over both sets and computed in float32 (Matterport loops over ``boxes2`` in
    Python): at 261,888 anchors x a handful of GT boxes this is the hot part of target
    building, and float32 halves its memory traffic.

    Args:
        boxes1: [N1, (y1, x1, y2, x2)] float or int.
        boxes2: [N2, (y1, x1, y2, x2)] float or int.

    Returns:
        [N1, N2] float32 IoU; 0 where a union is empty.
    """
    b1 = np.asarray(boxes1, dtype=np.float32)
    b2 = np.asarray(boxes2, dtype=np.float32)
    if b1.shape[0] == 0 or b2.shape[0] == 0:
        return np.zeros((b1.shape[0], b2.shape[0]), dtype=np.float32)
    y1 = np.maximum(b1[:, None, 0], b2[None, :, 0])
    x1 = np.maximum(b1[:, None, 1], b2[None, :, 1])
    y2 = np.minimum(b1[:, None, 2], b2[None, :, 2])
    x2 = np.minimum(b1[:, None, 3], b2[None, :, 3])
    intersection = np.maximum(y2 - y1, 0) * np.maximum(x2 - x1, 0)  # [N1, N2]
    union = box_areas(b1)[:, None] + box_areas(b2)[None, :] - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = np.where(union > 0, intersection / union, 0.0)
    return iou.astype(np.float32, copy=False)


def box_refinement(box: np.ndarray, gt_box: np.ndarray) -> np.ndarray:
    """Deltas that turn ``box`` into ``gt_box``, Matterport's box coding.

    Args:
        box: [N, (y1, x1, y2, x2)] the boxes to refine (anchors or ROIs).
        gt_box: [N, (y1, x1, y2, x2)] the matched ground truth, row for row.

    Returns:
        [N, (dy, dx, log(dh), log(dw))] float32.
    """
    box = np.asarray(box, dtype=np.float32)
    gt_box = np.asarray(gt_box, dtype=np.float32)
    height = box[:, 2] - box[:, 0]
    width = box[:, 3] - box[:, 1]
    center_y = box[:, 0] + 0.5 * height
    center_x = box[:, 1] + 0.5 * width
    gt_height = gt_box[:, 2] - gt_box[:, 0]
    gt_width = gt_box[:, 3] - gt_box[:, 1]
    gt_center_y = gt_box[:, 0] + 0.5 * gt_height
    gt_center_x = gt_box[:, 1] + 0.5 * gt_width
    dy = (gt_center_y - center_y) / height
    dx = (gt_center_x - center_x) / width
    dh = np.log(gt_height / height)
    dw = np.log(gt_width / width)
    return np.stack([dy, dx, dh, dw], axis=1).astype(np.float32, copy=False)
