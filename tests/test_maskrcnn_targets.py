"""Tests of mrcnn_ohem.maskrcnn.targets: Matterport's sampled RPN targets and head targets."""
from __future__ import annotations

import numpy as np
import pytest

from mrcnn_ohem.core.boxes import NEGATIVE, NEUTRAL, POSITIVE, compute_overlaps
from mrcnn_ohem.core.matching import match_anchors
from mrcnn_ohem.maskrcnn.anchors import compute_backbone_shapes, generate_pyramid_anchors
from mrcnn_ohem.maskrcnn.targets import build_detection_targets, build_rpn_targets, generate_random_rois
from mrcnn_ohem.maskrcnn.utils import minimize_mask


def _anchors(config):
    shapes = compute_backbone_shapes(config, config.IMAGE_SHAPE)
    return generate_pyramid_anchors(config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS, shapes,
                                    config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE)


def _reference_deltas(anchors, gt_boxes, positives, std):
    """Deltas of positive anchors to their highest-IoU GT box, by a direct NumPy route."""
    iou = compute_overlaps(anchors[positives], gt_boxes)
    gt = gt_boxes[iou.argmax(axis=1)].astype(np.float64)
    a = anchors[positives].astype(np.float64)
    ah, aw = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    gh, gw = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    deltas = np.stack([(gt[:, 0] + gh / 2 - a[:, 0] - ah / 2) / ah,
                       (gt[:, 1] + gw / 2 - a[:, 1] - aw / 2) / aw,
                       np.log(gh / ah), np.log(gw / aw)], axis=1)
    return deltas / std


# Many boxes that match the scale-8 anchors well, so positives exceed half the budget.
MANY_BOXES = np.array([[y, x, y + 8, x + 8] for y in range(4, 60, 8) for x in range(4, 60, 8)])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sampling_budget_and_positive_cap(tiny_config, seed):
    np.random.seed(seed)
    anchors = _anchors(tiny_config)
    budget = tiny_config.RPN_TRAIN_ANCHORS_PER_IMAGE
    class_ids = np.ones(len(MANY_BOXES), dtype=np.int32)
    full = match_anchors(anchors, class_ids, MANY_BOXES).rpn_match
    assert (full == POSITIVE).sum() > budget // 2  # the cap matters in this case

    rpn_match, rpn_bbox = build_rpn_targets(tiny_config.IMAGE_SHAPE, anchors, class_ids,
                                            MANY_BOXES, tiny_config)
    assert rpn_match.shape == (anchors.shape[0],) and rpn_match.dtype == np.int32
    assert rpn_bbox.shape == (budget, 4) and rpn_bbox.dtype == np.float32
    assert (rpn_match == POSITIVE).sum() == budget // 2
    assert (rpn_match != NEUTRAL).sum() == budget
    # Sampling only resets labels to neutral; it never invents or flips one.
    kept = rpn_match != NEUTRAL
    np.testing.assert_array_equal(rpn_match[kept], full[kept])


def test_few_positives_fill_the_budget_with_negatives(tiny_config):
    np.random.seed(0)
    anchors = _anchors(tiny_config)
    gt_boxes = np.array([[10, 12, 30, 40], [40, 40, 60, 56]])
    rpn_match, rpn_bbox = build_rpn_targets(tiny_config.IMAGE_SHAPE, anchors,
                                            np.array([1, 2]), gt_boxes, tiny_config)
    positives = np.flatnonzero(rpn_match == POSITIVE)
    budget = tiny_config.RPN_TRAIN_ANCHORS_PER_IMAGE
    assert 2 <= positives.size <= budget // 2
    assert (rpn_match == NEGATIVE).sum() == budget - positives.size
    # Deltas of the positives, in anchor order, divided by RPN_BBOX_STD_DEV; zeros after.
    expected = _reference_deltas(anchors, gt_boxes, positives, tiny_config.RPN_BBOX_STD_DEV)
    np.testing.assert_allclose(rpn_bbox[:positives.size], expected, rtol=1e-5, atol=1e-5)
    assert not rpn_bbox[positives.size:].any()


def test_crowd_anchors_are_never_negative(tiny_config):
    anchors = _anchors(tiny_config)
    gt_boxes = np.array([[5, 5, 25, 25], [30, 20, 60, 60]])
    class_ids = np.array([1, -1])  # the second box is a crowd
    touches_crowd = compute_overlaps(anchors, gt_boxes[1:])[:, 0] >= 0.001
    assert touches_crowd.sum() > 0
    for seed in range(5):
        np.random.seed(seed)
        rpn_match, rpn_bbox = build_rpn_targets(tiny_config.IMAGE_SHAPE, anchors, class_ids,
                                                gt_boxes, tiny_config)
        assert not np.any(rpn_match[touches_crowd] == NEGATIVE)
        positives = np.flatnonzero(rpn_match == POSITIVE)
        # Positives regress to the non-crowd box only.
        expected = _reference_deltas(anchors, gt_boxes[:1], positives,
                                     tiny_config.RPN_BBOX_STD_DEV)
        np.testing.assert_allclose(rpn_bbox[:positives.size], expected, rtol=1e-5, atol=1e-5)


def test_only_crowds_gives_only_negatives(tiny_config):
    np.random.seed(0)
    anchors = _anchors(tiny_config)
    rpn_match, rpn_bbox = build_rpn_targets(tiny_config.IMAGE_SHAPE, anchors, np.array([-1]),
                                            np.array([[0, 0, 20, 20]]), tiny_config)
    assert (rpn_match == POSITIVE).sum() == 0
    assert (rpn_match == NEGATIVE).sum() == tiny_config.RPN_TRAIN_ANCHORS_PER_IMAGE
    assert not rpn_bbox.any()


def test_generate_random_rois(tiny_config):
    np.random.seed(0)
    gt_boxes = np.array([[10, 10, 20, 30], [40, 40, 60, 60]])
    rois = generate_random_rois((64, 64, 3), 50, np.array([1, 2]), gt_boxes)
    assert rois.shape == (50, 4) and rois.dtype == np.int32
    assert np.all(rois[:, 2] > rois[:, 0]) and np.all(rois[:, 3] > rois[:, 1])
    assert rois.min() >= 0 and rois.max() <= 64
    # int(0.9 * 50 / 2) = 22 ROIs around each box, inside the box grown by its own size.
    near_first = rois[:22]
    assert near_first[:, 0].min() >= 0 and near_first[:, 2].max() <= 30
    assert near_first[:, 1].min() >= 0 and near_first[:, 3].max() <= 50
    assert generate_random_rois((64, 64, 3), 7, np.zeros([0]), np.zeros([0, 4])).shape == (7, 4)


def test_build_detection_targets(tiny_config):
    np.random.seed(0)
    mask = np.zeros((64, 64, 2), dtype=bool)
    mask[8:24, 8:40, 0] = True
    mask[40:60, 30:50, 1] = True
    gt_boxes = np.array([[8, 8, 24, 40], [40, 30, 60, 50]], dtype=np.int32)
    gt_class_ids = np.array([1, 2], dtype=np.int32)
    rois = np.concatenate([gt_boxes, [[0, 0, 5, 5], [50, 0, 60, 10], [30, 0, 40, 20]]])
    for use_mini, masks in [(False, mask), (True, minimize_mask(gt_boxes, mask, (16, 16)))]:
        tiny_config.USE_MINI_MASK = use_mini
        out_rois, class_ids, bboxes, mask_targets = build_detection_targets(
            rois, gt_class_ids, gt_boxes, masks, tiny_config)
        n = tiny_config.TRAIN_ROIS_PER_IMAGE
        assert out_rois.shape == (n, 4) and class_ids.shape == (n,)
        assert bboxes.shape == (n, tiny_config.NUM_CLASSES, 4)
        assert mask_targets.shape == (n, 28, 28, tiny_config.NUM_CLASSES)
        # The two GT boxes are the only positives; the rest are (repeated) negatives.
        assert sorted(class_ids[class_ids > 0].tolist()) == [1, 2]
        first = np.flatnonzero(class_ids == 1)[0]
        np.testing.assert_array_equal(out_rois[first], gt_boxes[0])
        # A ROI equal to its GT box: zero deltas, a full mask at its class only.
        np.testing.assert_allclose(bboxes[first, 1], 0, atol=1e-6)
        assert not bboxes[first, [0, 2]].any()
        np.testing.assert_allclose(mask_targets[first, :, :, 1], 1.0)
        assert not mask_targets[first, :, :, 2].any()
        assert not mask_targets[class_ids == 0].any()


def test_build_detection_targets_leaves_a_roi_at_exactly_half_iou_out(tiny_config):
    """Matterport's NumPy sampler: positive when IoU > 0.5, negative when IoU < 0.5; a RoI at
    exactly 0.5 is neither (hand-computed: [0, 0, 10, 20] over the GT [0, 0, 10, 10] is 100 / 200)."""
    np.random.seed(0)
    mask = np.zeros((64, 64, 1), dtype=bool)
    mask[0:10, 0:10, 0] = True
    gt_boxes = np.array([[0, 0, 10, 10]], dtype=np.int32)
    rois = np.array([[0, 0, 10, 20], [40, 40, 60, 60], [0, 0, 10, 10]], dtype=np.int32)
    tiny_config.USE_MINI_MASK = False
    out_rois, class_ids, _, _ = build_detection_targets(rois, np.array([1], np.int32), gt_boxes, mask, tiny_config)
    kept = {tuple(r) for r in out_rois.tolist()}
    assert kept == {(0, 0, 10, 10), (40, 40, 60, 60)}  # the half-IoU RoI is in neither set
    assert class_ids[out_rois[:, 3] == 10].tolist() == [1]


def test_build_detection_targets_errors(tiny_config):
    with pytest.raises(ValueError, match=r"rpn_rois: expected at least one ROI"):
        build_detection_targets(np.zeros([0, 4]), np.array([1]), np.array([[0, 0, 4, 4]]),
                                np.ones((8, 8, 1), bool), tiny_config)
    with pytest.raises(ValueError, match=r"gt_class_ids: expected at least one instance"):
        build_detection_targets(np.array([[0, 0, 4, 4]]), np.array([0]),
                                np.array([[0, 0, 4, 4]]), np.ones((8, 8, 1), bool),
                                tiny_config)

