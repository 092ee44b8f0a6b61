"""Independent NumPy references for the OHEM losses (float64, plain loops; no TensorFlow)."""
from __future__ import annotations

import math

import numpy as np


def softmax_cross_entropy(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-row cross-entropy of ``logits`` [N, C] against int ``labels`` [N], in float64."""
    z = np.asarray(logits, dtype=np.float64)
    top = z.max(axis=1, keepdims=True)
    log_sum_exp = top[:, 0] + np.log(np.exp(z - top).sum(axis=1))
    return log_sum_exp - z[np.arange(z.shape[0]), np.asarray(labels, dtype=np.int64)]


def _hardest_first(indices: np.ndarray, losses: np.ndarray) -> list[int]:
    """``indices`` ordered by loss, highest first, ties by lower index."""
    return sorted(indices.tolist(), key=lambda i: (-losses[i], i))


def ohem_rpn_kept(match, logits, top_k, per_image=True, positive_fraction=None):
    """The (image, anchor) pairs the OHEM RPN loss keeps, and the per-anchor losses.

    Returns:
        kept: list of (image, anchor) tuples.
        losses: [batch, anchors] float64 cross-entropy.
    """
    match = np.asarray(match).reshape(np.asarray(logits).shape[:2])
    batch, anchors = match.shape
    labels = (match == 1).astype(np.int64)
    losses = softmax_cross_entropy(np.asarray(logits).reshape(-1, 2), labels.reshape(-1))
    losses = losses.reshape(batch, anchors)

    if per_image:
        pools = [[(b, a) for a in range(anchors)] for b in range(batch)]
        budget = top_k
        cap = None if positive_fraction is None else math.floor(positive_fraction * top_k)
    else:
        pools = [[(b, a) for b in range(batch) for a in range(anchors)]]
        budget = top_k * batch
        cap = None if positive_fraction is None else math.floor(positive_fraction * top_k * batch)

    kept = []
    for pool in pools:
        flat_losses = np.array([losses[b, a] for b, a in pool])
        flat_match = np.array([match[b, a] for b, a in pool])
        candidates = np.flatnonzero(flat_match != 0)
        if cap is None:
            chosen = _hardest_first(candidates, flat_losses)[:budget]
        else:
            pos = _hardest_first(np.flatnonzero(flat_match == 1), flat_losses)[:cap]
            neg = _hardest_first(np.flatnonzero(flat_match == -1), flat_losses)[: budget - len(pos)]
            chosen = pos + neg
        kept.extend(pool[i] for i in chosen)
    return kept, losses


def ohem_rpn_loss(match, logits, top_k, per_image=True, positive_fraction=None) -> float:
    """The OHEM RPN loss: mean of the kept anchors' cross-entropy, 0.0 when none is kept."""
    kept, losses = ohem_rpn_kept(match, logits, top_k, per_image, positive_fraction)
    if not kept:
        return 0.0
    return float(sum(losses[b, a] for b, a in kept) / len(kept))


def matterport_rpn_loss(match, logits) -> float:
    """Matterport's plain ``rpn_class_loss_graph``: mean cross-entropy of non-neutral anchors."""
    match = np.asarray(match).reshape(-1)
    logits = np.asarray(logits).reshape(-1, 2)
    candidates = match != 0
    if not candidates.any():
        return 0.0
    return float(softmax_cross_entropy(logits[candidates], (match[candidates] == 1)).mean())


def topk_ce(labels, logits, top_k) -> float:
    """Mean of the k largest cross-entropies; k = ceil(f * N) for a fraction, min(count, N)."""
    logits = np.asarray(logits, dtype=np.float64)
    logits = logits.reshape(-1, logits.shape[-1])
    losses = softmax_cross_entropy(logits, np.asarray(labels).reshape(-1))
    n = losses.shape[0]
    if n == 0:
        return 0.0
    if isinstance(top_k, int):
        k = min(top_k, n)
    else:
        k = max(1, math.ceil(round(top_k * n, 9)))
    return float(np.sort(losses)[::-1][:k].mean())


def matterport_overlaps(boxes1, boxes2) -> np.ndarray:
    """[N1, N2] IoU in float64, one column per box of ``boxes2``, with Matterport's formula:
    intersection = max(x2 - x1, 0) * max(y2 - y1, 0) of the clipped corners, union =
    (area2 + area1) - intersection, IoU = intersection / union."""
    b1 = np.asarray(boxes1, dtype=np.float64).reshape(-1, 4)
    b2 = np.asarray(boxes2, dtype=np.float64).reshape(-1, 4)
    area1 = (b1[:, 2] - b1[:, 0]) * (b1[:, 3] - b1[:, 1])
    out = np.zeros((b1.shape[0], b2.shape[0]))
    for j, box in enumerate(b2):
        y1 = np.maximum(box[0], b1[:, 0])
        y2 = np.minimum(box[2], b1[:, 2])
        x1 = np.maximum(box[1], b1[:, 1])
        x2 = np.minimum(box[3], b1[:, 3])
        intersection = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
        union = (box[2] - box[0]) * (box[3] - box[1]) + area1 - intersection
        out[:, j] = intersection / union
    return out


def matterport_anchor_labels(anchors, gt_class_ids, gt_boxes):
    """Matterport's RPN labelling rules in float64, with this package's one deviation (a GT
    box no anchor overlaps makes no anchor positive).

    Returns:
        labels: [num_anchors] int32 1 / -1 / 0; best_gt: [num_anchors] index of each anchor's
        first best non-crowd GT box (0 when there is none).
    """
    anchors = np.asarray(anchors, dtype=np.float64)
    gt_class_ids = np.asarray(gt_class_ids).reshape(-1)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)
    labels = np.zeros(anchors.shape[0], np.int32)
    crowd = gt_class_ids < 0
    if crowd.any():
        no_crowd = matterport_overlaps(anchors, gt_boxes[crowd]).max(axis=1) < 0.001
    else:
        no_crowd = np.ones(anchors.shape[0], bool)
    gt_boxes = gt_boxes[~crowd]
    if gt_boxes.shape[0] == 0:
        labels[no_crowd] = -1
        return labels, np.zeros(anchors.shape[0], np.int64)
    overlaps = matterport_overlaps(anchors, gt_boxes)  # [num_anchors, num_gt]
    best_gt = np.argmax(overlaps, axis=1)
    best_iou = overlaps[np.arange(anchors.shape[0]), best_gt]
    labels[(best_iou < 0.3) & no_crowd] = -1
    column_best = overlaps.max(axis=0)
    for j in range(gt_boxes.shape[0]):
        if column_best[j] > 0:  # the deviation: a box nobody overlaps marks nothing
            labels[overlaps[:, j] == column_best[j]] = 1
    labels[best_iou >= 0.7] = 1
    return labels, best_gt
