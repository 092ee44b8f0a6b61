"""Anchor-to-ground-truth matching for the RPN, in NumPy, without any sampling.

These are Matterport's labelling rules, split from its ``build_rpn_targets`` so that the plain
target builder (random sampling to ``RPN_TRAIN_ANCHORS_PER_IMAGE``) and the OHEM target builder
(every negative kept) label anchors identically and differ only in what they sample:

1. Crowd boxes (negative class ids) leave the ground truth; an anchor that overlaps a crowd box
   (IoU >= 0.001) is never labelled negative.
2. An anchor whose best IoU with any GT box is < 0.3 is negative.
3. The anchor(s) with the highest IoU for each GT box are positive, ties included.
4. An anchor whose best IoU is >= 0.7 is positive.

Every IoU is computed in float64 with Matterport's arithmetic and every threshold and tie is
decided on those float64 values, so with Matterport's inputs (float64 anchors, integer GT
boxes) the labels are Matterport's exactly, near ties included (IoUs that differ in the 7th
digit, which float32 would round together or apart). Each anchor's best GT box is the first of
equals, as ``np.argmax``.

One deliberate deviation: rule 3 skips a GT box that no anchor overlaps at all (best IoU 0).
Matterport marks every anchor tied at IoU 0 with such a box positive, which turns the whole
image into positives with regression targets to a box they do not touch.

Speed: the IoU of a GT box is computed only over the anchors that can overlap it
(:class:`~mrcnn_ohem.core.boxes.SortedBoxes`, kept for the last anchor array seen, since a
data generator passes the same anchors for every image), and labels are accumulated a GT box
at a time, never as a [num_gt, num_anchors] matrix.
"""
# No ``from __future__ import annotations`` in this module: it would turn the field types of
# AnchorMatch into strings, which the constructor typing.NamedTuple generates (defined outside
# this module) cannot resolve, so pdoc and typing.get_type_hints(AnchorMatch.__new__) fail on
# "np.ndarray". Every annotation here is valid at runtime on Python 3.10+.
import threading
from typing import NamedTuple

import numpy as np

from mrcnn_ohem.core.boxes import NEGATIVE, NEUTRAL, POSITIVE, SortedBoxes, box_refinement
from mrcnn_ohem.core.randomness import numpy_random
from mrcnn_ohem.core.thresholds import CROWD_IOU, RPN_NEGATIVE_IOU, RPN_POSITIVE_IOU


class AnchorMatch(NamedTuple):
    """The result of :func:`match_anchors`.

    Attributes:
        rpn_match: [num_anchors] int32, POSITIVE (1), NEGATIVE (-1) or NEUTRAL (0).
        gt_index: [num_anchors] int64, index into ``gt_boxes`` of each anchor's best GT box
            (0 where there is no GT box; only meaningful for positives).
        gt_boxes: [num_gt, (y1, x1, y2, x2)] the non-crowd GT boxes that ``gt_index`` indexes.
    """

    rpn_match: np.ndarray
    gt_index: np.ndarray
    gt_boxes: np.ndarray


def _check_boxes(name: str, boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(
            f"{name} must have shape [N, 4] as (y1, x1, y2, x2); received shape {boxes.shape}"
        )
    return boxes


_SORTED_LOCK = threading.Lock()
_SORTED_LAST: tuple[np.ndarray, SortedBoxes] | None = None


def _sorted_anchors(anchors: np.ndarray) -> SortedBoxes:
    """:class:`SortedBoxes` of ``anchors`` [num_anchors, 4] float64, reused while the values
    stay equal (compared exactly on every call, so an edited array is never served stale)."""
    global _SORTED_LAST
    last = _SORTED_LAST
    if last is not None and last[0].shape == anchors.shape and np.array_equal(last[0], anchors):
        return last[1]
    index = SortedBoxes(anchors)
    with _SORTED_LOCK:
        _SORTED_LAST = (anchors.copy(), index)
    return index


def match_anchors(
    anchors: np.ndarray, gt_class_ids: np.ndarray, gt_boxes: np.ndarray
) -> AnchorMatch:
    """Label every anchor positive, negative or neutral by Matterport's rules (no sampling).

    Args:
        anchors: [num_anchors, (y1, x1, y2, x2)] in pixels.
        gt_class_ids: [num_gt] int; negative ids mark crowd boxes.
        gt_boxes: [num_gt, (y1, x1, y2, x2)] in pixels.

    Returns:
        An :class:`AnchorMatch`.

    Raises:
        ValueError: the arrays have the wrong shapes or disagree in length.
    """
    anchors = _check_boxes("anchors", anchors)
    gt_boxes = _check_boxes("gt_boxes", gt_boxes)
    gt_class_ids = np.asarray(gt_class_ids).reshape(-1)
    if gt_class_ids.shape[0] != gt_boxes.shape[0]:
        raise ValueError(
            "gt_class_ids and gt_boxes must have one entry per instance; received "
            f"{gt_class_ids.shape[0]} class ids and {gt_boxes.shape[0]} boxes"
        )
    num_anchors = anchors.shape[0]
    rpn_match = np.full(num_anchors, NEUTRAL, dtype=np.int32)
    gt_index = np.zeros(num_anchors, dtype=np.int64)
    crowd = gt_class_ids < 0
    crowd_boxes, gt_boxes = gt_boxes[crowd], gt_boxes[~crowd]
    if gt_boxes.shape[0] == 0 and crowd_boxes.shape[0] == 0:
        rpn_match[:] = NEGATIVE
        return AnchorMatch(rpn_match, gt_index, gt_boxes)

    index = _sorted_anchors(np.asarray(anchors, dtype=np.float64))
    # Per sorted anchor (index.ids maps back): best IoU with any crowd box, with any GT box.
    crowd_iou = _best_iou(index, crowd_boxes)[0]
    best_iou, best_gt, is_best = _best_iou(index, gt_boxes, ties=True)
    may_be_negative = np.ones(num_anchors, dtype=bool)
    may_be_negative[index.ids] = crowd_iou < CROWD_IOU
    best = np.zeros(num_anchors)
    best[index.ids] = best_iou
    gt_index[index.ids] = best_gt

    rpn_match[(best < RPN_NEGATIVE_IOU) & may_be_negative] = NEGATIVE
    rpn_match[index.ids[is_best]] = POSITIVE
    rpn_match[best >= RPN_POSITIVE_IOU] = POSITIVE
    return AnchorMatch(rpn_match, gt_index, gt_boxes)


def _best_iou(index: SortedBoxes, boxes: np.ndarray, ties: bool = False):
    """Fold the float64 IoU of ``boxes`` with the sorted anchors, one box at a time.

    Returns:
        best: [index.size] float64, each anchor's highest IoU (0 with no box).
        first: [index.size] int64, the first box reaching it (as ``np.argmax``; 0 if none).
        is_best: [index.size] bool, with ``ties``: the anchor is one of the anchors of highest
            IoU with some box whose highest IoU is > 0 (rule 3 with its deviation).
    """
    best = np.zeros(index.size)
    first = np.zeros(index.size, dtype=np.int64)
    is_best = np.zeros(index.size, dtype=bool)
    iou, scratch, flag = np.empty(index.size), (np.empty(index.size), np.empty(index.size)), np.empty(index.size, bool)
    for k, box in enumerate(np.asarray(boxes, dtype=np.float64)):
        ranges = index.ranges(box)
        for start, stop in ranges:
            index.iou_into(box, start, stop, iou, scratch)
        top = max((iou[a:b].max() for a, b in ranges), default=0.0)  # anchors outside: IoU 0
        for start, stop in ranges if top > 0 else ():
            cut = slice(start, stop)
            np.greater(iou[cut], best[cut], out=flag[cut])
            np.maximum(best[cut], iou[cut], out=best[cut])
            first[cut][flag[cut]] = k
            if ties:
                np.equal(iou[cut], top, out=flag[cut])
                is_best[cut] |= flag[cut]
    return best, first, is_best


def subsample_labels(
    rpn_match: np.ndarray, label: int, max_count: int, rng: np.random.Generator | None = None
) -> None:
    """Reset random anchors labelled ``label`` to NEUTRAL until at most ``max_count`` remain.

    Args:
        rpn_match: [num_anchors] int32 labels, changed in place.
        label: POSITIVE or NEGATIVE.
        max_count: how many anchors with that label may stay (>= 0).
        rng: the random generator; when None, :func:`~mrcnn_ohem.core.randomness.numpy_random`
            (NumPy's global one, as Matterport, unless a seeded data generator set one).
    """
    ids = np.flatnonzero(rpn_match == label)
    extra = ids.shape[0] - max(int(max_count), 0)
    if extra <= 0:
        return
    dropped = (numpy_random() if rng is None else rng).choice(ids, extra, replace=False)
    rpn_match[dropped] = NEUTRAL


def encode_rpn_bbox(
    anchors: np.ndarray,
    rpn_match: np.ndarray,
    match: AnchorMatch,
    num_rows: int,
    std_dev: np.ndarray,
) -> np.ndarray:
    """Regression targets of the positive anchors, packed at the top of a fixed-size array.

    Args:
        anchors: [num_anchors, (y1, x1, y2, x2)].
        rpn_match: [num_anchors] final labels (after any sampling).
        match: the :class:`AnchorMatch` the labels came from.
        num_rows: rows of the output (Matterport: ``RPN_TRAIN_ANCHORS_PER_IMAGE``).
        std_dev: [4] the ``RPN_BBOX_STD_DEV`` the deltas are divided by.

    Returns:
        [num_rows, (dy, dx, log(dh), log(dw))] float32; rows past the positives are zero.

    Raises:
        ValueError: there are more positives than rows.
    """
    rpn_bbox = np.zeros((num_rows, 4), dtype=np.float32)
    positives = np.flatnonzero(rpn_match == POSITIVE)
    if positives.shape[0] > num_rows:
        raise ValueError(
            f"num_rows must be >= the number of positive anchors; received num_rows={num_rows} "
            f"for {positives.shape[0]} positives (cap positives before encoding)"
        )
    if positives.shape[0]:
        deltas = box_refinement(anchors[positives], match.gt_boxes[match.gt_index[positives]])
        rpn_bbox[: positives.shape[0]] = deltas / np.asarray(std_dev, dtype=np.float32)
    return rpn_bbox
