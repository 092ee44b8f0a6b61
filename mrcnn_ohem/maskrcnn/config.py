"""Configuration of the bundled Mask R-CNN.

:class:`Config` carries Matterport Mask R-CNN's attribute names and default values
(``mrcnn/config.py`` of matterport/Mask_RCNN), so a user's existing ``class MyConfig(Config)``
carries over unchanged. Differences from upstream: the values are validated in ``__init__``
(``ValueError`` naming the attribute, what was expected and what was received), ``"tiny"`` is
and ``"compact"`` are accepted ``BACKBONE`` names (small CPU backbones for demos and tests),
``MIXED_PRECISION`` builds a mixed-precision model (see :mod:`.precision`),
``MASK_HEAD_FILTERS`` and ``RPN_SHARED_FILTERS`` set the widths of the mask head and of the
RPN's shared convolution (Matterport's 256 and 512 by default), ``TRAIN_BACKGROUND_IMAGES`` opts in to
training on images without instances, ``__init__`` cooperates
with mixins (``class MyConfig(SomeMixin, Config)``), and ``display()`` lists upper-case
settings only. This module needs NumPy only; importing it never imports TensorFlow.
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from mrcnn_ohem.core.checks import check_bool, check_choice, check_int, check_number, fail

#: Backbone names the bundled model builds. A callable ``BACKBONE`` is also accepted.
BACKBONES = ("resnet50", "resnet101", "tiny", "compact")
#: ``IMAGE_RESIZE_MODE`` values understood by :func:`mrcnn_ohem.maskrcnn.utils.resize_image`.
RESIZE_MODES = ("none", "square", "pad64", "crop")
#: ``MIXED_PRECISION`` values besides None: Keras' mixed dtype policies (float32 variables,
#: float16 or bfloat16 computation in the convolutions and dense layers).
MIXED_PRECISION_POLICIES = ("mixed_float16", "mixed_bfloat16")
#: Image sides must be divisible by this so that the five FPN levels align (2**6).
IMAGE_DIM_DIVISOR = 2 ** 6

# Settings whose value may legitimately be a function; display()/to_dict() keep them.
_CALLABLE_SETTINGS = ("BACKBONE", "COMPUTE_BACKBONE_SHAPE")


class Config:
    """Base configuration. Subclass it and override what your experiment changes.

    Derived attributes, computed in ``__init__``:
        BATCH_SIZE: ``IMAGES_PER_GPU * GPU_COUNT``, images per training step over all devices.
        IMAGE_SHAPE: ``[height, width, channels]`` int array of the model input;
            ``IMAGE_MIN_DIM`` squared in ``crop`` mode, ``IMAGE_MAX_DIM`` squared otherwise.
        IMAGE_META_SIZE: length of one ``image_meta`` row, ``12 + NUM_CLASSES``
            (see :func:`mrcnn_ohem.maskrcnn.data.compose_image_meta`).

    Raises (from ``__init__``):
        ValueError: a setting is out of range; the message names the attribute, the
            expected values and the received value.
        TypeError: a setting has the wrong type (for example a non-callable
            ``COMPUTE_BACKBONE_SHAPE`` with a callable ``BACKBONE``).
    """

    # --- Experiment and devices ---
    # Name of the experiment, used in log directory and checkpoint names.
    NAME = None
    # Number of devices to train on (replicas of tf.distribute.MirroredStrategy); 1 on CPU.
    GPU_COUNT = 1
    # Images per device per step.
    IMAGES_PER_GPU = 2
    # Training steps per epoch (one TensorBoard/validation point per epoch).
    STEPS_PER_EPOCH = 1000
    # Validation steps at the end of every epoch.
    VALIDATION_STEPS = 50

    # --- Backbone and feature pyramid ---
    # "resnet50", "resnet101", "tiny" (small CPU backbone), or a callable with the signature
    # of model.resnet_graph; a callable needs COMPUTE_BACKBONE_SHAPE as well.
    BACKBONE = "resnet101"
    # Callable (image_shape) -> [levels, (height, width)]; only used with a callable BACKBONE.
    COMPUTE_BACKBONE_SHAPE = None
    # Stride in pixels of each FPN level (P2..P6).
    BACKBONE_STRIDES = [4, 8, 16, 32, 64]
    # Width of the two fully connected layers of the classifier head.
    FPN_CLASSIF_FC_LAYERS_SIZE = 1024
    # Channels of the top-down FPN layers.
    TOP_DOWN_PYRAMID_SIZE = 256
    # Filters of the mask head's convolutions (Matterport's 256; its weight files need 256).
    MASK_HEAD_FILTERS = 256

    # Number of classes including the background class.
    NUM_CLASSES = 1

    # --- Region proposal network ---
    # Square anchor side in pixels, one scale per FPN level.
    RPN_ANCHOR_SCALES = (32, 64, 128, 256, 512)
    # Anchor width/height ratios used at every level.
    RPN_ANCHOR_RATIOS = [0.5, 1, 2]
    # Anchors at every feature-map cell (1) or every other cell (2), ...
    RPN_ANCHOR_STRIDE = 1
    # IoU threshold of the non-max suppression that filters proposals.
    RPN_NMS_THRESHOLD = 0.7
    # Filters of the RPN's shared 3x3 convolution (Matterport's 512; its weight files need 512).
    RPN_SHARED_FILTERS = 512
    # Anchors per image sampled for RPN training (and rows of rpn_bbox).
    RPN_TRAIN_ANCHORS_PER_IMAGE = 256
    # Top-scoring anchors kept before non-max suppression.
    PRE_NMS_LIMIT = 6000
    # Proposals kept after non-max suppression.
    POST_NMS_ROIS_TRAINING = 2000
    POST_NMS_ROIS_INFERENCE = 1000

    # --- Masks and image resizing ---
    # Store ground-truth masks cropped to their box and resized to MINI_MASK_SHAPE.
    USE_MINI_MASK = True
    MINI_MASK_SHAPE = (56, 56)
    # "square" (scale, then zero-pad to IMAGE_MAX_DIM squared), "pad64" (pad to multiples of
    # 64), "crop" (random IMAGE_MIN_DIM squared crops, training only) or "none".
    IMAGE_RESIZE_MODE = "square"
    IMAGE_MIN_DIM = 800
    IMAGE_MAX_DIM = 1024
    # Scale images up by at least this factor (0 = no minimum).
    IMAGE_MIN_SCALE = 0
    # Channels per image: RGB = 3.
    IMAGE_CHANNEL_COUNT = 3
    # Mean pixel (RGB) subtracted by mold_image.
    MEAN_PIXEL = np.array([123.7, 116.8, 103.9])

    # --- Detection heads ---
    # ROIs per image fed to the classifier and mask heads during training.
    TRAIN_ROIS_PER_IMAGE = 200
    # Fraction of those ROIs that are positive.
    ROI_POSITIVE_RATIO = 0.33
    # ROIAlign output sizes of the classifier and mask heads.
    POOL_SIZE = 7
    MASK_POOL_SIZE = 14
    # Output mask size of the mask head.
    MASK_SHAPE = [28, 28]
    # Ground-truth instances kept per image.
    MAX_GT_INSTANCES = 100
    # Train on images without instances (background-only: every RPN anchor negative, the heads
    # see only background RoIs, box and mask losses 0) instead of skipping them as Matterport does.
    TRAIN_BACKGROUND_IMAGES = False
    # Standard deviations the box deltas are divided by (RPN and heads).
    RPN_BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])
    BBOX_STD_DEV = np.array([0.1, 0.1, 0.2, 0.2])
    # Detections returned per image.
    DETECTION_MAX_INSTANCES = 100
    # Detections below this class probability are dropped.
    DETECTION_MIN_CONFIDENCE = 0.7
    # IoU threshold of the per-class non-max suppression of detections.
    DETECTION_NMS_THRESHOLD = 0.3

    # --- Optimisation ---
    LEARNING_RATE = 0.001
    LEARNING_MOMENTUM = 0.9
    # L2 weight decay on trainable weights (not on BatchNorm gamma/beta).
    WEIGHT_DECAY = 0.0001
    # Weight of each of the five losses in the total.
    LOSS_WEIGHTS = {
        "rpn_class_loss": 1.,
        "rpn_bbox_loss": 1.,
        "mrcnn_class_loss": 1.,
        "mrcnn_bbox_loss": 1.,
        "mrcnn_mask_loss": 1.,
    }
    # Train the heads on RPN proposals (True) or on generated ROIs (False).
    USE_RPN_ROIS = True
    # BatchNorm mode: None trains it, False freezes it, True forces training mode.
    TRAIN_BN = False
    # Global gradient norm clipping.
    GRADIENT_CLIP_NORM = 5.0
    # None (float32), "mixed_float16" (GPUs with float16 Tensor Cores; the loss is scaled) or
    # "mixed_bfloat16" (Ampere and newer GPUs, TPUs): the backbone, FPN and head convolutions
    # compute in that precision; losses, OHEM, proposals, detections and outputs stay float32.
    MIXED_PRECISION = None

    def __init__(self) -> None:
        super().__init__()
        self.BATCH_SIZE = self.IMAGES_PER_GPU * self.GPU_COUNT
        side = self.IMAGE_MIN_DIM if self.IMAGE_RESIZE_MODE == "crop" else self.IMAGE_MAX_DIM
        self.IMAGE_SHAPE = np.array([side, side, self.IMAGE_CHANNEL_COUNT])
        # image_id + original shape + image shape + window + scale + active class ids.
        self.IMAGE_META_SIZE = 1 + 3 + 3 + 4 + 1 + self.NUM_CLASSES
        self._validate()

    # ------------------------------------------------------------------ validation

    def _validate(self) -> None:
        """Check the settings; called by ``__init__`` after the derived values are set."""
        for name in ("GPU_COUNT", "IMAGES_PER_GPU", "RPN_ANCHOR_STRIDE",
                     "RPN_TRAIN_ANCHORS_PER_IMAGE", "PRE_NMS_LIMIT", "POST_NMS_ROIS_TRAINING",
                     "POST_NMS_ROIS_INFERENCE", "IMAGE_CHANNEL_COUNT", "TRAIN_ROIS_PER_IMAGE",
                     "POOL_SIZE", "MASK_POOL_SIZE", "MAX_GT_INSTANCES",
                     "DETECTION_MAX_INSTANCES", "FPN_CLASSIF_FC_LAYERS_SIZE",
                     "TOP_DOWN_PYRAMID_SIZE", "MASK_HEAD_FILTERS", "RPN_SHARED_FILTERS"):
            check_int(name, getattr(self, name), 1)
        # Matterport's default is 1 (background only), so a bare Config() stays constructible;
        # real configs override it with 1 + the number of object classes.
        check_int("NUM_CLASSES", self.NUM_CLASSES, 1, hint=" (the background class counts as one)")
        check_bool("TRAIN_BACKGROUND_IMAGES", self.TRAIN_BACKGROUND_IMAGES)
        check_choice("MIXED_PRECISION", self.MIXED_PRECISION, (None, *MIXED_PRECISION_POLICIES))
        self._validate_backbone()
        self._validate_images()
        for name in ("RPN_NMS_THRESHOLD", "DETECTION_MIN_CONFIDENCE",
                     "DETECTION_NMS_THRESHOLD"):
            check_number(name, getattr(self, name), 0.0, 1.0)
        check_number("ROI_POSITIVE_RATIO", self.ROI_POSITIVE_RATIO, 0.0, 1.0, low_open=True)
        for name in ("RPN_BBOX_STD_DEV", "BBOX_STD_DEV"):
            std = np.asarray(getattr(self, name))
            if std.shape != (4,) or not np.all(std > 0):
                fail(name, "4 positive numbers (dy, dx, dh, dw)", getattr(self, name))

    def _validate_backbone(self) -> None:
        backbone = self.BACKBONE
        if callable(backbone):
            if not callable(self.COMPUTE_BACKBONE_SHAPE):
                raise TypeError(
                    "COMPUTE_BACKBONE_SHAPE must be a callable (image_shape) -> "
                    "[levels, (height, width)] because BACKBONE is a callable; received "
                    f"{self.COMPUTE_BACKBONE_SHAPE!r}")
        elif backbone not in BACKBONES:
            fail("BACKBONE", f"one of {list(BACKBONES)} or a callable", backbone)
        strides = list(self.BACKBONE_STRIDES)
        scales = list(self.RPN_ANCHOR_SCALES)
        for i, stride in enumerate(strides):
            check_int(f"BACKBONE_STRIDES[{i}]", stride, 1)
        if len(scales) != len(strides):
            fail("RPN_ANCHOR_SCALES", f"one scale per FPN level, i.e. {len(strides)} values to "
                 f"match BACKBONE_STRIDES={strides}", tuple(scales))
        ratios = np.asarray(self.RPN_ANCHOR_RATIOS, dtype=float)
        if ratios.ndim != 1 or ratios.size == 0 or not np.all(ratios > 0):
            fail("RPN_ANCHOR_RATIOS", "a non-empty list of positive numbers",
                 self.RPN_ANCHOR_RATIOS)

    def _validate_images(self) -> None:
        mode = self.IMAGE_RESIZE_MODE
        check_choice("IMAGE_RESIZE_MODE", mode, RESIZE_MODES)
        # The model input is IMAGE_SHAPE in every mode; "crop" derives it from IMAGE_MIN_DIM.
        side_name = "IMAGE_MIN_DIM" if mode == "crop" else "IMAGE_MAX_DIM"
        side = getattr(self, side_name)
        check_int(side_name, side, IMAGE_DIM_DIVISOR)
        if side % IMAGE_DIM_DIVISOR:
            fail(side_name, f"a multiple of {IMAGE_DIM_DIVISOR} (2**6, so that the FPN levels "
                 f"align) in IMAGE_RESIZE_MODE={mode!r}, e.g. {_neighbours(side)}", side)
        if self.IMAGE_MIN_DIM is not None and mode != "crop":
            check_int("IMAGE_MIN_DIM", self.IMAGE_MIN_DIM, 0)
        check_number("IMAGE_MIN_SCALE", self.IMAGE_MIN_SCALE, 0.0, allow_none=True)
        mean = np.asarray(self.MEAN_PIXEL, dtype=float)
        if mean.size not in (1, self.IMAGE_CHANNEL_COUNT):
            fail("MEAN_PIXEL", f"{self.IMAGE_CHANNEL_COUNT} values (one per channel, "
                 f"IMAGE_CHANNEL_COUNT={self.IMAGE_CHANNEL_COUNT})", self.MEAN_PIXEL)
        mini = tuple(self.MINI_MASK_SHAPE)
        if len(mini) != 2:
            fail("MINI_MASK_SHAPE", "(height, width)", mini)
        for i, value in enumerate(mini):
            check_int(f"MINI_MASK_SHAPE[{i}]", value, 1)

    # ------------------------------------------------------------------ inspection

    def to_dict(self) -> dict[str, Any]:
        """All upper-case settings (class and instance attributes, derived values included).

        Returns:
            ``{name: value}`` sorted by name; methods are left out, while a callable
            ``BACKBONE`` or ``COMPUTE_BACKBONE_SHAPE`` is kept.
        """
        settings = {}
        for name in sorted(dir(self)):
            if name.startswith("_") or name != name.upper():
                continue
            value = getattr(self, name)
            if callable(value) and name not in _CALLABLE_SETTINGS:
                continue
            settings[name] = value
        return settings

    def display(self) -> None:
        """Print every setting, one ``NAME value`` line each, sorted by name."""
        print("\nConfigurations:")
        for name, value in self.to_dict().items():
            print(f"{name:30} {value}")
        print("\n")


# ---------------------------------------------------------------------- helpers


def _neighbours(side: int) -> str:
    if not isinstance(side, numbers.Integral):
        return f"multiples of {IMAGE_DIM_DIVISOR}"
    low = max(IMAGE_DIM_DIVISOR, side // IMAGE_DIM_DIVISOR * IMAGE_DIM_DIVISOR)
    high = (side // IMAGE_DIM_DIVISOR + 1) * IMAGE_DIM_DIVISOR
    return f"{low} and {high}" if low != high else f"{low}"
