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

from typing import Any, NamedTuple

from mrcnn_ohem.core.checks import check_bool, check_int, check_number

# OHEMConfig is served by the module __getattr__ below.
__all__ = ["OHEMConfigMixin", "OHEMConfig", "OHEMSettings", "ohem_settings", "validate_ohem_config"]  # noqa: F822


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


def _get(config: Any, name: str) -> Any:
    """``config.name``, or the mixin's default when a plain Matterport config lacks it."""
    return getattr(config, name, getattr(OHEMConfigMixin, name))


def validate_ohem_config(config: Any) -> None:
    """Check every ``OHEM_*`` attribute of ``config``; raise ValueError naming the first bad one.

    Missing attributes take the mixin's defaults, so a plain Matterport config validates too.
    """
    _resolve(config)


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
    """Validate ``config`` and resolve its OHEM arguments (defaults for missing attributes)."""
    return _resolve(config)


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
    # None: rank positives and negatives together. f in [0, 1]: at most floor(f * TOP_K) positives.
    OHEM_RPN_POSITIVE_FRACTION = None
    # None: every negative anchor stays a candidate. n: a random n negatives per image do.
    OHEM_RPN_NEGATIVE_POOL = None
    # None: no de-duplication. t in (0, 1]: per image and label, drop candidates whose IoU with a
    # harder kept one is > t before the top-k (the OHEM paper uses 0.7); needs a fixed IMAGE_SHAPE.
    OHEM_RPN_NMS_THRESHOLD = None
    # None: no ratio. r >= 0: keep at most max(OHEM_RPN_MIN_NEGATIVES, floor(r * kept positives))
    # of the selected negatives per image (the freed budget is not refilled).
    OHEM_RPN_MAX_NEGATIVES_PER_POSITIVE = None
    # Floor of that ratio, so an image without positives still trains on its hardest negatives.
    OHEM_RPN_MIN_NEGATIVES = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        validate_ohem_config(self)


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
