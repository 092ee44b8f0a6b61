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


def _iou_rows(few: np.ndarray, many: np.ndarray) -> np.ndarray:
    """IoU [len(few), len(many)], one row per box of ``few``, built a row at a time.

    A row costs a handful of passes over ``many`` with preallocated buffers, which at 261,888
    anchors is about 3x faster than broadcasting a [many, few] matrix and its temporaries.
    """
    y1, x1, y2, x2 = (np.ascontiguousarray(many[:, i]) for i in range(4))
    many_area = (y2 - y1) * (x2 - x1)
    iou = np.zeros((few.shape[0], many.shape[0]), dtype=np.float32)
    height = np.empty(many.shape[0], dtype=np.float32)
    width = np.empty_like(height)
    union = np.empty_like(height)
    for row, (by1, bx1, by2, bx2) in enumerate(few):
        np.minimum(y2, by2, out=height)
        height -= np.maximum(y1, by1)
        np.maximum(height, 0, out=height)
        np.minimum(x2, bx2, out=width)
        width -= np.maximum(x1, bx1)
        np.maximum(width, 0, out=width)
        height *= width  # the intersection
        np.add(many_area, (by2 - by1) * (bx2 - bx1), out=union)
        union -= height
        np.divide(height, union, out=iou[row], where=union > 0)
    return iou


def compute_overlaps(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """IoU of every box in ``boxes1`` with every box in ``boxes2``.

    Loops over the smaller set in Python and vectorises over the larger one, in float32: at
    261,888 anchors x a handful of GT boxes this is the hot part of target building.

    Args:
        boxes1: [N1, (y1, x1, y2, x2)] float or int.
        boxes2: [N2, (y1, x1, y2, x2)] float or int.

    Returns:
        [N1, N2] float32 IoU (a transposed view when N2 < N1); 0 where a union is empty.
    """
    b1 = np.asarray(boxes1, dtype=np.float32).reshape(-1, 4)
    b2 = np.asarray(boxes2, dtype=np.float32).reshape(-1, 4)
    if b2.shape[0] <= b1.shape[0]:
        return _iou_rows(b2, b1).T
    return _iou_rows(b1, b2)


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
