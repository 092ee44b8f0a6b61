"""Tests for mrcnn_ohem.datasets.shapes: determinism, masks, distractors, COCO round trip."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest

from mrcnn_ohem.datasets.coco import CocoDataset
from mrcnn_ohem.datasets.shapes import (
    CLASS_NAMES,
    DISTRACTOR_KINDS,
    ShapesDataset,
    ShapeSpec,
    generate_scene,
    mask_to_polygons,
    render_scene,
    shape_mask,
    write_coco_folder,
)

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _dataset(count=6, height=64, width=64, seed=0, **kwargs) -> ShapesDataset:
    dataset = ShapesDataset()
    dataset.load_shapes(count, height, width, seed=seed, **kwargs)
    dataset.prepare()
    return dataset


def test_same_seed_same_images_and_masks():
    first, second = _dataset(seed=7), _dataset(seed=7)
    for i in first.image_ids:
        np.testing.assert_array_equal(first.load_image(i), second.load_image(i))
        m1, c1 = first.load_mask(i)
        m2, c2 = second.load_mask(i)
        np.testing.assert_array_equal(m1, m2)
        np.testing.assert_array_equal(c1, c2)


def test_image_does_not_depend_on_count_and_seed_changes_it():
    small, large, other = _dataset(count=3, seed=1), _dataset(count=9, seed=1), _dataset(count=3, seed=2)
    for i in range(3):
        np.testing.assert_array_equal(small.load_image(i), large.load_image(i))
    assert any(not np.array_equal(small.load_image(i), other.load_image(i)) for i in range(3))


def test_masks_are_non_empty_and_disjoint():
    dataset = _dataset(count=20, height=96, width=128, seed=3)
    assert dataset.class_names == ["BG", *CLASS_NAMES]
    for i in dataset.image_ids:
        image = dataset.load_image(i)
        masks, class_ids = dataset.load_mask(i)
        assert image.shape == (96, 128, 3) and image.dtype == np.uint8
        assert masks.shape[:2] == (96, 128) and masks.dtype == bool
        assert 1 <= masks.shape[-1] == len(class_ids) <= 3
        assert set(class_ids.tolist()) <= {1, 2, 3} and class_ids.dtype == np.int32
        assert masks.reshape(-1, masks.shape[-1]).sum(axis=0).min() >= 20  # no sliver masks
        assert masks.sum(axis=-1).max() == 1  # shapes never overlap


def test_distractors_present_unlabelled_and_visible():
    kinds = set()
    for index in range(40):
        scene = generate_scene(5, index, 64, 64)
        assert len(scene.targets) >= 1 and len(scene.distractors) >= 1
        image, masks, _ = render_scene(scene)
        labelled = masks.any(axis=-1)
        for spec in scene.distractors:
            kinds.add(spec.kind)
            region = shape_mask(spec, 64, 64)
            assert region.sum() >= 10
            assert not (region & labelled).any()  # distractor pixels belong to no instance
            # Painted in its own colour: far from the background colours on average.
            mean = image[region].astype(float).mean(axis=0)
            assert np.linalg.norm(mean - np.array(spec.color)) < 40
    assert kinds == set(DISTRACTOR_KINDS)


def test_no_distractors_when_disabled():
    for index in range(10):
        assert generate_scene(0, index, 64, 64, max_distractors=0).distractors == ()


@pytest.mark.parametrize("kind", CLASS_NAMES + DISTRACTOR_KINDS)
def test_each_kind_lies_inside_its_circle(kind):
    spec = ShapeSpec(kind, (40.0, 40.0), 20.0, 0.4, (255, 0, 0), aspect=0.5 if kind != "ellipse" else 1.8)
    mask = shape_mask(spec, 80, 80)
    rows, cols = np.nonzero(mask)
    assert len(rows) > 60
    assert np.hypot(rows - 40.0, cols - 40.0).max() <= 20.0 + 1.0


def test_near_misses_differ_from_their_target():
    base = dict(center=(32.0, 32.0), radius=20.0, angle=0.0, color=(0, 0, 0))
    square = shape_mask(ShapeSpec("square", **base), 64, 64)
    rounded = shape_mask(ShapeSpec("rounded_square", aspect=0.5, **base), 64, 64)
    hollow = shape_mask(ShapeSpec("hollow_square", aspect=0.6, **base), 64, 64)
    # Same orientation: the rounded square sits inside the square (up to rasterisation edges).
    assert rounded.sum() < square.sum() and (rounded & ~square).sum() <= 0.01 * rounded.sum()
    # Hollow square: outer ring of the same square, area 1 - 0.6**2 = 0.64 of it (+- edges).
    assert 0.55 < hollow.sum() / square.sum() < 0.75


def test_argument_errors():
    with pytest.raises(ValueError, match=r"count must be a positive integer; received 0"):
        ShapesDataset().load_shapes(0, 64, 64)
    with pytest.raises(ValueError, match=r"height must be an integer >= 32 pixels; received 16"):
        generate_scene(0, 0, 16, 64)
    with pytest.raises(ValueError, match=r"max_targets must be >= 1; received 0"):
        generate_scene(0, 0, 64, 64, max_targets=0)
    with pytest.raises(ValueError, match=r"kind must be one of .*received 'star'"):
        shape_mask(ShapeSpec("star", (5.0, 5.0), 3.0, 0.0, (0, 0, 0)), 10, 10)
    with pytest.raises(ValueError, match=r"mask_format must be 'rle' or 'polygon'; received 'png'"):
        write_coco_folder("unused", "train", 1, 64, 64, 0, mask_format="png")


def test_coco_round_trip_is_exact_with_rle(tmp_path):
    path = write_coco_folder(tmp_path, "train", 5, 64, 80, seed=11)
    assert path == tmp_path / "annotations" / "instances_train2017.json"
    document = json.loads(path.read_text())
    assert [c["name"] for c in document["categories"]] == list(CLASS_NAMES)
    assert all(record["distractors"] >= 1 for record in document["images"])
    coco_set = CocoDataset()
    coco_set.load_coco(tmp_path, "train")
    coco_set.prepare()
    shapes_set = _dataset(count=5, height=64, width=80, seed=11)
    assert coco_set.class_names == shapes_set.class_names
    for i in range(5):
        np.testing.assert_array_equal(coco_set.load_image(i), shapes_set.load_image(i))  # PNG is lossless
        m1, c1 = coco_set.load_mask(i)
        m2, c2 = shapes_set.load_mask(i)
        np.testing.assert_array_equal(m1, m2)
        np.testing.assert_array_equal(c1, c2)


def test_coco_round_trip_with_polygons_is_close(tmp_path):
    write_coco_folder(tmp_path, "val", 4, 96, 96, seed=2, mask_format="polygon", image_format="jpg")
    coco_set = CocoDataset()
    coco_set.load_coco(tmp_path, "val")
    coco_set.prepare()
    shapes_set = _dataset(count=4, height=96, width=96, seed=2)
    for i in range(4):
        assert coco_set.load_image(i).shape == (96, 96, 3)
        m1, c1 = coco_set.load_mask(i)
        m2, c2 = shapes_set.load_mask(i)
        np.testing.assert_array_equal(c1, c2)
        for k in range(m2.shape[-1]):
            iou = (m1[..., k] & m2[..., k]).sum() / (m1[..., k] | m2[..., k]).sum()
            assert iou > 0.85, iou


def test_mask_to_polygons_square():
    mask = np.zeros((10, 10), dtype=bool)
    mask[2:6, 3:8] = True  # rows 2..5, cols 3..7
    (polygon,) = mask_to_polygons(mask)
    xs, ys = polygon[0::2], polygon[1::2]
    # The level-0.5 contour runs half a pixel inside the pixel edges, shifted by +0.5: x in [3, 8].
    assert math.isclose(min(xs), 3.0) and math.isclose(max(xs), 8.0)
    assert math.isclose(min(ys), 2.0) and math.isclose(max(ys), 6.0)


def test_ensure_coco_folder_reuses_identical_data_and_regenerates_otherwise(tmp_path):
    from mrcnn_ohem.datasets.shapes import ensure_coco_folder

    path = ensure_coco_folder(tmp_path, "train", 3, 64, seed=5)
    info = json.loads(path.read_text())["info"]
    assert (info["count"], info["height"], info["seed"]) == (3, 64, 5)
    stamp = path.stat().st_mtime_ns
    assert ensure_coco_folder(tmp_path, "train", 3, 64, seed=5) == path
    assert path.stat().st_mtime_ns == stamp  # reused, not rewritten
    ensure_coco_folder(tmp_path, "train", 4, 64, seed=5)
    assert len(json.loads(path.read_text())["images"]) == 4
