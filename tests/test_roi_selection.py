"""mrcnn_ohem.roi.select_hard_rois (the OHEM paper's RoI selection: class + box loss, NMS among
RoIs, both losses on the kept ones) and the kept counts of the RoI class loss, against the NumPy
reference in ``reference.select_hard_rois``, on random inputs and on the edge cases."""
from __future__ import annotations

import numpy as np
import pytest
import reference
import tensorflow as tf

from mrcnn_ohem.roi import PADDING_CLASS_ID, ohem_mrcnn_class_loss, select_hard_rois


def random_batch(seed, batch=2, rois=24, classes=4, padding=(0, 5)):
    """Targets with positives, negatives and trailing padding; RoIs that overlap each other."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, classes, size=(batch, rois)).astype(np.int32)
    ids[rng.random((batch, rois)) < 0.5] = 0
    for image, pad in enumerate(padding[:batch]):
        if pad:
            ids[image, -pad:] = PADDING_CLASS_ID
    centres = rng.uniform(0.2, 0.8, size=(batch, rois, 2))
    sizes = rng.uniform(0.1, 0.3, size=(batch, rois, 2))
    boxes = np.concatenate([centres - sizes / 2, centres + sizes / 2], axis=2).astype(np.float32)
    target_bbox = np.where(ids[..., None] > 0, rng.normal(size=(batch, rois, 4)), 0).astype(np.float32)
    logits = rng.normal(scale=2.0, size=(batch, rois, classes)).astype(np.float32)
    pred_bbox = rng.normal(scale=1.5, size=(batch, rois, classes, 4)).astype(np.float32)
    active = np.ones((batch, classes), np.float32)
    active[1, classes - 1] = 0  # the second image's dataset lacks the last class
    return ids, target_bbox, boxes, logits, pred_bbox, active


def run(batch, **options):
    ids, stats = select_hard_rois(*batch, return_stats=True, **options)
    return ids.numpy(), stats["kept_positives"].numpy().tolist(), stats["kept_negatives"].numpy().tolist()


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("rank_by_box, nms_threshold", [(True, None), (False, None), (True, 0.7), (True, 0.3)])
@pytest.mark.parametrize("top_k", [1, 6, 30])
def test_random_inputs_match_reference(seed, rank_by_box, nms_threshold, top_k):
    batch = random_batch(seed)
    ids, positives, negatives = run(batch, top_k=top_k, rank_by_box=rank_by_box, nms_threshold=nms_threshold)
    expected = reference.select_hard_rois(*batch, top_k, rank_by_box=rank_by_box, nms_threshold=nms_threshold)
    np.testing.assert_array_equal(ids, expected[0])
    assert (positives, negatives) == (expected[1], expected[2])


def test_hand_computed_box_loss_changes_the_ranking():
    # One image, 3 RoIs, 2 classes. Class losses: RoI 0 (background, confident wrong) is the
    # hardest by class loss alone; RoI 1 (class 1) has a far-off box, so class + box ranks it first.
    ids = np.array([[0, 1, 1]], np.int32)
    logits = np.array([[[0.0, 2.0], [0.0, 1.0], [0.0, 3.0]]], np.float32)
    target_bbox = np.zeros((1, 3, 4), np.float32)
    pred_bbox = np.zeros((1, 3, 2, 4), np.float32)
    pred_bbox[0, 1, 1] = [3.0, 0.0, 0.0, 0.0]  # Smooth-L1 2.5 on RoI 1's own class
    pred_bbox[0, 0, 1] = [9.0, 9.0, 9.0, 9.0]  # background: its box is never scored
    active = np.ones((1, 2), np.float32)
    boxes = np.zeros((1, 3, 4), np.float32)
    # cross-entropies: RoI 0 log(1 + e^2) = 2.127, RoI 1 log(1 + e^-1) = 0.313, RoI 2 0.049
    by_class = select_hard_rois(ids, target_bbox, boxes, logits, pred_bbox, active, top_k=1, rank_by_box=False)
    by_both = select_hard_rois(ids, target_bbox, boxes, logits, pred_bbox, active, top_k=1)
    assert by_class.numpy().tolist() == [[0, -1, -1]]
    assert by_both.numpy().tolist() == [[-1, 1, -1]]  # 0.313 + 2.5 > 2.127


def test_nms_drops_a_near_copy_of_a_harder_roi():
    ids = np.zeros((1, 3), np.int32)
    logits = np.array([[[0.0, 3.0], [0.0, 2.0], [0.0, 1.0]]], np.float32)  # hardest: 0, 1, 2
    boxes = np.array([[[0.1, 0.1, 0.5, 0.5], [0.1, 0.1, 0.5, 0.52], [0.6, 0.6, 0.9, 0.9]]], np.float32)
    args = (ids, np.zeros((1, 3, 4), np.float32), boxes, logits, np.zeros((1, 3, 2, 4), np.float32),
            np.ones((1, 2), np.float32))
    assert select_hard_rois(*args, top_k=2).numpy().tolist() == [[0, 0, -1]]
    assert select_hard_rois(*args, top_k=2, nms_threshold=0.7).numpy().tolist() == [[0, -1, 0]]


def test_padding_is_never_kept_and_an_all_padding_image_keeps_nothing():
    batch = list(random_batch(7, rois=10, padding=(4, 10)))
    ids, positives, negatives = run(tuple(batch), top_k=32, nms_threshold=0.7)
    assert (ids[0, -4:] == PADDING_CLASS_ID).all() and (ids[1] == PADDING_CLASS_ID).all()
    assert positives[1] == negatives[1] == 0
    # with a budget above the real rows and no NMS every real row is kept
    ids, _, _ = run(tuple(batch), top_k=32)
    np.testing.assert_array_equal(ids, batch[0])


def test_no_gradient_flows_through_the_selection():
    batch = random_batch(3)
    logits = tf.constant(batch[3])
    with tf.GradientTape() as tape:
        tape.watch(logits)
        ids = select_hard_rois(batch[0], batch[1], batch[2], logits, batch[4], batch[5], top_k=4)
        loss = ohem_mrcnn_class_loss(ids, logits, batch[5], top_k=4)
    gradient = tape.gradient(loss, logits).numpy()
    kept = ids.numpy() >= 0
    assert np.abs(gradient[~kept]).sum() == 0 and np.abs(gradient[kept]).sum() > 0


def test_tf_function_with_unknown_shapes_agrees_with_eager():
    batch = random_batch(5)
    specs = [tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None, 4]), tf.TensorSpec([None, None, 4]),
             tf.TensorSpec([None, None, None]), tf.TensorSpec([None, None, None, 4]), tf.TensorSpec([None, None])]
    graph = tf.function(lambda *t: select_hard_rois(*t, top_k=5, nms_threshold=0.5), input_signature=specs)
    np.testing.assert_array_equal(graph(*batch).numpy(), select_hard_rois(*batch, top_k=5, nms_threshold=0.5).numpy())


@pytest.mark.parametrize("kwargs, message", [
    ({"top_k": 0}, "top_k must be an integer >= 1; received 0"),
    ({"top_k": 2, "nms_threshold": 0.0}, "nms_threshold"),
    ({"top_k": 2, "nms_threshold": 1.5}, "nms_threshold"),
])
def test_bad_options_name_the_argument(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        select_hard_rois(*random_batch(0), **kwargs)


def test_bad_shapes_name_the_argument():
    ids, target_bbox, boxes, logits, pred_bbox, active = random_batch(0)
    with pytest.raises(ValueError, match=r"pred_bbox must have shape \[batch, rois, classes, 4\]"):
        select_hard_rois(ids, target_bbox, boxes, logits, pred_bbox[:, :, 0], active, top_k=2)
    with pytest.raises(ValueError, match=r"rois must have shape \[batch, rois, 4\]"):
        select_hard_rois(ids, target_bbox, boxes[0], logits, pred_bbox, active, top_k=2, nms_threshold=0.7)


@pytest.mark.parametrize("seed", range(3))
def test_class_loss_reports_the_kept_counts(seed):
    ids, _, _, logits, _, active = random_batch(seed)
    loss, stats = ohem_mrcnn_class_loss(ids, logits, active, top_k=6, return_stats=True)
    assert float(loss) == pytest.approx(reference.ohem_mrcnn_class_loss(ids, logits, active, 6), rel=1e-5)
    kept, positives, negatives = reference.select_hard_rois(
        ids, np.zeros(ids.shape + (4,)), None, logits, np.zeros(ids.shape + (4, 4)), active, 6, rank_by_box=False)
    assert stats["kept_positives"].numpy().tolist() == positives
    assert stats["kept_negatives"].numpy().tolist() == negatives
