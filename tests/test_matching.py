"""mrcnn_ohem.core.matching and mrcnn_ohem.core.boxes: Matterport's labelling rules on hand-made cases."""
import numpy as np
import pytest

from mrcnn_ohem.core.boxes import NEGATIVE, NEUTRAL, POSITIVE, box_refinement, compute_overlaps
from mrcnn_ohem.core.matching import encode_rpn_bbox, match_anchors, subsample_labels


def test_compute_overlaps_hand_computed():
    # [0,0,10,10] vs [5,5,15,15]: intersection 25, union 175 -> 1/7. Disjoint -> 0.
    iou = compute_overlaps(np.array([[0, 0, 10, 10]]), np.array([[5, 5, 15, 15], [20, 20, 30, 30], [0, 0, 10, 10]]))
    np.testing.assert_allclose(iou, [[1 / 7, 0.0, 1.0]], rtol=1e-6)
    assert compute_overlaps(np.zeros((0, 4)), np.zeros((3, 4))).shape == (0, 3)
    # Degenerate boxes (zero area) have no union: IoU 0, not NaN.
    assert compute_overlaps(np.array([[1, 1, 1, 1]]), np.array([[1, 1, 1, 1]]))[0, 0] == 0.0


@pytest.mark.parametrize("n1,n2", [(1, 1), (5, 7), (7, 5), (300, 3), (3, 300)])
def test_compute_overlaps_matches_a_loop_reference(n1, n2):
    rng = np.random.default_rng(n1 * 1000 + n2)

    def boxes(n):
        corner = rng.uniform(0, 50, (n, 2))
        return np.concatenate([corner, corner + rng.uniform(1, 30, (n, 2))], axis=1)

    a, b = boxes(n1), boxes(n2)
    expected = np.zeros((n1, n2))
    for i in range(n1):
        for j in range(n2):
            ih = max(0.0, min(a[i, 2], b[j, 2]) - max(a[i, 0], b[j, 0]))
            iw = max(0.0, min(a[i, 3], b[j, 3]) - max(a[i, 1], b[j, 1]))
            area_a = (a[i, 2] - a[i, 0]) * (a[i, 3] - a[i, 1])
            area_b = (b[j, 2] - b[j, 0]) * (b[j, 3] - b[j, 1])
            expected[i, j] = ih * iw / (area_a + area_b - ih * iw)
    got = compute_overlaps(a, b)
    assert got.shape == (n1, n2) and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_box_refinement_hand_computed():
    # anchor 10x10 centred (5,5); gt 20x10 centred (10,5): dy = 5/10, dx = 0, dh = log 2, dw = 0
    deltas = box_refinement(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 20, 10]]))
    np.testing.assert_allclose(deltas, [[0.5, 0.0, np.log(2), 0.0]], rtol=1e-6)


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
