"""OHEM settings for any Matterport-style ``Config``.

Turning OHEM on is one line in a user's config::

    from mrcnn.config import Config
    from mrcnn_ohem import OHEMConfigMixin

    class MyConfig(OHEMConfigMixin, Config):
        NAME = "mine"
        OHEM_RPN_POSITIVE_FRACTION = 0.5   # optional knobs

The mixin declares the ``OHEM_*`` attributes, validates them in ``__init__`` and, because
Matterport's ``display()`` lists every upper-case attribute, shows them there.
:func:`ohem_settings` resolves a config to plain values once; :mod:`mrcnn_ohem.patching` binds
those values into the loss and target functions. This module imports no model code:
``OHEMConfig`` (the mixin on the bundled model's ``Config``) is built on first access.
"""
from __future__ import annotations

import contextlib
import io
import math
from typing import Any, NamedTuple

from mrcnn_ohem.core.checks import check_bool, check_choice, check_int, check_number

# OHEMConfig is served by the module __getattr__ below.
__all__ = ["OHEMConfigMixin", "OHEMConfig", "OHEMSettings", "ohem_settings", "validate_ohem_config",  # noqa: F822
           "RPN_LOSSES", "RPNLossSettings", "rpn_loss_settings", "ROISettings", "ohem_roi_settings",
           "ROI_RANKINGS"]

#: ``OHEM_RPN_LOSS`` values: top-k mining, or the focal loss over every anchor.
RPN_LOSSES = ("ohem", "focal")
#: ``OHEM_ROI_RANKING`` values: the class loss alone, or class plus box loss (the OHEM paper).
ROI_RANKINGS = ("class", "class+box")


class OHEMSettings(NamedTuple):
    """The OHEM arguments a config resolves to (see :func:`ohem_settings`)."""

    enabled: bool
    top_k: int
    per_image: bool
    positive_fraction: float | None
    negative_pool: int | None
    nms_threshold: float | None = None
    max_negatives_per_positive: float | None = None
    min_negatives: int = 0


class RPNLossSettings(NamedTuple):
    """Which RPN objectness loss ``patch()`` installs when ``OHEM_RPN`` is on."""

    loss: str  # "ohem" or "focal"
    focal_alpha: float
    focal_gamma: float


class ROISettings(NamedTuple):
    """RoI-head OHEM arguments a config resolves to (see :func:`ohem_roi_settings`)."""

    enabled: bool
    pool: int
    top_k: int | None  # None only when disabled and the config has no TRAIN_ROIS_PER_IMAGE
    train_rois_per_image: int | None
    roi_positive_ratio: float | None
    ranking: str = "class"  # "class" or "class+box"
    nms_threshold: float | None = None

    @property
    def selects_for_box_loss(self) -> bool:
        """True when the kept RoIs are chosen before the losses, for the class and box loss
        alike (``OHEM_ROI_RANKING = "class+box"`` or an ``OHEM_ROI_NMS_THRESHOLD``)."""
        return self.enabled and (self.ranking != "class" or self.nms_threshold is not None)


def _get(config: Any, name: str) -> Any:
    """``config.name``, or the mixin's default when a plain Matterport config lacks it."""
    return getattr(config, name, getattr(OHEMConfigMixin, name))


def validate_ohem_config(config: Any) -> None:
    """Check every ``OHEM_*`` attribute of ``config``; raise ValueError naming the first bad one.

    Missing attributes take the mixin's defaults, so a plain Matterport config validates too.

    Args:
        config: a Matterport-style ``Config`` (instance or any object with its attributes).

    Raises:
        ValueError: an ``OHEM_*`` attribute is out of range or of the wrong type; the message
            names the attribute, what it must be and the value received.
    """
    _resolve(config)
    rpn_loss_settings(config)
    ohem_roi_settings(config)


def _resolve(config: Any) -> OHEMSettings:
    enabled = check_bool("OHEM_RPN", _get(config, "OHEM_RPN"))
    per_image = check_bool("OHEM_RPN_PER_IMAGE", _get(config, "OHEM_RPN_PER_IMAGE"))
    top_k = check_int("OHEM_RPN_TOP_K", _get(config, "OHEM_RPN_TOP_K"), 1, allow_none=True,
                      hint=" (None: RPN_TRAIN_ANCHORS_PER_IMAGE)")
    fraction = check_number("OHEM_RPN_POSITIVE_FRACTION", _get(config, "OHEM_RPN_POSITIVE_FRACTION"),
                            0.0, 1.0, allow_none=True)
    pool = check_int("OHEM_RPN_NEGATIVE_POOL", _get(config, "OHEM_RPN_NEGATIVE_POOL"), 1,
                     allow_none=True, hint=" (None: keep every negative)")
    nms_threshold = check_number("OHEM_RPN_NMS_THRESHOLD", _get(config, "OHEM_RPN_NMS_THRESHOLD"),
                                 0.0, 1.0, low_open=True, allow_none=True, hint=" (None: no de-duplication)")
    ratio = check_number("OHEM_RPN_MAX_NEGATIVES_PER_POSITIVE",
                         _get(config, "OHEM_RPN_MAX_NEGATIVES_PER_POSITIVE"), 0.0, allow_none=True,
                         hint=" (None: no ratio)")
    min_negatives = check_int("OHEM_RPN_MIN_NEGATIVES", _get(config, "OHEM_RPN_MIN_NEGATIVES"), 0)
    if top_k is None:
        top_k = check_int("RPN_TRAIN_ANCHORS_PER_IMAGE",
                          getattr(config, "RPN_TRAIN_ANCHORS_PER_IMAGE", None), 1,
                          hint=" when OHEM_RPN_TOP_K is None")
    return OHEMSettings(enabled=enabled, top_k=top_k, per_image=per_image,
                        positive_fraction=fraction, negative_pool=pool, nms_threshold=nms_threshold,
                        max_negatives_per_positive=ratio, min_negatives=min_negatives)


def ohem_settings(config: Any) -> OHEMSettings:
    """Validate ``config`` and resolve its OHEM arguments (defaults for missing attributes).

    Args:
        config: a Matterport-style ``Config`` (instance or any object with its attributes).

    Returns:
        The RPN OHEM arguments that ``patch()`` hands the loss and target functions.

    Raises:
        ValueError: an ``OHEM_RPN*`` attribute is invalid (named in the message).
    """
    return _resolve(config)


def rpn_loss_settings(config: Any) -> RPNLossSettings:
    """Validate and resolve ``OHEM_RPN_LOSS`` and the focal-loss knobs of ``config``.

    Args:
        config: a Matterport-style ``Config`` (instance or any object with its attributes).

    Returns:
        Which RPN class loss to install, with the focal ``alpha`` in [0, 1] and ``gamma`` >= 0.

    Raises:
        ValueError: ``OHEM_RPN_LOSS`` is not one of the known losses, or a focal knob is out of
            range (named in the message).
    """
    return RPNLossSettings(
        loss=check_choice("OHEM_RPN_LOSS", _get(config, "OHEM_RPN_LOSS"), RPN_LOSSES),
        focal_alpha=check_number("OHEM_RPN_FOCAL_ALPHA", _get(config, "OHEM_RPN_FOCAL_ALPHA"), 0.0, 1.0),
        focal_gamma=check_number("OHEM_RPN_FOCAL_GAMMA", _get(config, "OHEM_RPN_FOCAL_GAMMA"), 0.0),
    )


def ohem_roi_settings(config: Any) -> ROISettings:
    """Validate and resolve the ``OHEM_ROI*`` settings of ``config``.

    ``OHEM_ROI_TOP_K = None`` resolves to ``TRAIN_ROIS_PER_IMAGE``. With ``OHEM_ROI`` on, the
    pool must hold at least ``TRAIN_ROIS_PER_IMAGE`` RoIs (it replaces Matterport's sample of
    that size and keeps the same positives).

    Args:
        config: a Matterport-style ``Config`` (instance or any object with its attributes).

    Returns:
        Whether RoI OHEM is on, the pool size, the RoIs kept per image (``top_k``), and the
        config's ``TRAIN_ROIS_PER_IMAGE`` and ``ROI_POSITIVE_RATIO``.

    Raises:
        ValueError: an ``OHEM_ROI*`` attribute is invalid, or the pool is smaller than
            ``TRAIN_ROIS_PER_IMAGE`` with ``OHEM_ROI`` on (named in the message).
    """
    enabled = check_bool("OHEM_ROI", _get(config, "OHEM_ROI"))
    pool = check_int("OHEM_ROI_POOL", _get(config, "OHEM_ROI_POOL"), 1)
    top_k = check_int("OHEM_ROI_TOP_K", _get(config, "OHEM_ROI_TOP_K"), 1, allow_none=True,
                      hint=" (None: TRAIN_ROIS_PER_IMAGE)")
    rois = getattr(config, "TRAIN_ROIS_PER_IMAGE", None)
    ratio = getattr(config, "ROI_POSITIVE_RATIO", None)
    if enabled or rois is not None:
        rois = check_int("TRAIN_ROIS_PER_IMAGE", rois, 1, hint=" when OHEM_ROI is True")
    if enabled:
        ratio = check_number("ROI_POSITIVE_RATIO", ratio, 0.0, 1.0, low_open=True,
                             hint=" when OHEM_ROI is True")
        if pool < rois:
            check_int("OHEM_ROI_POOL", pool, rois, hint=" (TRAIN_ROIS_PER_IMAGE) when OHEM_ROI is True")
    ranking = check_choice("OHEM_ROI_RANKING", _get(config, "OHEM_ROI_RANKING"), ROI_RANKINGS)
    nms_threshold = check_number("OHEM_ROI_NMS_THRESHOLD", _get(config, "OHEM_ROI_NMS_THRESHOLD"),
                                 0.0, 1.0, low_open=True, allow_none=True, hint=" (None: no de-duplication)")
    if top_k is None:
        top_k = rois
    return ROISettings(enabled=enabled, pool=pool, top_k=top_k, train_rois_per_image=rois,
                       roi_positive_ratio=ratio, ranking=ranking, nms_threshold=nms_threshold)


#: Settings whose None means another attribute's value, shown resolved by ``display()``.
_EFFECTIVE = {"OHEM_RPN_TOP_K": "RPN_TRAIN_ANCHORS_PER_IMAGE", "OHEM_ROI_TOP_K": "TRAIN_ROIS_PER_IMAGE"}


class OHEMConfigMixin:
    """Adds validated ``OHEM_*`` settings to a Matterport-style ``Config``.

    Put it first among the bases: ``class MyConfig(OHEMConfigMixin, Config)``.
    """

    # Switch OHEM on the RPN objectness loss and targets on or off (patch() does nothing when off).
    OHEM_RPN = True
    # Hardest non-neutral anchors kept per image; None means RPN_TRAIN_ANCHORS_PER_IMAGE.
    OHEM_RPN_TOP_K = None
    # True: a budget per image. False: one pool of TOP_K * batch over the whole batch.
    OHEM_RPN_PER_IMAGE = True
    # None: rank positives and negatives together. f in [0, 1]: positives first, at most
    # floor(f * TOP_K) of them, then the hardest negatives (0.5: mmdetection's OHEM sampler).
    # None stays the default (issue 28): fine-tuning the shapes detector, None kept every positive
    # on every step (the same counts as 0.5); from random weights the first ~5 steps kept none.
    # Set 0.5 to train from scratch, or where positives are few among many hard negatives.
    OHEM_RPN_POSITIVE_FRACTION = None
    # None: every negative anchor stays a candidate. n: a random n negatives per image do.
    OHEM_RPN_NEGATIVE_POOL = None
    # RPN objectness loss when OHEM_RPN is on: "ohem" (hardest TOP_K) or "focal" (every anchor).
    OHEM_RPN_LOSS = "ohem"
    # Focal loss: weight of positives in [0, 1] (negatives get 1 - alpha), and the exponent >= 0.
    OHEM_RPN_FOCAL_ALPHA = 0.25
    OHEM_RPN_FOCAL_GAMMA = 2.0
    # Switch OHEM on the RoI head (the paper's setting): heads see a pool, class loss the hardest.
    OHEM_ROI = False
    # RoIs per image the class head sees while training (>= TRAIN_ROIS_PER_IMAGE); extra ones
    # negative. The mask head sees the first TRAIN_ROIS_PER_IMAGE, which hold every positive.
    OHEM_ROI_POOL = 512
    # Hardest RoIs per image the class loss keeps; None means TRAIN_ROIS_PER_IMAGE.
    OHEM_ROI_TOP_K = None
    # "class": rank the pool by class loss; the kept RoIs train the class loss only (box and mask
    # losses keep Matterport's positives). "class+box": rank by class + box loss and train both
    # on the kept RoIs, as the OHEM paper does (bundled model only: see mrcnn_ohem.roi).
    OHEM_ROI_RANKING = "class"
    # None: no de-duplication. t in (0, 1]: NMS among the pool's RoIs by their loss before the
    # top-k, at IoU t (the paper: 0.7); like "class+box", it needs the bundled model.
    OHEM_ROI_NMS_THRESHOLD = None
    # None: no de-duplication. t in (0, 1]: per image and label, drop candidates whose IoU with a
    # harder kept one is > t before the top-k (the OHEM paper uses 0.7); needs a fixed IMAGE_SHAPE.
    OHEM_RPN_NMS_THRESHOLD = None
    # None: no ratio. r >= 0: keep at most max(OHEM_RPN_MIN_NEGATIVES, floor(r * kept positives))
    # of the selected negatives per image (the freed budget is not refilled).
    OHEM_RPN_MAX_NEGATIVES_PER_POSITIVE = None
    # Floor of that ratio, so an image without positives still trains on its hardest negatives.
    OHEM_RPN_MIN_NEGATIVES = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Initialise the base ``Config``, then validate every ``OHEM_*`` setting.

        Args:
            *args: passed on to the base config's ``__init__``.
            **kwargs: passed on to the base config's ``__init__``.

        Raises:
            ValueError: an ``OHEM_*`` setting is invalid (named in the message).
        """
        super().__init__(*args, **kwargs)
        validate_ohem_config(self)

    def display(self) -> None:
        """The base ``display()``, with ``None`` settings shown as the values patch() uses."""
        buffer = io.StringIO()
        with contextlib.redirect_stdout(buffer):
            super().display()
        top_k = ohem_settings(self).top_k
        resolved = {"OHEM_RPN_TOP_K": top_k, "OHEM_ROI_TOP_K": ohem_roi_settings(self).top_k}
        fraction = self.OHEM_RPN_POSITIVE_FRACTION
        cap = ("(positives and negatives ranked together)" if fraction is None else
               f"(positives first, at most {math.floor(fraction * top_k)} of {top_k}; then the hardest negatives)")
        for line in buffer.getvalue().split("\n")[:-1]:
            name = line.split(" ", 1)[0]
            if name in _EFFECTIVE and getattr(self, name) is None:
                line = f"{name:30} {resolved[name]} (None: {_EFFECTIVE[name]})"
            elif name == "OHEM_RPN_POSITIVE_FRACTION":
                line = f"{line.rstrip()} {cap}"
            print(line)


def _bundled_ohem_config() -> type:
    """``OHEMConfig``: the bundled Mask R-CNN ``Config`` with the mixin, built once."""
    from mrcnn_ohem.maskrcnn.config import Config

    class OHEMConfig(OHEMConfigMixin, Config):
        """The bundled Mask R-CNN ``Config`` with OHEM on: subclass it as you would ``Config``."""

    OHEMConfig.__module__ = __name__
    OHEMConfig.__qualname__ = "OHEMConfig"
    return OHEMConfig


def __getattr__(name: str) -> Any:
    # PEP 562: importing this module must not import the bundled model; OHEMConfig needs it.
    if name == "OHEMConfig":
        cls = _bundled_ohem_config()
        globals()["OHEMConfig"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
