"""OHEM losses in pure TensorFlow: the RPN objectness loss (OHEM or focal) and a generic top-k
cross-entropy.

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
    "focal_rpn_class_loss",
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
    anchors: Any = None,
    nms_threshold: float | None = None,
    max_negatives_per_positive: float | None = None,
    min_negatives: int = 0,
    return_stats: bool = False,
) -> tf.Tensor | tuple[tf.Tensor, dict[str, tf.Tensor]]:
    """RPN anchor classification loss over the hardest non-neutral anchors.

    Each non-neutral anchor gets the softmax cross-entropy of its logits against
    "is positive". Per image, the ``min(top_k, candidates)`` highest losses are kept, exactly
    that many (ties go to the lower anchor index); the loss is their sum divided by how many
    were kept over the whole batch. With ``top_k`` >= the number of candidates this is
    Matterport's ``rpn_class_loss_graph``. The steps, in order: de-duplicate (``nms_threshold``),
    select (``top_k``, ``per_image``, ``positive_fraction``), cap negatives
    (``max_negatives_per_positive``, ``min_negatives``), average. With the last four options
    at their defaults the result is bit for bit the plain top-k loss.

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
        anchors: [anchors, (y1, x1, y2, x2)] boxes shared by the batch, any units; only read
            with ``nms_threshold``.
        nms_threshold: None, or in (0, 1]: per image and per label, candidates are visited in
            descending loss order (ties: lower index first) and one is dropped when its IoU
            with an already kept candidate of the same label is > ``nms_threshold``; the
            selection then runs on the survivors.
        max_negatives_per_positive: None, or a ratio >= 0: after the selection only the
            hardest ``max(min_negatives, floor(ratio * kept positives))`` of the selected
            negatives stay (per image; pooled: over the pool with ``min_negatives * batch``).
            The freed budget is not refilled.
        min_negatives: int >= 0, the floor of that cap (so an image without positives still
            trains on its hardest negatives); unused without ``max_negatives_per_positive``.
        return_stats: also return what was kept, per image.

    Returns:
        Scalar float32 loss; exactly 0.0 with a zero gradient when nothing is kept. With
        ``return_stats``, ``(loss, stats)`` where ``stats`` holds ``"kept_positives"`` and
        ``"kept_negatives"`` (int32 [batch]; pooled: what the pool kept of each image) and
        ``"threshold"`` (float32 [batch], the smallest kept loss of the image, 0.0 when none).

    Raises:
        ValueError: an option is out of range, ``nms_threshold`` without ``anchors``, or a
            shape is wrong.
        TypeError: logits are not floating point, or labels not numeric.
    """
    top_k = check_int("top_k", top_k, 1)
    per_image = check_bool("per_image", per_image)
    if positive_fraction is not None:
        positive_fraction = check_number("positive_fraction", positive_fraction, 0.0, 1.0)
    nms_threshold = check_number("nms_threshold", nms_threshold, 0.0, 1.0, low_open=True, allow_none=True)
    ratio = check_number("max_negatives_per_positive", max_negatives_per_positive, 0.0, allow_none=True)
    min_negatives = check_int("min_negatives", min_negatives, 0)
    return_stats = check_bool("return_stats", return_stats)
    match, logits = _rpn_inputs(rpn_match, rpn_class_logits)
    if nms_threshold is not None:
        if anchors is None:
            raise ValueError("anchors must be given with nms_threshold: [anchors, (y1, x1, y2, x2)] boxes; "
                             "received None")
        anchors = _anchor_boxes(anchors, logits)

    positives = tf.equal(match, POSITIVE)  # [batch, anchors]
    negatives = tf.equal(match, NEGATIVE)  # [batch, anchors]
    labels = tf.cast(positives, tf.int32)  # [batch, anchors]
    # Ranked without gradient; the kept anchors' losses are recomputed from their gathered logits
    # below (the same numbers), so the backward pass runs over the kept anchors only instead of
    # a cross-entropy gradient over every anchor.
    losses = tf.stop_gradient(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    )  # [batch, anchors]
    batch, num_anchors = tf.shape(losses)[0], tf.shape(losses)[1]

    budget = tf.constant(top_k, tf.int32)
    if per_image:
        max_positives = None if positive_fraction is None else math.floor(positive_fraction * top_k)
        if nms_threshold is not None:
            positives, negatives = _survivors(losses, positives, negatives, anchors, nms_threshold,
                                              budget, max_positives)
    else:
        budget = budget * batch  # one pool: [1, batch * anchors]
        max_positives = None
        if positive_fraction is not None:
            max_positives = tf.cast(
                tf.floor(positive_fraction * tf.cast(budget, tf.float64)), tf.int32
            )
        if nms_threshold is not None:  # NMS stays per image, before pooling
            positives, negatives = _survivors(losses, positives, negatives, anchors, nms_threshold,
                                              budget, max_positives)
        losses, positives, negatives, labels = (
            tf.reshape(t, [1, -1]) for t in (losses, positives, negatives, labels))
        logits = tf.reshape(logits, [1, -1, 2])  # [1, batch * anchors, 2]

    if max_positives is None:
        indices, keep = selection.hardest(losses, positives | negatives, budget)
    else:
        indices, keep = selection.hardest_with_positive_cap(
            losses, positives, negatives, budget, max_positives
        )
    if ratio is not None or return_stats:
        is_negative = tf.gather(negatives, indices, batch_dims=1)  # [rows, width]
    if ratio is not None:
        kept_positives = tf.reduce_sum(tf.cast(keep & ~is_negative, tf.int32), axis=1)  # [rows]
        least = min_negatives if per_image else min_negatives * batch  # the pool's floor
        limit = tf.maximum(least, tf.cast(tf.floor(ratio * tf.cast(kept_positives, tf.float64)), tf.int32))
        keep = selection.limit_negatives(keep, is_negative, limit)
    # The kept anchors' losses, recomputed with gradient from their gathered logits (the same
    # numbers as the ranked ones), so the backward pass covers the kept anchors only.
    kept_losses = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.gather(labels, indices, batch_dims=1),
        logits=tf.gather(logits, indices, batch_dims=1),
    )  # [rows, width]
    loss = _masked_mean(kept_losses, keep)
    if not return_stats:
        return loss
    image = (tf.broadcast_to(tf.range(batch)[:, None], tf.shape(indices)) if per_image
             else indices // tf.maximum(num_anchors, 1))  # [rows, width] image of each slot
    return loss, _selection_stats(tf.stop_gradient(kept_losses), keep, is_negative, image, batch)


def _anchor_boxes(anchors: Any, logits: tf.Tensor) -> tf.Tensor:
    """Validate ``anchors`` as [anchors, 4] matching the logits; return float32 boxes."""
    anchors = tf.convert_to_tensor(anchors)
    if not (anchors.dtype.is_floating or anchors.dtype.is_integer):
        raise TypeError(f"anchors must hold numeric boxes; received dtype {anchors.dtype.name}")
    if anchors.shape.rank is not None and (anchors.shape.rank != 2 or anchors.shape[-1] not in (4, None)):
        raise ValueError(f"anchors must have shape [anchors, 4]; received shape {anchors.shape.as_list()}")
    a, b = anchors.shape[0] if anchors.shape.rank else None, logits.shape[1] if logits.shape.rank else None
    if a is not None and b is not None and a != b:
        raise ValueError(f"anchors and rpn_class_logits must agree on the anchors axis; received "
                         f"{anchors.shape.as_list()} and {logits.shape.as_list()}")
    with tf.control_dependencies([tf.debugging.assert_equal(
            tf.shape(anchors)[0], tf.shape(logits)[1],
            message="anchors and rpn_class_logits must agree on the anchors axis")]):
        return tf.cast(anchors, tf.float32)


def _survivors(losses, positives, negatives, anchors, nms_threshold, budget, max_positives):
    """Per image and label, the NMS survivors a selection of ``budget`` could ever keep."""
    positive_need = budget if max_positives is None else max_positives
    return (selection.first_survivors(losses, positives, anchors, nms_threshold, positive_need),
            selection.first_survivors(losses, negatives, anchors, nms_threshold, budget))


def _selection_stats(kept_losses, keep, is_negative, image, batch) -> dict[str, tf.Tensor]:
    """Per image: kept positives and negatives (int32 [batch]), smallest kept loss (float32)."""
    image = tf.reshape(image, [-1])  # [slots]
    keep = tf.reshape(keep, [-1])
    is_negative = tf.reshape(is_negative, [-1])

    def count(mask):
        return tf.math.unsorted_segment_sum(tf.cast(mask, tf.int32), image, batch)  # [batch]

    kept_negatives = count(keep & is_negative)
    kept_positives = count(keep & ~is_negative)
    inf = tf.fill(tf.shape(keep), float("inf"))
    smallest = tf.math.unsorted_segment_min(tf.where(keep, tf.reshape(kept_losses, [-1]), inf), image, batch)
    threshold = tf.where(kept_positives + kept_negatives > 0, smallest, tf.zeros_like(smallest))
    return {"kept_positives": kept_positives, "kept_negatives": kept_negatives, "threshold": threshold}


def focal_rpn_class_loss(
    rpn_match: Any,
    rpn_class_logits: Any,
    *,
    alpha: float = 0.25,
    gamma: float = 2.0,
) -> tf.Tensor:
    """RPN anchor classification with the focal loss (Lin et al., RetinaNet, ICCV 2017).

    The alternative to mining: every non-neutral anchor contributes, easy ones down-weighted.
    Per non-neutral anchor, ``p_t`` is the softmax probability of its true label (positive =
    foreground), ``alpha_t`` is ``alpha`` for positives and ``1 - alpha`` for negatives, and the
    loss is ``-alpha_t * (1 - p_t) ** gamma * log(p_t)``. The result is the sum over the batch
    divided by max(1, positive anchors in the batch), RetinaNet's normalisation, so give it the
    full negative pool (``mrcnn_ohem.patch`` installs it with the OHEM targets). With
    ``gamma = 0`` and ``alpha = 0.5`` it is half the summed cross-entropy of the non-neutral
    anchors over the number of positives.

    Args:
        rpn_match: [batch, anchors, 1] (or [batch, anchors]) int, 1 positive, -1 negative,
            0 neutral.
        rpn_class_logits: [batch, anchors, 2] float (BG, FG) logits; computed in float32.
        alpha: weight of the positives in [0, 1] (negatives get ``1 - alpha``).
        gamma: focusing exponent >= 0; 0 gives the alpha-weighted cross-entropy.

    Returns:
        Scalar float32; exactly 0.0, still connected to the logits, without non-neutral anchors.

    Raises:
        ValueError: ``alpha`` or ``gamma`` out of range, or a shape is wrong.
        TypeError: logits are not floating point, or labels not numeric.
    """
    alpha = check_number("alpha", alpha, 0.0, 1.0)
    gamma = check_number("gamma", gamma, 0.0)
    match, logits = _rpn_inputs(rpn_match, rpn_class_logits)
    positives = tf.equal(match, POSITIVE)  # [batch, anchors]
    candidates = positives | tf.equal(match, NEGATIVE)
    log_p_t = -tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=tf.cast(positives, tf.int32), logits=logits)  # [batch, anchors]
    one_minus_p_t = -tf.math.expm1(log_p_t)  # 1 - p_t without cancellation
    # (1 - p_t) ** gamma, with a finite gradient where p_t == 1 (the loss is 0 there anyway).
    nonzero = one_minus_p_t > 0.0
    safe = tf.where(nonzero, one_minus_p_t, tf.ones_like(one_minus_p_t))
    modulating = tf.where(nonzero, tf.pow(safe, gamma), tf.zeros_like(safe))
    alpha_t = tf.where(positives, alpha, 1.0 - alpha)
    losses = -alpha_t * modulating * log_p_t
    total = tf.reduce_sum(tf.where(candidates, losses, tf.zeros_like(losses)))
    count = tf.reduce_sum(tf.cast(positives, tf.float32))
    return total / tf.maximum(count, 1.0)


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


def _kept_cross_entropies(labels: Any, logits: Any, top_k: float | int, from_logits: bool) -> tf.Tensor:
    """The cross-entropies of the ``k`` hardest examples, hardest first: [k] float32.

    ``k`` as in :func:`topk_cross_entropy`; ranked with the gradient stopped, ties to the lower
    index; [0] for an empty batch."""
    kind, value = _resolve_top_k(top_k)
    losses = _per_example_cross_entropy(labels, logits, from_logits)[None, :]  # [1, N]
    num_examples = tf.shape(losses)[1]
    if kind == "count":
        k = tf.constant(value, tf.int32)
    else:
        # The (1 - 1e-12) factor keeps e.g. 0.3 * 10 = 3.0000000000000004 from rounding up to 4.
        scaled = value * tf.cast(num_examples, tf.float64) * (1.0 - 1e-12)
        k = tf.maximum(tf.cast(tf.math.ceil(scaled), tf.int32), 1)
    # Every example is a candidate, so all min(k, N) slots are kept.
    indices, _ = selection.hardest(losses, tf.ones_like(losses, dtype=tf.bool), k)
    return tf.gather(losses, indices, batch_dims=1)[0]  # [min(k, N)]


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
    kept = _kept_cross_entropies(labels, logits, top_k, from_logits)  # [k]
    return tf.math.divide_no_nan(tf.reduce_sum(kept), tf.cast(tf.size(kept), tf.float32))


class TopKCrossEntropy(keras.losses.Loss):
    """tf-keras loss: mean cross-entropy of the hardest ``top_k`` examples of each batch.

    ``model.compile(loss=TopKCrossEntropy(0.7))`` trains on the hardest 70% of each batch.
    :meth:`call` returns the per-example cross-entropies of the kept examples ([k], hardest
    first) and the base ``Loss.__call__`` reduces them with ``reduction``, tf-keras' contract:
    the default (``AUTO``, i.e. ``SUM_OVER_BATCH_SIZE``) gives their mean, the value of
    :func:`topk_cross_entropy`, ``SUM`` their sum and ``NONE`` the [k] vector. Under a
    ``tf.distribute`` strategy with ``fit`` each replica keeps the hardest of its own share of
    the global batch and Keras scales the mean by ``1 / replicas``, so the averaged gradients
    equal the single-device ones whenever the shares hold the global hardest evenly (always
    with ``top_k = 1.0``). A count ``top_k`` is a count per replica. ``sample_weight`` is not
    supported: the kept examples are chosen per batch.

    Args:
        top_k: a fraction in (0, 1] or a count >= 1 (see :func:`topk_cross_entropy`).
        from_logits: whether predictions are logits (default) or probabilities.
        reduction: a ``keras.losses.Reduction`` value (default ``AUTO``).
        name: the loss name.
    """

    def __init__(self, top_k: float | int = 0.7, from_logits: bool = True,
                 reduction: str = keras.losses.Reduction.AUTO, name: str = "topk_cross_entropy"):
        _resolve_top_k(top_k)
        reductions = keras.losses.Reduction.all()
        if reduction not in reductions:
            raise ValueError(f"reduction must be one of {list(reductions)}; received {reduction!r}")
        super().__init__(name=name, reduction=reduction)
        self.top_k = top_k
        self.from_logits = bool(from_logits)

    def call(self, y_true, y_pred):
        """Cross-entropies of the kept examples, hardest first (``Loss.__call__`` reduces them).

        Args:
            y_true: [...] int class ids, or [..., num_classes] float one-hot/probabilities.
            y_pred: [..., num_classes] float logits (probabilities when ``from_logits=False``).

        Returns:
            [k] float32, ``k`` as in :func:`topk_cross_entropy` (capped at the number of
            examples; [0] for an empty batch).
        """
        return _kept_cross_entropies(y_true, y_pred, self.top_k, self.from_logits)

    def __call__(self, y_true, y_pred, sample_weight=None):
        if sample_weight is not None:
            raise ValueError(
                "TopKCrossEntropy does not take sample_weight (the hardest examples are chosen "
                f"per batch); received sample_weight of type {type(sample_weight).__name__}"
            )
        return super().__call__(y_true, y_pred)

    def get_config(self) -> dict:
        return {**super().get_config(), "top_k": self.top_k, "from_logits": self.from_logits}
