"""The mining options of ``ohem_rpn_class_loss`` (NMS, negative ratio, statistics) and their
selection steps in ``mrcnn_ohem.core.selection``, against the plain NumPy references."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import reference
import tensorflow as tf

from mrcnn_ohem import ohem_rpn_class_loss
from mrcnn_ohem.core import selection


def random_case(rng, batch, anchors, probs=(0.45, 0.2, 0.35), side=64.0):
    """rpn_match [batch, anchors, 1], logits [batch, anchors, 2] and overlapping boxes [anchors, 4]."""
    match = rng.choice([-1, 0, 1], size=(batch, anchors, 1), p=probs).astype(np.int32)
    logits = (rng.normal(size=(batch, anchors, 2)) * 2).astype(np.float32)
    centre = rng.uniform(0, side, size=(anchors, 2))
    size = rng.uniform(6, 24, size=(anchors, 2))
    boxes = np.concatenate([centre - size / 2, centre + size / 2], axis=1).astype(np.float32)
    return match, logits, boxes


def todays_loss(match, logits, top_k, per_image=True, positive_fraction=None):
    """The loss as it was before the mining options, from the unchanged selection primitives."""
    match = tf.squeeze(tf.cast(match, tf.int32), -1)
    positives, negatives = tf.equal(match, 1), tf.equal(match, -1)
    losses = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=tf.cast(positives, tf.int32),
                                                            logits=tf.convert_to_tensor(logits))
    budget = tf.constant(top_k, tf.int32)
    if per_image:
        cap = None if positive_fraction is None else math.floor(positive_fraction * top_k)
    else:
        batch = tf.shape(losses)[0]
        losses, positives, negatives = (tf.reshape(t, [1, -1]) for t in (losses, positives, negatives))
        budget = budget * batch
        cap = None
        if positive_fraction is not None:
            cap = tf.cast(tf.floor(positive_fraction * tf.cast(budget, tf.float64)), tf.int32)
    if cap is None:
        indices, keep = selection.hardest(losses, positives | negatives, budget)
    else:
        indices, keep = selection.hardest_with_positive_cap(losses, positives, negatives, budget, cap)
    values = tf.where(keep, tf.gather(losses, indices, batch_dims=1), 0.0)
    return tf.reduce_sum(values) / tf.maximum(tf.reduce_sum(tf.cast(keep, tf.float32)), 1.0)


def kept_anchors(match, logits, **options):
    """The (image, anchor) pairs that receive a gradient, i.e. the kept ones."""
    variable = tf.Variable(logits)
    with tf.GradientTape() as tape:
        loss = ohem_rpn_class_loss(match, variable, **options)
    grad = tape.gradient(loss, variable).numpy()
    return {tuple(p) for p in np.argwhere(np.abs(grad).sum(axis=-1) > 0)}


# --- defaults: bit for bit ------------------------------------------------------------------------

@pytest.mark.parametrize("per_image,fraction", list(itertools.product([True, False], [None, 0.25])))
def test_defaults_are_bit_for_bit_todays_loss(per_image, fraction):
    rng = np.random.default_rng(11)
    for _ in range(3):
        match, logits, boxes = random_case(rng, 2, 300)
        old = todays_loss(match, logits, 17, per_image, fraction).numpy()
        new = ohem_rpn_class_loss(match, logits, top_k=17, per_image=per_image,
                                  positive_fraction=fraction).numpy()
        explicit = ohem_rpn_class_loss(match, logits, top_k=17, per_image=per_image,
                                       positive_fraction=fraction, anchors=boxes, nms_threshold=None,
                                       max_negatives_per_positive=None, min_negatives=5)
        with_stats, _ = ohem_rpn_class_loss(match, logits, top_k=17, per_image=per_image,
                                            positive_fraction=fraction, return_stats=True)
        assert old.tobytes() == new.tobytes() == explicit.numpy().tobytes() == with_stats.numpy().tobytes()


# --- random inputs against the reference, every option ------------------------------------------

OPTIONS = [
    dict(nms_threshold=0.5),
    dict(nms_threshold=0.2, positive_fraction=0.5),
    dict(nms_threshold=0.7, per_image=False),
    dict(nms_threshold=0.4, per_image=False, positive_fraction=0.3),
    dict(max_negatives_per_positive=1.5),
    dict(max_negatives_per_positive=0.0),
    dict(max_negatives_per_positive=2.0, min_negatives=3),
    dict(max_negatives_per_positive=1.0, min_negatives=2, per_image=False),
    dict(max_negatives_per_positive=3.0, positive_fraction=0.5, per_image=False),
    dict(nms_threshold=0.5, max_negatives_per_positive=1.0, min_negatives=2, positive_fraction=0.5),
    dict(nms_threshold=1.0, max_negatives_per_positive=2.5),
    dict(),
]


def check_against_reference(match, logits, boxes, top_k, options, compiled=False):
    options = {"per_image": True, "positive_fraction": None, **options}
    ref_kept, ref_losses, ref_stats = reference.ohem_rpn_selection(
        match, logits, top_k, options["per_image"], options["positive_fraction"], boxes,
        options.get("nms_threshold"), options.get("max_negatives_per_positive"),
        options.get("min_negatives", 0))
    expected = float(sum(ref_losses[b, a] for b, a in ref_kept) / len(ref_kept)) if ref_kept else 0.0

    def run(m, lg):
        return ohem_rpn_class_loss(m, lg, top_k=top_k, anchors=boxes, return_stats=True, **options)

    loss, stats = (tf.function(run) if compiled else run)(tf.constant(match), tf.constant(logits))
    assert loss.numpy() == pytest.approx(expected, rel=1e-5, abs=1e-7)
    assert stats["kept_positives"].dtype == tf.int32 and stats["threshold"].dtype == tf.float32
    np.testing.assert_array_equal(stats["kept_positives"].numpy(), ref_stats["kept_positives"])
    np.testing.assert_array_equal(stats["kept_negatives"].numpy(), ref_stats["kept_negatives"])
    np.testing.assert_allclose(stats["threshold"].numpy(), ref_stats["threshold"], rtol=1e-5, atol=1e-7)
    return set(ref_kept)


@pytest.mark.parametrize("index,options", list(enumerate(OPTIONS)))
def test_random_inputs_match_reference(index, options):
    rng = np.random.default_rng([2026, index])
    for _ in range(3):
        batch, anchors = int(rng.integers(1, 4)), int(rng.integers(20, 160))
        match, logits, boxes = random_case(rng, batch, anchors)
        top_k = int(rng.integers(1, 40))
        ref_kept = check_against_reference(match, logits, boxes, top_k, options)
        assert kept_anchors(match, logits, top_k=top_k, anchors=boxes, **options) == ref_kept


@pytest.mark.parametrize("options", [OPTIONS[0], OPTIONS[3], OPTIONS[9]])
def test_tf_function_matches_reference(options):
    rng = np.random.default_rng(77)
    match, logits, boxes = random_case(rng, 2, 120)
    check_against_reference(match, logits, boxes, 12, options, compiled=True)


def test_tf_function_with_unknown_shapes():
    rng = np.random.default_rng(78)
    match, logits, boxes = random_case(rng, 2, 90)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 1], tf.int32),
                                  tf.TensorSpec([None, None, 2], tf.float32),
                                  tf.TensorSpec([None, 4], tf.float32)])
    def run(m, lg, b):
        return ohem_rpn_class_loss(m, lg, top_k=9, anchors=b, nms_threshold=0.5,
                                   max_negatives_per_positive=1.0, min_negatives=1, return_stats=True)

    loss, stats = run(match, logits, boxes)
    expected = reference.ohem_rpn_selection_loss(match, logits, 9, True, None, boxes, 0.5, 1.0, 1)
    assert loss.numpy() == pytest.approx(expected, rel=1e-5)
    assert stats["kept_negatives"].shape == (2,)


# --- edge cases -------------------------------------------------------------------------------------

def test_hand_computed_nms_and_ratio():
    # One image, 4 negatives and 1 positive. Boxes: a0 and a1 identical, a2 overlaps a0 with
    # IoU 0.5 ([0,0,10,10] vs [0,0,10,5]: 50 / 100), a3 far away, a4 (positive) = a0.
    # Losses (negatives: ln(1 + e^FG)): a0 FG=3 -> 3.0486, a1 FG=4 -> 4.0181, a2 FG=2 -> 2.1269,
    # a3 FG=0 -> 0.6931; a4 positive with logits (0, 0) -> ln 2.
    match = np.array([[[-1], [-1], [-1], [-1], [1]]], np.int32)
    logits = np.array([[[0, 3], [0, 4], [0, 2], [0, 0], [0, 0]]], np.float32)
    boxes = np.array([[0, 0, 10, 10], [0, 0, 10, 10], [0, 0, 10, 5], [50, 50, 60, 60], [0, 0, 10, 10]],
                     np.float32)
    neg = [np.log1p(np.exp(v)) for v in (3, 4, 2, 0)]
    # NMS 0.5: negatives visited a1, a0 (IoU 1 > 0.5: dropped), a2 (IoU 0.5, not > 0.5: kept), a3.
    # The positive a4 is of another label: never suppressed by negatives. top_k=3 keeps
    # a1, a2 and ln2-or-a3 (tie ln 2 = ln 2: lower index a3 first).
    loss, stats = ohem_rpn_class_loss(match, logits, top_k=3, anchors=boxes, nms_threshold=0.5,
                                      return_stats=True)
    assert loss.numpy() == pytest.approx((neg[1] + neg[2] + neg[3]) / 3, rel=1e-6)
    assert stats["kept_positives"].numpy().tolist() == [0]
    assert stats["kept_negatives"].numpy().tolist() == [3]
    assert stats["threshold"].numpy()[0] == pytest.approx(np.log(2), rel=1e-6)
    # Ratio 2 with the positive capped in: 1 positive -> at most 2 negatives (a1, a0 without NMS).
    loss, stats = ohem_rpn_class_loss(match, logits, top_k=5, positive_fraction=0.2,
                                      max_negatives_per_positive=2.0, return_stats=True)
    assert loss.numpy() == pytest.approx((np.log(2) + neg[1] + neg[0]) / 3, rel=1e-6)
    assert stats["kept_negatives"].numpy().tolist() == [2]


def test_no_positives_ratio_keeps_only_the_floor():
    rng = np.random.default_rng(5)
    match, logits, boxes = random_case(rng, 2, 50, probs=(0.8, 0.2, 0.0))
    loss, stats = ohem_rpn_class_loss(match, logits, top_k=20, max_negatives_per_positive=3.0,
                                      min_negatives=4, return_stats=True)
    assert stats["kept_positives"].numpy().tolist() == [0, 0]
    assert stats["kept_negatives"].numpy().tolist() == [4, 4]
    expected = reference.ohem_rpn_selection_loss(match, logits, 20, ratio=3.0, min_negatives=4)
    assert loss.numpy() == pytest.approx(expected, rel=1e-6)


def test_ratio_zero_without_floor_keeps_positives_only_and_zero_stays_connected():
    rng = np.random.default_rng(6)
    match, logits, _ = random_case(rng, 2, 40, probs=(1.0, 0.0, 0.0))
    variable = tf.Variable(logits)
    with tf.GradientTape() as tape:
        loss, stats = ohem_rpn_class_loss(match, variable, top_k=8, max_negatives_per_positive=0.0,
                                          return_stats=True)
    grad = tape.gradient(loss, variable)
    assert loss.numpy() == 0.0 and grad is not None and not np.any(grad.numpy())
    assert stats["kept_negatives"].numpy().tolist() == [0, 0]
    assert stats["threshold"].numpy().tolist() == [0.0, 0.0]


def test_everything_suppressed_but_one_also_past_the_prefilter():
    # 3000 candidates of one label on the same box: the first pass (2048 by default) finds one
    # survivor where k are wanted, so the exact fallback over every candidate runs: still one.
    rng = np.random.default_rng(7)
    n = 3000
    match = -np.ones((2, n, 1), np.int32)
    match[1, :10] = 1
    logits = rng.normal(size=(2, n, 2)).astype(np.float32)
    boxes = np.tile(np.array([[0, 0, 16, 16]], np.float32), (n, 1))
    for per_image in (True, False):
        loss, stats = ohem_rpn_class_loss(match, logits, top_k=64, per_image=per_image, anchors=boxes,
                                          nms_threshold=0.7, return_stats=True)
        assert stats["kept_negatives"].numpy().tolist() == [1, 1]
        assert stats["kept_positives"].numpy().tolist() == [0, 1]
        # Survivors: the hardest negative of each image and the hardest positive of image 1.
        losses = reference.softmax_cross_entropy(logits.reshape(-1, 2), match.reshape(-1) == 1).reshape(2, n)
        hardest = [losses[0].max(), losses[1][match[1, :, 0] == -1].max(), losses[1][:10].max()]
        assert loss.numpy() == pytest.approx(np.mean(hardest), rel=1e-5)


def test_first_survivors_prefilter_fallback_equals_plain_greedy_nms():
    rng = np.random.default_rng(8)
    _, _, boxes = random_case(rng, 1, 200, side=40.0)
    scores = rng.normal(size=(3, 200)).astype(np.float32)
    scores[2, :50] = 0.5  # ties: lower index first
    candidates = rng.random((3, 200)) < 0.7
    for count, prefilter in ((5, 2), (30, 16), (200, None), (0, 4)):
        got = selection.first_survivors(scores, candidates, boxes, 0.45, count, prefilter=prefilter).numpy()
        for row in range(3):
            order = sorted(np.flatnonzero(candidates[row]).tolist(), key=lambda i: (-scores[row, i], i))
            expected = reference.greedy_nms(order, boxes, 0.45)[:count]
            assert sorted(np.flatnonzero(got[row]).tolist()) == sorted(expected), (row, count, prefilter)


def test_limit_negatives_keeps_the_first_ones():
    keep = tf.constant([[True, True, True, True, False], [True, True, True, True, True]])
    is_negative = tf.constant([[False, True, True, True, True], [True, True, False, True, True]])
    got = selection.limit_negatives(keep, is_negative, [1, 0]).numpy()
    assert got.tolist() == [[True, True, False, False, False], [False, False, True, False, False]]


def test_zero_anchors_with_every_option():
    loss, stats = ohem_rpn_class_loss(np.zeros((2, 0, 1), np.int32), np.zeros((2, 0, 2), np.float32), top_k=3,
                                      anchors=np.zeros((0, 4), np.float32), nms_threshold=0.7,
                                      max_negatives_per_positive=1.0, return_stats=True)
    assert loss.numpy() == 0.0 and stats["kept_negatives"].numpy().tolist() == [0, 0]


# --- bad input ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "kwargs,error,message",
    [
        (dict(nms_threshold=0.7), ValueError, r"anchors must be given with nms_threshold"),
        (dict(nms_threshold=0.0, anchors=np.zeros((3, 4))), ValueError,
         r"nms_threshold must be None or a number in \(0, 1\]; received 0.0"),
        (dict(nms_threshold=1.5, anchors=np.zeros((3, 4))), ValueError, r"nms_threshold must be"),
        (dict(max_negatives_per_positive=-1), ValueError,
         r"max_negatives_per_positive must be None or a number >= 0; received -1"),
        (dict(min_negatives=-1), ValueError, r"min_negatives must be an integer >= 0; received -1"),
        (dict(min_negatives=1.5), ValueError, r"min_negatives must be an integer >= 0"),
        (dict(return_stats=1), ValueError, r"return_stats must be True or False"),
        (dict(nms_threshold=0.5, anchors=np.zeros((3, 3))), ValueError, r"anchors must have shape \[anchors, 4\]"),
        (dict(nms_threshold=0.5, anchors=np.zeros((4, 4))), ValueError, r"anchors and rpn_class_logits must agree"),
    ],
)
def test_bad_options(kwargs, error, message):
    with pytest.raises(error, match=message):
        ohem_rpn_class_loss(np.zeros((1, 3, 1), np.int32), np.zeros((1, 3, 2), np.float32), **kwargs)
