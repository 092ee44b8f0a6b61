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


def focal_rpn_loss(match, logits, alpha=0.25, gamma=2.0) -> float:
    """Focal RPN loss: sum of -alpha_t (1 - p_t)^gamma log p_t over non-neutral anchors / max(1, P)."""
    match = np.asarray(match).reshape(-1)
    logits = np.asarray(logits, dtype=np.float64).reshape(-1, 2)
    total = 0.0
    for label, (bg, fg) in zip(match, logits):
        if label == 0:
            continue
        top = max(bg, fg)
        log_norm = top + math.log(math.exp(bg - top) + math.exp(fg - top))
        log_p = (fg if label == 1 else bg) - log_norm
        weight = alpha if label == 1 else 1.0 - alpha
        total += -weight * (1.0 - math.exp(log_p)) ** gamma * log_p
    return total / max(1, int((match == 1).sum()))


def ohem_mrcnn_class_loss_first_row(target_class_ids, logits, active_class_ids, top_k) -> float:
    """RoI-head OHEM class loss with upstream's row lookup (not the package's): per image the top_k
    largest CE x pred_active (first image's active row), ties to the lower index; sum kept /
    max(1, sum kept pred_active)."""
    logits = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(target_class_ids)
    active = np.asarray(active_class_ids, dtype=np.float64)[0]
    total, weight = 0.0, 0.0
    for image in range(logits.shape[0]):
        pred_active = active[np.argmax(logits[image], axis=1)]
        losses = softmax_cross_entropy(logits[image], targets[image]) * pred_active
        for i in _hardest_first(np.arange(len(losses)), losses)[:top_k]:
            total += losses[i]
            weight += pred_active[i]
    return total / max(1.0, weight)


def matterport_mrcnn_class_loss(target_class_ids, logits, active_class_ids) -> float:
    """Matterport's mrcnn_class_loss_graph (first image's active row); NaN without active RoIs."""
    logits = np.asarray(logits, dtype=np.float64)
    pred_active = np.asarray(active_class_ids, dtype=np.float64)[0][np.argmax(logits, axis=2)]
    losses = softmax_cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                   np.asarray(target_class_ids).reshape(-1)) * pred_active.reshape(-1)
    return float(losses.sum() / pred_active.sum())


def matterport_mask_loss(target_masks, target_class_ids, pred_masks, epsilon=1e-7) -> float:
    """Matterport's mrcnn_mask_loss_graph: mean binary cross-entropy over the pixels of every
    positive RoI's own class mask, predictions clipped to [epsilon, 1 - epsilon]; 0 without
    positives. target_masks [batch, rois, h, w], target_class_ids [batch, rois],
    pred_masks [batch, rois, h, w, classes]."""
    class_ids = np.asarray(target_class_ids)
    b, r = np.nonzero(class_ids > 0)
    if len(b) == 0:
        return 0.0
    p = np.clip(np.asarray(pred_masks, np.float64)[b, r, :, :, class_ids[b, r]], epsilon, 1 - epsilon)
    t = np.asarray(target_masks, np.float64)[b, r]  # [positives, h, w]
    return float(np.mean(-(t * np.log(p) + (1 - t) * np.log(1 - p))))


# --- NMS de-duplication, the negative ratio and the selection statistics (issue 11) -------------

def box_iou(a, b) -> float:
    """IoU of two (y1, x1, y2, x2) boxes in float64; 0.0 when the union is empty."""
    a = [float(v) for v in a]
    b = [float(v) for v in b]
    height = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    width = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = height * width
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def greedy_nms(order, boxes, threshold) -> list[int]:
    """Visit ``order``; keep one unless its IoU with an already kept one is > ``threshold``."""
    kept = []
    for i in order:
        if all(box_iou(boxes[i], boxes[j]) <= threshold for j in kept):
            kept.append(i)
    return kept


def ohem_rpn_selection(match, logits, top_k, per_image=True, positive_fraction=None, anchors=None,
                       nms_threshold=None, ratio=None, min_negatives=0):
    """What the OHEM RPN loss keeps with every option, written plainly.

    Returns:
        kept: list of (image, anchor); losses: [batch, anchors] float64; stats: dict of
        ``kept_positives``, ``kept_negatives`` (int [batch]) and ``threshold`` (float [batch]).
    """
    match = np.asarray(match).reshape(np.asarray(logits).shape[:2])
    batch, num_anchors = match.shape
    labels = (match == 1).astype(np.int64)
    losses = softmax_cross_entropy(np.asarray(logits).reshape(-1, 2), labels.reshape(-1))
    losses = losses.reshape(batch, num_anchors)

    # 1. Per image and label, greedy NMS over all candidates in descending loss order.
    label = match.copy()
    if nms_threshold is not None:
        label = np.zeros_like(match)
        for b in range(batch):
            for value in (1, -1):
                order = _hardest_first(np.flatnonzero(match[b] == value), losses[b])
                for a in greedy_nms(order, anchors, nms_threshold):
                    label[b, a] = value

    # 2. Top-k (with the positive cap) on the survivors.
    if per_image:
        pools = [[(b, a) for a in range(num_anchors)] for b in range(batch)]
        budget, floor_negatives = top_k, min_negatives
        cap = None if positive_fraction is None else math.floor(positive_fraction * top_k)
    else:
        pools = [[(b, a) for b in range(batch) for a in range(num_anchors)]]
        budget, floor_negatives = top_k * batch, min_negatives * batch
        cap = None if positive_fraction is None else math.floor(positive_fraction * top_k * batch)
    kept = []
    for pool in pools:
        pool_losses = np.array([losses[b, a] for b, a in pool])
        pool_label = np.array([label[b, a] for b, a in pool])
        if cap is None:
            chosen = _hardest_first(np.flatnonzero(pool_label != 0), pool_losses)[:budget]
        else:
            pos = _hardest_first(np.flatnonzero(pool_label == 1), pool_losses)[:cap]
            neg = _hardest_first(np.flatnonzero(pool_label == -1), pool_losses)[: budget - len(pos)]
            chosen = pos + neg
        # 3. The ratio: only the hardest max(floor, floor(ratio * positives)) negatives stay.
        if ratio is not None:
            positives = [i for i in chosen if pool_label[i] == 1]
            negatives = _hardest_first(np.array([i for i in chosen if pool_label[i] == -1], dtype=int),
                                       pool_losses)
            allowed = max(floor_negatives, math.floor(ratio * len(positives)))
            chosen = positives + negatives[:allowed]
        kept.extend(pool[i] for i in chosen)

    stats = {"kept_positives": np.zeros(batch, int), "kept_negatives": np.zeros(batch, int),
             "threshold": np.zeros(batch)}
    for b in range(batch):
        mine = [a for image, a in kept if image == b]
        stats["kept_positives"][b] = sum(match[b, a] == 1 for a in mine)
        stats["kept_negatives"][b] = sum(match[b, a] == -1 for a in mine)
        stats["threshold"][b] = min(losses[b, a] for a in mine) if mine else 0.0
    return kept, losses, stats


def ohem_rpn_selection_loss(*args, **kwargs) -> float:
    """The loss of :func:`ohem_rpn_selection`: mean kept cross-entropy, 0.0 when none is kept."""
    kept, losses, _ = ohem_rpn_selection(*args, **kwargs)
    return float(sum(losses[b, a] for b, a in kept) / len(kept)) if kept else 0.0


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


# --- RoI OHEM: padding rows, each image's active classes; top-k under replicas (issue 27) ------

def ohem_mrcnn_class_loss(target_class_ids, logits, active_class_ids, top_k) -> float:
    """RoI-head OHEM class loss as the bundled model sees it.

    Per image: rows with a negative target id are padding and never candidates; every other
    row's loss is its cross-entropy times ``pred_active``, looked up in that image's own row of
    ``active_class_ids``; the ``top_k`` largest are kept (ties to the lower index). Result: sum
    of the kept losses / max(1, sum of the kept ``pred_active``)."""
    logits = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(target_class_ids)
    active = np.asarray(active_class_ids, dtype=np.float64)
    total, weight = 0.0, 0.0
    for image in range(logits.shape[0]):
        real = np.flatnonzero(targets[image] >= 0)
        pred_active = active[image][np.argmax(logits[image][real], axis=1)]
        losses = softmax_cross_entropy(logits[image][real], targets[image][real]) * pred_active
        for i in _hardest_first(np.arange(len(real)), losses)[:top_k]:
            total += losses[i]
            weight += pred_active[i]
    return total / max(1.0, weight)


def plain_mrcnn_class_loss_per_image(target_class_ids, logits, active_class_ids) -> float:
    """The bundled model's plain ``mrcnn_class_loss_graph``: cross-entropy times ``pred_active``
    from each image's own active row, summed over the batch / sum of ``pred_active``; 0.0 when
    nothing is active. Every row counts (the plain loss knows no padding)."""
    logits = np.asarray(logits, dtype=np.float64)
    active = np.asarray(active_class_ids, dtype=np.float64)
    pred_active = np.stack([active[i][np.argmax(logits[i], axis=1)] for i in range(logits.shape[0])])
    losses = softmax_cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                   np.asarray(target_class_ids).reshape(-1)) * pred_active.reshape(-1)
    return float(losses.sum() / pred_active.sum()) if pred_active.sum() > 0 else 0.0


def topk_ce_dense_sgd_step(x, labels, kernel, bias, top_k, learning_rate):
    """One plain SGD step of a Dense layer (logits = x @ kernel + bias) on the mean softmax
    cross-entropy of the ``top_k`` (a fraction, k = ceil(f * N)) hardest examples of the batch.

    The gradient of the mean over the kept set K is sum over K of x_i (p_i - onehot_i)^T / |K|
    for the kernel and sum over K of (p_i - onehot_i) / |K| for the bias; every other example
    contributes nothing. Returns the updated (kernel, bias) in float64."""
    x = np.asarray(x, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    bias = np.asarray(bias, dtype=np.float64)
    labels = np.asarray(labels, dtype=np.int64)
    logits = x @ kernel + bias
    losses = softmax_cross_entropy(logits, labels)
    k = max(1, math.ceil(round(top_k * len(labels), 9)))
    kept = _hardest_first(np.arange(len(labels)), losses)[:k]
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    residual = shifted / shifted.sum(axis=1, keepdims=True)
    residual[np.arange(len(labels)), labels] -= 1.0  # p - onehot, [N, classes]
    grad_kernel = x[kept].T @ residual[kept] / len(kept)
    grad_bias = residual[kept].sum(axis=0) / len(kept)
    return kernel - learning_rate * grad_kernel, bias - learning_rate * grad_bias


def select_hard_rois(target_class_ids, target_bbox, rois, logits, pred_bbox, active_class_ids, top_k,
                     rank_by_box=True, nms_threshold=None):
    """The OHEM paper's RoI selection, one image at a time, in float64.

    Score of a real RoI (target id >= 0): cross-entropy times ``pred_active`` (its image's own
    active row), plus, with ``rank_by_box`` and a positive id, the Smooth-L1 of its own class's
    deltas summed over the 4 coordinates. Visited hardest first (ties: lower index); with
    ``nms_threshold`` one is dropped when its IoU with a kept one is > the threshold; the first
    ``top_k`` are kept. Returns the ids with every real row not kept set to -1, and the kept
    positives and negatives per image."""
    targets = np.asarray(target_class_ids)
    logits = np.asarray(logits, dtype=np.float64)
    target_bbox = np.asarray(target_bbox, dtype=np.float64)
    pred_bbox = np.asarray(pred_bbox, dtype=np.float64)
    active = np.asarray(active_class_ids, dtype=np.float64)
    out = np.full_like(targets, -1)
    positives, negatives = [], []
    for image in range(targets.shape[0]):
        real = np.flatnonzero(targets[image] >= 0)
        pred_active = active[image][np.argmax(logits[image][real], axis=1)]
        scores = np.zeros(targets.shape[1])
        scores[real] = softmax_cross_entropy(logits[image][real], targets[image][real]) * pred_active
        if rank_by_box:
            for i in real:
                if targets[image, i] > 0:
                    diff = np.abs(target_bbox[image, i] - pred_bbox[image, i, targets[image, i]])
                    scores[i] += np.where(diff < 1.0, 0.5 * diff ** 2, diff - 0.5).sum()
        order = _hardest_first(real, scores)
        if nms_threshold is not None:
            order = greedy_nms(order, np.asarray(rois[image], dtype=np.float64), nms_threshold)
        kept = order[:top_k]
        out[image, kept] = targets[image, kept]
        positives.append(int(np.sum(targets[image, kept] > 0)))
        negatives.append(int(np.sum(targets[image, kept] == 0)))
    return out, positives, negatives


def matterport_bbox_loss(target_bbox, target_class_ids, pred_bbox) -> float:
    """Matterport's box-head loss: Smooth-L1 of each positive RoI's own class deltas, the mean
    over the positives' 4 coordinates; 0.0 without positives."""
    ids = np.asarray(target_class_ids).reshape(-1)
    target = np.asarray(target_bbox, dtype=np.float64).reshape(-1, 4)
    pred = np.asarray(pred_bbox, dtype=np.float64)
    pred = pred.reshape(-1, pred.shape[-2], 4)
    positive = np.flatnonzero(ids > 0)
    if not len(positive):
        return 0.0
    diff = np.abs(target[positive] - pred[positive, ids[positive]])
    return float(np.where(diff < 1.0, 0.5 * diff ** 2, diff - 0.5).mean())
