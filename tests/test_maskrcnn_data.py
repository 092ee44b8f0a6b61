"""Tests of mrcnn_ohem.maskrcnn.data: image meta, load_image_gt and DataGenerator."""
from __future__ import annotations

import logging

import numpy as np
import pytest
from helpers import SHAPE_SPECS, ShapesDataset, TinyConfig

from mrcnn_ohem.core.boxes import NEGATIVE, NEUTRAL, POSITIVE
from mrcnn_ohem.maskrcnn import data, targets
from mrcnn_ohem.maskrcnn.utils import expand_mask


def _dataset(specs):
    dataset = ShapesDataset()
    dataset.load_shapes(specs)
    dataset.prepare()
    return dataset


# ---------------------------------------------------------------------------- formatting


def test_mold_unmold_round_trip(tiny_config):
    image = np.arange(2 * 4 * 3, dtype=np.uint8).reshape(2, 4, 3) * 10
    molded = data.mold_image(image, tiny_config)
    assert molded.dtype == np.float32
    np.testing.assert_allclose(molded[0, 0], image[0, 0] - np.array([123.7, 116.8, 103.9]),
                               rtol=1e-6)
    np.testing.assert_array_equal(data.unmold_image(molded, tiny_config), image)


def test_mold_image_rounds_once_to_float32_as_matterport():
    """Matterport subtracts its float64 MEAN_PIXEL and the network casts the result to float32
    once; rounding the mean to float32 first leaves pixels an ulp off (hand-checked: 1 - 123.7)."""
    image = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    config = TinyConfig()
    expected = (image.astype(np.float64) - np.array([123.7, 116.8, 103.9])).astype(np.float32)
    np.testing.assert_array_equal(data.mold_image(image, config), expected)
    assert data.mold_image(np.ones((1, 1, 3), np.uint8), config)[0, 0, 0] == np.float32(1 - 123.7)


def test_compose_and_parse_image_meta(tiny_config):
    meta = data.compose_image_meta(7, (48, 40, 3), (64, 64, 3), (0, 5, 64, 58), 4 / 3,
                                   [1, 1, 0])
    assert meta.shape == (tiny_config.IMAGE_META_SIZE,)
    parsed = data.parse_image_meta(meta[None])
    assert parsed["image_id"].tolist() == [7]
    assert parsed["original_image_shape"].tolist() == [[48, 40, 3]]
    assert parsed["image_shape"].tolist() == [[64, 64, 3]]
    assert parsed["window"].tolist() == [[0, 5, 64, 58]]
    assert parsed["scale"][0] == pytest.approx(4 / 3)
    assert parsed["active_class_ids"].tolist() == [[1, 1, 0]]


# ---------------------------------------------------------------------------- load_image_gt


def test_load_image_gt_full_and_mini_masks(shapes_dataset, tiny_config):
    tiny_config.USE_MINI_MASK = False
    image, meta, class_ids, bbox, mask = data.load_image_gt(shapes_dataset, tiny_config, 0)
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    assert mask.shape == (64, 64, 2) and mask.dtype == bool
    np.testing.assert_array_equal(class_ids, [1, 2])
    assert class_ids.dtype == np.int32 and bbox.dtype == np.int32
    parsed = data.parse_image_meta(meta[None])
    # 48x40 -> min_dim asks 64/40 = 1.6, capped by max_dim at 64/48 = 4/3 -> 64x53, padded
    # left by (64 - 53) // 2 = 5.
    assert parsed["original_image_shape"].tolist() == [[48, 40, 3]]
    assert parsed["window"].tolist() == [[0, 5, 64, 58]]
    assert parsed["scale"][0] == pytest.approx(4 / 3)
    assert parsed["active_class_ids"].tolist() == [[1, 1, 1]]
    # Boxes are tight around the resized masks and inside the window.
    for k in range(2):
        ys, xs = np.nonzero(mask[:, :, k])
        assert bbox[k].tolist() == [ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]
    assert bbox[:, 1].min() >= 5 and bbox[:, 3].max() <= 58

    tiny_config.USE_MINI_MASK = True
    _, _, _, mini_bbox, mini = data.load_image_gt(shapes_dataset, tiny_config, 0)
    assert mini.shape == (16, 16, 2) and mini.dtype == bool
    np.testing.assert_array_equal(mini_bbox, bbox)
    square = expand_mask(mini_bbox, mini, (64, 64))[:, :, 0]
    np.testing.assert_array_equal(square, mask[:, :, 0])  # a filled square survives exactly
    # Matterport's old keyword still works.
    assert data.load_image_gt(shapes_dataset, tiny_config, 0,
                              use_mini_mask=False)[4].shape == (64, 64, 2)


def test_load_image_gt_image_without_instances(shapes_dataset, tiny_config):
    image, meta, class_ids, bbox, mask = data.load_image_gt(shapes_dataset, tiny_config, 2)
    assert image.shape == (64, 64, 3)
    assert class_ids.shape == (0,) and bbox.shape == (0, 4) and mask.shape == (16, 16, 0)


class _BadMasks(ShapesDataset):
    def load_mask(self, image_id):
        mask, class_ids = super().load_mask(image_id)
        if self.image_info[image_id].get("transpose"):
            return mask.transpose(1, 0, 2), class_ids
        return mask, class_ids[:1]


def test_load_image_gt_rejects_mismatched_masks(tiny_config):
    dataset = _BadMasks()
    dataset.load_shapes(SHAPE_SPECS[:1])
    dataset.image_info[0]["transpose"] = True
    dataset.prepare()
    with pytest.raises(ValueError, match=r"load_mask\(image_id=0 \(source 'shapes', id 0\)\): expected masks with the "
                                         r"image's height and width \(48, 40\) \(image shape "
                                         r"\(48, 40, 3\)\), received masks of shape "
                                         r"\(40, 48, 2\)"):
        data.load_image_gt(dataset, tiny_config, 0)
    dataset.image_info[0]["transpose"] = False
    with pytest.raises(ValueError, match=r"load_mask\(image_id=0 \(source 'shapes', id 0\)\): expected one "
                                         r"class id per mask \(2\), received 1"):
        data.load_image_gt(dataset, tiny_config, 0)


def test_load_image_gt_with_callable_augmentation(shapes_dataset, tiny_config):
    tiny_config.USE_MINI_MASK = False
    plain = data.load_image_gt(shapes_dataset, tiny_config, 0)
    flipped = data.load_image_gt(shapes_dataset, tiny_config, 0,
                                 augmentation=lambda im, m: (im[:, ::-1], m[:, ::-1]))
    np.testing.assert_array_equal(flipped[0], plain[0][:, ::-1])
    np.testing.assert_array_equal(flipped[4], plain[4][:, ::-1])
    # x1' = 64 - x2, x2' = 64 - x1.
    np.testing.assert_array_equal(flipped[3][:, [1, 3]], 64 - plain[3][:, [3, 1]])

    with pytest.raises(ValueError, match=r"augmentation of image 0: expected image and mask "
                                         r"shapes to stay \(64, 64, 3\) and \(64, 64, 2\), "
                                         r"received \(32, 64, 3\)"):
        data.load_image_gt(shapes_dataset, tiny_config, 0,
                           augmentation=lambda im, m: (im[:32], m[:32]))
    with pytest.raises(TypeError, match=r"augmentation: expected an imgaug augmenter or a "
                                        r"callable .* received 42"):
        data.load_image_gt(shapes_dataset, tiny_config, 0, augmentation=42)


class _FakeImgaug:
    """The two methods of an imgaug augmenter that load_image_gt uses (vertical flip)."""

    def __init__(self):
        self.seen_dtypes = []

    def to_deterministic(self):
        return self

    def augment_image(self, image, hooks=None):
        self.seen_dtypes.append(image.dtype)
        return image[::-1]


def test_load_image_gt_with_imgaug_style_augmenter(shapes_dataset, tiny_config):
    tiny_config.USE_MINI_MASK = False
    plain = data.load_image_gt(shapes_dataset, tiny_config, 1)
    augmenter = _FakeImgaug()
    flipped = data.load_image_gt(shapes_dataset, tiny_config, 1, augmentation=augmenter)
    np.testing.assert_array_equal(flipped[0], plain[0][::-1])
    np.testing.assert_array_equal(flipped[4], plain[4][::-1])
    assert flipped[4].dtype == bool and augmenter.seen_dtypes == [np.uint8, np.uint8]


# ---------------------------------------------------------------------------- DataGenerator


def test_generator_batch_shapes(shapes_dataset, tiny_config, caplog):
    generator = data.DataGenerator(shapes_dataset, tiny_config, shuffle=False)
    assert len(generator) == 2  # 4 images, batch 2
    with caplog.at_level(logging.WARNING, logger="mrcnn_ohem.maskrcnn.data"):
        batches = [generator[i] for i in range(len(generator))]
    num_anchors = generator.anchors.shape[0]
    assert num_anchors == 1023
    for inputs, outputs in batches:
        assert outputs == []
        images, metas, rpn_match, rpn_bbox, class_ids, boxes, masks = inputs
        assert images.shape == (2, 64, 64, 3) and images.dtype == np.float32
        assert metas.shape == (2, tiny_config.IMAGE_META_SIZE)
        assert rpn_match.shape == (2, num_anchors, 1) and rpn_match.dtype == np.int32
        assert rpn_bbox.shape == (2, tiny_config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4)
        assert class_ids.shape == (2, 4) and class_ids.dtype == np.int32
        assert boxes.shape == (2, 4, 4) and boxes.dtype == np.int32
        assert masks.shape == (2, 16, 16, 4) and masks.dtype == bool
        assert set(np.unique(rpn_match)) <= {NEGATIVE, NEUTRAL, POSITIVE}
        assert np.all((rpn_match != 0).sum(axis=(1, 2)) <= tiny_config.RPN_TRAIN_ANCHORS_PER_IMAGE)
    # Batch 1 starts at image 2 (no instances), so it holds images 3 and then 0 (wrapping).
    ids = [b[0][1][:, 0].astype(int).tolist() for b in batches]
    assert ids == [[0, 1], [3, 0]]
    # Padding: image 1 has one circle.
    assert batches[0][0][4][1].tolist() == [2, 0, 0, 0]
    # The empty image is skipped with one warning naming it, even when met again.
    generator[1]
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == ["Skipping image 2 (source 'shapes', id 2): no instances."]


def test_generator_calls_the_functions_it_is_handed(shapes_dataset, tiny_config):
    calls = {"targets": 0, "load": 0}

    def fake_targets(image_shape, anchors, gt_class_ids, gt_boxes, config):
        calls["targets"] += 1
        rpn_match = np.full([anchors.shape[0]], NEGATIVE, dtype=np.int32)  # every negative
        return rpn_match, np.full((config.RPN_TRAIN_ANCHORS_PER_IMAGE, 4), 0.5, np.float32)

    def counting_load(*args, **kwargs):
        calls["load"] += 1
        return data.load_image_gt(*args, **kwargs)

    handed = data.DataGenerator(shapes_dataset, tiny_config, shuffle=False,
                                load_image_gt=counting_load, build_rpn_targets=fake_targets)
    inputs, _ = handed[0]
    assert calls == {"targets": 2, "load": 2}
    assert np.all(inputs[2] == NEGATIVE) and np.all(inputs[3] == 0.5)
    # Without them: the model module's, unpatched here (tests/test_patch_reach.py patches it).
    plain = data.DataGenerator(shapes_dataset, tiny_config, shuffle=False)
    assert plain.load_image_gt is data.load_image_gt
    assert plain.build_rpn_targets is targets.build_rpn_targets
    inputs, _ = plain[0]
    assert (inputs[2] != 0).sum() <= 2 * tiny_config.RPN_TRAIN_ANCHORS_PER_IMAGE


def test_generator_with_no_instances_anywhere_raises(tiny_config, caplog):
    generator = data.DataGenerator(_dataset([[], []]), tiny_config)
    with caplog.at_level(logging.WARNING), \
            pytest.raises(ValueError, match=r"dataset: expected at least one image with an "
                                            r"instance .*received 2 images without any"):
        generator[0]
    assert "Skipping image 0" in caplog.text and "Skipping image 1" in caplog.text


def test_generator_errors(tiny_config):
    empty = ShapesDataset()
    empty.prepare()
    with pytest.raises(ValueError, match=r"dataset: expected at least one image"):
        data.DataGenerator(empty, tiny_config)
    generator = data.DataGenerator(_dataset(SHAPE_SPECS), tiny_config)
    with pytest.raises(IndexError, match=r"idx: expected 0 <= idx < 2, received 2"):
        generator[2]

    class Pad64(TinyConfig):
        IMAGE_RESIZE_MODE = "pad64"
        IMAGE_MAX_DIM = 128

    # 48x40 scaled by 64/40 = 1.6 -> 77x64 -> padded to 128x64, not IMAGE_SHAPE 128x128.
    with pytest.raises(ValueError, match=r"image 0: expected IMAGE_SHAPE \(128, 128, 3\) .*"
                                         r"received \(128, 64, 3\)"):
        data.DataGenerator(_dataset(SHAPE_SPECS), Pad64(), shuffle=False)[0]


def test_generator_shuffling_is_seedable(tiny_config):
    dataset = _dataset(SHAPE_SPECS[:2] * 6)  # 12 images, all with instances
    first = data.DataGenerator(dataset, tiny_config, seed=5)
    second = data.DataGenerator(dataset, tiny_config, seed=5)
    np.testing.assert_array_equal(first.image_ids, second.image_ids)
    assert sorted(first.image_ids.tolist()) == list(range(12))
    before = first.image_ids.copy()
    first.on_epoch_end()
    assert sorted(first.image_ids.tolist()) == list(range(12))
    assert not np.array_equal(first.image_ids, before)
    second.on_epoch_end()
    np.testing.assert_array_equal(first.image_ids, second.image_ids)
    ordered = data.DataGenerator(dataset, tiny_config, shuffle=False)
    ordered.on_epoch_end()
    assert ordered.image_ids.tolist() == list(range(12))


def test_generator_caps_instances_and_skips_augmentation_by_source(tiny_config):
    tiny_config.MAX_GT_INSTANCES = 2
    dataset = _dataset([SHAPE_SPECS[3]] * 2)  # three instances each
    seen = []

    def augmentation(image, mask):
        seen.append(True)
        return image, mask

    generator = data.DataGenerator(dataset, tiny_config, augmentation=augmentation, seed=0)
    inputs, _ = generator[0]
    assert inputs[4].shape == (2, 2) and np.all(inputs[4] > 0)
    assert inputs[6].shape == (2, 16, 16, 2) and inputs[6].any(axis=(1, 2)).all()
    assert len(seen) == 2
    data.DataGenerator(dataset, tiny_config, augmentation=augmentation,
                       no_augmentation_sources=["shapes"])[0]
    assert len(seen) == 2


def test_generator_random_rois_and_detection_targets(shapes_dataset, tiny_config):
    np.random.seed(0)
    generator = data.DataGenerator(shapes_dataset, tiny_config, shuffle=False, random_rois=20,
                                   detection_targets=True)
    inputs, outputs = generator[0]
    assert len(inputs) == 9
    assert inputs[7].shape == (2, 20, 4)
    n = tiny_config.TRAIN_ROIS_PER_IMAGE
    assert inputs[8].shape == (2, n, 4)
    assert [o.shape for o in outputs] == [(2, n, 1), (2, n, 3, 4), (2, n, 28, 28, 3)]


def test_data_generator_function(shapes_dataset, tiny_config):
    stream = data.data_generator(shapes_dataset, tiny_config, shuffle=False, batch_size=3,
                                 augment=True)
    for _ in range(3):  # crosses an epoch boundary (4 images -> 2 batches of 3)
        inputs, outputs = next(stream)
        assert inputs[0].shape == (3, 64, 64, 3) and outputs == []
