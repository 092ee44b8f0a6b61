"""Datasets, image and mask resizing, box helpers and AP metrics (Matterport's ``mrcnn.utils``).

Same names and signatures as matterport/Mask_RCNN ``mrcnn/utils.py``, with these fixes:
masks are resized bool-safely (nearest neighbour, no anti-aliasing, so ``USE_MINI_MASK``
works on current scikit-image), no ``np.bool``, no downloads, user errors raise
``ValueError`` instead of ``assert``, and TensorFlow is imported only by the two graph
helpers (``box_refinement_graph``, ``batch_slice``). Boxes are ``(y1, x1, y2, x2)`` in pixels
with ``y2``/``x2`` exclusive.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import skimage.color
import skimage.io
import skimage.transform

from mrcnn_ohem.core.boxes import box_refinement, compute_overlaps

from .anchors import generate_anchors, generate_pyramid_anchors
from .dataset import Dataset
from .metrics import compute_ap, compute_ap_range, compute_matches, compute_overlaps_masks, compute_recall, trim_zeros  # noqa: F401

__all__ = [
    "Dataset", "resize", "resize_image", "resize_mask", "minimize_mask", "expand_mask",
    "unmold_mask", "extract_bboxes", "compute_iou", "compute_overlaps",
    "compute_overlaps_masks", "non_max_suppression", "apply_box_deltas", "box_refinement",
    "box_refinement_graph", "norm_boxes", "denorm_boxes", "batch_slice", "trim_zeros",
    "compute_matches", "compute_ap", "compute_ap_range", "compute_recall",
    "generate_anchors", "generate_pyramid_anchors",
]

logger = logging.getLogger(__name__)


############################################################
#  Resizing
############################################################

def resize(image: np.ndarray, output_shape: Sequence[int], order: int = 1,
           mode: str = "constant", cval: float = 0, clip: bool = True,
           preserve_range: bool = False, anti_aliasing: bool = False,
           anti_aliasing_sigma: Any = None) -> np.ndarray:
    """``skimage.transform.resize`` with Matterport's default of no anti-aliasing."""
    return skimage.transform.resize(
        image, output_shape, order=order, mode=mode, cval=cval, clip=clip,
        preserve_range=preserve_range, anti_aliasing=anti_aliasing,
        anti_aliasing_sigma=anti_aliasing_sigma)


def resize_image(image: np.ndarray, min_dim: int | None = None, max_dim: int | None = None,
                 min_scale: float | None = None, mode: str = "square"
                 ) -> tuple[np.ndarray, tuple[int, int, int, int], float,
                            list[tuple[int, int]], tuple[int, int, int, int] | None]:
    """Resize an image keeping its aspect ratio, then pad or crop it (Matterport's modes).

    Args:
        image: [height, width, channels] any dtype.
        min_dim: scale up so the short side is at least this (never scales down).
        max_dim: ``square`` mode: cap the long side at this, then pad to max_dim squared.
        min_scale: scale up by at least this factor.
        mode: ``none`` (unchanged), ``square``, ``pad64`` (pad both sides to multiples of
            64) or ``crop`` (random ``min_dim`` squared crop; training only).

    Returns:
        image: the result, same dtype (integers rounded).
        window: (y1, x1, y2, x2) of the image inside the padding.
        scale: the scale factor applied.
        padding: [(top, bottom), (left, right), (0, 0)] zero padding added.
        crop: (y, x, height, width) of the crop in ``crop`` mode, else None.

    Raises:
        ValueError: unknown ``mode``, a missing size for the mode, or an image smaller than
            the crop.
    """
    dtype = image.dtype
    h, w = image.shape[:2]
    window = (0, 0, h, w)
    scale = 1
    padding = [(0, 0), (0, 0), (0, 0)]
    crop = None
    if mode not in ("none", "square", "pad64", "crop"):
        raise ValueError(f"mode: expected one of ['none', 'square', 'pad64', 'crop'], "
                         f"received {mode!r}")
    if mode == "none":
        return image, window, scale, padding, crop
    if mode == "square" and not max_dim:
        raise ValueError(f"max_dim: expected a positive integer in mode 'square', "
                         f"received {max_dim!r}")
    if mode == "crop" and not min_dim:
        raise ValueError(f"min_dim: expected a positive integer in mode 'crop', "
                         f"received {min_dim!r}")

    if min_dim:
        scale = max(1, min_dim / min(h, w))
    if min_scale and scale < min_scale:
        scale = min_scale
    if max_dim and mode == "square" and round(max(h, w) * scale) > max_dim:
        scale = max_dim / max(h, w)
    if scale != 1:
        image = _resize_bilinear(image, (round(h * scale), round(w * scale)))
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            image = np.clip(np.round(image), info.min, info.max)
        image = image.astype(dtype)

    h, w = image.shape[:2]
    if mode == "square":
        top, left = (max_dim - h) // 2, (max_dim - w) // 2
        padding = [(top, max_dim - h - top), (left, max_dim - w - left), (0, 0)]
    elif mode == "pad64":
        pad_h, pad_w = -h % 64, -w % 64
        top, left = pad_h // 2, pad_w // 2
        padding = [(top, pad_h - top), (left, pad_w - left), (0, 0)]
    else:  # crop
        if h < min_dim or w < min_dim:
            raise ValueError(f"image: expected at least {min_dim}x{min_dim} pixels after "
                             f"scaling for a crop of min_dim={min_dim}, received {h}x{w}")
        y = np.random.randint(0, h - min_dim + 1)
        x = np.random.randint(0, w - min_dim + 1)
        crop = (y, x, min_dim, min_dim)
        return image[y:y + min_dim, x:x + min_dim], (0, 0, min_dim, min_dim), scale, padding, crop
    image = np.pad(image, padding[:image.ndim], mode="constant", constant_values=0)
    window = (padding[0][0], padding[1][0], h + padding[0][0], w + padding[1][0])
    return image, window, scale, padding, crop


def _resize_bilinear(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``resize(image, shape, order=1, mode="constant", preserve_range=True)``, faster.

    For integer images [height, width, channels] each channel is zoomed on its own in 2-D,
    with the calls ``skimage.transform.resize`` makes (float64, ``scipy.ndimage.zoom`` with
    ``grid_mode``, zero outside): the same numbers, bit for bit, in about a third of the time,
    because skimage also interpolates along the channel axis (zoom 1). That resize was most
    of the data path's time at 1024x1024 (benchmarks/data_path.py). Other inputs go to skimage.
    """
    if image.ndim != 3 or not np.issubdtype(image.dtype, np.integer):
        return resize(image, shape, order=1, mode="constant", preserve_range=True)
    import scipy.ndimage as ndi

    source = image.astype(np.float64)
    factors = (shape[0] / image.shape[0], shape[1] / image.shape[1])
    out = np.empty(tuple(shape) + (image.shape[2],), dtype=np.float64)
    for c in range(image.shape[2]):
        out[:, :, c] = ndi.zoom(source[:, :, c], factors, order=1, mode="grid-constant", cval=0,
                                grid_mode=True)
    # skimage clips to the input's range widened by the fill value 0 (clip=True).
    return np.clip(out, min(float(source.min()), 0.0), float(source.max()), out=out)


def resize_mask(mask: np.ndarray, scale: float, padding: Sequence[Sequence[int]],
                crop: Sequence[int] | None = None) -> np.ndarray:
    """Resize, then pad or crop, masks exactly as :func:`resize_image` did their image.

    Nearest-neighbour without anti-aliasing, so values are copied, never blended: a bool
    mask stays bool with the same values (the TF2 ports of Matterport interpolate bool masks,
    which current scikit-image rejects).

    Args:
        mask: [height, width, instances] any dtype.
        scale, padding, crop: as returned by :func:`resize_image`.

    Returns:
        [new_height, new_width, instances], same dtype as ``mask``.
    """
    mask = np.asarray(mask)
    h, w = mask.shape[:2]
    new_h, new_w = round(h * scale), round(w * scale)
    if (new_h, new_w) != (h, w):
        # Nearest source pixel of each output pixel centre, the grid skimage's resize (and so
        # resize_image) uses: source = (out + 0.5) * h / new_h - 0.5, rounded half up.
        rows = np.minimum(((np.arange(new_h) + 0.5) * h / new_h).astype(np.int64), h - 1)
        cols = np.minimum(((np.arange(new_w) + 0.5) * w / new_w).astype(np.int64), w - 1)
        mask = mask[rows][:, cols]
    if crop is not None:
        y, x, ch, cw = crop
        return mask[y:y + ch, x:x + cw]
    return np.pad(mask, [tuple(p) for p in padding][:mask.ndim], mode="constant",
                  constant_values=0)


def minimize_mask(bbox: np.ndarray, mask: np.ndarray,
                  mini_shape: Sequence[int]) -> np.ndarray:
    """Crop each mask to its box and resize it to ``mini_shape`` (to save memory).

    Args:
        bbox: [instances, (y1, x1, y2, x2)] int.
        mask: [height, width, instances] bool or 0/1.
        mini_shape: (height, width) of the mini masks.

    Returns:
        [mini_height, mini_width, instances] bool.

    Raises:
        ValueError: a box has zero area.
    """
    mini_shape = tuple(int(s) for s in mini_shape)
    mini_mask = np.zeros(mini_shape + (mask.shape[-1],), dtype=bool)
    for i in range(mask.shape[-1]):
        y1, x1, y2, x2 = (int(v) for v in bbox[i][:4])
        crop = mask[y1:y2, x1:x2, i].astype(np.float32)
        if crop.size == 0:
            raise ValueError(f"bbox[{i}]: expected a box with positive area inside the mask, "
                             f"received {tuple(bbox[i][:4])}")
        mini_mask[:, :, i] = resize(crop, mini_shape, order=1) >= 0.5
    return mini_mask


def expand_mask(bbox: np.ndarray, mini_mask: np.ndarray,
                image_shape: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`minimize_mask`: paste each mini mask back into its box.

    Returns:
        [image_height, image_width, instances] bool.
    """
    mask = np.zeros(tuple(image_shape[:2]) + (mini_mask.shape[-1],), dtype=bool)
    for i in range(mask.shape[-1]):
        y1, x1, y2, x2 = (int(v) for v in bbox[i][:4])
        if y2 <= y1 or x2 <= x1:
            continue
        m = resize(mini_mask[:, :, i].astype(np.float32), (y2 - y1, x2 - x1), order=1)
        mask[y1:y2, x1:x2, i] = m >= 0.5
    return mask


def unmold_mask(mask: np.ndarray, bbox: Sequence[int],
                image_shape: Sequence[int]) -> np.ndarray:
    """Turn a head's float mask (e.g. 28x28) into a full-image binary mask.

    Args:
        mask: [mask_height, mask_width] float in [0, 1].
        bbox: (y1, x1, y2, x2) box the mask covers, in image pixels.
        image_shape: (height, width[, channels]) of the image.

    Returns:
        [height, width] bool, True where the resized mask is >= 0.5.
    """
    y1, x1, y2, x2 = (int(v) for v in bbox)
    full = np.zeros(tuple(image_shape[:2]), dtype=bool)
    if y2 <= y1 or x2 <= x1:
        return full
    m = resize(np.asarray(mask, dtype=np.float32), (y2 - y1, x2 - x1), order=1)
    full[y1:y2, x1:x2] = m >= 0.5
    return full


############################################################
#  Boxes
############################################################

def extract_bboxes(mask: np.ndarray) -> np.ndarray:
    """Tight boxes around masks.

    Args:
        mask: [height, width, instances] bool or 0/1.

    Returns:
        [instances, (y1, x1, y2, x2)] int32, ``y2``/``x2`` exclusive; all zeros for an empty
        mask.
    """
    mask = np.asarray(mask)
    boxes = np.zeros([mask.shape[-1], 4], dtype=np.int32)
    rows = np.any(mask, axis=1)  # [height, instances]
    cols = np.any(mask, axis=0)  # [width, instances]
    for i in range(mask.shape[-1]):
        ys = np.flatnonzero(rows[:, i])
        xs = np.flatnonzero(cols[:, i])
        if ys.size:
            boxes[i] = (ys[0], xs[0], ys[-1] + 1, xs[-1] + 1)
    return boxes


def compute_iou(box: np.ndarray, boxes: np.ndarray, box_area: float,
                boxes_area: np.ndarray) -> np.ndarray:
    """IoU of one box [4] with each of ``boxes`` [N, 4], given precomputed areas.

    Returns:
        [N] float IoU.
    """
    y1 = np.maximum(box[0], boxes[:, 0])
    y2 = np.minimum(box[2], boxes[:, 2])
    x1 = np.maximum(box[1], boxes[:, 1])
    x2 = np.minimum(box[3], boxes[:, 3])
    intersection = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
    union = box_area + boxes_area - intersection
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, intersection / union, 0.0)


def non_max_suppression(boxes: np.ndarray, scores: np.ndarray,
                        threshold: float) -> np.ndarray:
    """Greedy NMS: keep the best box, drop boxes with IoU > ``threshold`` with it, repeat.

    Returns:
        [kept] int32 indices into ``boxes``, highest score first.
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    order = np.argsort(scores)[::-1]
    keep = []
    while order.size:
        i = order[0]
        keep.append(i)
        iou = compute_iou(boxes[i], boxes[order[1:]], area[i], area[order[1:]])
        order = order[1:][iou <= threshold]
    return np.array(keep, dtype=np.int32)


def apply_box_deltas(boxes: np.ndarray, deltas: np.ndarray) -> np.ndarray:
    """Apply [N, (dy, dx, log(dh), log(dw))] to [N, (y1, x1, y2, x2)]; inverse of
    :func:`box_refinement`.

    Returns:
        [N, (y1, x1, y2, x2)] float32.
    """
    boxes = np.asarray(boxes, dtype=np.float32)
    deltas = np.asarray(deltas, dtype=np.float32)
    height = boxes[:, 2] - boxes[:, 0]
    width = boxes[:, 3] - boxes[:, 1]
    center_y = boxes[:, 0] + 0.5 * height + deltas[:, 0] * height
    center_x = boxes[:, 1] + 0.5 * width + deltas[:, 1] * width
    height = height * np.exp(deltas[:, 2])
    width = width * np.exp(deltas[:, 3])
    y1 = center_y - 0.5 * height
    x1 = center_x - 0.5 * width
    return np.stack([y1, x1, y1 + height, x1 + width], axis=1)


def box_refinement_graph(box: Any, gt_box: Any) -> Any:
    """TensorFlow twin of :func:`box_refinement`: [N, 4] boxes -> [N, (dy, dx, dh, dw)]."""
    import tensorflow as tf

    box = tf.cast(box, tf.float32)
    gt_box = tf.cast(gt_box, tf.float32)
    height = box[:, 2] - box[:, 0]
    width = box[:, 3] - box[:, 1]
    gt_height = gt_box[:, 2] - gt_box[:, 0]
    gt_width = gt_box[:, 3] - gt_box[:, 1]
    dy = (gt_box[:, 0] + 0.5 * gt_height - box[:, 0] - 0.5 * height) / height
    dx = (gt_box[:, 1] + 0.5 * gt_width - box[:, 1] - 0.5 * width) / width
    dh = tf.math.log(gt_height / height)
    dw = tf.math.log(gt_width / width)
    return tf.stack([dy, dx, dh, dw], axis=1)


def norm_boxes(boxes: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Pixel boxes -> normalised boxes, where (y2, x2) becomes inclusive.

    Args:
        boxes: [N, (y1, x1, y2, x2)] in pixels.
        shape: (height, width) in pixels.

    Returns:
        [N, (y1, x1, y2, x2)] float32 in [0, 1].
    """
    h, w = shape[:2]
    scale = np.array([h - 1, w - 1, h - 1, w - 1], dtype=np.float64)
    shift = np.array([0, 0, 1, 1], dtype=np.float64)
    return ((np.asarray(boxes) - shift) / scale).astype(np.float32)


def denorm_boxes(boxes: np.ndarray, shape: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`norm_boxes`: [N, 4] normalised -> [N, 4] int32 pixels."""
    h, w = shape[:2]
    scale = np.array([h - 1, w - 1, h - 1, w - 1], dtype=np.float64)
    shift = np.array([0, 0, 1, 1], dtype=np.float64)
    return np.around(np.asarray(boxes) * scale + shift).astype(np.int32)


############################################################
#  Miscellaneous
############################################################

def batch_slice(inputs: Any, graph_fn: Callable[..., Any], batch_size: int,
                names: Sequence[str] | None = None) -> Any:
    """Run ``graph_fn`` on each batch item of ``inputs`` and stack the results (TF).

    Args:
        inputs: a tensor or list of tensors sharing the first (batch) dimension.
        graph_fn: called with one slice of every input; returns a tensor or a list.
        batch_size: number of slices.
        names: optional names of the stacked outputs.

    Returns:
        One stacked tensor, or a list of them when ``graph_fn`` returns several.
    """
    import tensorflow as tf

    if not isinstance(inputs, list):
        inputs = [inputs]
    per_item = []
    for i in range(batch_size):
        result = graph_fn(*[x[i] for x in inputs])
        per_item.append(list(result) if isinstance(result, (tuple, list)) else [result])
    per_output = list(zip(*per_item))
    names = list(names) if names is not None else [None] * len(per_output)
    stacked = [tf.stack(values, axis=0, name=name) for values, name in zip(per_output, names)]
    return stacked[0] if len(stacked) == 1 else stacked
