"""Plain helpers the tests subclass or a test subprocess imports (no fixtures, no tests).

Fixtures built on them live in ``conftest.py``; test modules import only this module and
``reference.py``, never another test module.
"""
from __future__ import annotations

import numpy as np

from mrcnn_ohem.maskrcnn.config import Config
from mrcnn_ohem.maskrcnn.utils import Dataset


class TinyConfig(Config):
    """64x64 inputs, the small CPU backbone, 3 classes (BG + square + circle)."""

    NAME = "tiny"
    GPU_COUNT = 1
    IMAGES_PER_GPU = 2
    BACKBONE = "tiny"
    NUM_CLASSES = 3
    IMAGE_MIN_DIM = 64
    IMAGE_MAX_DIM = 64
    RPN_ANCHOR_SCALES = (8, 16, 32, 64, 128)
    RPN_TRAIN_ANCHORS_PER_IMAGE = 32
    TRAIN_ROIS_PER_IMAGE = 16
    MAX_GT_INSTANCES = 4
    MINI_MASK_SHAPE = (16, 16)
    POST_NMS_ROIS_TRAINING = 64
    POST_NMS_ROIS_INFERENCE = 32
    PRE_NMS_LIMIT = 256
    DETECTION_MAX_INSTANCES = 8
    FPN_CLASSIF_FC_LAYERS_SIZE = 32
    TOP_DOWN_PYRAMID_SIZE = 32
    MASK_HEAD_FILTERS = 16  # Matterport's 256 makes the mask head 90% of a 64 px step on a CPU
    STEPS_PER_EPOCH = 2
    VALIDATION_STEPS = 1


class ShapesDataset(Dataset):
    """Generated images with filled squares (class 1) and discs (class 2).

    Each image is described by ``image_info[i]["shapes"]``, a list of
    ``(class_name, (cy, cx, radius))``; an empty list makes an image without instances.
    """

    CLASSES = ("square", "circle")

    def load_shapes(self, specs: list[list[tuple[str, tuple[int, int, int]]]],
                    height: int = 48, width: int = 40) -> None:
        for i, name in enumerate(self.CLASSES, start=1):
            self.add_class("shapes", i, name)
        for i, shapes in enumerate(specs):
            self.add_image("shapes", image_id=i, path=None, height=height, width=width,
                           shapes=shapes)

    def load_image(self, image_id: int) -> np.ndarray:
        info = self.image_info[image_id]
        image = np.full((info["height"], info["width"], 3), 40, dtype=np.uint8)
        mask, _ = self.draw_masks(image_id)
        for k in range(mask.shape[-1]):
            image[mask[:, :, k]] = (200, 60 + 40 * k, 90)
        return image

    def load_mask(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        return self.draw_masks(image_id)

    def draw_masks(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        info = self.image_info[image_id]
        h, w = info["height"], info["width"]
        yy, xx = np.mgrid[:h, :w]
        masks, class_ids = [], []
        for name, (cy, cx, r) in info["shapes"]:
            if name == "square":
                m = (np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r)
            else:
                m = (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2
            masks.append(m)
            class_ids.append(self.class_names.index(name))
        if not masks:
            return np.zeros((h, w, 0), dtype=bool), np.zeros([0], dtype=np.int32)
        return np.stack(masks, axis=-1), np.array(class_ids, dtype=np.int32)


SHAPE_SPECS = [
    [("square", (12, 10, 6)), ("circle", (30, 28, 7))],
    [("circle", (20, 20, 9))],
    [],  # no instances
    [("square", (24, 18, 10)), ("square", (8, 32, 4)), ("circle", (38, 10, 5))],
]


class TinyModelConfig(TinyConfig):
    """The tiny config with detections not thresholded."""

    NAME = "tinymodel"
    DETECTION_MIN_CONFIDENCE = 0.0


class RandomShapes(Dataset):
    """Images of 1-3 random filled rectangles (class 1) and discs (class 2), made with NumPy."""

    def load(self, count: int, seed: int = 0, size: int = 64) -> None:
        self.add_class("shapes", 1, "rectangle")
        self.add_class("shapes", 2, "disc")
        rng = np.random.default_rng(seed)
        for i in range(count):
            shapes = [(int(rng.integers(1, 3)), *rng.integers(12, size - 12, 2),
                       int(rng.integers(5, 11))) for _ in range(rng.integers(1, 4))]
            self.add_image("shapes", image_id=i, path=None, size=size, shapes=shapes)

    def load_mask(self, image_id):
        info = self.image_info[image_id]
        yy, xx = np.mgrid[:info["size"], :info["size"]]
        masks, ids = [], []
        for class_id, cy, cx, r in info["shapes"]:
            if class_id == 1:
                masks.append((np.abs(yy - cy) <= r) & (np.abs(xx - cx) <= r // 2 + 2))
            else:
                masks.append((yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2)
            ids.append(class_id)
        return np.stack(masks, -1), np.array(ids, np.int32)

    def load_image(self, image_id):
        mask, ids = self.load_mask(image_id)
        image = np.full(mask.shape[:2] + (3,), 30, np.uint8)
        for k, class_id in enumerate(ids):
            image[mask[:, :, k]] = (220, 80, 40) if class_id == 1 else (40, 200, 90)
        return image


def random_rpn(rng, batch, anchors, probs=(0.3, 0.4, 0.3), scale=3.0, dtype=np.float32):
    """rpn_match [batch, anchors, 1] with P(-1, 0, 1) = probs, and logits [batch, anchors, 2]."""
    match = rng.choice([-1, 0, 1], size=(batch, anchors, 1), p=probs).astype(np.int32)
    logits = (rng.normal(size=(batch, anchors, 2)) * scale).astype(dtype)
    return match, logits


def random_shapes(count: int, seed: int) -> RandomShapes:
    """A prepared :class:`RandomShapes` of ``count`` images drawn with ``seed``."""
    dataset = RandomShapes()
    dataset.load(count, seed=seed)
    dataset.prepare()
    return dataset
