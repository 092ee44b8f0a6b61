"""Tests for mrcnn_ohem.maskrcnn.layers (graph utilities, custom layers) and the backbones."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_ohem.core.boxes import box_refinement, compute_overlaps
from mrcnn_ohem.maskrcnn import backbone, layers, utils
from mrcnn_ohem.maskrcnn.data import compose_image_meta

RNG = np.random.default_rng(0)


def random_boxes(n, rng=RNG, low=0.0, high=1.0):
    a = rng.uniform(low, high, size=(n, 2, 2))
    lo, hi = a.min(axis=1), a.max(axis=1) + 1e-3
    return np.concatenate([lo, hi], axis=1).astype(np.float32)  # [n, (y1, x1, y2, x2)]


def meta_rows(batch, image_shape=(64, 64, 3), window=(0, 0, 64, 64), num_classes=3):
    row = compose_image_meta(0, image_shape, image_shape, window, 1.0, np.ones(num_classes))
    return np.tile(row, (batch, 1)).astype(np.float32)


# ---------------------------------------------------------------------- graph utilities

def test_apply_box_deltas_inverts_box_refinement():
    boxes, gt = random_boxes(20), random_boxes(20)
    deltas = box_refinement(boxes, gt)
    got = layers.apply_box_deltas_graph(tf.constant(boxes), tf.constant(deltas)).numpy()
    np.testing.assert_allclose(got, gt, atol=1e-5)
    again = layers.box_refinement_graph(tf.constant(boxes), tf.constant(gt)).numpy()
    np.testing.assert_allclose(again, deltas, atol=1e-4)


def test_clip_boxes_graph_clips_to_window():
    boxes = tf.constant([[-0.5, 0.2, 0.5, 1.5], [0.1, 0.1, 0.2, 0.2]])
    got = layers.clip_boxes_graph(boxes, np.array([0.0, 0.0, 1.0, 1.0], np.float32)).numpy()
    np.testing.assert_allclose(got, [[0, 0.2, 0.5, 1.0], [0.1, 0.1, 0.2, 0.2]])


def test_overlaps_graph_matches_numpy_iou():
    b1, b2 = random_boxes(7), random_boxes(5)
    np.testing.assert_allclose(layers.overlaps_graph(tf.constant(b1), tf.constant(b2)).numpy(),
                               compute_overlaps(b1, b2), atol=1e-6)
    assert layers.overlaps_graph(tf.constant(b1), tf.zeros([0, 4])).shape == (7, 0)


def test_trim_zeros_graph_drops_padding_rows():
    boxes = tf.constant([[0.1, 0.1, 0.2, 0.2], [0, 0, 0, 0], [0.3, 0.3, 0.4, 0.5]])
    trimmed, keep = layers.trim_zeros_graph(boxes)
    assert trimmed.shape == (2, 4)
    np.testing.assert_array_equal(keep.numpy(), [True, False, True])


def test_norm_and_denorm_boxes_graph_match_utils():
    pixels = np.array([[0, 0, 64, 64], [10, 20, 30, 50]], np.float32)
    norm = layers.norm_boxes_graph(tf.constant(pixels), tf.constant([64, 64])).numpy()
    np.testing.assert_allclose(norm, utils.norm_boxes(pixels, (64, 64)), atol=1e-6)
    back = layers.denorm_boxes_graph(tf.constant(norm), tf.constant([64, 64])).numpy()
    np.testing.assert_array_equal(back, pixels)


def test_parse_image_meta_graph_reads_compose_image_meta():
    row = compose_image_meta(7, (48, 40, 3), (64, 64, 3), (8, 12, 56, 52), 1.25, [1, 0, 1])
    parsed = layers.parse_image_meta_graph(tf.constant(row[None], tf.float32))
    assert parsed["image_id"].numpy()[0] == 7
    np.testing.assert_array_equal(parsed["image_shape"].numpy()[0], [64, 64, 3])
    np.testing.assert_array_equal(parsed["window"].numpy()[0], [8, 12, 56, 52])
    np.testing.assert_array_equal(parsed["active_class_ids"].numpy()[0], [1, 0, 1])


# ---------------------------------------------------------------------- ProposalLayer

def test_proposal_layer_keeps_best_box_first_and_pads():
    anchors = np.array([[0.1, 0.1, 0.3, 0.3], [0.11, 0.1, 0.31, 0.3], [0.6, 0.6, 0.9, 0.9],
                        [0.0, 0.0, 0.05, 0.05]], np.float32)
    probs = np.array([[0.2, 0.8], [0.1, 0.9], [0.3, 0.7], [0.99, 0.01]], np.float32)
    layer = layers.ProposalLayer(proposal_count=6, nms_threshold=0.5, pre_nms_limit=3)
    out = layer([tf.constant(np.stack([probs, probs])), tf.zeros([2, 4, 4]),
                 tf.constant(np.stack([anchors, anchors]))]).numpy()
    assert out.shape == (2, 6, 4)
    # anchor 1 scores best; anchor 0 overlaps it (IoU > 0.5) and is suppressed; anchor 3 is
    # outside the pre-NMS top 3; the remaining rows are zero padding.
    np.testing.assert_allclose(out[0, :2], anchors[[1, 2]], atol=1e-6)
    assert not out[0, 2:].any()
    np.testing.assert_allclose(out[0], out[1])


def test_proposal_layer_accepts_matterport_config_and_round_trips_config():
    class Cfg:
        PRE_NMS_LIMIT = 11
        RPN_BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])

    layer = layers.ProposalLayer(5, 0.7, config=Cfg(), name="ROI")
    clone = layers.ProposalLayer.from_config(layer.get_config())
    assert (clone.pre_nms_limit, clone.proposal_count, clone.name) == (11, 5, "ROI")
    assert layer.compute_output_shape([(None, 9, 2)] * 3) == (None, 5, 4)


# ---------------------------------------------------------------------- PyramidROIAlign

def test_pyramid_roi_align_pools_each_box_from_its_level_in_order():
    feature_maps = [tf.constant(RNG.normal(size=(2, s, s, 3)).astype(np.float32))
                    for s in (64, 32, 16, 8)]
    # side 1/16 of a 1024 image = 64 px -> level 4 + log2(64/224) = 2.19 -> 2; side 1/2 =
    # 512 px -> 4 + log2(512/224) = 5.19 -> 5; side 1/4 = 256 px -> 4.19 -> 4.
    boxes = np.array([[[0, 0, 1 / 16, 1 / 16], [0.2, 0.2, 0.7, 0.7], [0.5, 0.5, 0.75, 0.75]],
                      [[0.1, 0.1, 0.6, 0.6], [0, 0, 0, 0], [0.3, 0.3, 0.3625, 0.3625]]],
                     np.float32)
    meta = meta_rows(2, image_shape=(1024, 1024, 3))
    layer = layers.PyramidROIAlign([5, 5])
    out = layer([tf.constant(boxes), tf.constant(meta), *feature_maps]).numpy()
    assert out.shape == (2, 3, 5, 5, 3)
    expected_level = {(0, 0): 2, (0, 1): 5, (0, 2): 4, (1, 0): 5, (1, 1): 2, (1, 2): 2}
    for (b, i), level in expected_level.items():
        want = tf.image.crop_and_resize(feature_maps[level - 2], boxes[b, i][None], [b],
                                        (5, 5)).numpy()[0]
        np.testing.assert_allclose(out[b, i], want, atol=1e-5)


# ---------------------------------------------------------------------- DetectionTargetLayer

def _target_inputs():
    gt_boxes = np.zeros((1, 4, 4), np.float32)
    gt_boxes[0, :2] = [[0.1, 0.1, 0.4, 0.4], [0.5, 0.5, 0.9, 0.8]]
    gt_ids = np.array([[1, 2, 0, 0]], np.int32)
    masks = np.zeros((1, 16, 16, 4), bool)
    masks[0, 4:12, 4:12, :2] = True
    proposals = np.concatenate([gt_boxes[0, :2] + 0.01, random_boxes(30, np.random.default_rng(5)),
                                np.zeros((8, 4), np.float32)])[None]
    return proposals, gt_ids, gt_boxes, masks


def test_detection_target_layer_samples_positives_with_correct_targets():
    proposals, gt_ids, gt_boxes, masks = _target_inputs()
    layer = layers.DetectionTargetLayer(train_rois_per_image=12, roi_positive_ratio=0.33,
                                        mask_shape=(7, 7), use_mini_mask=True)
    rois, class_ids, deltas, target_masks = [t.numpy() for t in layer(
        [tf.constant(proposals), tf.constant(gt_ids), tf.constant(gt_boxes), tf.constant(masks)])]
    assert rois.shape == (1, 12, 4) and class_ids.shape == (1, 12)
    assert deltas.shape == (1, 12, 4) and target_masks.shape == (1, 12, 7, 7)
    positives = np.where(class_ids[0] > 0)[0]
    assert 1 <= positives.size <= int(12 * 0.33)
    iou = compute_overlaps(rois[0, positives], gt_boxes[0, :2])
    assert np.all(iou.max(axis=1) >= 0.5)
    np.testing.assert_array_equal(class_ids[0, positives], gt_ids[0, iou.argmax(axis=1)])
    decoded = layers.apply_box_deltas_graph(
        tf.constant(rois[0, positives]), tf.constant(deltas[0, positives] * [0.1, 0.1, 0.2, 0.2],
                                                     tf.float32)).numpy()
    np.testing.assert_allclose(decoded, gt_boxes[0, iou.argmax(axis=1)], atol=1e-4)
    assert set(np.unique(target_masks)) <= {0.0, 1.0}
    assert not deltas[0, class_ids[0] == 0].any()


def test_detection_target_layer_without_gt_gives_zero_targets():
    proposals, _, _, _ = _target_inputs()
    layer = layers.DetectionTargetLayer(train_rois_per_image=6, mask_shape=(7, 7))
    outputs = layer([tf.constant(proposals), tf.zeros([1, 4], tf.int32), tf.zeros([1, 4, 4]),
                     tf.zeros([1, 16, 16, 4], tf.bool)])
    assert all(not o.numpy().any() for o in outputs)


# ---------------------------------------------------------------------- DetectionLayer

def np_per_class_nms(boxes, scores, classes, threshold, limit):
    keep = []
    for c in np.unique(classes):
        idx = np.where(classes == c)[0]
        keep += [idx[i] for i in utils.non_max_suppression(boxes[idx], scores[idx], threshold)]
    keep = sorted(keep, key=lambda i: -scores[i])[:limit]
    return np.asarray(keep, dtype=int)


def test_detection_layer_matches_per_class_nms():
    rng = np.random.default_rng(7)
    n, num_classes = 40, 4
    rois = random_boxes(n, rng, 0.0, 0.6) * [1, 1, 1.5, 1.5]
    probs = rng.dirichlet(np.ones(num_classes) * 0.3, size=n).astype(np.float32)
    layer = layers.DetectionLayer(detection_min_confidence=0.5, detection_max_instances=10,
                                  detection_nms_threshold=0.3)
    out = layer([tf.constant(rois[None]), tf.constant(probs[None]),
                 tf.zeros([1, n, num_classes, 4]), tf.constant(meta_rows(1))]).numpy()[0]
    assert out.shape == (10, 6)
    class_ids, scores = probs.argmax(1), probs.max(1)
    boxes = np.clip(rois, 0, 1)
    cand = np.where((class_ids > 0) & (scores >= 0.5))[0]
    keep = cand[np_per_class_nms(boxes[cand], scores[cand], class_ids[cand], 0.3, 10)]
    k = keep.size
    np.testing.assert_allclose(out[:k, :4], boxes[keep], atol=1e-5)
    np.testing.assert_array_equal(out[:k, 4], class_ids[keep])
    np.testing.assert_allclose(out[:k, 5], scores[keep], rtol=1e-6)
    assert not out[k:].any()


def test_detection_layer_with_no_confident_roi_returns_zeros():
    probs = np.tile([[0.9, 0.05, 0.05]], (5, 1)).astype(np.float32)
    layer = layers.DetectionLayer(detection_max_instances=4)
    out = layer([tf.constant(random_boxes(5)[None]), tf.constant(probs[None]),
                 tf.zeros([1, 5, 3, 4]), tf.constant(meta_rows(1))])
    assert out.shape == (1, 4, 6) and not out.numpy().any()


# ---------------------------------------------------------------------- backbones

def test_tiny_backbone_strides_and_names():
    from mrcnn_ohem._compat import import_tf_keras

    keras = import_tf_keras()
    image = keras.layers.Input([64, 64, 3])
    c1, c2, c3, c4, c5 = backbone.build_backbone(image, "tiny", train_bn=False)
    assert [c.shape[1] for c in (c2, c3, c4, c5)] == [16, 8, 4, 2]
    model = keras.Model(image, c5)
    names = {layer.name for layer in model.layers if layer.weights}
    assert {"conv1", "bn_conv1", "res2a_tiny", "bn5a_tiny"} <= names


def test_resnet_graph_rejects_unknown_architecture():
    from mrcnn_ohem._compat import import_tf_keras

    image = import_tf_keras().layers.Input([64, 64, 3])
    with pytest.raises(ValueError, match="architecture must be one of.*received 'resnet18'"):
        backbone.resnet_graph(image, "resnet18")


def test_detection_target_layer_gives_background_rois_to_an_image_without_gt_when_asked():
    # TRAIN_ROIS_PER_IMAGE 6 at ROI_POSITIVE_RATIO 0.33: max 1 positive, so 5 background RoIs.
    proposals, _, _, _ = _target_inputs()
    layer = layers.DetectionTargetLayer(train_rois_per_image=6, mask_shape=(7, 7), background_rois=True)
    rois, class_ids, deltas, masks = layer([tf.constant(proposals), tf.zeros([1, 4], tf.int32),
                                            tf.zeros([1, 4, 4]), tf.zeros([1, 16, 16, 4], tf.bool)])
    real = np.abs(rois.numpy()[0]).sum(axis=1) > 0
    assert real.sum() == 5 and not class_ids.numpy().any()
    assert not deltas.numpy().any() and not masks.numpy().any()


# ---------------------------------------------------------------------- per-image random draws

def _map_fn_loops(layer, inputs) -> list[int]:
    """``parallel_iterations`` of each top-level While op (a ``tf.map_fn`` over the batch) that
    ``layer`` adds to a traced graph."""
    concrete = tf.function(lambda *args: layer(list(args))).get_concrete_function(*inputs)
    return [op.get_attr("parallel_iterations") for op in concrete.graph.get_operations()
            if op.type in ("While", "StatelessWhile")]


def test_layers_that_draw_at_random_run_the_batch_image_by_image():
    """The RoI samplers shuffle with one stateful op that every image shares; images side by
    side (``tf.map_fn``'s default, 10) would reach it in the order the threads run them, so a
    seeded run could differ from the next even with op determinism on (the demo's OHEM runs did,
    docs/measurements.md). They run one image after the other; the other layers stay parallel."""
    from helpers import TinyConfig

    import mrcnn_ohem
    from mrcnn_ohem.surgery import make_detection_target_layer

    proposals, gt_ids, gt_boxes, masks = (np.repeat(a, 2, axis=0) for a in _target_inputs())  # 2 images
    targets = [tf.constant(proposals), tf.constant(gt_ids), tf.constant(gt_boxes), tf.constant(masks)]
    bundled = layers.DetectionTargetLayer(train_rois_per_image=6, mask_shape=(7, 7))
    assert _map_fn_loops(bundled, targets) == [1]

    class PoolConfig(mrcnn_ohem.OHEMConfigMixin, TinyConfig):
        OHEM_ROI = True
        OHEM_ROI_POOL = 20

    pool_layer = make_detection_target_layer(PoolConfig(), layers.DetectionTargetLayer)(PoolConfig())
    assert _map_fn_loops(pool_layer, targets) == [1]

    anchors = tf.constant(np.repeat(random_boxes(40, np.random.default_rng(6))[None], 2, axis=0))
    scores = tf.random.stateless_uniform([2, 40, 2], seed=[0, 1])
    deltas = tf.random.stateless_normal([2, 40, 4], seed=[0, 2])
    proposal_loops = _map_fn_loops(layers.ProposalLayer(8, 0.7, pre_nms_limit=40), [scores, deltas, anchors])
    assert proposal_loops and all(n == 10 for n in proposal_loops)  # no random draws: images side by side
