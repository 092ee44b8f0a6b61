"""Anchor-to-ground-truth matching for the RPN, in NumPy, without any sampling.

These are Matterport's labelling rules, split from its ``build_rpn_targets`` so that the plain
target builder (random sampling to ``RPN_TRAIN_ANCHORS_PER_IMAGE``) and the OHEM target builder
(every negative kept) label anchors identically and differ only in what they sample:

1. Crowd boxes (negative class ids) leave the ground truth; an anchor that overlaps a crowd box
   (IoU >= 0.001) is never labelled negative.
2. An anchor whose best IoU with any GT box is < 0.3 is negative.
3. The anchor(s) with the highest IoU for each GT box are positive, ties included.
4. An anchor whose best IoU is >= 0.7 is positive.

One deliberate deviation: rule 3 skips a GT box that no anchor overlaps at all (best IoU 0).
Matterport marks every anchor tied at IoU 0 with such a box positive, which turns the whole
image into positives with regression targets to a box they do not touch.
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from mrcnn_ohem.core.boxes import NEGATIVE, NEUTRAL, POSITIVE, box_refinement, compute_overlaps

POSITIVE_IOU = 0.7
NEGATIVE_IOU = 0.3
CROWD_IOU = 0.001


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

    crowd = gt_class_ids < 0
    if crowd.any():
        crowd_iou = compute_overlaps(gt_boxes[crowd], anchors)  # [num_crowd, num_anchors]
        may_be_negative = crowd_iou.max(axis=0) < CROWD_IOU
        gt_boxes = gt_boxes[~crowd]
    else:
        may_be_negative = np.ones(num_anchors, dtype=bool)

    if gt_boxes.shape[0] == 0:
        rpn_match[may_be_negative] = NEGATIVE
        return AnchorMatch(rpn_match, np.zeros(num_anchors, dtype=np.int64), gt_boxes)

    overlaps = compute_overlaps(gt_boxes, anchors)  # [num_gt, num_anchors], row-major per GT box
    gt_index = overlaps.argmax(axis=0)  # [num_anchors]
    best_iou = overlaps.max(axis=0)  # [num_anchors]

    rpn_match[(best_iou < NEGATIVE_IOU) & may_be_negative] = NEGATIVE
    best_per_gt = overlaps.max(axis=1)  # [num_gt]
    is_best = (overlaps == best_per_gt[:, None]) & (best_per_gt[:, None] > 0)
    rpn_match[is_best.any(axis=0)] = POSITIVE
    rpn_match[best_iou >= POSITIVE_IOU] = POSITIVE
    return AnchorMatch(rpn_match, gt_index.astype(np.int64), gt_boxes)


def subsample_labels(
    rpn_match: np.ndarray, label: int, max_count: int, rng: np.random.Generator | None = None
) -> None:
    """Reset random anchors labelled ``label`` to NEUTRAL until at most ``max_count`` remain.

    Args:
        rpn_match: [num_anchors] int32 labels, changed in place.
        label: POSITIVE or NEGATIVE.
        max_count: how many anchors with that label may stay (>= 0).
        rng: the random generator; NumPy's global one (as Matterport) when None.
    """
    ids = np.flatnonzero(rpn_match == label)
    extra = ids.shape[0] - max(int(max_count), 0)
    if extra <= 0:
        return
    if rng is None:
        dropped = np.random.choice(ids, extra, replace=False)
    else:
        dropped = rng.choice(ids, extra, replace=False)
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
