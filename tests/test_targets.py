"""mrcnn_ohem.targets.build_rpn_targets: Matterport's labels and deltas, every negative kept."""
import numpy as np

from mrcnn_ohem import build_rpn_targets
from mrcnn_ohem.core.boxes import NEGATIVE, POSITIVE, box_refinement, compute_overlaps


class Cfg:
    RPN_TRAIN_ANCHORS_PER_IMAGE = 8
    RPN_BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])


def grid_anchors(size=64, step=4, box=8):
    ys, xs = np.meshgrid(np.arange(0, size, step), np.arange(0, size, step), indexing="ij")
    y, x = ys.ravel(), xs.ravel()
    return np.stack([y, x, y + box, x + box], axis=1).astype(np.float32)


def test_every_negative_kept_and_positives_capped():
    anchors = grid_anchors()  # 256 anchors
    gt_boxes = np.array([[8, 8, 16, 16], [30, 30, 46, 46]], np.float32)
    rpn_match, rpn_bbox = build_rpn_targets((64, 64, 3), anchors, np.array([1, 2]), gt_boxes, Cfg(),
                                           rng=np.random.default_rng(0))
    iou = compute_overlaps(anchors, gt_boxes)  # [256, 2], tested in test_matching.py
    is_best = (iou == iou.max(axis=0)).any(axis=1)  # best-anchor rule: positive (or capped to neutral)
    # every anchor with best IoU < 0.3 that is not a best anchor is negative: none dropped
    np.testing.assert_array_equal(rpn_match == NEGATIVE, (iou.max(1) < 0.3) & ~is_best)
    assert (rpn_match == NEGATIVE).sum() > Cfg.RPN_TRAIN_ANCHORS_PER_IMAGE
    positives = np.flatnonzero(rpn_match == POSITIVE)
    assert 0 < positives.size <= Cfg.RPN_TRAIN_ANCHORS_PER_IMAGE // 2
    assert rpn_bbox.shape == (8, 4) and rpn_bbox.dtype == np.float32
    expected = box_refinement(anchors[positives], gt_boxes[iou[positives].argmax(1)]) / Cfg.RPN_BBOX_STD_DEV
    np.testing.assert_allclose(rpn_bbox[: positives.size], expected, rtol=1e-5)


def test_negative_pool_from_config_or_argument():
    anchors = grid_anchors()
    gt = np.array([[8, 8, 16, 16]], np.float32)

    class Pooled(Cfg):
        OHEM_RPN_NEGATIVE_POOL = 20

    rpn_match, _ = build_rpn_targets((64, 64, 3), anchors, np.array([1]), gt, Pooled())
    assert (rpn_match == NEGATIVE).sum() == 20
    rpn_match, _ = build_rpn_targets((64, 64, 3), anchors, np.array([1]), gt, Pooled(), negative_pool=None)
    assert (rpn_match == NEGATIVE).sum() > 200


def test_crowd_anchors_never_negative():
    anchors = grid_anchors()
    gt = np.array([[8, 8, 16, 16], [32, 32, 64, 64]], np.float32)
    rpn_match, _ = build_rpn_targets((64, 64, 3), anchors, np.array([1, -1]), gt, Cfg())
    touches_crowd = (anchors[:, 2] > 32) & (anchors[:, 3] > 32)
    assert not (rpn_match[touches_crowd] == NEGATIVE).any()
    assert (rpn_match[~touches_crowd] == NEGATIVE).sum() > 100


def test_seeded_runs_repeat():
    anchors = grid_anchors()
    gt = np.array([[0, 0, 64, 64]], np.float32)  # huge box: many positives, capped at random
    a = build_rpn_targets((64, 64, 3), anchors, np.array([1]), gt, Cfg(), rng=np.random.default_rng(3))
    b = build_rpn_targets((64, 64, 3), anchors, np.array([1]), gt, Cfg(), rng=np.random.default_rng(3))
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
