"""Anchor boxes of the feature pyramid, in Matterport Mask R-CNN's order and values.

Anchors are ``(y1, x1, y2, x2)`` in pixels of the model input. Order: level by level (the
scale of ``RPN_ANCHOR_SCALES[0]`` first), inside a level row-major over feature-map cells,
and inside a cell the ratios in ``RPN_ANCHOR_RATIOS`` order. ``rpn_match`` and the RPN's
outputs share this order, so it must not change. NumPy only.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from mrcnn_ohem.core.checks import fail

from .config import BACKBONES


def generate_anchors(scales: float | Sequence[float], ratios: Sequence[float],
                     shape: Sequence[int], feature_stride: int,
                     anchor_stride: int) -> np.ndarray:
    """Anchors of one feature map.

    Args:
        scales: anchor side(s) in pixels; one per level in practice, e.g. ``32``.
        ratios: width/height ratios, e.g. ``[0.5, 1, 2]`` (0.5 = tall, 2 = wide).
        shape: ``(height, width)`` of the feature map in cells.
        feature_stride: pixels of the input per feature-map cell.
        anchor_stride: place anchors on every ``anchor_stride``-th cell.

    Returns:
        [cells * len(scales) * len(ratios), (y1, x1, y2, x2)] float64, cell-major; each
        anchor centred on ``cell_index * feature_stride`` (the cell's top-left pixel).
    """
    # scale varies fastest across ratios: (r0, s0), (r0, s1), ..., (r1, s0), ...
    scale_grid, ratio_grid = np.meshgrid(np.asarray(scales, dtype=float),
                                         np.asarray(ratios, dtype=float))
    scale_grid = scale_grid.ravel()
    ratio_grid = ratio_grid.ravel()
    heights = scale_grid / np.sqrt(ratio_grid)  # [K]
    widths = scale_grid * np.sqrt(ratio_grid)  # [K]

    centres_y = np.arange(0, shape[0], anchor_stride) * feature_stride  # [rows]
    centres_x = np.arange(0, shape[1], anchor_stride) * feature_stride  # [cols]
    grid_y, grid_x = np.meshgrid(centres_y, centres_x, indexing="ij")  # [rows, cols]
    grid_y = grid_y.ravel()[:, None]  # [cells, 1]
    grid_x = grid_x.ravel()[:, None]

    half_h = np.broadcast_to(0.5 * heights[None, :], (grid_y.shape[0], heights.size))
    half_w = np.broadcast_to(0.5 * widths[None, :], (grid_x.shape[0], widths.size))
    boxes = np.stack([grid_y - half_h, grid_x - half_w, grid_y + half_h, grid_x + half_w],
                     axis=-1)  # [cells, K, 4]
    return boxes.reshape(-1, 4)


def generate_pyramid_anchors(scales: Sequence[float], ratios: Sequence[float],
                             feature_shapes: Sequence[Sequence[int]],
                             feature_strides: Sequence[int],
                             anchor_stride: int) -> np.ndarray:
    """Anchors of every pyramid level, one scale per level, concatenated level by level.

    Args:
        scales: one anchor side per level, e.g. ``(32, 64, 128, 256, 512)``.
        ratios: width/height ratios used on every level.
        feature_shapes: [levels, (height, width)], e.g. from :func:`compute_backbone_shapes`.
        feature_strides: pixels per cell of each level, e.g. ``[4, 8, 16, 32, 64]``.
        anchor_stride: place anchors on every ``anchor_stride``-th cell.

    Returns:
        [num_anchors, (y1, x1, y2, x2)] float64, anchors of ``scales[0]`` first.

    Raises:
        ValueError: the three per-level sequences differ in length.
    """
    if not len(scales) == len(feature_shapes) == len(feature_strides):
        raise ValueError(
            "generate_pyramid_anchors: expected one entry per level in scales, feature_shapes "
            f"and feature_strides, received {len(scales)}, {len(feature_shapes)} and "
            f"{len(feature_strides)}")
    levels = [generate_anchors(scale, ratios, shape, stride, anchor_stride)
              for scale, shape, stride in zip(scales, feature_shapes, feature_strides)]
    return np.concatenate(levels, axis=0)


def compute_backbone_shapes(config: Any, image_shape: Sequence[int]) -> np.ndarray:
    """Feature-map size of every pyramid level for an input of ``image_shape``.

    Args:
        config: a :class:`~mrcnn_ohem.maskrcnn.config.Config`; a callable ``BACKBONE``
            delegates to ``config.COMPUTE_BACKBONE_SHAPE(image_shape)``.
        image_shape: ``(height, width[, channels])`` of the model input.

    Returns:
        [levels, (height, width)] int array, ``ceil(side / stride)`` per
        ``BACKBONE_STRIDES`` entry.

    Raises:
        ValueError: ``config.BACKBONE`` is neither a known name nor a callable.
    """
    if callable(config.BACKBONE):
        return config.COMPUTE_BACKBONE_SHAPE(image_shape)
    if config.BACKBONE not in BACKBONES:
        fail("BACKBONE", f"one of {list(BACKBONES)} or a callable", config.BACKBONE)
    return np.array([[int(math.ceil(image_shape[0] / stride)),
                      int(math.ceil(image_shape[1] / stride))]
                     for stride in config.BACKBONE_STRIDES])
