"""Tests for mrcnn_ohem.maskrcnn.losses: Matterport's five losses against NumPy references."""
from __future__ import annotations

import numpy as np
import pytest
import reference
import tensorflow as tf

from mrcnn_ohem.maskrcnn import losses

RNG = np.random.default_rng(0)


def _both_modes(fn):
    """Run ``fn`` eagerly and under tf.function; return both results as NumPy."""
    return np.asarray(fn(*[])), np.asarray(tf.function(fn)())


# ---------------------------------------------------------------------- NumPy references

def np_smooth_l1(y_true, y_pred):
    d = np.abs(y_true - y_pred)
    return np.where(d < 1, 0.5 * d ** 2, d - 0.5)


def np_log_softmax(logits):
    z = logits - logits.max(-1, keepdims=True)
    return z - np.log(np.exp(z).sum(-1, keepdims=True))


def np_rpn_class_loss(rpn_match, logits):
    match = rpn_match[..., 0]
    used = match != 0
    if not used.any():
        return 0.0
    labels = (match[used] == 1).astype(int)
    logp = np_log_softmax(logits[used])
    return float(np.mean(-logp[np.arange(labels.size), labels]))


def np_rpn_bbox_loss(target_bbox, rpn_match, rpn_bbox):
    rows = target_bbox.shape[1]
    values = []
    for b in range(rpn_match.shape[0]):
        positives = np.where(rpn_match[b, :, 0] == 1)[0][:rows]
        for k, anchor in enumerate(positives):
            values.append(np_smooth_l1(target_bbox[b, k], rpn_bbox[b, anchor]))
    return float(np.mean(values)) if values else 0.0


# ---------------------------------------------------------------------- smooth L1

def test_smooth_l1_pins_both_branches():
    # |d| = 0.5 -> 0.5 * 0.25 = 0.125 ; |d| = 2 -> 2 - 0.5 = 1.5 ; |d| = 1 -> 1 - 0.5 = 0.5
    got = losses.smooth_l1_loss(tf.constant([0.0, 0.0, 0.0]), tf.constant([0.5, -2.0, 1.0]))
    np.testing.assert_allclose(got.numpy(), [0.125, 1.5, 0.5])


# ---------------------------------------------------------------------- RPN class loss

def test_rpn_class_loss_hand_case():
    # one positive with logits (0, 0): -log(0.5); one negative with logits (0, log 3):
    # p(bg) = 1/4 -> -log(0.25); the neutral anchor is ignored. Mean = (log 2 + log 4) / 2.
    match = np.array([[[1], [-1], [0]]], np.int32)
    logits = np.array([[[0, 0], [0, np.log(3.0)], [5, -5]]], np.float32)
    got = losses.rpn_class_loss_graph(tf.constant(match), tf.constant(logits))
    assert got.numpy() == pytest.approx((np.log(2) + np.log(4)) / 2, rel=1e-6)


@pytest.mark.parametrize("seed", range(3))
def test_rpn_class_loss_matches_numpy_with_thousands_of_negatives(seed):
    rng = np.random.default_rng(seed)
    match = rng.choice([1, -1, 0], size=(2, 3000, 1), p=[0.01, 0.8, 0.19]).astype(np.int32)
    logits = rng.normal(size=(2, 3000, 2)).astype(np.float32)
    eager, graph = _both_modes(lambda: losses.rpn_class_loss_graph(tf.constant(match),
                                                                   tf.constant(logits)))
    expected = np_rpn_class_loss(match, logits)
    assert eager == pytest.approx(expected, rel=1e-5)
    assert graph == pytest.approx(expected, rel=1e-5)


def test_rpn_class_loss_all_neutral_is_zero_with_zero_gradient():
    logits = tf.Variable(RNG.normal(size=(2, 5, 2)).astype(np.float32))
    with tf.GradientTape() as tape:
        loss = losses.rpn_class_loss_graph(tf.zeros([2, 5, 1], tf.int32), logits)
    grad = tape.gradient(loss, logits)
    assert loss.numpy() == 0.0
    assert grad is not None and np.all(np.isfinite(grad.numpy())) and not grad.numpy().any()


# ---------------------------------------------------------------------- RPN bbox loss

def test_rpn_bbox_loss_pairs_positives_in_anchor_order():
    # image 0: positives at anchors 1 and 3 -> target rows 0 and 1; image 1: positive at 0.
    match = np.array([[[-1], [1], [-1], [1]], [[1], [-1], [0], [-1]]], np.int32)
    pred = np.zeros((2, 4, 4), np.float32)
    pred[0, 1] = [0.5, 0, 0, 0]  # |d| = 0.5 -> 0.125
    pred[0, 3] = [0, 2, 0, 0]  # |d| = 2 -> 1.5
    pred[1, 0] = [0, 0, 0, 0]
    target = np.zeros((2, 3, 4), np.float32)
    got = losses.rpn_bbox_loss_graph(None, tf.constant(target), tf.constant(match),
                                     tf.constant(pred))
    assert got.numpy() == pytest.approx((0.125 + 1.5) / 12)  # 3 positives x 4 coordinates


@pytest.mark.parametrize("seed", range(3))
def test_rpn_bbox_loss_matches_numpy_with_full_negative_pool(seed):
    rng = np.random.default_rng(seed)
    match = rng.choice([1, -1, 0], size=(2, 4000, 1), p=[0.005, 0.9, 0.095]).astype(np.int32)
    rows = 16  # fewer rows than positives in some images: those use their first 16
    target = rng.normal(size=(2, rows, 4)).astype(np.float32)
    pred = rng.normal(size=(2, 4000, 4)).astype(np.float32)
    eager, graph = _both_modes(lambda: losses.rpn_bbox_loss_graph(
        None, tf.constant(target), tf.constant(match), tf.constant(pred)))
    expected = np_rpn_bbox_loss(target, match, pred)
    assert eager == pytest.approx(expected, rel=1e-5)
    assert graph == pytest.approx(expected, rel=1e-5)


def test_rpn_bbox_loss_without_positives_is_zero():
    match = -np.ones((2, 50, 1), np.int32)
    got = losses.rpn_bbox_loss_graph(None, tf.zeros([2, 8, 4]), tf.constant(match),
                                     tf.ones([2, 50, 4]))
    assert got.numpy() == 0.0


def test_batch_pack_graph_takes_leading_rows():
    x = tf.reshape(tf.range(2 * 3 * 2), [2, 3, 2])
    got = losses.batch_pack_graph(x, tf.constant([2, 1]), 2)
    np.testing.assert_array_equal(got.numpy(), [[0, 1], [2, 3], [6, 7]])


# ---------------------------------------------------------------------- head losses

def test_mrcnn_class_loss_matches_numpy_and_uses_each_images_active_classes():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(2, 6, 4)).astype(np.float32)
    target = rng.integers(0, 4, size=(2, 6)).astype(np.int32)
    active = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], np.float32)
    got = losses.mrcnn_class_loss_graph(tf.constant(target), tf.constant(logits),
                                        tf.constant(active)).numpy()
    logp = np_log_softmax(logits)
    ce = -np.take_along_axis(logp, target[..., None], axis=-1)[..., 0]
    pred_active = np.take_along_axis(active, logits.argmax(-1), axis=1)
    assert got == pytest.approx((ce * pred_active).sum() / pred_active.sum(), rel=1e-5)


def test_mrcnn_class_loss_no_active_prediction_is_zero_not_nan():
    logits = tf.constant([[[0.0, 5.0, 0.0]]])  # predicts class 1, inactive
    got = losses.mrcnn_class_loss_graph(tf.constant([[1]]), logits, tf.constant([[1., 0., 1.]]))
    assert got.numpy() == 0.0


def test_mrcnn_bbox_loss_uses_each_rois_own_class():
    rng = np.random.default_rng(2)
    pred = rng.normal(size=(2, 5, 3, 4)).astype(np.float32)
    target = rng.normal(size=(2, 5, 4)).astype(np.float32)
    class_ids = np.array([[0, 2, 1, 0, 0], [1, 0, 0, 0, 2]], np.int32)
    got = losses.mrcnn_bbox_loss_graph(tf.constant(target), tf.constant(class_ids),
                                       tf.constant(pred)).numpy()
    b, r = np.nonzero(class_ids)
    expected = np_smooth_l1(target[b, r], pred[b, r, class_ids[b, r]]).mean()
    assert got == pytest.approx(expected, rel=1e-5)


def test_mrcnn_mask_loss_matches_numpy():
    rng = np.random.default_rng(3)
    pred = rng.uniform(0.01, 0.99, size=(2, 4, 6, 6, 3)).astype(np.float32)
    target = rng.integers(0, 2, size=(2, 4, 6, 6)).astype(np.float32)
    class_ids = np.array([[2, 0, 0, 0], [1, 1, 0, 0]], np.int32)
    got = losses.mrcnn_mask_loss_graph(tf.constant(target), tf.constant(class_ids),
                                       tf.constant(pred)).numpy()
    assert got == pytest.approx(reference.matterport_mask_loss(target, class_ids, pred), rel=1e-5)


@pytest.mark.parametrize("fn, args", [
    (losses.mrcnn_bbox_loss_graph, ([2, 5, 4], [2, 5], [2, 5, 3, 4])),
    (losses.mrcnn_mask_loss_graph, ([2, 5, 6, 6], [2, 5], [2, 5, 6, 6, 3])),
])
def test_head_losses_without_positive_rois_are_zero(fn, args):
    target_shape, ids_shape, pred_shape = args
    pred = tf.Variable(tf.fill(pred_shape, 0.5))
    with tf.GradientTape() as tape:
        loss = fn(tf.ones(target_shape), tf.zeros(ids_shape, tf.int32), pred)
    grad = tape.gradient(loss, pred)
    assert loss.numpy() == 0.0
    assert np.all(np.isfinite(grad.numpy()))
