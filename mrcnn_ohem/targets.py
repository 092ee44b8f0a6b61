"""RPN training targets that keep the negatives OHEM needs to choose from.

Matterport's ``build_rpn_targets`` resets all but ``RPN_TRAIN_ANCHORS_PER_IMAGE`` (256) random
anchors per image to neutral before the loss sees them. At 1024x1024 there are 261,888
anchors, almost all negative, so about 0.1% of the negatives survive, and an OHEM top-k inside
the loss ranks a random 256 and keeps them all. This builder labels anchors by the same rules
(:mod:`mrcnn_ohem.core.matching`) and caps positives the same way, but keeps every negative (or a
random ``OHEM_RPN_NEGATIVE_POOL`` of them), so the loss can find the hard ones.
"""
from __future__ import annotations

import numpy as np

from mrcnn_ohem.core.boxes import NEGATIVE, POSITIVE
from mrcnn_ohem.core.checks import check_int
from mrcnn_ohem.core.matching import encode_rpn_bbox, match_anchors, subsample_labels

__all__ = ["ohem_rpn_targets"]


def ohem_rpn_targets(
    anchors: np.ndarray,
    gt_class_ids: np.ndarray,
    gt_boxes: np.ndarray,
    *,
    anchors_per_image: int,
    bbox_std_dev: np.ndarray,
    negative_pool: int | None = None,
    rng: np.random.Generator | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Label anchors for the RPN with every negative kept; Matterport's outputs.

    The Matterport-signature wrapper ``build_rpn_targets(image_shape, anchors, gt_class_ids,
    gt_boxes, config)`` lives in :mod:`mrcnn_ohem.patching`, where a config becomes these arguments.

    Args:
        anchors: [num_anchors, (y1, x1, y2, x2)] in pixels.
        gt_class_ids: [num_gt] int; negative ids mark crowd boxes.
        gt_boxes: [num_gt, (y1, x1, y2, x2)] in pixels.
        anchors_per_image: Matterport's ``RPN_TRAIN_ANCHORS_PER_IMAGE``: positives are capped
            at half of it, and it is the number of rows of ``rpn_bbox``.
        bbox_std_dev: [4] ``RPN_BBOX_STD_DEV``, the deltas are divided by it.
        negative_pool: None keeps every negative; n keeps a random n per image.
        rng: random generator for the positive cap and the pool; when None,
            :func:`~mrcnn_ohem.core.randomness.numpy_random`: NumPy's global one (so
            ``np.random.seed`` reproduces runs, as with Matterport), or the image's own generator
            inside a seeded ``DataGenerator``.

    Returns:
        rpn_match: [num_anchors] int32, 1 positive, -1 negative, 0 neutral.
        rpn_bbox: [anchors_per_image, (dy, dx, log(dh), log(dw))] float32, the positives'
            deltas divided by ``bbox_std_dev``, zero-padded.

    Raises:
        ValueError: ``anchors_per_image`` < 1, ``negative_pool`` < 1, or arrays of the wrong
            shapes.
    """
    anchors_per_image = check_int("anchors_per_image", anchors_per_image, 1)
    negative_pool = check_int("negative_pool", negative_pool, 1, allow_none=True)
    match = match_anchors(anchors, gt_class_ids, gt_boxes)
    rpn_match = match.rpn_match
    subsample_labels(rpn_match, POSITIVE, anchors_per_image // 2, rng)
    if negative_pool is not None:
        subsample_labels(rpn_match, NEGATIVE, negative_pool, rng)
    rpn_bbox = encode_rpn_bbox(anchors, rpn_match, match, anchors_per_image, bbox_std_dev)
    return rpn_match, rpn_bbox
