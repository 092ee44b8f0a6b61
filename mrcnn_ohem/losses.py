"""OHEM losses in pure TensorFlow: the RPN objectness loss and a generic top-k cross-entropy.

Every loss here is a plain function of tensors: it works eagerly, under ``tf.function``, in a
TF1-style ``tf.compat.v1`` graph, inside a tf-keras ``Lambda`` and inside a Keras 3 layer.
Half-precision logits are upcast, so the math always runs in float32.

The math follows one recipe (see :mod:`mrcnn_ohem.core.selection`): compute the per-example
cross-entropy, rank it with the gradient stopped, keep an exact number of the hardest
candidates, and average the kept losses. Kept examples receive the plain cross-entropy
gradient scaled by ``1 / kept``; every other example receives exactly zero.
"""
from __future__ import annotations

import math
import numbers
from typing import Any

import tensorflow as tf

from mrcnn_ohem._compat import import_tf_keras
from mrcnn_ohem.core import selection
from mrcnn_ohem.core.boxes import NEGATIVE, POSITIVE
from mrcnn_ohem.core.checks import check_bool, check_int, check_number

keras = import_tf_keras()

__all__ = [
    "ohem_rpn_class_loss",
    "topk_cross_entropy",
    "TopKCrossEntropy",
]


# --- argument checks (raised before any tensor work) -------------------------------------------

def _float_logits(name: str, logits: Any) -> tf.Tensor:
    logits = tf.convert_to_tensor(logits)
    if not logits.dtype.is_floating:
        raise TypeError(f"{name} must be a floating-point tensor; received dtype {logits.dtype.name}")
    return tf.cast(logits, tf.float32) if logits.dtype != tf.float32 else logits


def _rpn_inputs(rpn_match: Any, rpn_class_logits: Any) -> tuple[tf.Tensor, tf.Tensor]:
    """Validate shapes and return (match [batch, anchors] int32, logits [batch, anchors, 2] f32)."""
    logits = _float_logits("rpn_class_logits", rpn_class_logits)
    match = tf.convert_to_tensor(rpn_match)
    if logits.shape.rank is not None and (logits.shape.rank != 3 or logits.shape[-1] not in (2, None)):
        raise ValueError(
            "rpn_class_logits must have shape [batch, anchors, 2]; "
            f"received shape {logits.shape.as_list()}"
        )
    if match.shape.rank == 3:
        if match.shape[-1] not in (1, None):
            raise ValueError(
                "rpn_match must have shape [batch, anchors, 1] or [batch, anchors]; "
                f"received shape {match.shape.as_list()}"
            )
        match = tf.squeeze(match, axis=-1)
    elif match.shape.rank is not None and match.shape.rank != 2:
        raise ValueError(
            "rpn_match must have shape [batch, anchors, 1] or [batch, anchors]; "
            f"received shape {match.shape.as_list()}"
        )
    if not (match.dtype.is_integer or match.dtype.is_floating):
        raise TypeError(f"rpn_match must hold integer labels 1/-1/0; received dtype {match.dtype.name}")
    if match.shape.rank is not None and logits.shape.rank is not None:
        for axis, axis_name in ((0, "batch"), (1, "anchors")):
            a, b = match.shape[axis], logits.shape[axis]
            if a is not None and b is not None and a != b:
                raise ValueError(
                    f"rpn_match and rpn_class_logits must agree on the {axis_name} axis; "
                    f"received {match.shape.as_list()} and {logits.shape.as_list()}"
                )
    return tf.cast(match, tf.int32), logits


# --- the RPN objectness loss -------------------------------------------------------------------

def ohem_rpn_class_loss(
    rpn_match: Any,
    rpn_class_logits: Any,
    *,
    top_k: int = 256,
    per_image: bool = True,
    positive_fraction: float | None = None,
) -> tf.Tensor:
    """RPN anchor classification loss over the hardest non-neutral anchors.

    Each non-neutral anchor gets the softmax cross-entropy of its logits against
    "is positive". Per image, the ``min(top_k, candidates)`` highest losses are kept, exactly
    that many (ties go to the lower anchor index); the loss is their sum divided by how many
    were kept over the whole batch. With ``top_k`` >= the number of candidates this is
    Matterport's ``rpn_class_loss_graph``.

    Args:
        rpn_match: [batch, anchors, 1] (or [batch, anchors]) int, 1 positive, -1 negative,
            0 neutral.
        rpn_class_logits: [batch, anchors, 2] float (BG, FG) logits; float16/bfloat16 are
            computed in float32.
        top_k: hardest anchors kept per image (>= 1), Matterport's
            ``RPN_TRAIN_ANCHORS_PER_IMAGE`` by default.
        per_image: when False, the batch is one pool: the ``top_k * batch`` hardest anchors of
            the whole batch are kept, so a cluttered image may take more than its share.
        positive_fraction: when set (in [0, 1]), at most ``floor(positive_fraction * top_k)``
            positives are kept (the hardest; pooled: ``floor(positive_fraction * top_k *
            batch)``) and the rest of the budget goes to the hardest negatives.

    Returns:
        Scalar float32 loss; exactly 0.0 with a zero gradient when nothing is kept.

    Raises:
        ValueError: an option is out of range, or a shape is wrong.
        TypeError: logits are not floating point, or labels not numeric.
    """
    top_k = check_int("top_k", top_k, 1)
    per_image = check_bool("per_image", per_image)
    if positive_fraction is not None:
        positive_fraction = check_number("positive_fraction", positive_fraction, 0.0, 1.0)
    match, logits = _rpn_inputs(rpn_match, rpn_class_logits)

    positives = tf.equal(match, POSITIVE)  # [batch, anchors]
    negatives = tf.equal(match, NEGATIVE)  # [batch, anchors]
    labels = tf.cast(positives, tf.int32)  # [batch, anchors]
    # Ranked without gradient; the kept anchors' losses are recomputed from their gathered logits
    # below (the same numbers), so the backward pass runs over the kept anchors only instead of
    # a cross-entropy gradient over every anchor.
    losses = tf.stop_gradient(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    )  # [batch, anchors]

    budget = tf.constant(top_k, tf.int32)
    if per_image:
        max_positives = None if positive_fraction is None else math.floor(positive_fraction * top_k)
    else:
        batch = tf.shape(losses)[0]
        losses, positives, negatives, labels = (
            tf.reshape(t, [1, -1]) for t in (losses, positives, negatives, labels)
        )
        logits = tf.reshape(logits, [1, -1, 2])  # one pool: [1, batch * anchors, 2]
        budget = budget * batch
        max_positives = None
        if positive_fraction is not None:
            max_positives = tf.cast(
                tf.floor(positive_fraction * tf.cast(budget, tf.float64)), tf.int32
            )

    if max_positives is None:
        indices, keep = selection.hardest(losses, positives | negatives, budget)
    else:
        indices, keep = selection.hardest_with_positive_cap(
            losses, positives, negatives, budget, max_positives
        )
    kept_losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.gather(labels, indices, batch_dims=1),
        logits=tf.gather(logits, indices, batch_dims=1),
    )  # [rows, width]
    return _masked_mean(kept_losses, keep)


def _masked_mean(values: tf.Tensor, keep: tf.Tensor) -> tf.Tensor:
    """Sum of ``values`` where ``keep``, over max(1, kept); 0.0 (connected) when none is kept."""
    kept = tf.where(keep, values, tf.zeros_like(values))
    count = tf.reduce_sum(tf.cast(keep, tf.float32))
    return tf.reduce_sum(kept) / tf.maximum(count, 1.0)


# --- a generic top-k cross-entropy -------------------------------------------------------------

def _per_example_cross_entropy(labels: Any, logits: Any, from_logits: bool) -> tf.Tensor:
    """Cross-entropy per example, flattened to [N] float32."""
    logits = _float_logits("logits", logits)
    if logits.shape.rank is not None and logits.shape.rank < 1:
        raise ValueError(f"logits must have shape [..., num_classes]; received shape {logits.shape}")
    if not from_logits:
        logits = tf.math.log(tf.clip_by_value(logits, 1e-7, 1.0))
    labels = tf.convert_to_tensor(labels)
    num_classes = tf.shape(logits)[-1]
    flat_logits = tf.reshape(logits, [-1, num_classes])  # [N, num_classes]
    if labels.dtype.is_integer:
        flat_labels = tf.reshape(tf.cast(labels, tf.int32), [-1])  # [N]
        return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=flat_labels, logits=flat_logits)
    if labels.dtype.is_floating:
        flat_labels = tf.reshape(tf.cast(labels, tf.float32), [-1, num_classes])  # [N, num_classes]
        return tf.nn.softmax_cross_entropy_with_logits(labels=flat_labels, logits=flat_logits)
    raise TypeError(
        "labels must be integer class ids [...] or float one-hot/probabilities [..., num_classes]; "
        f"received dtype {labels.dtype.name}"
    )


def _resolve_top_k(top_k: Any) -> tuple[str, float | int]:
    if isinstance(top_k, bool) or not isinstance(top_k, numbers.Real):
        raise ValueError(f"top_k must be a fraction in (0, 1] or a count >= 1; received {top_k!r}")
    if isinstance(top_k, numbers.Integral):
        return "count", check_int("top_k", top_k, 1)
    return "fraction", check_number("top_k", top_k, 0.0, 1.0, low_open=True)


def topk_cross_entropy(labels: Any, logits: Any, top_k: float | int, *, from_logits: bool = True) -> tf.Tensor:
    """Mean cross-entropy of the ``top_k`` hardest examples of a batch.

    The vectorised form of the "keep the hardest examples of each batch" idea for any
    classifier. Examples are ranked by their loss with the gradient stopped; ties go to the
    lower index; exactly ``k`` are kept.

    Args:
        labels: [...] int class ids, or [..., num_classes] float one-hot/probabilities.
        logits: [..., num_classes] float (probabilities when ``from_logits=False``).
        top_k: a fraction in (0, 1] (``k = ceil(top_k * N)``, at least 1) or an integer count
            (``k = min(top_k, N)``), where N is the number of examples.
        from_logits: whether ``logits`` are logits (default) or probabilities.

    Returns:
        Scalar float32; 0.0 with a zero gradient for an empty batch.

    Raises:
        ValueError: ``top_k`` is out of range or the shapes are wrong.
        TypeError: wrong dtypes.
    """
    kind, value = _resolve_top_k(top_k)
    losses = _per_example_cross_entropy(labels, logits, from_logits)[None, :]  # [1, N]
    num_examples = tf.shape(losses)[1]
    if kind == "count":
        k = tf.constant(value, tf.int32)
    else:
        # The (1 - 1e-12) factor keeps e.g. 0.3 * 10 = 3.0000000000000004 from rounding up to 4.
        scaled = value * tf.cast(num_examples, tf.float64) * (1.0 - 1e-12)
        k = tf.maximum(tf.cast(tf.math.ceil(scaled), tf.int32), 1)
    candidates = tf.ones_like(losses, dtype=tf.bool)
    indices, keep = selection.hardest(losses, candidates, k)
    return _masked_mean(tf.gather(losses, indices, batch_dims=1), keep)


class TopKCrossEntropy(keras.losses.Loss):
    """tf-keras loss: mean cross-entropy of the hardest ``top_k`` examples of each batch.

    ``model.compile(loss=TopKCrossEntropy(0.7))`` trains on the hardest 70% of each batch.
    The reduction is part of the selection, so ``sample_weight`` is not supported.

    Args:
        top_k: a fraction in (0, 1] or a count >= 1 (see :func:`topk_cross_entropy`).
        from_logits: whether predictions are logits (default) or probabilities.
        name: the loss name.
    """

    def __init__(self, top_k: float | int = 0.7, from_logits: bool = True, name: str = "topk_cross_entropy"):
        _resolve_top_k(top_k)
        super().__init__(name=name, reduction=keras.losses.Reduction.SUM)
        self.top_k = top_k
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        return topk_cross_entropy(y_true, y_pred, self.top_k, from_logits=self.from_logits)

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(
                "TopKCrossEntropy does not take sample_weight (the hardest examples are chosen "
                f"per batch); received sample_weight of type {type(sample_weight).__name__}"
            )
        return super().__call__(y_true, y_pred)

    def get_config(self) -> dict:
        return {"top_k": self.top_k, "from_logits": self.from_logits, "name": self.name}
