"""Tests of mrcnn_ohem.maskrcnn.utils."""
from __future__ import annotations

import logging
import random
from pathlib import Path

import numpy as np
import pytest
import scipy.ndimage
import skimage.io

from mrcnn_ohem.core.boxes import box_refinement
from mrcnn_ohem.core.randomness import image_random_state, image_seed
from mrcnn_ohem.maskrcnn import utils

SHARED = Path(__file__).resolve().parents[2] / "shared"
FORK_UTILS = SHARED / "forks" / "mask_rcnn_tf2_14" / "mrcnn" / "utils.py"
COCO_VAL = SHARED / "data" / "coco_mini" / "val2017"


def _rect_mask(shape, boxes):
    mask = np.zeros(tuple(shape) + (len(boxes),), dtype=bool)
    for i, (y1, x1, y2, x2) in enumerate(boxes):
        mask[y1:y2, x1:x2, i] = True
    return mask


# ---------------------------------------------------------------------------- Dataset


def _two_source_dataset():
    dataset = utils.Dataset()
    dataset.add_class("coco", 1, "person, human")
    dataset.add_class("coco", 18, "dog")
    dataset.add_class("coco", 18, "dog again")  # a repeated (source, id) is ignored
    dataset.add_class("shapes", 1, "square")
    dataset.add_image("coco", image_id=397133, path="a.jpg", width=640)
    dataset.add_image("shapes", image_id=0, path=None)
    dataset.prepare()
    return dataset


def test_dataset_prepare_builds_id_tables():
    dataset = _two_source_dataset()
    assert dataset.num_classes == 4 and dataset.num_images == 2
    assert dataset.class_names == ["BG", "person", "dog", "square"]
    np.testing.assert_array_equal(dataset.image_ids, [0, 1])
    np.testing.assert_array_equal(dataset.class_ids, [0, 1, 2, 3])
    assert dataset.map_source_class_id("coco.18") == 2
    assert dataset.map_source_class_id("shapes.1") == 3
    assert dataset.get_source_class_id(2, "coco") == 18
    assert dataset.image_from_source_map == {"coco.397133": 0, "shapes.0": 1}
    assert dataset.source_class_ids == {"": [0], "coco": [0, 1, 2], "shapes": [0, 3]}
    assert dataset.image_info[0]["width"] == 640
    assert dataset.source_image_link(0) == "a.jpg"
    assert dataset.image_reference(0) == ""


def test_dataset_errors():
    dataset = _two_source_dataset()
    with pytest.raises(ValueError, match=r"source: expected a name without '\.', received 'a\.b'"):
        dataset.add_class("a.b", 1, "x")
    with pytest.raises(ValueError, match=r"class_id 3: expected a class of source 'coco', "
                                         r"received one of source 'shapes'"):
        dataset.get_source_class_id(3, "coco")
    with pytest.raises(KeyError, match=r"source_class_id: expected .*received 'coco\.99'"):
        dataset.map_source_class_id("coco.99")


@pytest.mark.parametrize("stored", [
    np.arange(12, dtype=np.uint8).reshape(3, 4),  # grayscale
    np.arange(48, dtype=np.uint8).reshape(3, 4, 4),  # RGBA
    np.arange(36, dtype=np.uint8).reshape(3, 4, 3),  # RGB
])
def test_load_image_always_returns_rgb(tmp_path, stored):
    path = tmp_path / "image.png"
    skimage.io.imsave(path, stored, check_contrast=False)
    dataset = utils.Dataset()
    dataset.add_image("files", image_id=1, path=str(path))
    dataset.prepare()
    image = dataset.load_image(0)
    assert image.shape == (3, 4, 3) and image.dtype == np.uint8
    expected = np.repeat(stored[..., None], 3, axis=-1) if stored.ndim == 2 else stored[..., :3]
    np.testing.assert_array_equal(image, expected)


def test_base_load_mask_warns_and_returns_no_instances(caplog):
    dataset = _two_source_dataset()
    with caplog.at_level(logging.WARNING):
        mask, class_ids = dataset.load_mask(1)
    assert mask.shape[-1] == 0 and class_ids.shape == (0,) and class_ids.dtype == np.int32
    assert "override load_mask()" in caplog.text


# ---------------------------------------------------------------------------- resizing


IMAGE = (np.random.default_rng(0).random((50, 80, 3)) * 255).astype(np.uint8)


def test_resize_image_square():
    # scale = max(1, 64 / 50) = 1.28; long side 80 * 1.28 = 102.4 -> 102 <= 128, so kept.
    image, window, scale, padding, crop = utils.resize_image(IMAGE, 64, 128, mode="square")
    assert image.shape == (128, 128, 3) and image.dtype == np.uint8
    assert scale == pytest.approx(1.28)
    # 128 - 64 = 64 rows of padding split 32/32; 128 - 102 = 26 columns split 13/13.
    assert padding == [(32, 32), (13, 13), (0, 0)]
    assert window == (32, 13, 96, 115) and crop is None
    assert image[:32].max() == 0 and image[:, :13].max() == 0 and image[96:].max() == 0


def test_resize_image_square_caps_long_side_at_max_dim():
    # min_dim asks for 64 / 50 = 1.28, but 80 * 1.28 > 96, so scale = 96 / 80 = 1.2.
    image, window, scale, _, _ = utils.resize_image(IMAGE, 64, 96, mode="square")
    assert scale == pytest.approx(1.2)
    assert image.shape == (96, 96, 3) and window == (18, 0, 78, 96)


def test_resize_image_square_without_scaling_copies_pixels():
    image, window, scale, _, _ = utils.resize_image(IMAGE, None, 128, mode="square")
    assert scale == 1
    y1, x1, y2, x2 = window
    np.testing.assert_array_equal(image[y1:y2, x1:x2], IMAGE)


def test_resize_image_pad64_none_and_crop():
    image, window, scale, padding, _ = utils.resize_image(IMAGE, 64, None, mode="pad64")
    assert image.shape == (64, 128, 3) and padding == [(0, 0), (13, 13), (0, 0)]
    assert window == (0, 13, 64, 115)

    image, window, scale, padding, crop = utils.resize_image(IMAGE, 64, 128, mode="none")
    assert image is IMAGE and window == (0, 0, 50, 80) and scale == 1 and crop is None

    random.seed(3)
    image, window, scale, padding, crop = utils.resize_image(IMAGE, 64, None, mode="crop")
    y, x, h, w = crop
    assert image.shape == (64, 64, 3) and (h, w) == (64, 64) and window == (0, 0, 64, 64)
    assert y == 0 and 0 <= x <= 102 - 64
    full, *_ = utils.resize_image(IMAGE, 64, 128, mode="pad64")
    np.testing.assert_array_equal(image, full[y:y + 64, 13 + x:13 + x + 64])


@pytest.mark.parametrize("kwargs, match", [
    ({"mode": "stretch"}, r"mode: expected one of .*received 'stretch'"),
    ({"mode": "square", "max_dim": None}, r"max_dim: expected a positive integer in mode "
                                          r"'square', received None"),
    ({"mode": "crop", "min_dim": None}, r"min_dim: expected a positive integer"),
])
def test_resize_image_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        utils.resize_image(IMAGE, **kwargs)


def test_resize_mask_is_bool_safe_and_exact():
    mask = np.zeros((5, 4, 2), dtype=bool)
    mask[1:3, 1:4, 0] = True
    mask[4, 0, 1] = True
    doubled = utils.resize_mask(mask, 2, [(0, 0), (0, 0), (0, 0)])
    assert doubled.dtype == bool and doubled.shape == (10, 8, 2)
    # Nearest neighbour at scale 2 repeats every pixel into a 2x2 block, nothing blended.
    np.testing.assert_array_equal(doubled, mask.repeat(2, axis=0).repeat(2, axis=1))

    padded = utils.resize_mask(mask, 1, [(1, 2), (0, 3), (0, 0)])
    assert padded.shape == (8, 7, 2)
    np.testing.assert_array_equal(padded[1:6, 0:4], mask)
    assert padded.sum() == mask.sum()

    labels = np.zeros((50, 80, 1), dtype=np.uint8)
    labels[10:30, 20:60] = 3
    labels[20:25, 30:35] = 7
    resized = utils.resize_mask(labels, 1.28, [(0, 0), (0, 0), (0, 0)])
    assert resized.dtype == np.uint8 and set(np.unique(resized)) == {0, 3, 7}


@pytest.mark.parametrize("shape, scale", [((50, 80), 1.28), ((480, 640), 1.6),
                                          ((427, 640), 1.6), ((33, 17), 2.5), ((200, 300), 0.85)])
def test_resize_mask_equals_the_scipy_zoom_matterport_calls(shape, scale):
    # Matterport: scipy.ndimage.zoom(mask, zoom=[scale, scale, 1], order=0), corner-aligned;
    # at 480 rows x 1.6 scipy's round-off puts the last output row outside the input (0).
    mask = np.random.default_rng(0).random(shape + (2,)) > 0.5
    ours = utils.resize_mask(mask, scale, [(0, 0), (0, 0), (0, 0)])
    reference = scipy.ndimage.zoom(mask, zoom=[scale, scale, 1], order=0)
    assert ours.dtype == bool
    np.testing.assert_array_equal(ours, reference)


def test_resize_mask_follows_resize_image():
    mask = _rect_mask((50, 80), [(10, 20, 30, 60), (0, 0, 50, 80)])
    for mode in ("square", "pad64", "crop"):
        random.seed(0)
        image, window, scale, padding, crop = utils.resize_image(IMAGE, 64, 128, mode=mode)
        resized = utils.resize_mask(mask, scale, padding, crop)
        assert resized.shape[:2] == image.shape[:2] and resized.dtype == bool
        if crop is None:
            # The full-image mask covers exactly the window.
            y1, x1, y2, x2 = window
            assert resized[..., 1].sum() == (y2 - y1) * (x2 - x1)
            assert resized[y1:y2, x1:x2, 1].all()
    empty = utils.resize_mask(np.zeros((50, 80, 0), bool), 1.28, [(32, 32), (13, 13), (0, 0)])
    assert empty.shape == (128, 128, 0)


def test_minimize_expand_round_trip():
    mask = _rect_mask((40, 50), [(5, 10, 25, 40), (30, 2, 38, 9)])
    yy, xx = np.mgrid[:40, :50]
    disc = (yy - 20) ** 2 + (xx - 25) ** 2 <= 12 ** 2
    mask = np.concatenate([mask, disc[..., None]], axis=-1)
    bbox = utils.extract_bboxes(mask)
    np.testing.assert_array_equal(bbox, [[5, 10, 25, 40], [30, 2, 38, 9], [8, 13, 33, 38]])
    mini = utils.minimize_mask(bbox, mask, (16, 16))
    assert mini.shape == (16, 16, 3) and mini.dtype == bool
    back = utils.expand_mask(bbox, mini, (40, 50, 3))
    assert back.dtype == bool
    np.testing.assert_array_equal(back[..., :2], mask[..., :2])  # rectangles exactly
    iou = utils.compute_overlaps_masks(back[..., 2:], mask[..., 2:])[0, 0]
    assert iou > 0.9
    with pytest.raises(ValueError, match=r"bbox\[0\]: expected a box with positive area"):
        utils.minimize_mask(np.array([[3, 3, 3, 9]]), mask[..., :1], (16, 16))


def test_unmold_mask():
    soft = np.zeros((4, 4), dtype=np.float32)
    soft[:, 2:] = 0.9
    full = utils.unmold_mask(soft, (2, 4, 10, 12), (16, 16, 3))
    assert full.dtype == bool and full.shape == (16, 16)
    assert full[2:10, 8:12].all() and not full[2:10, 4:7].any() and full.sum() == 8 * 4


# ---------------------------------------------------------------------------- boxes


def test_extract_bboxes_empty_mask_gives_zero_box():
    mask = _rect_mask((10, 10), [(2, 3, 5, 9)])
    mask = np.concatenate([mask, np.zeros((10, 10, 1), bool)], axis=-1)
    np.testing.assert_array_equal(utils.extract_bboxes(mask), [[2, 3, 5, 9], [0, 0, 0, 0]])
    assert utils.extract_bboxes(mask).dtype == np.int32


def test_iou_helpers_hand_computed():
    # [0,0,10,10] vs [5,5,15,15]: intersection 25, union 175.
    boxes = np.array([[5, 5, 15, 15], [0, 0, 10, 10], [20, 20, 30, 30]], dtype=float)
    iou = utils.compute_iou(np.array([0, 0, 10, 10]), boxes, 100.0, np.full(3, 100.0))
    np.testing.assert_allclose(iou, [25 / 175, 1, 0])
    np.testing.assert_allclose(utils.compute_overlaps(boxes[:1], boxes[1:]), [[25 / 175, 0]],
                               rtol=1e-6)
    masks = _rect_mask((20, 20), [(0, 0, 10, 10), (5, 5, 15, 15)])
    np.testing.assert_allclose(utils.compute_overlaps_masks(masks, masks),
                               [[1, 25 / 175], [25 / 175, 1]], rtol=1e-6)
    assert utils.compute_overlaps_masks(masks, masks[..., :0]).shape == (2, 0)


def test_non_max_suppression():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30], [0, 0, 10, 9]])
    scores = np.array([0.6, 0.9, 0.5, 0.4])
    # IoU(1, 0) = 81/100 = 0.81, IoU(1, 3) = 72/99 = 0.727, IoU(0, 3) = 90/100 = 0.9.
    # At 0.5 box 1 (best) suppresses 0 and 3; box 2 overlaps nothing.
    np.testing.assert_array_equal(utils.non_max_suppression(boxes, scores, 0.5), [1, 2])
    # At 0.85 box 1 keeps 0 and 3, then box 0 suppresses 3.
    np.testing.assert_array_equal(utils.non_max_suppression(boxes, scores, 0.85), [1, 0, 2])
    np.testing.assert_array_equal(utils.non_max_suppression(boxes, scores, 0.95), [1, 0, 2, 3])
    assert utils.non_max_suppression(boxes[:0], scores[:0], 0.5).shape == (0,)


def test_box_deltas_round_trip_and_graph_twin():
    rng = np.random.default_rng(1)
    y1x1 = rng.uniform(0, 50, (20, 2))
    boxes = np.concatenate([y1x1, y1x1 + rng.uniform(2, 30, (20, 2))], axis=1)
    gt = np.concatenate([y1x1 + 1, y1x1 + rng.uniform(2, 30, (20, 2))], axis=1)
    deltas = utils.box_refinement(boxes, gt)
    assert utils.box_refinement is box_refinement
    np.testing.assert_allclose(utils.apply_box_deltas(boxes, deltas), gt, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(utils.box_refinement_graph(boxes, gt).numpy(), deltas,
                               rtol=1e-5, atol=1e-5)


def test_norm_denorm_boxes():
    boxes = np.array([[0, 0, 64, 64], [10, 20, 30, 40]])
    norm = utils.norm_boxes(boxes, (64, 64))
    # (y2, x2) exclusive in pixels becomes inclusive: (64 - 1) / (64 - 1) = 1.
    np.testing.assert_allclose(norm[0], [0, 0, 1, 1])
    np.testing.assert_allclose(norm[1], [10 / 63, 20 / 63, 29 / 63, 39 / 63], rtol=1e-6)
    np.testing.assert_array_equal(utils.denorm_boxes(norm, (64, 64)), boxes)


def test_trim_zeros_and_batch_slice():
    x = np.array([[1, 2], [0, 0], [3, 0], [0, 0]])
    np.testing.assert_array_equal(utils.trim_zeros(x), [[1, 2], [3, 0]])
    with pytest.raises(ValueError, match=r"x: expected a 2-D array .*received shape \(4,\)"):
        utils.trim_zeros(np.zeros(4))
    a = np.arange(6.0).reshape(2, 3)
    b = np.array([[1.0], [2.0]])
    out = utils.batch_slice([a, b], lambda x, y: x * y, 2)
    np.testing.assert_allclose(out.numpy(), a * b)
    first, second = utils.batch_slice(a, lambda x: (x[:1], x[1:]), 2, names=["f", "s"])
    np.testing.assert_allclose(first.numpy(), a[:, :1])
    np.testing.assert_allclose(second.numpy(), a[:, 1:])


# ---------------------------------------------------------------------------- metrics


def _instances(shape, boxes):
    return np.array(boxes, dtype=np.int32), _rect_mask(shape, boxes)


def test_compute_ap_hand_computed():
    gt_boxes, gt_masks = _instances((40, 40), [(0, 0, 10, 10), (20, 20, 30, 30)])
    gt_class_ids = np.array([1, 1])
    # Scores 0.9 hits GT0, 0.8 misses, 0.7 hits GT1 (listed out of order on purpose).
    pred_boxes, pred_masks = _instances((40, 40), [(20, 20, 30, 30), (0, 0, 10, 10),
                                                   (30, 0, 40, 10)])
    pred_scores = np.array([0.7, 0.9, 0.8])
    pred_class_ids = np.array([1, 1, 1])
    ap, precisions, recalls, overlaps = utils.compute_ap(
        gt_boxes, gt_class_ids, gt_masks, pred_boxes, pred_class_ids, pred_scores, pred_masks)
    # precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1 -> envelope 1, 2/3, 2/3;
    # AP = 0.5 * 1 + 0.5 * 2/3 = 0.8333.
    assert ap == pytest.approx(0.5 + 0.5 * 2 / 3)
    np.testing.assert_allclose(precisions, [1, 1, 2 / 3, 2 / 3, 0])
    np.testing.assert_allclose(recalls, [0, 0.5, 0.5, 1, 1])
    assert overlaps.shape == (3, 2)
    # A wrong class never matches.
    ap_wrong = utils.compute_ap(gt_boxes, gt_class_ids, gt_masks, pred_boxes,
                                np.array([2, 2, 2]), pred_scores, pred_masks)[0]
    assert ap_wrong == 0


def test_compute_matches_never_matches_first_gt_twice():
    gt_boxes, gt_masks = _instances((20, 20), [(0, 0, 10, 10)])
    pred_boxes, pred_masks = _instances((20, 20), [(0, 0, 10, 10), (0, 0, 10, 10)])
    gt_match, pred_match, _ = utils.compute_matches(
        gt_boxes, np.array([1]), gt_masks, pred_boxes, np.array([1, 1]),
        np.array([0.9, 0.8]), pred_masks)
    np.testing.assert_array_equal(gt_match, [0])
    np.testing.assert_array_equal(pred_match, [0, -1])


def test_compute_ap_range_and_recall(capsys):
    gt_boxes, gt_masks = _instances((40, 40), [(0, 0, 10, 10)])
    # IoU of the prediction with the GT is 80 / 100 = 0.8.
    pred_boxes, pred_masks = _instances((40, 40), [(0, 0, 8, 10)])
    args = (gt_boxes, np.array([1]), gt_masks, pred_boxes, np.array([1]), np.array([0.9]),
            pred_masks)
    # Thresholds 0.5 .. 0.95: the match holds up to 0.8 (7 of 10 thresholds).
    assert utils.compute_ap_range(*args, verbose=0) == pytest.approx(0.7)
    assert utils.compute_ap_range(*args, iou_thresholds=[0.5, 0.9], verbose=1) == 0.5
    assert "AP @0.50-0.90" in capsys.readouterr().out
    recall, positive_ids = utils.compute_recall(np.array([[0, 0, 8, 10], [30, 30, 40, 40]]),
                                                np.array([[0, 0, 10, 10], [20, 0, 30, 10]]),
                                                0.5)
    assert recall == 0.5
    np.testing.assert_array_equal(positive_ids, [0])


@pytest.mark.parametrize("low, dtype", [(0, np.uint8), (40, np.uint8), (0, np.float32),
                                        (40, np.float64)])
@pytest.mark.parametrize("shape", [(48, 40, 3), (30, 64, 1), (17, 23, 4)])
def test_fast_bilinear_resize_equals_skimage_resize_bit_for_bit(shape, low, dtype):
    # low=40: no pixel is 0, so skimage clips to the input's own range [40, 255], not [0, 255].
    image = np.random.default_rng(0).integers(low, 256, shape).astype(dtype)
    for size in ((96, 80), (61, 47), (20, 18)):
        expected = utils.resize(image, size, order=1, mode="constant", preserve_range=True)
        ours = utils._resize_bilinear(image, size)
        assert ours.dtype == expected.dtype
        np.testing.assert_array_equal(ours, expected)


def test_resize_image_truncates_like_matterport():
    # 2x2 -> 4x4 (scale 2): skimage's output pixel j samples source (j + 0.5) / 2 - 0.5 =
    # -0.25, 0.25, 0.75, 1.25, with 0 outside the image. Columns [0, 11]:
    # 0.75*0 = 0, 0.75*0 + 0.25*11 = 2.75, 0.25*0 + 0.75*11 = 8.25, 0.75*11 + 0.25*0 = 8.25;
    # the outer rows take 0.75 of that: 0, 2.0625, 6.1875, 6.1875. Matterport casts with
    # astype(uint8), which truncates: 2.75 -> 2 (rounding gave 3).
    image = np.repeat(np.array([[[0], [11]], [[0], [11]]], dtype=np.uint8), 3, axis=2)
    resized, window, scale, padding, _ = utils.resize_image(image, 4, 4, mode="square")
    assert scale == 2 and window == (0, 0, 4, 4) and padding == [(0, 0), (0, 0), (0, 0)]
    inner, outer = [0, 2, 8, 8], [0, 2, 6, 6]
    np.testing.assert_array_equal(resized[..., 0], [outer, inner, inner, outer])
    assert resized.dtype == np.uint8 and (resized == resized[..., :1]).all()


def test_resize_image_clips_to_the_input_range_like_skimage():
    # Columns [10, 11] (no 0 in the image): before clipping the inner rows read 7.5, 10.25,
    # 10.75, 8.25 and the outer rows 0.75 of that; skimage clips to the input's range
    # [10, 11] because every output lies above the fill value 0, and truncation gives 10.
    image = np.repeat(np.array([[[10], [11]], [[10], [11]]], dtype=np.uint8), 3, axis=2)
    resized = utils.resize_image(image, 4, 4, mode="square")[0]
    np.testing.assert_array_equal(resized, np.full((4, 4, 3), 10, np.uint8))


def test_resize_image_crop_draws_its_position_with_python_random():
    image = np.zeros((200, 300, 3), np.uint8)
    image[..., 0] = np.arange(200)[:, None]
    image[..., 1] = np.arange(300)[None, :] % 256
    draws = random.Random(11)
    expected = (draws.randint(0, 200 - 128), draws.randint(0, 300 - 128))  # y, then x
    np.random.seed(0)  # NumPy's generator plays no part
    random.seed(11)
    cropped, window, scale, padding, crop = utils.resize_image(image, 128, None, mode="crop")
    assert crop == (*expected, 128, 128) and window == (0, 0, 128, 128) and scale == 1
    np.testing.assert_array_equal(cropped, image[expected[0]:expected[0] + 128,
                                                 expected[1]:expected[1] + 128])
    # A seeded DataGenerator's image state: its own Python generator, not the global one.
    sequence = image_seed(5, 0, 3)
    with image_random_state(sequence):
        in_state = utils.resize_image(image, 128, None, mode="crop")[4]
    with image_random_state(sequence):
        from mrcnn_ohem.core.randomness import python_random

        draws = python_random()
        assert in_state[:2] == (draws.randint(0, 72), draws.randint(0, 172))


def test_resize_image_pad64_wants_min_dim_a_multiple_of_64():
    with pytest.raises(ValueError, match=r"min_dim: expected a multiple of 64 in mode 'pad64', "
                                         r"received 100"):
        utils.resize_image(IMAGE, 100, None, mode="pad64")


def test_minimize_mask_rounds_an_exact_half_down_like_np_around():
    # Columns 1, 0, 1, 0 squeezed to 2: each mini pixel is the mean of a pair, exactly 0.5.
    # Matterport rounds with np.around, and np.around(0.5) = 0: all False.
    mask = np.zeros((4, 4, 1), bool)
    mask[:, 0::2, 0] = True
    mini = utils.minimize_mask(np.array([[0, 0, 4, 4]]), mask, (4, 2))
    np.testing.assert_array_equal(mini, np.zeros((4, 2, 1), bool))


def test_unmold_mask_resizes_in_the_mask_s_own_float_dtype():
    # 0.4999999999 stays below 0.5 in float64; cast to float32 it would become 0.5 (True).
    soft = np.full((4, 4), 0.4999999999, dtype=np.float64)
    assert not utils.unmold_mask(soft, (0, 0, 8, 8), (8, 8, 3)).any()
    assert utils.unmold_mask(soft.astype(np.float32), (0, 0, 8, 8), (8, 8, 3)).all()
