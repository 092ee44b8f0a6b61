"""Tests of mrcnn_ohem.maskrcnn.anchors: Matterport's anchor order and values."""
from __future__ import annotations

import numpy as np
import pytest

from mrcnn_ohem.maskrcnn.anchors import compute_backbone_shapes, generate_anchors, generate_pyramid_anchors
from mrcnn_ohem.maskrcnn.utils import generate_pyramid_anchors as utils_pyramid


def _loop_reference(scales, ratios, shape, feature_stride, anchor_stride):
    """Matterport's order written as plain loops: cell (row-major), then ratio, then scale."""
    boxes = []
    for row in range(0, shape[0], anchor_stride):
        for col in range(0, shape[1], anchor_stride):
            cy, cx = row * feature_stride, col * feature_stride
            for ratio in ratios:
                for scale in np.atleast_1d(scales):
                    h, w = scale / np.sqrt(ratio), scale * np.sqrt(ratio)
                    boxes.append([cy - h / 2, cx - w / 2, cy + h / 2, cx + w / 2])
    return np.array(boxes)


def test_single_level_hand_computed():
    # 2x2 feature map, stride 16, scale 32, ratios (0.5, 1, 2):
    # ratio 0.5 -> h = 32 / sqrt(0.5) = 45.254834, w = 32 * sqrt(0.5) = 22.627417.
    anchors = generate_anchors(32, [0.5, 1, 2], (2, 2), 16, 1)
    assert anchors.shape == (12, 4)
    h, w = 32 / np.sqrt(0.5), 32 * np.sqrt(0.5)
    np.testing.assert_allclose(anchors[0], [-h / 2, -w / 2, h / 2, w / 2])
    np.testing.assert_allclose(anchors[0], [-22.627417, -11.3137085, 22.627417, 11.3137085])
    np.testing.assert_allclose(anchors[1], [-16, -16, 16, 16])  # ratio 1
    np.testing.assert_allclose(anchors[2], [-w / 2, -h / 2, w / 2, h / 2])  # ratio 2: wide
    # Cell order is row-major: the second cell is (row 0, col 1), centred at x = 16.
    np.testing.assert_allclose(anchors[4], [-16, 0, 16, 32])
    # The last cell (row 1, col 1) centres at (16, 16).
    np.testing.assert_allclose(anchors[10], [0, 0, 32, 32])


@pytest.mark.parametrize("scales, ratios, shape, stride, anchor_stride", [
    (32, [0.5, 1, 2], (5, 7), 4, 1),
    ([16, 32], [0.5, 1, 2], (4, 3), 8, 2),
    (64, [1], (3, 3), 16, 1),
])
def test_matches_loop_reference(scales, ratios, shape, stride, anchor_stride):
    np.testing.assert_allclose(generate_anchors(scales, ratios, shape, stride, anchor_stride),
                               _loop_reference(scales, ratios, shape, stride, anchor_stride))


def test_pyramid_on_tiny_config(tiny_config):
    shapes = compute_backbone_shapes(tiny_config, tiny_config.IMAGE_SHAPE)
    np.testing.assert_array_equal(shapes, [[16, 16], [8, 8], [4, 4], [2, 2], [1, 1]])
    anchors = generate_pyramid_anchors(tiny_config.RPN_ANCHOR_SCALES,
                                       tiny_config.RPN_ANCHOR_RATIOS, shapes,
                                       tiny_config.BACKBONE_STRIDES,
                                       tiny_config.RPN_ANCHOR_STRIDE)
    # (256 + 64 + 16 + 4 + 1) cells x 3 ratios
    assert anchors.shape == (1023, 4)
    # Level order: scale 8 (stride 4) first, the single scale-128 cell last.
    np.testing.assert_allclose(anchors[:768], _loop_reference(8, [0.5, 1, 2], (16, 16), 4, 1))
    np.testing.assert_allclose(anchors[-3:], _loop_reference(128, [0.5, 1, 2], (1, 1), 64, 1))
    np.testing.assert_array_equal(utils_pyramid(tiny_config.RPN_ANCHOR_SCALES,
                                                tiny_config.RPN_ANCHOR_RATIOS, shapes,
                                                tiny_config.BACKBONE_STRIDES, 1), anchors)


def test_backbone_shapes_round_up_and_follow_callable(tiny_config):
    np.testing.assert_array_equal(compute_backbone_shapes(tiny_config, (100, 70, 3)),
                                  [[25, 18], [13, 9], [7, 5], [4, 3], [2, 2]])
    tiny_config.BACKBONE = lambda *args: None
    tiny_config.COMPUTE_BACKBONE_SHAPE = lambda shape: np.array([[shape[0], 1]])
    np.testing.assert_array_equal(compute_backbone_shapes(tiny_config, (64, 64, 3)), [[64, 1]])
    tiny_config.BACKBONE = "vgg"
    with pytest.raises(ValueError, match=r"BACKBONE must be one of .* received 'vgg'"):
        compute_backbone_shapes(tiny_config, (64, 64, 3))


def test_pyramid_rejects_mismatched_levels():
    with pytest.raises(ValueError, match=r"one entry per level .* received 2, 1 and 1"):
        generate_pyramid_anchors([8, 16], [1], [[4, 4]], [4], 1)
