"""Tests of mrcnn_ohem.maskrcnn.visualize (Agg backend, no display)."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from mrcnn_ohem.maskrcnn import visualize  # noqa: E402


@pytest.fixture(autouse=True)
def _no_show(monkeypatch):
    monkeypatch.setattr(plt, "show", lambda *a, **k: None)
    yield
    plt.close("all")


def _scene():
    image = np.full((32, 40, 3), 100, dtype=np.uint8)
    masks = np.zeros((32, 40, 2), dtype=bool)
    masks[2:10, 3:12, 0] = True
    masks[15:30, 20:38, 1] = True
    boxes = np.array([[2, 3, 10, 12], [15, 20, 30, 38]])
    return image, boxes, masks, np.array([1, 2])


def test_random_colors_and_apply_mask():
    colors = visualize.random_colors(5)
    assert len(colors) == 5 and len(set(colors)) == 5
    assert all(0 <= c <= 1 for color in colors for c in color)
    image = np.full((2, 2, 3), 100.0)
    mask = np.array([[1, 0], [0, 0]])
    out = visualize.apply_mask(image, mask, (1.0, 0.0, 0.0), alpha=0.5)
    # 100 * 0.5 + 0.5 * 255 = 177.5 in red; 50 in green and blue; untouched elsewhere.
    np.testing.assert_allclose(out[0, 0], [177.5, 50, 50])
    np.testing.assert_allclose(out[1, 1], [100, 100, 100])


def test_display_instances_draws_boxes_outlines_and_captions():
    image, boxes, masks, class_ids = _scene()
    _, ax = plt.subplots(1)
    out = visualize.display_instances(image, boxes, masks, class_ids, ["BG", "a", "b"],
                                      scores=np.array([0.9, 0.5]), ax=ax)
    assert out is ax
    texts = [t.get_text() for t in ax.texts]
    assert texts == ["a 0.900", "b 0.500"]
    # Two dashed boxes and (at least) one outline polygon per mask.
    assert len(ax.patches) >= 4
    drawn = ax.images[0].get_array()
    assert drawn.shape == (32, 40, 3) and drawn[5, 5, 0] != 100 and drawn[0, 0, 0] == 100
    with pytest.raises(ValueError, match=r"expected one box, mask and class id per instance, "
                                         r"received 2 boxes, 1 masks and 2 class ids"):
        visualize.display_instances(image, boxes, masks[..., :1], class_ids, ["BG", "a", "b"])


def test_draw_boxes_display_helpers_and_differences():
    image, boxes, masks, class_ids = _scene()
    ax = visualize.draw_boxes(image, boxes=boxes, refined_boxes=boxes + 1,
                              masks=masks.transpose(2, 0, 1), captions=["x", "y"],
                              visibilities=[1, 2])
    assert len(ax.patches) == 4 and len(ax.lines) == 2 and len(ax.texts) == 2
    with pytest.raises(ValueError, match=r"expected boxes or refined_boxes"):
        visualize.draw_boxes(image)
    fig = visualize.display_top_masks(image, masks, class_ids, ["BG", "a", "b"], limit=2)
    assert [a.get_title() for a in fig.axes] == ["H x W=32x40", "b", "a"]
    ax = visualize.display_differences(image, boxes, class_ids, masks, boxes[:1], class_ids[:1],
                                       np.array([0.8]), masks[..., :1], ["BG", "a", "b"])
    assert [t.get_text() for t in ax.texts][-1] == "0.80 / 1.00"
    ax = visualize.plot_precision_recall(0.5, np.array([1, 0.5]), np.array([0.5, 1]))
    assert ax.lines and (ax.get_xlabel(), ax.get_ylabel()) == ("recall", "precision")


def test_image_axes_are_hidden_by_default_and_labelled_in_pixels_on_request():
    image, boxes, masks, class_ids = _scene()
    names = ["BG", "a", "b"]
    hidden = [visualize.display_instances(image, boxes, masks, class_ids, names, ax=plt.subplots(1)[1]),
              visualize.draw_boxes(image, boxes=boxes, ax=plt.subplots(1)[1])]
    assert [ax.axison for ax in hidden] == [False, False]  # Matterport's look
    labelled = [
        visualize.display_instances(image, boxes, masks, class_ids, names, ax=plt.subplots(1)[1],
                                    axis_labels=True),
        visualize.draw_boxes(image, refined_boxes=boxes, ax=plt.subplots(1)[1], axis_labels=True),
        visualize.display_differences(image, boxes, class_ids, masks, boxes[:1], class_ids[:1],
                                      np.array([0.8]), masks[..., :1], names, ax=plt.subplots(1)[1],
                                      axis_labels=True),
    ]
    for ax in labelled:
        assert ax.axison
        assert (ax.get_xlabel(), ax.get_ylabel()) == visualize.PIXEL_AXIS_LABELS == ("x (pixels)", "y (pixels)")
        # Ticks in image pixels: the 40 x 32 image spans its own pixel range (plus the margin).
        left, right = ax.get_xlim()
        assert left <= 0 and right >= 40
