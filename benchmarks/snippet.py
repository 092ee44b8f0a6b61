"""The OHEM RPN loss snippet that circulates for Matterport Mask R-CNN, reproduced to compare.

Do not train with it. It is here so the quality benchmark (its ``snippet`` variant), the demo's
``samples/snippet_defects.py`` and the notebooks can show what it does; it is not installed.
Written from its published description: gather the non-neutral anchors of the
whole batch, take their cross-entropy, find the k-th largest with ``tf.nn.top_k`` where k is
``RPN_TRAIN_ANCHORS_PER_IMAGE``, and average every loss >= that value. Its defects:

1. ``top_k`` raises ``InvalidArgumentError`` when the batch has fewer than k candidates
   (including none);
2. ties at the threshold keep more than k anchors;
3. k is a per-image budget applied to the pooled batch;
4. behind Matterport's ``build_rpn_targets`` only ~k random anchors per image are candidates,
   so with one image per batch it keeps them all and changes nothing.
"""
from __future__ import annotations

import tensorflow as tf

__all__ = ["circulated_rpn_class_loss"]


def circulated_rpn_class_loss(rpn_match, rpn_class_logits, k: int = 256) -> tf.Tensor:
    """The circulated snippet's loss, defects included.

    Args:
        rpn_match: [batch, anchors, 1] int, 1 / -1 / 0.
        rpn_class_logits: [batch, anchors, 2] float.
        k: the snippet's ``RPN_TRAIN_ANCHORS_PER_IMAGE``.

    Returns:
        Scalar float32 loss.
    """
    rpn_match = tf.squeeze(rpn_match, -1)
    labels = tf.cast(tf.equal(rpn_match, 1), tf.int32)
    where = tf.where(tf.not_equal(rpn_match, 0))
    logits = tf.cast(tf.gather_nd(rpn_class_logits, where), tf.float32)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.gather_nd(labels, where), logits=logits
    )
    values, _ = tf.nn.top_k(losses, k=k)
    kept = tf.boolean_mask(losses, losses >= values[-1])
    return tf.cond(tf.size(kept) > 0, lambda: tf.reduce_mean(kept), lambda: tf.constant(0.0))
