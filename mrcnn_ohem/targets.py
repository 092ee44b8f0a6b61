"""RPN training targets that keep the negatives OHEM needs to choose from.

Matterport's ``build_rpn_targets`` resets all but ``RPN_TRAIN_ANCHORS_PER_IMAGE`` (256) random
anchors per image to neutral before the loss sees them. At 1024x1024 there are 261,888
anchors, almost all negative, so about 0.1% of the negatives survive, and an OHEM top-k inside
the loss ranks a random 256 and keeps them all. This builder labels anchors by the same rules
(:mod:`mrcnn_ohem.matching`) and caps positives the same way, but keeps every negative (or a
random ``OHEM_RPN_NEGATIVE_POOL`` of them), so the loss can find the hard ones.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from mrcnn_ohem.boxes import NEGATIVE, POSITIVE
from mrcnn_ohem.matching import encode_rpn_bbox, match_anchors, subsample_labels

__all__ = ["build_rpn_targets"]

_FROM_CONFIG = object()


def build_rpn_targets(
    image_shape: Any,
    anchors: np.ndarray,
    gt_class_ids: np.ndarray,
    gt_boxes: np.ndarray,
    config: Any,
    *,
    negative_pool: int | None = _FROM_CONFIG,  # type: ignore[assignment]
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Label anchors for the RPN with every negative kept; Matterport's signature and outputs.

    Args:
        image_shape: [height, width, channels] of the molded image (unused, as upstream; kept
            for the signature).
        anchors: [num_anchors, (y1, x1, y2, x2)] in pixels.
        gt_class_ids: [num_gt] int; negative ids mark crowd boxes.
        gt_boxes: [num_gt, (y1, x1, y2, x2)] in pixels.
        config: reads ``RPN_TRAIN_ANCHORS_PER_IMAGE``, ``RPN_BBOX_STD_DEV`` and, unless
            ``negative_pool`` is given, ``OHEM_RPN_NEGATIVE_POOL`` (default None).
        negative_pool: None keeps every negative; n keeps a random n per image.
        rng: random generator for the positive cap and the pool; NumPy's global one when None
            (so ``np.random.seed`` reproduces runs, as with Matterport).

    Returns:
        rpn_match: [num_anchors] int32, 1 positive, -1 negative, 0 neutral.
        rpn_bbox: [RPN_TRAIN_ANCHORS_PER_IMAGE, (dy, dx, log(dh), log(dw))] float32, the
            positives' deltas divided by ``RPN_BBOX_STD_DEV``, zero-padded.
    """
    if negative_pool is _FROM_CONFIG:
        negative_pool = getattr(config, "OHEM_RPN_NEGATIVE_POOL", None)
    anchors_per_image = int(config.RPN_TRAIN_ANCHORS_PER_IMAGE)
    match = match_anchors(anchors, gt_class_ids, gt_boxes)
    rpn_match = match.rpn_match
    subsample_labels(rpn_match, POSITIVE, anchors_per_image // 2, rng)
    if negative_pool is not None:
        subsample_labels(rpn_match, NEGATIVE, negative_pool, rng)
    rpn_bbox = encode_rpn_bbox(anchors, rpn_match, match, anchors_per_image, config.RPN_BBOX_STD_DEV)
    return rpn_match, rpn_bbox
