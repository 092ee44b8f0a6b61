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
