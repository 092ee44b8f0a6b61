"""Inference-side image handling of ``MaskRCNN`` (mold images in, unmold detections out) and ``log``.

Split from :mod:`.model` (whose ``MaskRCNN.mold_inputs`` / ``unmold_detections`` call these);
NumPy only.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from . import utils
from .data import compose_image_meta, mold_image

__all__ = ["log", "mold_inputs", "unmold_detections"]


def log(text: str, array: np.ndarray | None = None) -> None:
    """Print ``text``, and with ``array`` its shape, min, max and dtype (Matterport's helper).

    Args:
        text: the label, padded to 25 characters when an array follows.
        array: [...] an array-like of any shape (converted with ``np.asarray``), or None to print
            ``text`` alone; min and max are left blank for an empty array.
    """
    if array is not None:
        array = np.asarray(array)
        text = text.ljust(25) + f"shape: {str(array.shape):20}  "
        if array.size:
            text += f"min: {array.min():10.5f}  max: {array.max():10.5f}"
        else:
            text += f"min: {'':10}  max: {'':10}"
        text += f"  {array.dtype}"
    print(text)


def mold_inputs(images: Sequence[np.ndarray], config: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Resize, pad and normalise images for the network.

    Args:
        images: RGB images [H, W, 3], any sizes.
        config: the model config (resize mode and sizes, ``MEAN_PIXEL``, ``NUM_CLASSES``).

    Returns:
        molded_images [N, h, w, 3] float32, image_metas [N, meta length],
        windows [N, (y1, x1, y2, x2)] the image inside the padding, in pixels.
    """
    molded, metas, windows = [], [], []
    for image in images:
        resized, window, scale, _, _ = utils.resize_image(
            image, min_dim=config.IMAGE_MIN_DIM, min_scale=config.IMAGE_MIN_SCALE,
            max_dim=config.IMAGE_MAX_DIM, mode=config.IMAGE_RESIZE_MODE)
        resized = mold_image(resized, config)
        metas.append(compose_image_meta(0, image.shape, resized.shape, window, scale,
                                        np.zeros([config.NUM_CLASSES], np.int32)))
        molded.append(resized)
        windows.append(window)
    return np.stack(molded), np.stack(metas), np.stack(windows)


def unmold_detections(detections: np.ndarray, mrcnn_mask: np.ndarray, original_image_shape: Sequence[int],
                      image_shape: Sequence[int], window: Sequence[int]
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One image's network output -> boxes, class IDs, scores and full-size masks.

    Args:
        detections: [N, (y1, x1, y2, x2, class_id, score)] normalised, zero padded.
        mrcnn_mask: [N, height, width, num_classes] mask probabilities.
        original_image_shape: [H, W, C] before resizing.
        image_shape: [H, W, C] after resizing and padding.
        window: (y1, x1, y2, x2) pixels of the image inside the padding.

    Returns:
        boxes [n, (y1, x1, y2, x2)] int32 pixels of the original image, class_ids [n]
        int32, scores [n] float32, masks [H, W, n] bool.
    """
    zero_ix = np.where(detections[:, 4] == 0)[0]
    n = int(zero_ix[0]) if zero_ix.size else detections.shape[0]
    boxes = detections[:n, :4]
    class_ids = detections[:n, 4].astype(np.int32)
    scores = detections[:n, 5].astype(np.float32)
    masks = mrcnn_mask[np.arange(n), :, :, class_ids]
    wy1, wx1, wy2, wx2 = utils.norm_boxes(np.asarray([window]), image_shape[:2])[0]
    shift = np.array([wy1, wx1, wy1, wx1])
    scale = np.array([wy2 - wy1, wx2 - wx1, wy2 - wy1, wx2 - wx1])
    boxes = utils.denorm_boxes((boxes - shift) / scale, original_image_shape[:2])
    keep = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) > 0
    boxes, class_ids, scores, masks = boxes[keep], class_ids[keep], scores[keep], masks[keep]
    full = [utils.unmold_mask(masks[i], boxes[i], original_image_shape)
            for i in range(boxes.shape[0])]
    full_masks = (np.stack(full, axis=-1).astype(bool) if full
                  else np.zeros(tuple(original_image_shape[:2]) + (0,), dtype=bool))
    return boxes, class_ids, scores, full_masks
