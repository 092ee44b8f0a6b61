"""mrcnn_ohem.roi: the RoI-head OHEM class loss and the pool sampler, against NumPy references
(tests/reference.py) and against the bundled Matterport model's own loss and targets."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import reference
import tensorflow as tf

from mrcnn_ohem.maskrcnn.layers import detection_targets_graph
from mrcnn_ohem.maskrcnn.losses import mrcnn_bbox_loss_graph, mrcnn_class_loss_graph, mrcnn_mask_loss_graph
from mrcnn_ohem.roi import PADDING_CLASS_ID, ohem_mrcnn_class_loss, ohem_roi_targets


def random_heads(rng, batch=2, rois=12, classes=4, scale=2.0, dtype=np.float32, same_active=True):
    targets = rng.integers(0, classes, size=(batch, rois)).astype(np.int32)
    logits = (rng.normal(size=(batch, rois, classes)) * scale).astype(dtype)
    active = rng.integers(0, 2, size=(batch, classes)).astype(np.float32)
    active[:, 0] = 1  # background is always active
    if same_active:
        active[:] = active[0]
    return targets, logits, active


def loss_and_grad(targets, logits, active, top_k, function=None):
    variable = tf.Variable(tf.cast(logits, tf.float32))
    fn = function or (lambda t, v, a: ohem_mrcnn_class_loss(t, v, a, top_k=top_k))
    with tf.GradientTape() as tape:
        loss = fn(targets, variable, active)
    return loss, tape.gradient(loss, variable)


# --- the class loss: hand-computed ---------------------------------------------------------------

def test_hand_computed_hardest_per_image():
    # One image, 3 RoIs, 2 classes, both active. Losses: log(1 + e^d), d = other - true logit:
    #   r0 target 0, logits (0, 0) -> ln 2       = 0.6931
    #   r1 target 1, logits (0, -2) -> ln(1+e^2) = 2.1269
    #   r2 target 0, logits (0, 1) -> ln(1+e)    = 1.3133
    # top_k=2 keeps r1 and r2; each has pred_active 1: (2.1269 + 1.3133) / 2 = 1.7201
    targets = np.array([[0, 1, 0]])
    logits = np.array([[[0, 0], [0, -2], [0, 1]]], np.float32)
    active = np.ones((1, 2), np.float32)
    expected = (np.log1p(np.e**2) + np.log1p(np.e)) / 2
    assert ohem_mrcnn_class_loss(targets, logits, active, top_k=2).numpy() == pytest.approx(expected, rel=1e-6)


def test_ties_go_to_the_lower_index_and_only_kept_rois_get_gradient():
    targets = np.zeros((1, 8), np.int32)
    logits = np.zeros((1, 8, 3), np.float32)  # every loss ln 3
    loss, grad = loss_and_grad(targets, logits, np.ones((1, 3), np.float32), top_k=3)
    assert loss.numpy() == pytest.approx(np.log(3), rel=1e-6)
    touched = np.flatnonzero(np.abs(grad.numpy()[0]).sum(axis=1))
    np.testing.assert_array_equal(touched, [0, 1, 2])


def test_inactive_predicted_class_counts_zero_and_ranks_last():
    # r0 predicts class 2 (inactive in image 0's row): loss x 0, not counted in the divisor.
    # r1 predicts class 0 with target 1: counted. top_k=1 keeps r1 even though r0's plain CE
    # is larger.
    targets = np.array([[0, 1]])
    logits = np.array([[[0, 0, 5], [1, 0, 0]]], np.float32)
    active = np.array([[1, 1, 0]], np.float32)
    ce = reference.softmax_cross_entropy(logits[0], targets[0])
    assert ce[0] > ce[1]
    got = ohem_mrcnn_class_loss(targets, logits, active, top_k=1).numpy()
    assert got == pytest.approx(ce[1], rel=1e-6)


def test_hand_computed_each_image_uses_its_own_active_row():
    # Two images, two RoIs each, 2 classes, every target 0 (background):
    #   RoI 0, logits (0, 1): predicts class 1, loss ln(1 + e) = 1.3133
    #   RoI 1, logits (0, 0): predicts class 0 (ties go to the lower id), loss ln 2 = 0.6931
    # Image 0's row has class 1 active, image 1's does not, so image 1's RoI 0 counts 0:
    #   per image: (1.3133 + 0.6931 + 0.6931) / 3 = 0.8999
    #   image 0's row for all (upstream Matterport): (2 * 1.3133 + 2 * 0.6931) / 4 = 1.0032
    targets = np.zeros((2, 2), np.int32)
    logits = np.array([[[0, 1], [0, 0]], [[0, 1], [0, 0]]], np.float32)
    active = np.array([[1, 1], [1, 0]], np.float32)
    expected = (np.log1p(np.e) + 2 * np.log(2)) / 3
    assert ohem_mrcnn_class_loss(targets, logits, active, top_k=2).numpy() == pytest.approx(expected, rel=1e-6)
    upstream = (2 * np.log1p(np.e) + 2 * np.log(2)) / 4
    assert reference.matterport_mrcnn_class_loss(targets, logits, active) == pytest.approx(upstream, rel=1e-12)


@pytest.mark.parametrize("top_k", [3, 100])
def test_each_image_uses_its_own_active_row_as_the_bundled_loss(top_k):
    rng = np.random.default_rng(4)
    targets, logits, active = random_heads(rng, batch=2, rois=10, classes=5, same_active=False)
    active[1, 1:] = 1 - active[0, 1:]  # the two images' rows differ in every foreground class
    got = ohem_mrcnn_class_loss(targets, logits, active, top_k=top_k).numpy()
    expected = reference.ohem_mrcnn_class_loss(targets, logits, active, top_k)
    assert got == pytest.approx(expected, rel=1e-5)
    # Upstream Matterport reads image 0's row for the whole batch; these inputs tell them apart.
    upstream = reference.ohem_mrcnn_class_loss_first_row(targets, logits, active, top_k)
    assert expected != pytest.approx(upstream, rel=1e-3)
    if top_k >= 10:  # keeping every RoI: the bundled model's plain loss, per image as well
        assert got == pytest.approx(mrcnn_class_loss_graph(targets, logits, active).numpy(), rel=1e-6)
        assert got == pytest.approx(reference.plain_mrcnn_class_loss_per_image(targets, logits, active), rel=1e-5)


def test_nothing_active_gives_connected_zero():
    rng = np.random.default_rng(1)
    targets, logits, _ = random_heads(rng)
    active = np.zeros((2, 4), np.float32)
    loss, grad = loss_and_grad(targets, logits, active, top_k=3)
    assert loss.numpy() == 0.0 and grad is not None and not np.any(grad.numpy())


def test_all_background_rois():
    rng = np.random.default_rng(2)
    _, logits, active = random_heads(rng)
    targets = np.zeros((2, 12), np.int32)
    for top_k in (1, 5, 12):
        got = ohem_mrcnn_class_loss(targets, logits, active, top_k=top_k).numpy()
        assert got == pytest.approx(reference.ohem_mrcnn_class_loss(targets, logits, active, top_k), rel=1e-5)


# --- the class loss: random inputs, reduce-to-baseline -------------------------------------------

@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("top_k", [1, 4, 12, 50])
def test_random_inputs_match_reference(seed, top_k):
    rng = np.random.default_rng(seed)
    targets, logits, active = random_heads(rng, batch=int(rng.integers(1, 4)), rois=12,
                                           classes=int(rng.integers(2, 6)), same_active=bool(seed % 2))
    if seed >= 3:  # padding at the end of each image, as the pool puts it
        for image in range(targets.shape[0]):
            targets[image, int(rng.integers(0, 13)):] = PADDING_CLASS_ID
    got = ohem_mrcnn_class_loss(targets, logits, active, top_k=top_k).numpy()
    assert got == pytest.approx(reference.ohem_mrcnn_class_loss(targets, logits, active, top_k),
                                rel=1e-5)


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("extra", [0, 7])
def test_keeping_every_roi_equals_matterport_loss(seed, extra):
    rng = np.random.default_rng(10 + seed)
    targets, logits, active = random_heads(rng, batch=2, rois=20, classes=5)
    ours = ohem_mrcnn_class_loss(targets, logits, active, top_k=20 + extra).numpy()
    bundled = mrcnn_class_loss_graph(targets, logits, active).numpy()
    assert ours == pytest.approx(bundled, rel=1e-6)
    assert ours == pytest.approx(reference.matterport_mrcnn_class_loss(targets, logits, active), rel=1e-5)


def test_gradient_equals_matterport_when_everything_is_kept():
    rng = np.random.default_rng(7)
    targets, logits, active = random_heads(rng, rois=9)
    _, ours = loss_and_grad(targets, logits, active, top_k=9)
    _, plain = loss_and_grad(targets, logits, active, 9, function=mrcnn_class_loss_graph)
    np.testing.assert_allclose(ours.numpy(), plain.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", [tf.float16, tf.bfloat16])
def test_half_precision_logits_run_in_float32(dtype):
    rng = np.random.default_rng(3)
    targets, logits, active = random_heads(rng)
    half = tf.cast(logits, dtype)
    got = ohem_mrcnn_class_loss(targets, half, active, top_k=5)
    assert got.dtype == tf.float32
    rounded = tf.cast(half, tf.float32).numpy()
    expected = reference.ohem_mrcnn_class_loss(targets, rounded, active, 5)
    assert got.numpy() == pytest.approx(expected, rel=1e-5)


def test_eager_and_tf_function_agree_with_unknown_shapes():
    rng = np.random.default_rng(5)
    targets, logits, active = random_heads(rng, batch=3, rois=10)

    @tf.function(input_signature=[tf.TensorSpec([None, None], tf.int32),
                                  tf.TensorSpec([None, None, None], tf.float32),
                                  tf.TensorSpec([None, None], tf.float32)])
    def graph(t, lg, a):
        return ohem_mrcnn_class_loss(t, lg, a, top_k=4)

    eager = ohem_mrcnn_class_loss(targets, logits, active, top_k=4).numpy()
    assert graph(targets, logits, active).numpy() == pytest.approx(eager, rel=1e-6)
    assert eager == pytest.approx(reference.ohem_mrcnn_class_loss(targets, logits, active, 4), rel=1e-5)


@pytest.mark.parametrize("kwargs,error,message", [
    ({"top_k": 0}, ValueError, r"top_k must be an integer >= 1; received 0"),
    ({"top_k": 2.5}, ValueError, r"top_k must be an integer >= 1; received 2.5"),
])
def test_bad_top_k(kwargs, error, message):
    with pytest.raises(error, match=message):
        ohem_mrcnn_class_loss(np.zeros((1, 2)), np.zeros((1, 2, 3), np.float32), np.ones((1, 3)), **kwargs)


def test_bad_shapes_and_dtypes():
    with pytest.raises(ValueError, match=r"pred_class_logits must have shape \[batch, rois, classes\]; received"):
        ohem_mrcnn_class_loss(np.zeros((1, 2)), np.zeros((2, 3), np.float32), np.ones((1, 3)), top_k=1)
    with pytest.raises(ValueError, match=r"target_class_ids must have shape \[batch, rois\]"):
        ohem_mrcnn_class_loss(np.zeros((2,)), np.zeros((1, 2, 3), np.float32), np.ones((1, 3)), top_k=1)
    with pytest.raises(ValueError, match=r"active_class_ids must have shape \[batch, classes\]"):
        ohem_mrcnn_class_loss(np.zeros((1, 2)), np.zeros((1, 2, 3), np.float32), np.ones((3,)), top_k=1)
    with pytest.raises(TypeError, match=r"pred_class_logits must be a floating-point tensor; received dtype int32"):
        ohem_mrcnn_class_loss(np.zeros((1, 2)), np.zeros((1, 2, 3), np.int32), np.ones((1, 3)), top_k=1)


# --- padding rows: the pool marks them with PADDING_CLASS_ID, the loss never keeps them --------

def half_padded_heads(rng, batch=2, real=(6, 6), rois=12, classes=4):
    """Heads over pools whose rows past ``real[i]`` are padding (target id -1). Padding rows get
    logits that make them the hardest rows by far if they were read as background."""
    targets, logits, _ = random_heads(rng, batch=batch, rois=rois, classes=classes)
    active = np.ones((batch, classes), np.float32)  # every real row counts
    for image, count in enumerate(real):
        targets[image, count:] = PADDING_CLASS_ID
        logits[image, count:] = 0.0
        logits[image, count:, 1] = 12.0  # as background: loss about 12, predicted class 1 (active)
    return targets, logits, active


@pytest.mark.parametrize("top_k", [1, 3, 6, 12])
def test_pool_that_is_half_padding_keeps_only_real_rows(top_k):
    rng = np.random.default_rng(20 + top_k)
    targets, logits, active = half_padded_heads(rng)
    loss, grad = loss_and_grad(targets, logits, active, top_k)
    expected = reference.ohem_mrcnn_class_loss(targets, logits, active, top_k)
    assert loss.numpy() == pytest.approx(expected, rel=1e-5)
    touched = np.abs(grad.numpy()).sum(axis=2) > 0  # [batch, rois]
    assert not touched[:, 6:].any()
    np.testing.assert_array_equal(touched.sum(axis=1), [min(top_k, 6)] * 2)


def test_padding_of_different_lengths_per_image_and_all_padding():
    rng = np.random.default_rng(30)
    targets, logits, active = half_padded_heads(rng, batch=3, real=(2, 9, 0))
    for top_k in (1, 4, 12):
        got = ohem_mrcnn_class_loss(targets, logits, active, top_k=top_k).numpy()
        assert got == pytest.approx(reference.ohem_mrcnn_class_loss(targets, logits, active, top_k),
                                    rel=1e-5)
    padding_only = np.full((1, 5), PADDING_CLASS_ID, np.int32)
    loss, grad = loss_and_grad(padding_only, logits[2:, :5], active[2:], top_k=3)
    assert loss.numpy() == 0.0 and not np.any(grad.numpy())


@pytest.mark.parametrize("seed", range(3))
def test_keeping_every_real_row_equals_the_plain_loss_on_the_real_rows(seed):
    # Reduce-to-baseline with padding: OHEM keeping every candidate equals the bundled plain loss
    # over the real rows (the plain loss itself cannot tell padding from background).
    rng = np.random.default_rng(40 + seed)
    targets, logits, active = half_padded_heads(rng, real=(7, 7), rois=14)
    ours = ohem_mrcnn_class_loss(targets, logits, active, top_k=14).numpy()
    plain = mrcnn_class_loss_graph(targets[:, :7], logits[:, :7], active).numpy()
    assert ours == pytest.approx(plain, rel=1e-6)


# --- the pool sampler -----------------------------------------------------------------------------

TARGET_OPTIONS = dict(bbox_std_dev=(0.1, 0.1, 0.2, 0.2), mask_shape=(8, 8), use_mini_mask=False)


def scene(rng, positives=3, negatives=40, crowd=True):
    """Proposals (normalised) around one GT box, far from it, and on a crowd box; padding rows."""
    gt_box = np.array([0.2, 0.2, 0.5, 0.5], np.float32)
    near = gt_box + rng.uniform(-0.02, 0.02, size=(positives, 4)).astype(np.float32)  # IoU > 0.5
    far_y = rng.uniform(0.55, 0.8, size=(negatives, 1))
    far_x = rng.uniform(0.0, 0.8, size=(negatives, 1))
    far = np.concatenate([far_y, far_x, far_y + 0.15, far_x + 0.15], axis=1).astype(np.float32)
    crowd_box = np.array([0.0, 0.7, 0.15, 0.95], np.float32)
    on_crowd = crowd_box[None] + np.array([[0.0, 0.01, 0.0, -0.01]], np.float32)
    proposals = np.concatenate([near, far, on_crowd, np.zeros((5, 4), np.float32)])
    gt_class_ids = np.array([2, -1 if crowd else 0, 0], np.int32)
    gt_boxes = np.stack([gt_box, crowd_box if crowd else np.zeros(4, np.float32), np.zeros(4, np.float32)])
    masks = np.zeros((32, 32, 3), bool)
    masks[6:16, 6:16, 0] = True
    masks[:5, 22:30, 1] = True
    return proposals, gt_class_ids, gt_boxes, masks, on_crowd[0]


def as_rows(array):
    return {tuple(np.round(row, 5)) for row in np.asarray(array)}


def test_pool_has_matterports_positives_and_fills_with_negatives():
    rng = np.random.default_rng(0)
    proposals, class_ids, boxes, masks, crowd_roi = scene(rng)
    rois, ids, deltas, mask_targets = (t.numpy() for t in ohem_roi_targets(
        proposals, class_ids, boxes, masks, train_rois_per_image=16, roi_positive_ratio=0.33,
        pool_size=32, **TARGET_OPTIONS))
    assert rois.shape == (32, 4) and ids.shape == (32,) and deltas.shape == (32, 4)
    assert mask_targets.shape == (32, 8, 8)
    # 3 positives (< the cap int(16 * 0.33) = 5) come first, then 29 negatives: a full pool.
    np.testing.assert_array_equal(ids[:3], [2, 2, 2])
    assert (ids[3:] == 0).all() and (np.abs(rois).sum(axis=1) > 0).all()
    assert as_rows(rois[:3]) == as_rows(proposals[:3])
    assert len(as_rows(rois)) == 32  # no RoI twice
    assert tuple(np.round(crowd_roi, 5)) not in as_rows(rois)  # never a negative on a crowd
    assert not deltas[3:].any() and not mask_targets[3:].any() and mask_targets[:3].any()

    # The bundled Matterport step keeps the same positives with the same box and mask targets.
    plain = [t.numpy() for t in detection_targets_graph(
        proposals, class_ids, boxes, masks, train_rois_per_image=16, roi_positive_ratio=0.33,
        **TARGET_OPTIONS)]
    assert (plain[1] > 0).sum() == 3
    ours_by_roi = {tuple(np.round(r, 5)): (d, m) for r, d, m in zip(rois[:3], deltas[:3], mask_targets[:3])}
    for roi, delta, mask in zip(plain[0][:3], plain[2][:3], plain[3][:3]):
        d, m = ours_by_roi[tuple(np.round(roi, 5))]
        np.testing.assert_allclose(d, delta, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(m, mask)


def test_positives_are_capped_as_matterport_and_mini_masks_work():
    rng = np.random.default_rng(1)
    proposals, class_ids, boxes, masks, _ = scene(rng, positives=12, negatives=10)
    mini = np.zeros((16, 16, 3), bool)
    mini[:, :, 0] = True
    rois, ids, _, mask_targets = (t.numpy() for t in ohem_roi_targets(
        proposals, class_ids, boxes, mini, train_rois_per_image=16, roi_positive_ratio=0.33,
        pool_size=40, bbox_std_dev=(0.1, 0.1, 0.2, 0.2), mask_shape=(8, 8), use_mini_mask=True))
    assert (ids > 0).sum() == 5  # int(16 * 0.33)
    assert (ids[5:15] == 0).all() and len(as_rows(rois[5:15])) == 10  # every negative
    assert not rois[15:].any()  # padding: the image has only 10 negatives
    assert (ids[15:] == PADDING_CLASS_ID).all()  # and the pool marks it for the class loss
    assert set(np.unique(mask_targets)) <= {0.0, 1.0} and mask_targets[:5].mean() > 0.7
    # Where both samplers picked the same positive, the mini-mask targets agree.
    plain = [t.numpy() for t in detection_targets_graph(
        proposals, class_ids, boxes, mini, train_rois_per_image=16, roi_positive_ratio=0.33,
        bbox_std_dev=(0.1, 0.1, 0.2, 0.2), mask_shape=(8, 8), use_mini_mask=True)]
    plain_by_roi = {tuple(np.round(r, 5)): m for r, m in zip(plain[0][:5], plain[3][:5])}
    shared = [(m, plain_by_roi[tuple(np.round(r, 5))]) for r, m in zip(rois[:5], mask_targets[:5])
              if tuple(np.round(r, 5)) in plain_by_roi]
    for ours, theirs in shared:
        np.testing.assert_array_equal(ours, theirs)


def test_image_without_objects_gets_a_pool_of_negatives():
    rng = np.random.default_rng(2)
    proposals, _, _, masks, _ = scene(rng, crowd=False)
    empty_ids = np.zeros(3, np.int32)
    empty_boxes = np.zeros((3, 4), np.float32)
    rois, ids, deltas, mask_targets = (t.numpy() for t in ohem_roi_targets(
        proposals, empty_ids, empty_boxes, masks, train_rois_per_image=16, roi_positive_ratio=0.33,
        pool_size=20, **TARGET_OPTIONS))
    assert (ids == 0).all() and (np.abs(rois).sum(axis=1) > 0).all()
    assert not deltas.any() and not mask_targets.any()
    # Matterport samples no RoI at all for such an image (no positives, so no negatives).
    plain = detection_targets_graph(proposals, empty_ids, empty_boxes, masks, train_rois_per_image=16,
                                    roi_positive_ratio=0.33, **TARGET_OPTIONS)
    assert not plain[0].numpy().any()


def test_pool_sampler_under_tf_function_and_map_fn():
    rng = np.random.default_rng(3)
    scenes = [scene(rng)[:4] for _ in range(2)]
    batch = [np.stack(parts) for parts in zip(*scenes)]

    @tf.function
    def sample(proposals, class_ids, boxes, masks):
        def one(args):
            return ohem_roi_targets(*args, train_rois_per_image=16, roi_positive_ratio=0.33, pool_size=24,
                                    **TARGET_OPTIONS)
        signature = (tf.TensorSpec([24, 4], tf.float32), tf.TensorSpec([24], tf.int32),
                     tf.TensorSpec([24, 4], tf.float32), tf.TensorSpec([24, 8, 8], tf.float32))
        return tf.map_fn(one, (proposals, class_ids, boxes, masks), fn_output_signature=signature)

    rois, ids, _, _ = sample(*batch)
    assert rois.shape == (2, 24, 4) and ((ids.numpy() > 0).sum(axis=1) == 3).all()


def test_pool_smaller_than_the_positive_cap_is_rejected():
    rng = np.random.default_rng(4)
    with pytest.raises(ValueError, match=r"pool_size must be an integer >= 5 \(the positive cap"):
        ohem_roi_targets(*scene(rng)[:4], train_rois_per_image=16, roi_positive_ratio=0.33, pool_size=4,
                         **TARGET_OPTIONS)


def half_padded_pool(seed):
    """A pool of 26 from 3 positives and 10 negatives: 13 real rows, then 13 padding rows."""
    rng = np.random.default_rng(seed)
    proposals, class_ids, boxes, masks, _ = scene(rng, positives=3, negatives=10)
    return [t.numpy() for t in ohem_roi_targets(
        proposals, class_ids, boxes, masks, train_rois_per_image=16, roi_positive_ratio=0.33,
        pool_size=26, **TARGET_OPTIONS)]


def head_outputs(rng, rois, classes=3):
    """Random class logits, box deltas and mask probabilities for a batch of one pool."""
    logits = rng.normal(size=(1, rois, classes)).astype(np.float32) * 2
    pred_bbox = rng.normal(size=(1, rois, classes, 4)).astype(np.float32)
    pred_masks = rng.uniform(0.01, 0.99, size=(1, rois, 8, 8, classes)).astype(np.float32)
    return logits, pred_bbox, pred_masks


def test_sampled_pool_that_is_half_padding_keeps_only_real_rows():
    rois, ids, deltas, mask_targets = half_padded_pool(5)
    real = np.abs(rois).sum(axis=1) > 0
    assert real.sum() == 13 and not real[13:].any()
    np.testing.assert_array_equal(ids[~real], PADDING_CLASS_ID)
    assert (ids[real] >= 0).all() and (ids[real] > 0).sum() == 3

    rng = np.random.default_rng(6)
    logits, pred_bbox, pred_masks = head_outputs(rng, 26)
    logits[0, ~real] = [0.0, 15.0, 0.0]  # as background these would be the hardest rows by far
    active = np.ones((1, 3), np.float32)
    loss, grad = loss_and_grad(ids[None], logits, active, top_k=20)
    touched = np.abs(grad.numpy()[0]).sum(axis=1) > 0
    np.testing.assert_array_equal(touched, real)  # all 13 real rows kept, no padding row
    assert loss.numpy() == pytest.approx(
        reference.ohem_mrcnn_class_loss(ids[None], logits, active, 20), rel=1e-5)

    # The bundled box and mask losses read positives only (target id > 0): a -1 padding row is
    # ignored exactly like Matterport's 0 padding row.
    zero_padded = np.maximum(ids, 0)[None]
    bbox = mrcnn_bbox_loss_graph(deltas[None], ids[None], pred_bbox).numpy()
    assert bbox == pytest.approx(mrcnn_bbox_loss_graph(deltas[None], zero_padded, pred_bbox).numpy(), rel=1e-7)
    mask = mrcnn_mask_loss_graph(mask_targets[None], ids[None], pred_masks).numpy()
    assert mask == pytest.approx(reference.matterport_mask_loss(mask_targets[None], zero_padded, pred_masks),
                                 rel=1e-5)


FORK = Path(__file__).resolve().parents[2] / "shared" / "forks" / "mask_rcnn_tf2_14"
FORK_LOSSES = """
import json, sys
import numpy as np
import tensorflow as tf
from mrcnn import model as modellib  # disables eager execution
data = np.load(sys.argv[1])
values = {}
with tf.compat.v1.Session() as session:
    for name, ids in (("minus_one", data["ids"]), ("zero", np.maximum(data["ids"], 0))):
        bbox = modellib.mrcnn_bbox_loss_graph(tf.constant(data["deltas"]), tf.constant(ids),
                                              tf.constant(data["pred_bbox"]))
        mask = modellib.mrcnn_mask_loss_graph(tf.constant(data["masks"]), tf.constant(ids),
                                              tf.constant(data["pred_masks"]))
        values[name] = [float(v) for v in session.run([bbox, mask])]
print(json.dumps(values))
"""


@pytest.mark.slow
@pytest.mark.skipif(not (FORK / "mrcnn" / "model.py").is_file(), reason="../shared/forks/mask_rcnn_tf2_14 is not there")
def test_fork_box_and_mask_losses_ignore_the_pools_padding_rows(tmp_path):
    # The Matterport fork (upstream code, run in a child: it needs TF_USE_LEGACY_KERAS=1 and
    # turns eager execution off) gives the same box and mask losses for a half-padded pool
    # whether its padding rows say -1 or 0, and the same values as the bundled losses.
    _, ids, deltas, mask_targets = half_padded_pool(7)
    assert (ids == PADDING_CLASS_ID).sum() == 13
    _, pred_bbox, pred_masks = head_outputs(np.random.default_rng(8), 26)
    np.savez(tmp_path / "pool.npz", ids=ids[None], deltas=deltas[None], masks=mask_targets[None],
             pred_bbox=pred_bbox, pred_masks=pred_masks)
    env = {**os.environ, "TF_USE_LEGACY_KERAS": "1", "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(FORK)}
    result = subprocess.run([sys.executable, "-c", FORK_LOSSES, str(tmp_path / "pool.npz")], env=env,
                            cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["minus_one"] == values["zero"]
    bundled = [mrcnn_bbox_loss_graph(deltas[None], ids[None], pred_bbox).numpy(),
               mrcnn_mask_loss_graph(mask_targets[None], ids[None], pred_masks).numpy()]
    np.testing.assert_allclose(values["minus_one"], bundled, rtol=1e-5)
    assert min(bundled) > 0  # the pool has positives, so both losses read something
