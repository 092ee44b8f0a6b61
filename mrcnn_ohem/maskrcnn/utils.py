"""Datasets, image and mask resizing, box helpers and AP metrics (Matterport's ``mrcnn.utils``).

Same names and signatures as matterport/Mask_RCNN ``mrcnn/utils.py``, giving the same arrays
as its TF2 forks (images, windows, crops and masks; tests/test_maskrcnn_utils.py compares them),
with these fixes: bool masks are resized as the float 0/1 that scikit-image < 0.19 made of
them (newer versions refuse bool, so ``USE_MINI_MASK`` works), no ``np.bool``, no downloads,
user errors raise ``ValueError`` instead of ``assert``, and TensorFlow is imported only by the
two graph helpers (``box_refinement_graph``, ``batch_slice``). Boxes are ``(y1, x1, y2, x2)`` in pixels
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
from mrcnn_ohem.core.randomness import python_random

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
    """``skimage.transform.resize`` with Matterport's default of no anti-aliasing.

    Every argument is passed on to ``skimage.transform.resize`` unchanged.

    Args:
        image: [height, width] or [height, width, channels] any dtype.
        output_shape: ``(new_height, new_width)``, or with the channels.
        order: spline interpolation order (1: bilinear, 0: nearest neighbour).
        mode: how points outside the image are filled (``"constant"``, ``"edge"``, ...).
        cval: the fill value of ``mode="constant"``.
        clip: clip the output to the input's range.
        preserve_range: keep the input's value range instead of scikit-image's conversion
            (an integer image becomes float in [0, 1] otherwise).
        anti_aliasing: blur before downscaling.
        anti_aliasing_sigma: the blur's standard deviation (None: scikit-image's default).

    Returns:
        [new_height, new_width, ...] float (scikit-image's output dtype), the trailing axes
        of ``image`` kept.
    """
    return skimage.transform.resize(
        image, output_shape, order=order, mode=mode, cval=cval, clip=clip,
        preserve_range=preserve_range, anti_aliasing=anti_aliasing,
        anti_aliasing_sigma=anti_aliasing_sigma)


def resize_image(image: np.ndarray, min_dim: int | None = None, max_dim: int | None = None,
                 min_scale: float | None = None, mode: str = "square"
                 ) -> tuple[np.ndarray, tuple[int, int, int, int], float,
                            list[tuple[int, int]], tuple[int, int, int, int] | None]:
    """Resize an image keeping its aspect ratio, then pad or crop it (Matterport's modes).

    The same arrays as Matterport's ``resize_image``: a bilinear
    ``skimage.transform.resize(..., order=1, mode="constant", preserve_range=True,
    anti_aliasing=False)`` to ``(round(height * scale), round(width * scale))``, zero padding,
    then a cast back to the input dtype, which truncates toward zero (2.75 becomes 2 in a
    uint8 image). The crop position is drawn with Python's ``random.randint``, y then x, from
    :func:`mrcnn_ohem.core.randomness.python_random`: the ``random`` module itself, as in
    Matterport, unless a seeded ``DataGenerator`` gave the image generators of its own.

    Args:
        image: [height, width, channels] any dtype (a grayscale image as 3 equal channels, as
            ``Dataset.load_image`` gives it; [height, width] also works).
        min_dim: scale up so the short side is at least this (never scales down).
        max_dim: ``square`` mode: cap the long side at this, then pad to max_dim squared.
        min_scale: scale up by at least this factor.
        mode: ``none`` (unchanged), ``square``, ``pad64`` (pad both sides to multiples of
            64; ``min_dim``, if given, a multiple of 64) or ``crop`` (random ``min_dim``
            squared crop; training only).

    Returns:
        image: [new_height, new_width, channels], same dtype as ``image``.
        window: (y1, x1, y2, x2) of the image inside the padding.
        scale: the scale factor applied.
        padding: [(top, bottom), (left, right), (0, 0)] zero padding added.
        crop: (y, x, height, width) of the crop in ``crop`` mode, else None.

    Raises:
        ValueError: unknown ``mode``, a missing size for the mode, a ``min_dim`` that is not
            a multiple of 64 in ``pad64`` mode, or an image smaller than the crop.
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
    if mode == "pad64" and min_dim and min_dim % 64:
        # Matterport asserts this; without min_dim it fails on None % 64, we pad unscaled.
        raise ValueError(f"min_dim: expected a multiple of 64 in mode 'pad64', "
                         f"received {min_dim!r}")

    if min_dim:
        scale = max(1, min_dim / min(h, w))
    if min_scale and scale < min_scale:
        scale = min_scale
    if max_dim and mode == "square" and round(max(h, w) * scale) > max_dim:
        scale = max_dim / max(h, w)
    if scale != 1:
        # Matterport's final ``astype``: truncation toward zero, no rounding.
        image = _resize_bilinear(image, (round(h * scale), round(w * scale))).astype(dtype)

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
        draw = python_random()
        y = draw.randint(0, h - min_dim)  # both ends included
        x = draw.randint(0, w - min_dim)
        crop = (y, x, min_dim, min_dim)
        return image[y:y + min_dim, x:x + min_dim], (0, 0, min_dim, min_dim), scale, padding, crop
    image = np.pad(image, padding[:image.ndim], mode="constant", constant_values=0)
    window = (padding[0][0], padding[1][0], h + padding[0][0], w + padding[1][0])
    return image, window, scale, padding, crop


def _resize_bilinear(image: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """``resize(image, shape, order=1, mode="constant", preserve_range=True)``, faster.

    Args:
        image: [height, width, channels] (other shapes go to skimage unchanged).
        shape: (new_height, new_width).

    Returns:
        [new_height, new_width, channels], float64 for an integer image, else the float dtype
        skimage returns; the same numbers as skimage, bit for bit.

    Integer, float32 and float64 images are zoomed channel by channel in 2-D with the calls
    ``skimage.transform.resize`` makes (``scipy.ndimage.zoom``, ``grid_mode``, zero outside,
    values read as float64), then clipped as skimage clips: to the input's range, widened to
    0 only when 0 lies outside it and inside the output's range. skimage also interpolates
    along the channel axis (zoom 1), which changes no number and triples the time; that resize
    was most of the data path's time at 1024x1024 (benchmarks/data_path.py). Other dtypes,
    and float images holding NaN, go to skimage.
    """
    integer = np.issubdtype(image.dtype, np.integer)
    if image.ndim != 3 or not (integer or image.dtype in (np.float32, np.float64)):
        return resize(image, shape, order=1, mode="constant", preserve_range=True)
    low, high = image.min(), image.max()
    if not integer and np.isnan(low):
        return resize(image, shape, order=1, mode="constant", preserve_range=True)
    import scipy.ndimage as ndi

    out = np.empty(tuple(shape) + image.shape[2:], dtype=np.float64 if integer else image.dtype)
    factors = (shape[0] / image.shape[0], shape[1] / image.shape[1])
    for c in range(image.shape[2]):
        ndi.zoom(image[:, :, c], factors, output=out[:, :, c], order=1, mode="grid-constant",
                 cval=0, grid_mode=True)
    if not low <= 0 <= high and out.min() <= 0 <= out.max():
        low, high = min(low, 0), max(high, 0)
    return np.clip(out, low, high, out=out)


def resize_mask(mask: np.ndarray, scale: float, padding: Sequence[Sequence[int]],
                crop: Sequence[int] | None = None) -> np.ndarray:
    """Resize, then pad or crop, masks as :func:`resize_image` did their image.

    Matterport's ``scipy.ndimage.zoom(mask, [scale, scale, 1], order=0)``, value for value:
    nearest neighbour on scipy's corner-aligned grid (output pixel ``i`` reads source pixel
    ``round(i * (height - 1) / (new_height - 1))``), so values are copied, never blended, and a
    bool mask stays bool. Where scipy's arithmetic puts that source coordinate a rounding error
    past the last pixel, the output is 0 (e.g. the last row of a 480-row mask scaled by 1.6),
    as in Matterport. Each axis's source index comes from scipy's own 1-D zoom; indexing with
    them is ~8x faster than zooming the masks along the instance axis too.

    Args:
        mask: [height, width, instances] any dtype.
        scale, padding, crop: as returned by :func:`resize_image`.

    Returns:
        [round(height * scale), round(width * scale), instances] padded or cropped, same dtype
        as ``mask``.
    """
    mask = np.asarray(mask)
    h, w = mask.shape[:2]
    if (round(h * scale), round(w * scale)) != (h, w):  # else scipy's zoom copies the mask
        rows, row_outside = _zoom_nearest_index(h, scale)
        cols, col_outside = _zoom_nearest_index(w, scale)
        mask = mask[rows][:, cols]  # [new_height, new_width, instances]
        mask[row_outside] = 0
        mask[:, col_outside] = 0
    if crop is not None:
        y, x, ch, cw = crop
        return mask[y:y + ch, x:x + cw]
    return np.pad(mask, [tuple(p) for p in padding][:mask.ndim], mode="constant",
                  constant_values=0)


def _zoom_nearest_index(size: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """Source index of each output pixel of ``scipy.ndimage.zoom(..., order=0)`` along one axis.

    Args:
        size: input length along the axis.
        scale: the zoom factor; the output has ``round(size * scale)`` pixels.

    Returns:
        index: [round(size * scale)] int64 source pixel of each output pixel (0 where outside).
        outside: [round(size * scale)] bool, True where scipy reads the fill value 0.
    """
    import scipy.ndimage as ndi

    # Zoom 1..size so that the fill value 0 marks coordinates scipy finds outside the input.
    one_based = ndi.zoom(np.arange(1, size + 1, dtype=np.float64), scale, order=0,
                         mode="constant", cval=0.0)
    outside = one_based == 0
    return np.maximum(one_based.astype(np.int64) - 1, 0), outside


def minimize_mask(bbox: np.ndarray, mask: np.ndarray,
                  mini_shape: Sequence[int]) -> np.ndarray:
    """Crop each mask to its box and resize it to ``mini_shape`` (to save memory).

    Matterport's original behaviour: the bool crop resized bilinearly as float64 (what
    scikit-image < 0.19 did with a bool image, ``img_as_float``; newer versions refuse bool),
    then ``np.around``, so a pixel is True only above 0.5 (an exact 0.5 rounds to 0, False).

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
        crop = mask[y1:y2, x1:x2, i].astype(bool).astype(np.float64)
        if crop.size == 0:
            raise ValueError(f"bbox[{i}]: expected a box with positive area inside the mask, "
                             f"received {tuple(bbox[i][:4])}")
        mini_mask[:, :, i] = resize(crop, mini_shape, order=1) > 0.5
    return mini_mask


def expand_mask(bbox: np.ndarray, mini_mask: np.ndarray,
                image_shape: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`minimize_mask`: paste each mini mask back into its box.

    Matterport's original behaviour, as in :func:`minimize_mask`: bilinear on float64 0/1,
    then ``np.around`` (True above 0.5). A box of zero area is left empty (Matterport fails).

    Args:
        bbox: [instances, (y1, x1, y2, x2)] int.
        mini_mask: [mini_height, mini_width, instances] bool or 0/1.
        image_shape: (height, width[, channels]) of the image.

    Returns:
        [height, width, instances] bool.
    """
    mask = np.zeros(tuple(image_shape[:2]) + (mini_mask.shape[-1],), dtype=bool)
    for i in range(mask.shape[-1]):
        y1, x1, y2, x2 = (int(v) for v in bbox[i][:4])
        if y2 <= y1 or x2 <= x1:
            continue
        m = resize(mini_mask[:, :, i].astype(np.float64), (y2 - y1, x2 - x1), order=1)
        mask[y1:y2, x1:x2, i] = m > 0.5
    return mask


def unmold_mask(mask: np.ndarray, bbox: Sequence[int],
                image_shape: Sequence[int]) -> np.ndarray:
    """Turn a head's float mask (e.g. 28x28) into a full-image binary mask.

    Matterport's: the mask resized bilinearly in its own float dtype (float32 from the model),
    True where the result is >= 0.5. Integer masks are resized as float64.

    Args:
        mask: [mask_height, mask_width] float in [0, 1].
        bbox: (y1, x1, y2, x2) box the mask covers, in image pixels.
        image_shape: (height, width[, channels]) of the image.

    Returns:
        [height, width] bool.
    """
    y1, x1, y2, x2 = (int(v) for v in bbox)
    full = np.zeros(tuple(image_shape[:2]), dtype=bool)
    if y2 <= y1 or x2 <= x1:
        return full
    mask = np.asarray(mask)
    if not np.issubdtype(mask.dtype, np.floating):
        mask = mask.astype(np.float64)
    full[y1:y2, x1:x2] = resize(mask, (y2 - y1, x2 - x1), order=1) >= 0.5
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
    """IoU of one box with each of many boxes, given precomputed areas.

    Args:
        box: [(y1, x1, y2, x2)] one box.
        boxes: [N, (y1, x1, y2, x2)].
        box_area: the area of ``box``.
        boxes_area: [N] the areas of ``boxes``.

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

    Args:
        boxes: [N, (y1, x1, y2, x2)] (computed in float32).
        scores: [N] the boxes' scores; higher is better.
        threshold: IoU above which the lower-scored box is dropped.

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
    """Move and scale boxes by deltas; inverse of :func:`box_refinement`.

    Args:
        boxes: [N, (y1, x1, y2, x2)] (computed in float32).
        deltas: [N, (dy, dx, log(dh), log(dw))], row for row.

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
    """TensorFlow twin of :func:`box_refinement`: the deltas that turn ``box`` into ``gt_box``.

    Args:
        box: [N, (y1, x1, y2, x2)] tensor or array (cast to float32).
        gt_box: [N, (y1, x1, y2, x2)] the matched ground truth, row for row.

    Returns:
        [N, (dy, dx, log(dh), log(dw))] float32 tensor.
    """
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
    """Inverse of :func:`norm_boxes`: normalised boxes -> pixel boxes.

    Args:
        boxes: [N, (y1, x1, y2, x2)] normalised, (y2, x2) inclusive.
        shape: (height, width) in pixels.

    Returns:
        [N, (y1, x1, y2, x2)] int32 in pixels, rounded, (y2, x2) exclusive.
    """
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
