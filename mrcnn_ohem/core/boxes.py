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
    """Areas of boxes, ``(y2 - y1) * (x2 - x1)``.

    Args:
        boxes: [N, (y1, x1, y2, x2)] float or int.

    Returns:
        [N] areas, of the dtype of ``boxes``.
    """
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _iou_into(box: np.ndarray, columns: tuple, area: np.ndarray, out: np.ndarray,
              scratch: tuple, union_positive: bool) -> None:
    """IoU of one ``box`` with many boxes, written to ``out`` in ``out.dtype``.

    Matterport's arithmetic, operation for operation, so float64 results equal its
    ``compute_overlaps`` bit for bit: intersection ``max(min(y2) - max(y1), 0) *
    max(min(x2) - max(x1), 0)``, union ``(area + box_area) - intersection``, IoU
    ``intersection / union``; 0 where the union is not positive (Matterport divides by zero).

    Args:
        box: [(y1, x1, y2, x2)] one box, in ``out.dtype``.
        columns: (y1, x1, y2, x2) of the many boxes, each [n].
        area: [n] their areas.
        out: [n] receives the IoU.
        scratch: two [n] buffers of ``out.dtype``.
        union_positive: every union is known to be positive (``box`` has a positive area and
            none of ``area`` is negative), so the division needs no mask.
    """
    by1, bx1, by2, bx2 = box
    y1, x1, y2, x2 = columns
    height, other = scratch
    np.minimum(y2, by2, out=height)
    height -= np.maximum(y1, by1, out=other)
    np.maximum(height, 0, out=height)
    np.minimum(x2, bx2, out=out)  # out holds the width for now
    out -= np.maximum(x1, bx1, out=other)
    np.maximum(out, 0, out=out)
    height *= out  # the intersection
    np.add(area, (by2 - by1) * (bx2 - bx1), out=other)
    other -= height  # the union
    if union_positive:
        np.divide(height, other, out=out)
    else:
        out[...] = 0
        np.divide(height, other, out=out, where=other > 0)


def _columns(boxes: np.ndarray) -> tuple[tuple, np.ndarray]:
    """((y1, x1, y2, x2) contiguous columns, areas) of [n, 4] ``boxes``."""
    columns = tuple(np.ascontiguousarray(boxes[:, i]) for i in range(4))
    y1, x1, y2, x2 = columns
    return columns, (y2 - y1) * (x2 - x1)


def compute_overlaps(boxes1: np.ndarray, boxes2: np.ndarray, dtype: type = np.float64) -> np.ndarray:
    """IoU of every box in ``boxes1`` with every box in ``boxes2``.

    Loops over the smaller set in Python and vectorises over the larger one with preallocated
    buffers. The default float64 is the precision Matterport's NumPy code works in: with its
    inputs (float64 anchors, integer GT boxes) every value equals its ``compute_overlaps`` bit
    for bit, so comparisons of nearly equal IoUs come out the same. Inputs are converted to
    ``dtype`` first.

    Args:
        boxes1: [N1, (y1, x1, y2, x2)] float or int.
        boxes2: [N2, (y1, x1, y2, x2)] float or int.
        dtype: float64 (default), or float32 where rounding in the 7th digit does not matter.

    Returns:
        [N1, N2] IoU of ``dtype`` (a transposed view when N2 < N1); 0 where a union is not
        positive.
    """
    b1 = np.asarray(boxes1, dtype=dtype).reshape(-1, 4)
    b2 = np.asarray(boxes2, dtype=dtype).reshape(-1, 4)
    transposed = b2.shape[0] <= b1.shape[0]
    few, many = (b2, b1) if transposed else (b1, b2)
    columns, area = _columns(many)
    iou = np.empty((few.shape[0], many.shape[0]), dtype=dtype)
    scratch = (np.empty(many.shape[0], dtype=dtype), np.empty(many.shape[0], dtype=dtype))
    no_negative_area = not (area < 0).any()
    for row, box in enumerate(few):
        box_positive = (box[2] - box[0]) * (box[3] - box[1]) > 0
        _iou_into(box, columns, area, iou[row], scratch, bool(box_positive and no_negative_area))
    return iou.T if transposed else iou


class SortedBoxes:
    """Many boxes arranged so the IoU with one query box is computed only where it can be > 0.

    Boxes of positive height and width are grouped by height (powers of two) and sorted by
    ``y1`` within a group; the boxes of a group that can overlap a query box in ``y`` are then
    one contiguous range, found by binary search. Boxes of zero height or width, and those
    outside every range, have IoU 0 with the query box (it is not computed). For 261,888
    Matterport anchors and a 150-pixel GT box the ranges hold about a fifth of the anchors.

    Args:
        boxes: [N, (y1, x1, y2, x2)] float or int (converted to float64), e.g. the anchors.

    Attributes:
        ids: [M] int64, the input index of each kept box in sorted order; positions in the
            sorted order (``0..M-1``) are what :meth:`ranges` and :meth:`iou_into` use.
        size: M, the number of kept boxes.
    """

    def __init__(self, boxes: np.ndarray):
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        height = boxes[:, 2] - boxes[:, 0]
        ids = np.flatnonzero((height > 0) & (boxes[:, 3] - boxes[:, 1] > 0))
        group = np.floor(np.log2(height[ids])).astype(np.int64)
        order = np.lexsort((boxes[ids, 0], group))
        self.ids = ids[order]
        self.size = int(self.ids.shape[0])
        self._columns, self._area = _columns(boxes[self.ids])
        group = group[order]
        starts = np.flatnonzero(np.diff(group, prepend=group[:1] - 1)) if self.size else np.zeros(0, np.int64)
        stops = np.append(starts[1:], self.size).astype(np.int64)
        # y1 of a box that overlaps [by1, by2) is > by1 - height; the slack covers rounding in
        # y2 - y1 so no overlapping box falls outside a range (extra boxes only cost time).
        slack = 1e-9 * (1.0 + float(np.abs(boxes[self.ids]).max(initial=0.0)))
        self._groups = [(int(a), int(b), float(height[self.ids[a:b]].max()) + slack) for a, b in zip(starts, stops)]

    def ranges(self, box: np.ndarray) -> list[tuple[int, int]]:
        """Disjoint ``(start, stop)`` ranges of sorted positions holding every box that may
        overlap ``box``; each may also hold boxes that do not.

        Args:
            box: [(y1, x1, y2, x2)] the query box.

        Returns:
            ``(start, stop)`` pairs of sorted positions (``stop`` exclusive), at most one per
            height group; empty when no box can overlap ``box``.
        """
        y1 = self._columns[0]
        found = []
        for start, stop, reach in self._groups:
            lo = start + int(np.searchsorted(y1[start:stop], box[0] - reach, side="right"))
            hi = start + int(np.searchsorted(y1[start:stop], box[2], side="left"))
            if lo < hi:
                found.append((lo, hi))
        return found

    def iou_into(self, box: np.ndarray, start: int, stop: int, out: np.ndarray, scratch: tuple) -> None:
        """Write the float64 IoU of ``box`` with sorted boxes ``start:stop`` to ``out[start:stop]``.

        The arithmetic is :func:`compute_overlaps`'s (0 where the union is not positive).
        ``out`` and the two ``scratch`` buffers are [size] float64 arrays of the caller, so one
        instance can serve several threads.

        Args:
            box: [(y1, x1, y2, x2)] float64, the query box.
            start: first sorted position to compute (a range from :meth:`ranges`).
            stop: one past the last sorted position to compute.
            out: [size] float64; ``out[start:stop]`` receives the IoU, the rest is untouched.
            scratch: two [size] float64 work buffers; their ``start:stop`` parts are overwritten.
        """
        cut = slice(start, stop)
        columns = tuple(c[cut] for c in self._columns)
        scratch = tuple(b[cut] for b in scratch)
        union_positive = bool((box[2] - box[0]) * (box[3] - box[1]) > 0)
        _iou_into(box, columns, self._area[cut], out[cut], scratch, union_positive)


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
