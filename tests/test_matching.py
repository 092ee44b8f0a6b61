"""mrcnn_ohem.core.matching: Matterport's labelling rules on hand-made cases, and equality with
an independent float64 reference (tests/reference.py) on random scenes, exact ties and near ties."""
import numpy as np
import pytest
import reference

from mrcnn_ohem.core.boxes import NEGATIVE, NEUTRAL, POSITIVE, box_refinement, compute_overlaps
from mrcnn_ohem.core.matching import encode_rpn_bbox, match_anchors, subsample_labels
from mrcnn_ohem.maskrcnn.anchors import generate_pyramid_anchors

ANCHORS = np.array(
    [
        [0, 0, 10, 10],     # a0: IoU 1.0 with g0            -> positive (>= 0.7)
        [0, 0, 10, 13],     # a1: IoU 100/130 = 0.77 with g0 -> positive (>= 0.7)
        [0, 0, 10, 20],     # a2: IoU 0.5 with g0            -> neutral
        [40, 40, 50, 50],   # a3: IoU 1/7 with g1 (best for g1) -> positive by the best-anchor rule
        [100, 100, 110, 110],  # a4: touches nothing           -> negative
        [200, 200, 210, 210],  # a5: inside the crowd box      -> neutral, never negative
    ],
    dtype=np.float32,
)
GT_BOXES = np.array([[0, 0, 10, 10], [45, 45, 55, 55], [195, 195, 215, 215]], dtype=np.float32)
GT_CLASS_IDS = np.array([1, 2, -3])  # the third is a crowd


def test_matterport_rules_on_hand_made_case():
    match = match_anchors(ANCHORS, GT_CLASS_IDS, GT_BOXES)
    np.testing.assert_array_equal(
        match.rpn_match, [POSITIVE, POSITIVE, NEUTRAL, POSITIVE, NEGATIVE, NEUTRAL]
    )
    np.testing.assert_array_equal(match.gt_boxes, GT_BOXES[:2])  # crowd removed
    np.testing.assert_array_equal(match.gt_index[[0, 1, 3]], [0, 0, 1])


def test_without_crowd_the_far_anchor_is_negative():
    match = match_anchors(ANCHORS, GT_CLASS_IDS[:2], GT_BOXES[:2])
    assert match.rpn_match[5] == NEGATIVE


def test_no_gt_all_negative_and_only_crowd():
    assert (match_anchors(ANCHORS, np.zeros(0, int), np.zeros((0, 4))).rpn_match == NEGATIVE).all()
    crowd_only = match_anchors(ANCHORS, np.array([-1]), GT_BOXES[2:])
    np.testing.assert_array_equal(crowd_only.rpn_match, [-1, -1, -1, -1, -1, 0])


def test_gt_box_without_overlap_does_not_make_every_anchor_positive():
    match = match_anchors(ANCHORS[:3], np.array([1]), np.array([[500, 500, 510, 510]]))
    assert (match.rpn_match == NEGATIVE).all()


def test_ties_for_best_anchor_are_all_positive():
    anchors = np.array([[0, 0, 10, 10], [10, 0, 20, 10], [50, 50, 60, 60]], np.float32)
    gt = np.array([[5, 0, 15, 10]], np.float32)  # IoU 1/3 with a0 and a1 alike
    np.testing.assert_array_equal(match_anchors(anchors, [1], gt).rpn_match, [1, 1, -1])


def test_subsample_labels_caps_count_and_is_seeded():
    labels = np.full(100, NEGATIVE, np.int32)
    a, b = labels.copy(), labels.copy()
    subsample_labels(a, NEGATIVE, 10, np.random.default_rng(0))
    subsample_labels(b, NEGATIVE, 10, np.random.default_rng(0))
    assert (a == NEGATIVE).sum() == 10 and (a == NEUTRAL).sum() == 90
    np.testing.assert_array_equal(a, b)
    c = labels.copy()
    subsample_labels(c, NEGATIVE, 1000)
    assert (c == NEGATIVE).all()


def test_encode_rpn_bbox_packs_positive_deltas():
    match = match_anchors(ANCHORS, GT_CLASS_IDS, GT_BOXES)
    std = np.array([0.1, 0.1, 0.2, 0.2])
    rpn_bbox = encode_rpn_bbox(ANCHORS, match.rpn_match, match, 5, std)
    expected = box_refinement(ANCHORS[[0, 1, 3]], GT_BOXES[[0, 0, 1]]) / std
    np.testing.assert_allclose(rpn_bbox[:3], expected, rtol=1e-6)
    assert not rpn_bbox[3:].any()
    with pytest.raises(ValueError,
                       match=r"num_rows must be >= the number of positive anchors; received num_rows=2 for 3"):
        encode_rpn_bbox(ANCHORS, match.rpn_match, match, 2, std)


@pytest.mark.parametrize(
    "anchors,ids,boxes,message",
    [
        (np.zeros((3, 3)), [1], np.zeros((1, 4)), r"anchors must have shape \[N, 4\].*received shape \(3, 3\)"),
        (np.zeros((3, 4)), [1], np.zeros((4,)), r"gt_boxes must have shape \[N, 4\]"),
        (np.zeros((3, 4)), [1, 2], np.zeros((1, 4)), r"received 2 class ids and 1 boxes"),
    ],
)
def test_bad_shapes(anchors, ids, boxes, message):
    with pytest.raises(ValueError, match=message):
        match_anchors(anchors, np.array(ids), boxes)


# ---------------------------------------------------------------------- float64, as Matterport

def pyramid_anchors(size=256):
    """Matterport's anchors of a size x size input (5 levels, strides 4..64), float64 pixels."""
    strides = [4, 8, 16, 32, 64]
    shapes = [[size // s, size // s] for s in strides]
    return generate_pyramid_anchors((8, 16, 32, 64, 128), [0.5, 1, 2], shapes, strides, 1)


def random_scene(rng, count, size=256, crowd=0.15):
    corner = rng.integers(0, size - 20, (count, 2))
    extent = rng.integers(4, 120, (count, 2))
    boxes = np.concatenate([corner, np.minimum(corner + extent, size)], axis=1).astype(np.int32)
    ids = np.where(rng.uniform(size=count) < crowd, -1, rng.integers(1, 4, count))
    return ids, boxes


def assert_matches_reference(anchors, ids, boxes):
    got = match_anchors(anchors, ids, boxes)
    labels, best_gt = reference.matterport_anchor_labels(anchors, ids, boxes)
    np.testing.assert_array_equal(got.rpn_match, labels)
    np.testing.assert_array_equal(got.gt_index, best_gt)


@pytest.mark.parametrize("seed", range(12))
def test_labels_equal_float64_reference_on_random_scenes(seed):
    rng = np.random.default_rng(seed)
    anchors = pyramid_anchors()  # 16,368 anchors; integer GT boxes on their grid tie often
    ids, boxes = random_scene(rng, int(rng.integers(1, 15)))
    assert_matches_reference(anchors, ids, boxes)


def test_labels_equal_reference_with_float_boxes_and_shuffled_anchors():
    rng = np.random.default_rng(11)
    anchors = pyramid_anchors()[rng.permutation(16368)] + rng.uniform(-0.5, 0.5, (16368, 4))
    for _ in range(4):
        ids, boxes = random_scene(rng, 6)
        assert_matches_reference(anchors, ids, boxes + rng.uniform(0, 1, boxes.shape))


def test_exact_ties_are_all_positive_and_best_gt_is_the_first():
    # g0 = [8, 8, 24, 24] sits symmetrically between four 16x16 anchors a0..a3 (each overlaps
    # it by 8 x 8 = 64: IoU 64 / (256 + 256 - 64) = 1/7), so all four tie for g0's best.
    # g1 = g0 is a duplicate: every anchor's best GT is g0, the first of equals.
    anchors = np.array([[0, 0, 16, 16], [0, 16, 16, 32], [16, 0, 32, 16], [16, 16, 32, 32],
                        [100, 100, 116, 116]], np.float64)
    boxes = np.array([[8, 8, 24, 24], [8, 8, 24, 24]], np.int32)
    match = match_anchors(anchors, [1, 2], boxes)
    np.testing.assert_array_equal(match.rpn_match, [1, 1, 1, 1, -1])
    np.testing.assert_array_equal(match.gt_index, [0, 0, 0, 0, 0])
    assert_matches_reference(anchors, [1, 2], boxes)


def near_tie_scene(rng):
    """A GT box and two anchors whose IoUs with it (about 0.53) differ in the 7th digit."""
    side = float(rng.uniform(60, 140))
    stretch = side * float(rng.uniform(0.8, 0.95))  # IoU = side / (side + stretch) ~ 0.53
    nudge = stretch * float(rng.uniform(-4e-7, 4e-7))
    gt = np.array([[0.0, 0.0, side, side]])
    anchors = np.array([[0.0, 0.0, side, side + stretch],             # wider
                        [0.0, 0.0, side + stretch + nudge, side],      # taller, nudged
                        [500.0, 500.0, 510.0, 510.0]])                 # far away
    return anchors, gt


def test_near_ties_follow_float64_where_float32_would_not():
    rng = np.random.default_rng(0)
    float32_wrong = 0
    for _ in range(200):
        anchors, gt = near_tie_scene(rng)
        iou64 = compute_overlaps(gt, anchors)[0, :2]
        iou32 = compute_overlaps(gt, anchors, dtype=np.float32)[0, :2]
        assert iou64.max() < 0.7  # only the best-anchor rule can make them positive
        float32_wrong += (iou32[0] == iou32[1]) != (iou64[0] == iou64[1]) or (
            iou32[0] > iou32[1]) != (iou64[0] > iou64[1])
        assert_matches_reference(anchors, [1], gt)
        labels = match_anchors(anchors, [1], gt).rpn_match
        assert labels[:2].sum() == (2 if iou64[0] == iou64[1] else 1)
    assert float32_wrong >= 20  # the cases are sharp: float32 would label many differently
