"""Which examples to keep: exact, gradient-free top-k selection in pure TensorFlow.

A selection step ranks candidates by a score (the per-example loss, with its gradient stopped)
and returns the indices of the kept ones per row. It never sees a Config and never computes a
loss, so the losses can compose it freely (see :mod:`mrcnn_ohem.losses`).

Conventions shared by every function here:
- ``scores`` [rows, n] float32, ``candidates`` [rows, n] bool. Non-candidates are masked to
  ``-inf`` before ``tf.math.top_k``, so they sort after every candidate.
- The kept count is exact: ``min(budget, candidates in the row)``; ties go to the lower index,
  which is the order ``tf.math.top_k`` documents for equal values.
- Results are ``(indices, keep)``: ``indices`` [rows, width] int32 into ``n`` and ``keep``
  [rows, width] bool saying which of those slots are really kept. Callers gather their
  differentiable losses with ``indices`` and mask them with ``keep``.

Two refinements compose with those results: :func:`first_survivors` de-duplicates candidates
by greedy NMS before the ranking (the OHEM paper's and TF Object Detection API's
``HardExampleMiner`` idea, applied to anchors), and :func:`limit_negatives` caps the kept
negatives afterwards (``max_negatives_per_positive`` in the same miner).
"""
from __future__ import annotations

import tensorflow as tf


def _ranked(scores: tf.Tensor, candidates: tf.Tensor, width: tf.Tensor):
    """Top-``width`` candidates per row, best first.

    Returns:
        indices: [rows, width] int32, the positions of the best-scoring candidates.
        is_candidate: [rows, width] bool, False where a row had fewer candidates than width.
    """
    scores = tf.stop_gradient(scores)
    masked = tf.where(candidates, scores, tf.fill(tf.shape(scores), float("-inf")))
    width = tf.minimum(tf.cast(width, tf.int32), tf.shape(scores)[1])
    _, indices = tf.math.top_k(masked, k=width, sorted=True)
    is_candidate = tf.gather(candidates, indices, batch_dims=1)
    return indices, is_candidate


def hardest(scores: tf.Tensor, candidates: tf.Tensor, budget) -> tuple[tf.Tensor, tf.Tensor]:
    """The ``budget`` highest-scoring candidates of every row.

    Args:
        scores: [rows, n] float32 ranking scores (higher is harder).
        candidates: [rows, n] bool, which entries may be kept.
        budget: int or int32 scalar tensor >= 0, how many to keep per row at most.

    Returns:
        indices: [rows, min(budget, n)] int32.
        keep: [rows, min(budget, n)] bool; per row exactly ``min(budget, candidates)`` True.
    """
    return _ranked(scores, candidates, budget)


def hardest_with_positive_cap(
    scores: tf.Tensor,
    positives: tf.Tensor,
    negatives: tf.Tensor,
    budget,
    max_positives,
) -> tuple[tf.Tensor, tf.Tensor]:
    """At most ``max_positives`` hardest positives, then the hardest negatives up to ``budget``.

    Per row: ``p = min(max_positives, positives in the row)`` positives are kept, then
    ``min(budget - p, negatives in the row)`` negatives. Positives and negatives must not
    overlap.

    Args:
        scores: [rows, n] float32 ranking scores.
        positives: [rows, n] bool.
        negatives: [rows, n] bool.
        budget: int or int32 scalar tensor >= 0, total kept per row at most.
        max_positives: int or int32 scalar tensor in [0, budget].

    Returns:
        indices: [rows, width] int32, the kept positives' slots followed by the negatives'.
        keep: [rows, width] bool.
    """
    pos_indices, pos_keep = _ranked(scores, positives, max_positives)
    kept_positives = tf.reduce_sum(tf.cast(pos_keep, tf.int32), axis=1, keepdims=True)  # [rows, 1]
    neg_indices, neg_is_candidate = _ranked(scores, negatives, budget)
    slot = tf.range(tf.shape(neg_indices)[1], dtype=tf.int32)[None, :]  # [1, width]
    neg_keep = neg_is_candidate & (slot < tf.cast(budget, tf.int32) - kept_positives)
    return (
        tf.concat([pos_indices, neg_indices], axis=1),
        tf.concat([pos_keep, neg_keep], axis=1),
    )


# --- de-duplication and the negative ratio -------------------------------------------------------

def _first_survivors_of_row(scores, candidates, boxes, iou_threshold, count, prefilter):
    """:func:`first_survivors` for one row: scores [n], candidates [n] -> kept [n] bool."""
    n = tf.shape(scores)[0]

    def run(width):
        indices, is_candidate = _ranked(scores[None, :], candidates[None, :], width)
        indices, is_candidate = indices[0], is_candidate[0]  # [width]
        slots = tf.shape(indices)[0]
        # Strictly decreasing stand-in scores fix the visiting order to the ranked order
        # (exact in float32 up to 2**24 slots); non-candidates fall under score_threshold.
        order = tf.cast(slots - tf.range(slots), tf.float32)
        order = tf.where(is_candidate, order, -tf.ones_like(order))
        picked = tf.image.non_max_suppression(
            tf.gather(boxes, indices), order, max_output_size=count,
            iou_threshold=iou_threshold, score_threshold=0.0)
        return tf.gather(indices, picked)  # [survivors] positions into n

    chosen = run(prefilter)
    total = tf.reduce_sum(tf.cast(candidates, tf.int32))
    # Greedy NMS is prefix-consistent: the survivors among the best `prefilter` candidates are
    # the first survivors of the whole row. Only a short count needs the whole row.
    chosen = tf.cond((tf.size(chosen) < count) & (total > prefilter),
                     lambda: run(n), lambda: chosen)
    return tf.scatter_nd(chosen[:, None], tf.ones_like(chosen, dtype=tf.bool), [n])


def first_survivors(scores: tf.Tensor, candidates: tf.Tensor, boxes: tf.Tensor, iou_threshold,
                    count, *, prefilter=None) -> tf.Tensor:
    """The first ``count`` survivors of greedy NMS over each row's candidates.

    Candidates are visited in descending score order (ties: lower index first); one is dropped
    when its IoU with an already kept candidate is > ``iou_threshold``. Selection on the result
    equals selection on all survivors as long as it keeps at most ``count`` per row. For speed
    only the best ``prefilter`` candidates are suppressed first; a row where fewer than
    ``count`` of them survive is redone over all its candidates, so the result is exact.

    Args:
        scores: [rows, n] float32 ranking scores (higher is harder); no gradient flows.
        candidates: [rows, n] bool.
        boxes: [n, (y1, x1, y2, x2)] float shared by every row (anchors), or [rows, n, 4] a
            set per row (RoIs); any units.
        iou_threshold: float or float32 scalar in (0, 1].
        count: int or int32 scalar tensor >= 0, survivors wanted per row.
        prefilter: int or int32 scalar, candidates suppressed in the first pass (default
            ``max(8 * count, 2048)``).

    Returns:
        [rows, n] bool: per row the first ``min(count, survivors)`` survivors.
    """
    scores = tf.stop_gradient(tf.convert_to_tensor(scores, tf.float32))
    candidates = tf.convert_to_tensor(candidates, tf.bool)
    boxes = tf.cast(tf.convert_to_tensor(boxes), tf.float32)
    count = tf.cast(count, tf.int32)
    prefilter = tf.maximum(8 * count, 2048) if prefilter is None else tf.cast(prefilter, tf.int32)
    iou_threshold = tf.cast(iou_threshold, tf.float32)
    if boxes.shape.rank == 3:
        return tf.map_fn(
            lambda row: _first_survivors_of_row(row[0], row[1], row[2], iou_threshold, count, prefilter),
            (scores, candidates, boxes), fn_output_signature=tf.TensorSpec([None], tf.bool))
    return tf.map_fn(
        lambda row: _first_survivors_of_row(row[0], row[1], boxes, iou_threshold, count, prefilter),
        (scores, candidates), fn_output_signature=tf.TensorSpec([None], tf.bool))


def limit_negatives(keep: tf.Tensor, is_negative: tf.Tensor, limit) -> tf.Tensor:
    """Keep only the first ``limit`` kept negatives of each row (the hardest).

    Args:
        keep: [rows, width] bool, from :func:`hardest` or :func:`hardest_with_positive_cap`,
            whose negative slots are ordered hardest first (ties: lower index first).
        is_negative: [rows, width] bool, which slots hold negatives.
        limit: int32 [rows] or scalar, negatives allowed per row.

    Returns:
        [rows, width] bool: ``keep`` without the negatives past the limit.
    """
    kept_negative = keep & is_negative
    rank = tf.cumsum(tf.cast(kept_negative, tf.int32), axis=1, exclusive=True)  # [rows, width]
    limit = tf.reshape(tf.cast(limit, tf.int32), [-1, 1])  # [rows or 1, 1]
    return keep & (~is_negative | (rank < limit))
