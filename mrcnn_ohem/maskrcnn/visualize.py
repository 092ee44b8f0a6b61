"""Drawing helpers for images, instances and boxes (Matterport's ``mrcnn.visualize`` names).

matplotlib is imported inside the functions, so importing this module is cheap and works
without a display. Functions that create their own figure call ``plt.show()`` as upstream
does; pass ``ax`` to draw into an existing axis instead. Every function returns what it drew
on, which makes it usable in scripts and tests. Image axes are hidden, as upstream hides them,
unless ``axis_labels=True`` keeps them ticked in image pixels and labelled
(:data:`PIXEL_AXIS_LABELS`).
"""
from __future__ import annotations

import colorsys
import random
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import utils

__all__ = ["PIXEL_AXIS_LABELS", "random_colors", "apply_mask", "display_images", "display_instances",
           "display_top_masks", "draw_boxes", "display_differences", "plot_precision_recall"]

Color = Sequence[float]
#: (x label, y label) of an image axis drawn with ``axis_labels=True``.
PIXEL_AXIS_LABELS = ("x (pixels)", "y (pixels)")


def _frame(ax: Any, axis_labels: bool) -> None:
    """Label an image axis in pixels, or hide it as Matterport does."""
    if axis_labels:
        ax.set_xlabel(PIXEL_AXIS_LABELS[0])
        ax.set_ylabel(PIXEL_AXIS_LABELS[1])
    else:
        ax.axis("off")


def random_colors(N: int, bright: bool = True) -> list[tuple[float, float, float]]:
    """``N`` distinct RGB colours in [0, 1] (evenly spaced hues), in random order.

    Args:
        N: how many colours.
        bright: full brightness (HSV value 1.0), else 0.7.
    """
    value = 1.0 if bright else 0.7
    colors = [colorsys.hsv_to_rgb(i / max(N, 1), 1.0, value) for i in range(N)]
    random.shuffle(colors)
    return colors


def apply_mask(image: np.ndarray, mask: np.ndarray, color: Color,
               alpha: float = 0.5) -> np.ndarray:
    """Blend ``color`` (RGB in [0, 1]) into ``image`` where ``mask`` is set.

    Args:
        image: [height, width, 3] float or integer RGB in 0..255, changed in place (as upstream).
        mask: [height, width]; non-zero entries are inside.
        color: RGB in [0, 1].
        alpha: weight of ``color`` inside the mask.

    Returns:
        ``image`` itself, [height, width, 3].
    """
    inside = np.asarray(mask).astype(bool)
    for c in range(3):
        channel = image[:, :, c]
        channel[inside] = channel[inside] * (1 - alpha) + alpha * color[c] * 255
    return image


def display_images(images: Sequence[np.ndarray], titles: Sequence[str] | None = None,
                   cols: int = 4, cmap: Any = None, norm: Any = None,
                   interpolation: Any = None) -> Any:
    """Show images in a grid of ``cols`` columns; returns the figure.

    Args:
        images: each [height, width, 3] RGB or [height, width] (drawn with ``cmap``).
        titles: one per image; None: no titles.
        cols: images per row.
        cmap: matplotlib colour map of single-channel images.
        norm: matplotlib normalisation of single-channel images.
        interpolation: matplotlib ``imshow`` interpolation.
    """
    import matplotlib.pyplot as plt

    titles = list(titles) if titles is not None else [""] * len(images)
    rows = (len(images) + cols - 1) // cols
    fig = plt.figure(figsize=(14, max(14 * rows // cols, 3)))
    for i, (image, title) in enumerate(zip(images, titles), start=1):
        ax = fig.add_subplot(rows, cols, i)
        ax.set_title(title, fontsize=9)
        ax.axis("off")
        ax.imshow(np.asarray(image).astype(np.uint8), cmap=cmap, norm=norm,
                  interpolation=interpolation)
    plt.show()
    return fig


def display_instances(image: np.ndarray, boxes: np.ndarray, masks: np.ndarray,
                      class_ids: np.ndarray, class_names: Sequence[str],
                      scores: np.ndarray | None = None, title: str = "",
                      figsize: tuple[int, int] = (16, 16), ax: Any = None,
                      show_mask: bool = True, show_bbox: bool = True,
                      colors: Sequence[Color] | None = None,
                      captions: Sequence[str] | None = None, axis_labels: bool = False) -> Any:
    """Draw instances (boxes, masks, outlines and captions) over an image.

    Args:
        image: [height, width, 3] RGB.
        boxes: [instances, (y1, x1, y2, x2)] in image pixels.
        masks: [height, width, instances].
        class_ids: [instances] int.
        class_names: names indexed by class id.
        scores: optional [instances] confidences shown in the captions.
        title: the axis title.
        figsize: size of the figure created when ``ax`` is None.
        ax: the axis to draw on; None creates a figure and shows it.
        show_mask: fill the masks.
        show_bbox: draw the boxes (dashed).
        colors: one RGB colour in [0, 1] per instance; None: random distinct colours.
        captions: optional text per instance, replacing "name score".
        axis_labels: keep the axes, ticked in image pixels and labelled
            :data:`PIXEL_AXIS_LABELS`; False hides them, as Matterport does.

    Returns:
        The matplotlib axis drawn on.

    Raises:
        ValueError: boxes, masks and class ids disagree on the instance count.
    """
    import matplotlib.pyplot as plt
    from matplotlib import patches
    from skimage.measure import find_contours

    n = boxes.shape[0]
    if not n == masks.shape[-1] == class_ids.shape[0]:
        raise ValueError(f"display_instances: expected one box, mask and class id per "
                         f"instance, received {n} boxes, {masks.shape[-1]} masks and "
                         f"{class_ids.shape[0]} class ids")
    auto_show = ax is None
    if auto_show:
        _, ax = plt.subplots(1, figsize=figsize)
    colors = list(colors) if colors is not None else random_colors(n)
    height, width = image.shape[:2]
    ax.set_ylim(height + 10, -10)
    ax.set_xlim(-10, width + 10)
    _frame(ax, axis_labels)
    ax.set_title(title)

    canvas = image.astype(np.float32).copy()
    for i in range(n):
        if not np.any(boxes[i]):
            continue  # lost to cropping
        color = colors[i]
        y1, x1, y2, x2 = boxes[i][:4]
        if show_bbox:
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, linewidth=2,
                                           alpha=0.7, linestyle="dashed", edgecolor=color,
                                           facecolor="none"))
        if captions is not None:
            caption = captions[i]
        else:
            caption = class_names[int(class_ids[i])]
            if scores is not None:
                caption = f"{caption} {scores[i]:.3f}"
        ax.text(x1, y1 + 8, caption, color="w", size=11, backgroundcolor="none")
        mask = masks[:, :, i]
        if show_mask:
            apply_mask(canvas, mask, color)
        # Pad so that masks touching the border get closed outlines.
        padded = np.pad(np.asarray(mask, dtype=np.uint8), 1)
        for contour in find_contours(padded, 0.5):
            ax.add_patch(patches.Polygon(np.fliplr(contour) - 1, facecolor="none",
                                         edgecolor=color))
    ax.imshow(np.clip(canvas, 0, 255).astype(np.uint8))
    if auto_show:
        plt.show()
    return ax


def display_differences(image: np.ndarray, gt_box: np.ndarray, gt_class_id: np.ndarray,
                        gt_mask: np.ndarray, pred_box: np.ndarray, pred_class_id: np.ndarray,
                        pred_score: np.ndarray, pred_mask: np.ndarray,
                        class_names: Sequence[str], title: str = "", ax: Any = None,
                        show_mask: bool = True, show_box: bool = True,
                        iou_threshold: float = 0.5, score_threshold: float = 0.5,
                        axis_labels: bool = False) -> Any:
    """Ground truth (green) and predictions (red, captioned "score / IoU") on one image.

    Args:
        image: [height, width, 3] RGB.
        gt_box: [gt, (y1, x1, y2, x2)] ground-truth boxes in image pixels.
        gt_class_id: [gt] int.
        gt_mask: [height, width, gt].
        pred_box: [pred, (y1, x1, y2, x2)] predicted boxes in image pixels.
        pred_class_id: [pred] int.
        pred_score: [pred] confidences.
        pred_mask: [height, width, pred].
        class_names: names indexed by class id.
        title: the axis title (default: a legend of the colours and captions).
        ax: the axis to draw on; None creates a figure and shows it.
        show_mask: fill the masks.
        show_box: draw the boxes.
        iou_threshold: mask IoU at which a prediction matches a ground-truth instance of its class.
        score_threshold: passed to :func:`~.metrics.compute_matches`.
        axis_labels: as in :func:`display_instances`.

    Returns:
        The matplotlib axis drawn on.
    """
    _, pred_match, overlaps = utils.compute_matches(
        gt_box, gt_class_id, gt_mask, pred_box, pred_class_id, pred_score, pred_mask,
        iou_threshold=iou_threshold, score_threshold=score_threshold)
    order = np.argsort(pred_score, kind="stable")[::-1]  # compute_matches' order
    num_gt = gt_box.shape[0]
    colors = [(0, 1, 0, .8)] * num_gt + [(1, 0, 0, 1)] * len(order)
    captions = [""] * num_gt
    for i in range(len(order)):
        iou = overlaps[i, int(pred_match[i])] if pred_match[i] > -1 else \
            (overlaps[i].max() if overlaps.shape[1] else 0.0)
        captions.append(f"{pred_score[order[i]]:.2f} / {iou:.2f}")
    return display_instances(
        image, np.concatenate([gt_box, pred_box[order]]),
        np.concatenate([gt_mask, pred_mask[..., order]], axis=-1),
        np.concatenate([gt_class_id, pred_class_id[order]]), class_names, ax=ax,
        show_bbox=show_box, show_mask=show_mask, colors=colors, captions=captions,
        axis_labels=axis_labels, title=title or "Ground Truth and Detections\n GT=green, pred=red, captions: score/IoU")


def display_top_masks(image: np.ndarray, mask: np.ndarray, class_ids: np.ndarray,
                      class_names: Sequence[str], limit: int = 4) -> Any:
    """Show the image and, for its ``limit`` largest classes, their instance masks.

    Args:
        image: [height, width, 3] RGB.
        mask: [height, width, instances].
        class_ids: [instances] int.
        class_names: names indexed by class id.
        limit: how many classes (by total mask area) get a panel.

    Returns:
        The figure (:func:`display_images`).
    """
    class_ids = np.asarray(class_ids)
    classes = np.unique(class_ids)
    areas = [mask[:, :, class_ids == c].sum() for c in classes]
    top = [int(c) for c, a in sorted(zip(classes, areas), key=lambda t: -t[1]) if a > 0]
    images = [image]
    titles = [f"H x W={image.shape[0]}x{image.shape[1]}"]
    for i in range(limit):
        class_id = top[i] if i < len(top) else -1
        instances = mask[:, :, class_ids == class_id]
        # Label each instance of the class with its own value 1, 2, ...
        images.append(np.sum(instances * np.arange(1, instances.shape[-1] + 1), axis=-1))
        titles.append(class_names[class_id] if class_id != -1 else "-")
    return display_images(images, titles=titles, cols=limit + 1, cmap="Blues_r")


def draw_boxes(image: np.ndarray, boxes: np.ndarray | None = None,
               refined_boxes: np.ndarray | None = None, masks: np.ndarray | None = None,
               captions: Sequence[str] | None = None,
               visibilities: Sequence[int] | None = None, title: str = "",
               ax: Any = None, axis_labels: bool = False) -> Any:
    """Draw boxes (dotted), their refinements (solid, joined at the top-left corners),
    masks and captions.

    Args:
        image: [height, width, 3] RGB.
        boxes: [N, (y1, x1, y2, x2)] in image pixels, drawn dotted.
        refined_boxes: [N, (y1, x1, y2, x2)] drawn solid (joined to ``boxes`` when both are given).
        masks: [N, height, width].
        captions: one text per box, at its (refined) top-left corner.
        visibilities: [N] per box: 0 grey and faint, 1 dotted (default), 2 solid.
        title: the axis title.
        ax: the axis to draw on; None creates a figure.
        axis_labels: as in :func:`display_instances`.

    Returns:
        The matplotlib axis drawn on.

    Raises:
        ValueError: neither ``boxes`` nor ``refined_boxes`` is given.
    """
    import matplotlib.pyplot as plt
    from matplotlib import lines, patches

    if boxes is None and refined_boxes is None:
        raise ValueError("draw_boxes: expected boxes or refined_boxes, received neither")
    n = (boxes if boxes is not None else refined_boxes).shape[0]
    if ax is None:
        _, ax = plt.subplots(1, figsize=(12, 12))
    colors = random_colors(n)
    margin = image.shape[0] // 10
    ax.set_ylim(image.shape[0] + margin, -margin)
    ax.set_xlim(-margin, image.shape[1] + margin)
    _frame(ax, axis_labels)
    ax.set_title(title)

    canvas = image.astype(np.float32).copy()
    for i in range(n):
        visibility = visibilities[i] if visibilities is not None else 1
        color = "gray" if visibility == 0 else colors[i]
        style = "solid" if visibility == 2 else "dotted"
        alpha = 0.5 if visibility == 0 else 1.0
        if boxes is not None:
            if not np.any(boxes[i]):
                continue
            y1, x1, y2, x2 = boxes[i][:4]
            ax.add_patch(patches.Rectangle((x1, y1), x2 - x1, y2 - y1, linewidth=2,
                                           alpha=alpha, linestyle=style, edgecolor=color,
                                           facecolor="none"))
        if refined_boxes is not None and visibility > 0:
            ry1, rx1, ry2, rx2 = np.asarray(refined_boxes[i][:4]).astype(np.int32)
            ax.add_patch(patches.Rectangle((rx1, ry1), rx2 - rx1, ry2 - ry1, linewidth=2,
                                           edgecolor=color, facecolor="none"))
            if boxes is not None:
                ax.add_line(lines.Line2D([x1, rx1], [y1, ry1], color=color))
        if captions is not None:
            y1, x1 = (refined_boxes if refined_boxes is not None else boxes)[i][:2]
            ax.text(x1, y1, captions[i], size=11, verticalalignment="top", color="w",
                    backgroundcolor="none",
                    bbox={"facecolor": color, "alpha": 0.5, "pad": 2, "edgecolor": "none"})
        if masks is not None:
            apply_mask(canvas, masks[i], colors[i])
    ax.imshow(np.clip(canvas, 0, 255).astype(np.uint8))
    return ax


def plot_precision_recall(AP: float, precisions: np.ndarray, recalls: np.ndarray) -> Any:
    """Plot the precision/recall curve from :func:`~.utils.compute_ap`; returns the axis.

    Args:
        AP: the average precision, shown in the title.
        precisions: [points] precision at each point of the curve.
        recalls: [points] recall at each point of the curve.
    """
    import matplotlib.pyplot as plt

    _, ax = plt.subplots(1)
    ax.set_title(f"Precision-Recall Curve. AP@50 = {AP:.3f}")
    ax.set_ylim(0, 1.1)
    ax.set_xlim(0, 1.1)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.plot(recalls, precisions)
    return ax
