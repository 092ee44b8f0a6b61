"""From a ``Dataset`` to training batches: image meta, ``load_image_gt`` and ``DataGenerator``.

Follows Matterport Mask R-CNN's data pipeline (``mrcnn/model.py``): each image is resized
with ``resize_image``, its masks with the bool-safe ``resize_mask``, optionally augmented,
and given RPN targets; batches carry Matterport's seven ``inputs``.

As in Matterport, where the generator calls the module globals ``load_image_gt`` and
``build_rpn_targets``, ``DataGenerator`` and ``data_generator`` look both names up on
:mod:`mrcnn_ohem.maskrcnn.model` each time they load an image, unless they were handed functions
explicitly. So a patch of that module (``mrcnn_ohem.patch(config, module=modellib)``) reaches
``MaskRCNN.train``, ``modellib.data_generator``, a ``DataGenerator`` the user builds and a custom
training loop alike, for as long as it is in place.

With ``seed``, every image's random draws (RPN anchor subsampling, OHEM's negative pool,
random RoIs, flips, the ``MAX_GT_INSTANCES`` cap and, through ``resize_image``, the crop
position) come from generators of its own, seeded from the seed, the epoch and the image's
position in the epoch (:mod:`mrcnn_ohem.core.randomness`): two generators with the same seed
give the same batches whatever order loader threads build them in. Without a seed they draw
from NumPy's and Python's global generators, as upstream. An imgaug augmenter draws from
imgaug's own generator, which the seed does not reach.

Images without instances are skipped with a logged warning naming the image, as upstream,
unless ``config.TRAIN_BACKGROUND_IMAGES`` is True: then they are trained on as background-only
images (no GT boxes or masks, every RPN anchor negative). Unlike upstream, other errors are
raised, not logged and skipped.
"""
from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np

from mrcnn_ohem._compat import import_tf_keras
from mrcnn_ohem.core.randomness import image_random_state, image_seed, numpy_random

from . import anchors as _anchors
from . import targets as _targets
from . import utils

keras = import_tf_keras()
logger = logging.getLogger(__name__)

__all__ = ["mold_image", "unmold_image", "compose_image_meta", "parse_image_meta",
           "load_image_gt", "DataGenerator", "data_generator", "pipeline_function"]

# imgaug augmenters that may be applied to masks (Matterport's list).
MASK_AUGMENTERS = ("Sequential", "SomeOf", "OneOf", "Sometimes", "Fliplr", "Flipud",
                   "CropAndPad", "Affine", "PiecewiseAffine")


############################################################
#  Image formatting
############################################################

def mold_image(images: np.ndarray, config: Any) -> np.ndarray:
    """Subtract ``config.MEAN_PIXEL`` from RGB image(s), the network's input format.

    As Matterport: the mean is subtracted in float64 (``MEAN_PIXEL`` is a float64 array there)
    and the result rounded once to float32, the value its network sees. Subtracting in float32
    would round the mean first and leave many pixels one ulp off.

    Args:
        images: [..., channels] one image [height, width, channels] or a batch
            [batch, height, width, channels], any numeric dtype (usually uint8).
        config: anything with ``MEAN_PIXEL``, [channels].

    Returns:
        [..., channels] float32, the shape of ``images``.
    """
    return (images.astype(np.float32) - np.asarray(config.MEAN_PIXEL, dtype=np.float64)).astype(np.float32)


def unmold_image(normalized_images: np.ndarray, config: Any) -> np.ndarray:
    """Inverse of :func:`mold_image`: add the mean pixel back, round and clip to 0..255.

    Args:
        normalized_images: [..., channels] float, molded image(s).
        config: anything with ``MEAN_PIXEL``, [channels].

    Returns:
        [..., channels] uint8, the shape of ``normalized_images``.
    """
    images = normalized_images + np.asarray(config.MEAN_PIXEL, dtype=np.float32)
    return np.clip(np.round(images), 0, 255).astype(np.uint8)


def compose_image_meta(image_id: int, original_image_shape: Sequence[int],
                       image_shape: Sequence[int], window: Sequence[int], scale: float,
                       active_class_ids: Sequence[int]) -> np.ndarray:
    """Pack an image's attributes into one row (layout of Matterport's ``image_meta``).

    Args:
        image_id: internal image id.
        original_image_shape: [height, width, channels] before resizing.
        image_shape: [height, width, channels] after resizing and padding.
        window: (y1, x1, y2, x2) of the real image inside the padding, in pixels.
        scale: the resize factor.
        active_class_ids: [NUM_CLASSES] 1 for the classes of the image's source.

    Returns:
        [12 + NUM_CLASSES] float64: id, original shape (3), shape (3), window (4), scale,
        active class ids.
    """
    return np.array([image_id, *original_image_shape, *image_shape, *window, scale,
                     *active_class_ids], dtype=np.float64)


def parse_image_meta(meta: np.ndarray) -> dict[str, np.ndarray]:
    """Split rows from :func:`compose_image_meta` into named parts.

    Args:
        meta: [batch, IMAGE_META_SIZE] image meta rows (``IMAGE_META_SIZE`` is
            12 + NUM_CLASSES).

    Returns:
        ``image_id`` [batch] int32, ``original_image_shape`` [batch, 3] int32,
        ``image_shape`` [batch, 3] int32, ``window`` [batch, 4] int32, ``scale`` [batch]
        float32, ``active_class_ids`` [batch, NUM_CLASSES] int32.
    """
    meta = np.asarray(meta)
    return {
        "image_id": meta[:, 0].astype(np.int32),
        "original_image_shape": meta[:, 1:4].astype(np.int32),
        "image_shape": meta[:, 4:7].astype(np.int32),
        "window": meta[:, 7:11].astype(np.int32),
        "scale": meta[:, 11].astype(np.float32),
        "active_class_ids": meta[:, 12:].astype(np.int32),
    }


############################################################
#  One image
############################################################

def load_image_gt(dataset: Any, config: Any, image_id: int,
                  augmentation: Any = None, *, use_mini_mask: bool | None = None
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Load an image with its ground truth, resized and formatted for training.

    Args:
        dataset: a prepared :class:`~mrcnn_ohem.maskrcnn.utils.Dataset`.
        config: the model's :class:`~mrcnn_ohem.maskrcnn.config.Config`.
        image_id: internal image id.
        augmentation: None, an imgaug augmenter (anything with ``to_deterministic()``;
            imgaug itself is only needed for that), or any callable
            ``(image, mask) -> (image, mask)`` that keeps both shapes.
        use_mini_mask: None follows ``config.USE_MINI_MASK`` (Matterport's old keyword).

    Returns:
        image: [height, width, channels] of ``config.IMAGE_SHAPE`` (dtype of the source).
        image_meta: [IMAGE_META_SIZE] see :func:`compose_image_meta`.
        class_ids: [instances] int32 (negative for crowds).
        bbox: [instances, (y1, x1, y2, x2)] int32.
        mask: [height, width, instances] bool, or [MINI_MASK_SHAPE..., instances] mini
            masks. Instances whose mask became empty (cropped out) are dropped.

    Raises:
        ValueError: ``load_mask`` returned masks whose height and width differ from the
            image's, or a class id count that differs from the mask count; augmentation
            changed a shape.
        TypeError: ``augmentation`` is neither an augmenter nor a callable.
    """
    if use_mini_mask is None:
        use_mini_mask = bool(config.USE_MINI_MASK)
    image = dataset.load_image(image_id)
    mask, class_ids = dataset.load_mask(image_id)
    mask = np.asarray(mask)
    class_ids = np.asarray(class_ids, dtype=np.int32).reshape(-1)
    if mask.ndim != 3:
        raise ValueError(f"load_mask({_describe(dataset, image_id)}): expected masks of shape [height, "
                         f"width, instances], received shape {mask.shape}")
    if mask.shape[-1] == 0:
        mask = np.zeros(image.shape[:2] + (0,), dtype=bool)
    elif mask.shape[:2] != image.shape[:2]:
        raise ValueError(
            f"load_mask({_describe(dataset, image_id)}): expected masks with the image's height and "
            f"width {image.shape[:2]} (image shape {image.shape}), received masks of shape "
            f"{mask.shape}")
    if class_ids.shape[0] != mask.shape[-1]:
        raise ValueError(f"load_mask({_describe(dataset, image_id)}): expected one class id per mask "
                         f"({mask.shape[-1]}), received {class_ids.shape[0]}")
    mask = mask.astype(bool)

    original_shape = image.shape
    image, window, scale, padding, crop = utils.resize_image(
        image, min_dim=config.IMAGE_MIN_DIM, min_scale=config.IMAGE_MIN_SCALE,
        max_dim=config.IMAGE_MAX_DIM, mode=config.IMAGE_RESIZE_MODE)
    mask = utils.resize_mask(mask, scale, padding, crop)

    if augmentation:
        image, mask = _augment(image, mask, augmentation, image_id)

    # Instances can vanish when cropped or augmented away.
    keep = mask.any(axis=(0, 1))
    mask = mask[:, :, keep]
    class_ids = class_ids[keep]
    bbox = utils.extract_bboxes(mask)

    # Classes of the image's source; other sources' classes are inactive for this image.
    active_class_ids = np.zeros([dataset.num_classes], dtype=np.int32)
    source = dataset.image_info[image_id]["source"]
    active_class_ids[dataset.source_class_ids[source]] = 1

    if use_mini_mask:
        mask = utils.minimize_mask(bbox, mask, config.MINI_MASK_SHAPE)
    image_meta = compose_image_meta(image_id, original_shape, image.shape, window, scale,
                                    active_class_ids)
    return image, image_meta, class_ids, bbox, mask


def _describe(dataset: Any, image_id: int) -> str:
    """``image_id=6 (source 'coco', id 139, path ...)``: the internal id and what names the image."""
    info = dataset.image_info[image_id]
    where = ", ".join(f"{key} {info[key]!r}" for key in ("source", "id", "path") if info.get(key) is not None)
    return f"image_id={image_id} ({where})" if where else f"image_id={image_id}"


def _augment(image: np.ndarray, mask: np.ndarray, augmentation: Any,
             image_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Apply an imgaug augmenter or a ``(image, mask) -> (image, mask)`` callable."""
    image_shape, mask_shape = image.shape, mask.shape
    if hasattr(augmentation, "to_deterministic"):
        det = augmentation.to_deterministic()
        new_image = det.augment_image(image)
        try:
            import imgaug

            hooks = imgaug.HooksImages(
                activator=lambda images, augmenter, parents, default:
                augmenter.__class__.__name__ in MASK_AUGMENTERS)
            new_mask = det.augment_image(mask.astype(np.uint8), hooks=hooks)
        except ImportError:
            new_mask = det.augment_image(mask.astype(np.uint8))
    elif callable(augmentation):
        new_image, new_mask = augmentation(image, mask)
    else:
        raise TypeError("augmentation: expected an imgaug augmenter or a callable "
                        f"(image, mask) -> (image, mask), received {augmentation!r}")
    new_image, new_mask = np.asarray(new_image), np.asarray(new_mask)
    if new_image.shape != image_shape or new_mask.shape != mask_shape:
        raise ValueError(
            f"augmentation of image {image_id}: expected image and mask shapes to stay "
            f"{image_shape} and {mask_shape}, received {new_image.shape} and {new_mask.shape}")
    return new_image, new_mask.astype(bool)


def _random_fliplr(image: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Matterport's deprecated ``augment=True``: flip left-right half of the time."""
    if numpy_random().randint(2):
        return np.fliplr(image), np.fliplr(mask)
    return image, mask


############################################################
#  Batches
############################################################

class DataGenerator(keras.utils.Sequence):
    """Training batches of a dataset as a Keras ``Sequence`` (Matterport's inputs layout).

    ``gen[idx]`` returns ``(inputs, outputs)``:

    inputs:
        batch_images: [batch, height, width, channels] float32, molded.
        batch_image_meta: [batch, IMAGE_META_SIZE] float64.
        batch_rpn_match: [batch, num_anchors, 1] int32, 1 / -1 / 0.
        batch_rpn_bbox: [batch, RPN_TRAIN_ANCHORS_PER_IMAGE, (dy, dx, log(dh), log(dw))].
        batch_gt_class_ids: [batch, MAX_GT_INSTANCES] int32, zero padded.
        batch_gt_boxes: [batch, MAX_GT_INSTANCES, (y1, x1, y2, x2)] int32, zero padded.
        batch_gt_masks: [batch, height, width, MAX_GT_INSTANCES] bool; height and width are
            ``MINI_MASK_SHAPE`` when ``USE_MINI_MASK``.
        With ``random_rois``: batch_rpn_rois [batch, random_rois, 4]; with
        ``detection_targets`` also batch_rois.
    outputs: ``[]``, or with ``random_rois`` and ``detection_targets`` the class ids
        [batch, TRAIN_ROIS_PER_IMAGE, 1], bbox deltas and masks of
        :func:`~mrcnn_ohem.maskrcnn.targets.build_detection_targets`.

    Batch ``idx`` takes images from position ``idx * batch_size`` of the (shuffled) id list,
    moving on past images without instances (each is warned about once; with
    ``config.TRAIN_BACKGROUND_IMAGES`` they are kept instead) and wrapping around at the end,
    so every batch is full.

    Args:
        dataset: a prepared Dataset.
        config: the model Config; ``BATCH_SIZE`` images per batch unless ``batch_size``.
        shuffle: reshuffle the image order at construction and in :meth:`on_epoch_end`.
        augmentation: see :func:`load_image_gt`.
        random_rois: if > 0, also yield that many random ROIs per image.
        detection_targets: with ``random_rois``, also yield head targets.
        no_augmentation_sources: sources whose images are never augmented.
        batch_size: images per batch (default ``config.BATCH_SIZE``).
        seed: seed of the shuffling and of every image's random draws (see the module
            docstring); None draws from the global generators, as upstream.
        shard_index, num_shards: read only ``dataset.image_ids[shard_index::num_shards]``, the
            share of one of ``num_shards`` workers (multi-worker training: see
            :mod:`mrcnn_ohem.maskrcnn.distribute`); the default reads every image.
        load_image_gt: ``(dataset, config, image_id, augmentation=...)`` -> Matterport's five
            arrays; by default ``mrcnn_ohem.maskrcnn.model.load_image_gt`` as it is when each
            image is loaded.
        build_rpn_targets: ``(image_shape, anchors, gt_class_ids, gt_boxes, config)`` ->
            ``(rpn_match, rpn_bbox)``; by default ``mrcnn_ohem.maskrcnn.model.build_rpn_targets``
            as it is when each image is loaded (Matterport's random-256 builder unless patched).

    Raises:
        ValueError: an empty dataset or shard, ``batch_size`` < 1, or a shard index outside
            ``[0, num_shards)`` (at construction); from
            ``__getitem__``, no image of the dataset has instances, or a resized image does
            not match ``config.IMAGE_SHAPE``.
    """

    def __init__(self, dataset: Any, config: Any, shuffle: bool = True,
                 augmentation: Any = None, random_rois: int = 0,
                 detection_targets: bool = False,
                 no_augmentation_sources: Sequence[str] | None = None, *,
                 batch_size: int | None = None, seed: int | None = None,
                 shard_index: int = 0, num_shards: int = 1,
                 load_image_gt: Callable[..., tuple] | None = None,
                 build_rpn_targets: Callable[..., tuple] | None = None) -> None:
        super().__init__()
        self._functions = {"load_image_gt": load_image_gt, "build_rpn_targets": build_rpn_targets}
        self.dataset = dataset
        self.config = config
        self.shuffle = shuffle
        self.augmentation = augmentation
        self.random_rois = int(random_rois)
        self.detection_targets = detection_targets
        self.no_augmentation_sources = set(no_augmentation_sources or [])
        self.batch_size = int(config.BATCH_SIZE if batch_size is None else batch_size)
        if self.batch_size < 1:
            raise ValueError(f"batch_size: expected an integer >= 1, received {batch_size!r}")
        if not 0 <= int(shard_index) < int(num_shards):
            raise ValueError(f"shard_index: expected 0 <= shard_index < num_shards={num_shards}, "
                             f"received {shard_index!r}")
        all_ids = np.asarray(dataset.image_ids)
        if all_ids.size == 0:
            raise ValueError("dataset: expected at least one image (did you call "
                             "dataset.prepare()?), received an empty dataset")
        self.image_ids = np.copy(all_ids[int(shard_index)::int(num_shards)])
        if self.image_ids.size == 0:
            raise ValueError(f"dataset: expected at least {num_shards} images, one per shard, "
                             f"received {all_ids.size} (shard {shard_index} is empty)")
        self._seed = None if seed is None else int(seed)
        self._epoch = 0
        self._rng = np.random.default_rng(seed)  # the image order's
        self._empty_ids: set[int] = set()
        backbone_shapes = _anchors.compute_backbone_shapes(config, config.IMAGE_SHAPE)
        self.anchors = _anchors.generate_pyramid_anchors(
            config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS, backbone_shapes,
            config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE)  # [num_anchors, 4]
        if self.shuffle:
            self._rng.shuffle(self.image_ids)

    @property
    def load_image_gt(self) -> Callable[..., tuple]:
        """The ``load_image_gt`` the next image is loaded with (the model module's, unless given)."""
        return self._functions["load_image_gt"] or pipeline_function("load_image_gt")

    @property
    def build_rpn_targets(self) -> Callable[..., tuple]:
        """The ``build_rpn_targets`` the next image gets (the model module's, unless given)."""
        return self._functions["build_rpn_targets"] or pipeline_function("build_rpn_targets")

    def __len__(self) -> int:
        return int(np.ceil(len(self.image_ids) / self.batch_size))

    def on_epoch_end(self) -> None:
        self._epoch += 1
        if self.shuffle:
            self._rng.shuffle(self.image_ids)

    def __getitem__(self, idx: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        if not 0 <= idx < len(self):
            raise IndexError(f"idx: expected 0 <= idx < {len(self)}, received {idx}")
        samples = []
        position = idx * self.batch_size
        num_images = len(self.image_ids)
        while len(samples) < self.batch_size:
            if len(self._empty_ids) >= num_images:
                raise ValueError(
                    f"dataset: expected at least one image with an instance (class id > 0), "
                    f"received {num_images} images without any")
            image_id = int(self.image_ids[position % num_images])
            position += 1
            if image_id in self._empty_ids:
                continue
            sample = self._load(image_id, position - 1)
            if sample is None:
                self._empty_ids.add(image_id)
                info = self.dataset.image_info[image_id]
                logger.warning("Skipping image %d (source %r, id %r): no instances.",
                               image_id, info.get("source"), info.get("id"))
                continue
            samples.append(sample)
        return self._collate(samples)

    def _load(self, image_id: int, position: int) -> dict[str, np.ndarray] | None:
        """What one image contributes to a batch, or None if it has no instances.

        ``position`` counts the images of this epoch's order (skipped ones included); with a
        seed, it and the epoch seed the image's own generators.
        """
        if self._seed is None:
            state = contextlib.nullcontext()
        else:
            state = image_random_state(image_seed(self._seed, self._epoch, position))
        with state:
            return self._load_sample(image_id)

    def _load_sample(self, image_id: int) -> dict[str, np.ndarray] | None:
        config = self.config
        source = self.dataset.image_info[image_id]["source"]
        augmentation = None if source in self.no_augmentation_sources else self.augmentation
        image, image_meta, gt_class_ids, gt_boxes, gt_masks = self.load_image_gt(
            self.dataset, config, image_id, augmentation=augmentation)
        if not np.any(gt_class_ids > 0) and not getattr(config, "TRAIN_BACKGROUND_IMAGES", False):
            return None
        expected_shape = tuple(int(v) for v in config.IMAGE_SHAPE)
        if tuple(image.shape) != expected_shape:
            raise ValueError(
                f"image {image_id}: expected IMAGE_SHAPE {expected_shape} after "
                f"resizing (IMAGE_RESIZE_MODE={config.IMAGE_RESIZE_MODE!r}), received "
                f"{tuple(image.shape)}; training batches need 'square' or 'crop' mode, or "
                f"images of that exact size")
        rpn_match, rpn_bbox = self.build_rpn_targets(
            image.shape, self.anchors, gt_class_ids, gt_boxes, config)

        sample = {}
        if self.random_rois:
            sample["rpn_rois"] = _targets.generate_random_rois(
                image.shape, self.random_rois, gt_class_ids, gt_boxes)
            if self.detection_targets:
                rois, class_ids, bbox, mask = _targets.build_detection_targets(
                    sample["rpn_rois"], gt_class_ids, gt_boxes, gt_masks, config)
                sample.update(rois=rois, mrcnn_class_ids=class_ids, mrcnn_bbox=bbox,
                              mrcnn_mask=mask)
        if gt_boxes.shape[0] > config.MAX_GT_INSTANCES:
            ids = numpy_random().choice(gt_boxes.shape[0], config.MAX_GT_INSTANCES, replace=False)
            gt_class_ids, gt_boxes, gt_masks = gt_class_ids[ids], gt_boxes[ids], \
                gt_masks[:, :, ids]
        sample.update(image=mold_image(image, config), image_meta=image_meta,
                      rpn_match=np.asarray(rpn_match, dtype=np.int32)[:, None],
                      rpn_bbox=rpn_bbox, gt_class_ids=gt_class_ids, gt_boxes=gt_boxes,
                      gt_masks=gt_masks)
        return sample

    def _collate(self, samples: list[dict[str, np.ndarray]]
                 ) -> tuple[list[np.ndarray], list[np.ndarray]]:
        config = self.config
        max_gt = config.MAX_GT_INSTANCES
        batch = len(samples)
        mask_hw = samples[0]["gt_masks"].shape[:2]
        gt_class_ids = np.zeros((batch, max_gt), dtype=np.int32)
        gt_boxes = np.zeros((batch, max_gt, 4), dtype=np.int32)
        gt_masks = np.zeros((batch,) + mask_hw + (max_gt,), dtype=bool)
        for b, sample in enumerate(samples):
            count = sample["gt_class_ids"].shape[0]
            gt_class_ids[b, :count] = sample["gt_class_ids"]
            gt_boxes[b, :count] = sample["gt_boxes"]
            gt_masks[b, :, :, :count] = sample["gt_masks"]

        def stack(key: str) -> np.ndarray:
            return np.stack([s[key] for s in samples], axis=0)

        inputs = [stack("image").astype(np.float32), stack("image_meta"), stack("rpn_match"),
                  stack("rpn_bbox"), gt_class_ids, gt_boxes, gt_masks]
        outputs: list[np.ndarray] = []
        if self.random_rois:
            inputs.append(stack("rpn_rois"))
            if self.detection_targets:
                inputs.append(stack("rois"))
                outputs = [stack("mrcnn_class_ids")[..., None], stack("mrcnn_bbox"),
                           stack("mrcnn_mask")]
        return inputs, outputs


def pipeline_function(name: str) -> Callable[..., Any]:
    """``mrcnn_ohem.maskrcnn.model.<name>`` as it is now, patched or not.

    Matterport's generator calls ``load_image_gt`` and ``build_rpn_targets`` as globals of
    ``mrcnn/model.py``; the bundled model keeps them on its ``model`` module, which imports this
    one, so the lookup happens when an image is loaded rather than at import.

    Args:
        name: the attribute of :mod:`mrcnn_ohem.maskrcnn.model`, e.g. ``"load_image_gt"`` or
            ``"build_rpn_targets"``.

    Raises:
        AttributeError: the model module has no attribute ``name``.
    """
    return getattr(importlib.import_module(f"{__package__}.model"), name)


def data_generator(dataset: Any, config: Any, shuffle: bool = True, augment: bool = False,
                   augmentation: Any = None, random_rois: int = 0, batch_size: int = 1,
                   detection_targets: bool = False,
                   no_augmentation_sources: Sequence[str] | None = None, *,
                   seed: int | None = None) -> Iterator[tuple[list[np.ndarray], list[np.ndarray]]]:
    """Matterport's endless Python generator, built on :class:`DataGenerator`.

    ``augment=True`` (deprecated upstream) flips images left-right at random when no
    ``augmentation`` is given. ``seed`` (an addition to Matterport's signature) makes the order
    and every random draw repeat, as in :class:`DataGenerator`. Yields ``(inputs, outputs)`` as
    ``DataGenerator`` does, built with the model module's ``load_image_gt`` and
    ``build_rpn_targets`` of the moment each image is loaded.

    Args:
        dataset: a prepared Dataset.
        config: the model Config.
        shuffle: reshuffle the image order every epoch.
        augment: flip images left-right at random (only when ``augmentation`` is None).
        augmentation: see :func:`load_image_gt`.
        random_rois: if > 0, also yield that many random ROIs per image.
        batch_size: images per batch (Matterport's default 1).
        detection_targets: with ``random_rois``, also yield head targets.
        no_augmentation_sources: sources whose images are never augmented.
        seed: seed of the shuffling and of every image's random draws; None draws from the
            global generators, as upstream.

    Yields:
        ``(inputs, outputs)`` without end, epoch after epoch, as :class:`DataGenerator` returns
        them: inputs start with batch_images [batch, height, width, channels] float32,
        batch_image_meta [batch, IMAGE_META_SIZE], batch_rpn_match [batch, num_anchors, 1] and
        batch_rpn_bbox [batch, RPN_TRAIN_ANCHORS_PER_IMAGE, 4]; see the class for the rest.
    """
    if augment and augmentation is None:
        logger.warning("'augment' is deprecated; use 'augmentation' instead.")
        augmentation = _random_fliplr
    sequence = DataGenerator(dataset, config, shuffle=shuffle, augmentation=augmentation,
                             random_rois=random_rois, detection_targets=detection_targets,
                             no_augmentation_sources=no_augmentation_sources,
                             batch_size=batch_size, seed=seed)
    while True:
        for idx in range(len(sequence)):
            yield sequence[idx]
        sequence.on_epoch_end()
