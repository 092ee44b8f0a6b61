"""mrcnn_ohem.core.boxes: IoU (float64, Matterport's arithmetic), the sorted anchor index, box coding."""
import numpy as np
import pytest
import reference

from mrcnn_ohem.core.boxes import SortedBoxes, box_areas, box_refinement, compute_overlaps
from mrcnn_ohem.maskrcnn.anchors import generate_pyramid_anchors


def random_boxes(rng, n, size=100.0, low=1.0, high=40.0):
    corner = rng.uniform(0, size, (n, 2))
    return np.concatenate([corner, corner + rng.uniform(low, high, (n, 2))], axis=1)


def test_box_areas_hand_computed():
    # 10 x 20 = 200; a zero-height box has area 0
    np.testing.assert_array_equal(box_areas(np.array([[0, 0, 10, 20], [5, 5, 5, 9]])), [200, 0])


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
    assert got.shape == (n1, n2) and got.dtype == np.float64
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-15)
    assert compute_overlaps(a, b, dtype=np.float32).dtype == np.float32


def test_box_refinement_hand_computed():
    # anchor 10x10 centred (5,5); gt 20x10 centred (10,5): dy = 5/10, dx = 0, dh = log 2, dw = 0
    deltas = box_refinement(np.array([[0, 0, 10, 10]]), np.array([[0, 0, 20, 10]]))
    np.testing.assert_allclose(deltas, [[0.5, 0.0, np.log(2), 0.0]], rtol=1e-6)


def test_compute_overlaps_float64_equals_matterports_formula_bit_for_bit():
    rng = np.random.default_rng(5)
    strides = [4, 8, 16, 32, 64]
    anchors = generate_pyramid_anchors((8, 16, 32, 64, 128), [0.5, 1, 2], [[256 // s] * 2 for s in strides], strides, 1)
    boxes = random_boxes(rng, 12, size=230, high=120).round().astype(np.int32)
    np.testing.assert_array_equal(compute_overlaps(anchors, boxes), reference.matterport_overlaps(anchors, boxes))
    np.testing.assert_array_equal(compute_overlaps(boxes, anchors), reference.matterport_overlaps(anchors, boxes).T)




def test_compute_overlaps_degenerate_and_inverted_boxes_give_zero_not_nan():
    # An inverted box (y2 < y1) has a negative "area"; where a union is not positive the IoU is 0.
    boxes = np.array([[0, 0, 10, 10], [5, 5, 5, 5], [10, 0, 0, 10]], np.float64)
    iou = compute_overlaps(boxes, boxes)
    assert np.isfinite(iou).all()
    np.testing.assert_array_equal(iou[1:, 1:], 0.0)
    assert iou[0, 0] == 1.0


def test_sorted_boxes_ranges_cover_every_overlapping_box():
    rng = np.random.default_rng(3)
    many = np.concatenate([random_boxes(rng, 2000, high=60), [[5, 5, 5, 9], [7, 7, 3, 9]]])  # + degenerate
    index = SortedBoxes(many)
    assert index.size == 2000 and set(index.ids.tolist()) == set(range(2000))
    for box in random_boxes(rng, 30, high=50):
        ranges = index.ranges(box)
        covered = np.zeros(index.size, bool)
        for start, stop in ranges:
            assert not covered[start:stop].any()  # disjoint
            covered[start:stop] = True
        overlapping = compute_overlaps(box[None], many[index.ids])[0] > 0
        assert not (overlapping & ~covered).any()
        iou = np.zeros(index.size)
        scratch = (np.empty(index.size), np.empty(index.size))
        for start, stop in ranges:
            index.iou_into(box, start, stop, iou, scratch)
        np.testing.assert_array_equal(iou, compute_overlaps(box[None], many[index.ids])[0])


def test_sorted_boxes_of_nothing():
    index = SortedBoxes(np.zeros((0, 4)))
    assert index.size == 0 and index.ranges(np.array([0.0, 0.0, 5.0, 5.0])) == []


@pytest.mark.parametrize("seed", range(3))
def test_box_refinement_against_numpy_reference(seed):
    rng = np.random.default_rng(seed)
    box, gt = random_boxes(rng, 50), random_boxes(rng, 50)
    h, w = box[:, 2] - box[:, 0], box[:, 3] - box[:, 1]
    gh, gw = gt[:, 2] - gt[:, 0], gt[:, 3] - gt[:, 1]
    expected = np.stack([(gt[:, 0] + gh / 2 - box[:, 0] - h / 2) / h, (gt[:, 1] + gw / 2 - box[:, 1] - w / 2) / w,
                         np.log(gh / h), np.log(gw / w)], axis=1)
    got = box_refinement(box, gt)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_reference_overlaps_module_is_independent():
    # The test reference and the package agree on a hand case: [0,0,10,10] vs [5,5,15,15] = 25/175.
    np.testing.assert_allclose(reference.matterport_overlaps([[0, 0, 10, 10]], [[5, 5, 15, 15]]), [[1 / 7]])
