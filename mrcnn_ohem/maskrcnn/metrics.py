"""Matterport's AP metrics: prediction/GT matching by mask IoU, AP, AP over IoUs, recall.

Re-exported by :mod:`.utils` under Matterport's names (``utils.compute_ap`` etc.).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mrcnn_ohem.core.boxes import compute_overlaps

__all__ = ["trim_zeros", "compute_overlaps_masks", "compute_matches", "compute_ap",
           "compute_ap_range", "compute_recall"]


def trim_zeros(x: np.ndarray) -> np.ndarray:
    """Drop the all-zero rows (padding) of a 2-D array.

    Args:
        x: [rows, columns] any dtype.

    Returns:
        [kept_rows, columns] the rows with a non-zero value, in order.

    Raises:
        ValueError: ``x`` is not 2-D.
    """
    if np.ndim(x) != 2:
        raise ValueError(f"x: expected a 2-D array [rows, columns], received shape "
                         f"{np.shape(x)}")
    return x[~np.all(x == 0, axis=1)]


def compute_overlaps_masks(masks1: np.ndarray, masks2: np.ndarray) -> np.ndarray:
    """IoU of every mask pair.

    Args:
        masks1: [height, width, N1]; values > 0.5 count as inside.
        masks2: [height, width, N2].

    Returns:
        [N1, N2] float IoU; 0 where both masks are empty.
    """
    if masks1.shape[-1] == 0 or masks2.shape[-1] == 0:
        return np.zeros((masks1.shape[-1], masks2.shape[-1]))
    m1 = np.reshape(masks1 > .5, (-1, masks1.shape[-1])).astype(np.float32)
    m2 = np.reshape(masks2 > .5, (-1, masks2.shape[-1])).astype(np.float32)
    intersections = m1.T @ m2  # [N1, N2]
    union = m1.sum(axis=0)[:, None] + m2.sum(axis=0)[None, :] - intersections
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, intersections / union, 0.0)


def compute_matches(gt_boxes: np.ndarray, gt_class_ids: np.ndarray, gt_masks: np.ndarray,
                    pred_boxes: np.ndarray, pred_class_ids: np.ndarray,
                    pred_scores: np.ndarray, pred_masks: np.ndarray,
                    iou_threshold: float = 0.5, score_threshold: float = 0.0
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Match predictions to ground truth by mask IoU, best-scored prediction first.

    A prediction matches the highest-IoU unmatched GT instance of its class with IoU >=
    ``iou_threshold``. Unlike Matterport (which tests ``gt_match > 0``), a GT instance at
    index 0 cannot be matched twice. Zero-padded rows of the boxes are trimmed first.

    Args:
        gt_boxes: [num_gt, (y1, x1, y2, x2)], zero padded (padding rows are trimmed).
        gt_class_ids: [num_gt] int class ids.
        gt_masks: [height, width, num_gt] masks (values > 0.5 count as inside).
        pred_boxes: [num_pred, (y1, x1, y2, x2)], zero padded (padding rows are trimmed).
        pred_class_ids: [num_pred] int class ids.
        pred_scores: [num_pred] float confidence scores.
        pred_masks: [height, width, num_pred] masks (values > 0.5 count as inside).
        iou_threshold: the lowest mask IoU that counts as a match.
        score_threshold: GT instances whose mask IoU with the prediction is below it are not
            considered at all (Matterport's name: it filters IoUs, not scores).

    Returns:
        gt_match: [num_gt] float, index of the matching prediction (in score order) or -1.
        pred_match: [num_pred] float, index of the matched GT instance or -1, predictions
            sorted by decreasing score.
        overlaps: [num_pred, num_gt] mask IoU, predictions sorted by score.
    """
    gt_boxes = trim_zeros(gt_boxes)
    gt_masks = gt_masks[..., :gt_boxes.shape[0]]
    pred_boxes = trim_zeros(pred_boxes)
    pred_scores = pred_scores[:pred_boxes.shape[0]]
    order = np.argsort(pred_scores, kind="stable")[::-1]
    pred_class_ids = np.asarray(pred_class_ids)[order]
    pred_masks = pred_masks[..., order]
    overlaps = compute_overlaps_masks(pred_masks, gt_masks)

    pred_match = -1 * np.ones([order.shape[0]])
    gt_match = -1 * np.ones([gt_boxes.shape[0]])
    for i in range(order.shape[0]):
        candidates = np.argsort(overlaps[i], kind="stable")[::-1]
        candidates = candidates[overlaps[i, candidates] >= score_threshold]
        for j in candidates:
            if gt_match[j] > -1:
                continue
            if overlaps[i, j] < iou_threshold:
                break
            if pred_class_ids[i] == gt_class_ids[j]:
                gt_match[j] = i
                pred_match[i] = j
                break
    return gt_match, pred_match, overlaps


def compute_ap(gt_boxes: np.ndarray, gt_class_ids: np.ndarray, gt_masks: np.ndarray,
               pred_boxes: np.ndarray, pred_class_ids: np.ndarray, pred_scores: np.ndarray,
               pred_masks: np.ndarray, iou_threshold: float = 0.5
               ) -> tuple[float, np.ndarray, np.ndarray, np.ndarray]:
    """VOC-style average precision (all points, monotone precision envelope) of one image.

    Args:
        gt_boxes: [num_gt, (y1, x1, y2, x2)], zero padded (padding rows are trimmed).
        gt_class_ids: [num_gt] int class ids.
        gt_masks: [height, width, num_gt] masks (values > 0.5 count as inside).
        pred_boxes: [num_pred, (y1, x1, y2, x2)], zero padded (padding rows are trimmed).
        pred_class_ids: [num_pred] int class ids.
        pred_scores: [num_pred] float confidence scores.
        pred_masks: [height, width, num_pred] masks (values > 0.5 count as inside).
        iou_threshold: the lowest mask IoU that counts as a match.

    Returns:
        mAP: the area under the precision/recall curve.
        precisions: [num_pred + 2] the precision envelope, padded with 0 at both ends.
        recalls: [num_pred + 2] recall at each prediction, padded with 0 and 1.
        overlaps: [num_pred, num_gt] mask IoU.
    """
    gt_match, pred_match, overlaps = compute_matches(
        gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores,
        pred_masks, iou_threshold)
    hits = np.cumsum(pred_match > -1)
    precisions = hits / (np.arange(len(pred_match)) + 1)
    recalls = hits.astype(np.float32) / max(len(gt_match), 1)
    precisions = np.concatenate([[0], precisions, [0]])
    recalls = np.concatenate([[0], recalls, [1]])
    # Precision at recall r becomes the best precision at any recall >= r.
    precisions = np.maximum.accumulate(precisions[::-1])[::-1]
    steps = np.flatnonzero(recalls[:-1] != recalls[1:]) + 1
    m_ap = float(np.sum((recalls[steps] - recalls[steps - 1]) * precisions[steps]))
    return m_ap, precisions, recalls, overlaps


def compute_ap_range(gt_box: np.ndarray, gt_class_id: np.ndarray, gt_mask: np.ndarray,
                     pred_box: np.ndarray, pred_class_id: np.ndarray, pred_score: np.ndarray,
                     pred_mask: np.ndarray, iou_thresholds: Sequence[float] | None = None,
                     verbose: int = 1) -> float:
    """Mean of :func:`compute_ap` over IoU thresholds (default 0.5, 0.55, ..., 0.95).

    Args:
        gt_box: [num_gt, (y1, x1, y2, x2)], zero padded.
        gt_class_id: [num_gt] int class ids.
        gt_mask: [height, width, num_gt] masks.
        pred_box: [num_pred, (y1, x1, y2, x2)], zero padded.
        pred_class_id: [num_pred] int class ids.
        pred_score: [num_pred] float confidence scores.
        pred_mask: [height, width, num_pred] masks.
        iou_thresholds: the IoU thresholds; None for 0.5, 0.55, ..., 0.95.
        verbose: print the AP at each threshold and the mean when non-zero.

    Returns:
        The mean AP over the thresholds.
    """
    if iou_thresholds is None:
        iou_thresholds = np.arange(0.5, 1.0, 0.05)
    aps = []
    for threshold in iou_thresholds:
        ap = compute_ap(gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score,
                        pred_mask, iou_threshold=threshold)[0]
        if verbose:
            print(f"AP @{threshold:.2f}:\t {ap:.3f}")
        aps.append(ap)
    mean_ap = float(np.mean(aps))
    if verbose:
        print(f"AP @{iou_thresholds[0]:.2f}-{iou_thresholds[-1]:.2f}:\t {mean_ap:.3f}")
    return mean_ap


def compute_recall(pred_boxes: np.ndarray, gt_boxes: np.ndarray,
                   iou: float) -> tuple[float, np.ndarray]:
    """Fraction of GT boxes that some prediction overlaps with IoU >= ``iou``.

    Args:
        pred_boxes: [num_pred, (y1, x1, y2, x2)].
        gt_boxes: [num_gt, (y1, x1, y2, x2)].
        iou: the lowest box IoU that counts; a GT box counts when it is the best match of a
            prediction at that IoU.

    Returns:
        recall: matched GT boxes / all GT boxes.
        positive_ids: [M] indices of the predictions with IoU >= ``iou`` to some GT box.
    """
    overlaps = compute_overlaps(pred_boxes, gt_boxes)  # [num_pred, num_gt]
    if overlaps.size == 0:
        return 0.0, np.zeros([0], dtype=np.int64)
    iou_max = overlaps.max(axis=1)
    iou_argmax = overlaps.argmax(axis=1)
    positive_ids = np.flatnonzero(iou_max >= iou)
    recall = len(set(iou_argmax[positive_ids].tolist())) / gt_boxes.shape[0]
    return recall, positive_ids
