"""mrcnn_ohem.losses.focal_rpn_class_loss against the NumPy reference in tests/reference.py."""
from __future__ import annotations

import helpers
import numpy as np
import pytest
import reference
import tensorflow as tf

from mrcnn_ohem import focal_rpn_class_loss
from mrcnn_ohem.maskrcnn.losses import rpn_class_loss_graph


def random_rpn(rng, batch, anchors, probs=(0.5, 0.3, 0.2)):
    """More negatives than the shared helper draws by default (P(-1, 0, 1) = 0.5, 0.3, 0.2)."""
    return helpers.random_rpn(rng, batch, anchors, probs=probs)


def loss_and_grad(match, logits, **options):
    variable = tf.Variable(tf.cast(logits, tf.float32))
    with tf.GradientTape() as tape:
        loss = focal_rpn_class_loss(match, variable, **options)
    return loss, tape.gradient(loss, variable)


def test_hand_computed():
    # a0 positive, logits (0, 0): p_t = 1/2, loss = 0.25 * 0.5^2 * ln 2        = 0.043322
    # a1 negative, logits (0, 0): p_t = 1/2, loss = 0.75 * 0.5^2 * ln 2        = 0.129965
    # a2 neutral: ignored. One positive in the batch: total / 1 = 0.173287
    match = np.array([[[1], [-1], [0]]])
    logits = np.zeros((1, 3, 2), np.float32)
    expected = (0.25 + 0.75) * 0.25 * np.log(2)
    assert focal_rpn_class_loss(match, logits).numpy() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (0.5, 0.0), (0.9, 0.5), (0.0, 1.0), (1.0, 3.0)])
def test_random_inputs_match_reference(seed, alpha, gamma):
    rng = np.random.default_rng(seed)
    match, logits = random_rpn(rng, int(rng.integers(1, 4)), 200)
    got = focal_rpn_class_loss(match, logits, alpha=alpha, gamma=gamma).numpy()
    assert got == pytest.approx(reference.focal_rpn_loss(match, logits, alpha, gamma), rel=1e-5, abs=1e-7)


def test_gamma_zero_half_alpha_is_scaled_cross_entropy():
    # gamma 0, alpha 0.5: 0.5 * sum of CE / positives = 0.5 * mean CE * candidates / positives.
    rng = np.random.default_rng(8)
    match, logits = random_rpn(rng, 2, 300)
    candidates, positives = (match != 0).sum(), (match == 1).sum()
    plain = rpn_class_loss_graph(match, logits).numpy()
    got = focal_rpn_class_loss(match, logits, alpha=0.5, gamma=0.0).numpy()
    assert got == pytest.approx(0.5 * plain * candidates / positives, rel=1e-5)


def test_no_positives_divides_by_one():
    rng = np.random.default_rng(1)
    match, logits = random_rpn(rng, 2, 50, probs=(0.7, 0.3, 0.0))
    got = focal_rpn_class_loss(match, logits).numpy()
    assert got == pytest.approx(reference.focal_rpn_loss(match, logits), rel=1e-5)


def test_no_candidates_gives_connected_zero():
    loss, grad = loss_and_grad(np.zeros((2, 6, 1), np.int32), np.ones((2, 6, 2), np.float32))
    assert loss.numpy() == 0.0 and grad is not None and not np.any(grad.numpy())


def test_confident_anchors_have_finite_gradient_for_small_gamma():
    # p_t rounds to exactly 1 in float32: (1 - p_t)^0.5 must not give inf * 0 = NaN.
    match = np.array([[[1], [-1]]])
    logits = np.array([[[-60.0, 60.0], [60.0, -60.0]]], np.float32)
    loss, grad = loss_and_grad(match, logits, gamma=0.5)
    assert loss.numpy() == 0.0 and np.all(np.isfinite(grad.numpy()))


def test_gradient_is_zero_on_neutral_anchors():
    rng = np.random.default_rng(2)
    match, logits = random_rpn(rng, 2, 40)
    _, grad = loss_and_grad(match, logits)
    neutral = match[..., 0] == 0
    assert not np.any(grad.numpy()[neutral]) and np.any(grad.numpy()[~neutral])


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_half_precision_logits_run_in_float32(dtype):
    rng = np.random.default_rng(3)
    match, logits = random_rpn(rng, 2, 100)
    half = tf.cast(logits, dtype)
    got = focal_rpn_class_loss(match, half)
    assert got.dtype == tf.float32
    expected = reference.focal_rpn_loss(match, tf.cast(half, tf.float32).numpy())
    assert got.numpy() == pytest.approx(expected, rel=1e-5)


def test_eager_and_tf_function_agree():
    rng = np.random.default_rng(4)
    match, logits = random_rpn(rng, 2, 120)

    @tf.function(input_signature=[tf.TensorSpec([None, None, 1], tf.int32),
                                  tf.TensorSpec([None, None, 2], tf.float32)])
    def graph(m, lg):
        return focal_rpn_class_loss(m, lg, alpha=0.3, gamma=1.5)

    eager = focal_rpn_class_loss(match, logits, alpha=0.3, gamma=1.5).numpy()
    assert graph(match, logits).numpy() == pytest.approx(eager, rel=1e-6)


@pytest.mark.parametrize("kwargs,message", [
    ({"alpha": 1.5}, r"alpha must be a number in \[0, 1\]; received 1.5"),
    ({"alpha": True}, r"alpha must be a number in \[0, 1\]; received True"),
    ({"gamma": -1.0}, r"gamma must be a number >= 0; received -1.0"),
])
def test_bad_options(kwargs, message):
    with pytest.raises(ValueError, match=message):
        focal_rpn_class_loss(np.zeros((1, 2, 1), np.int32), np.zeros((1, 2, 2), np.float32), **kwargs)
