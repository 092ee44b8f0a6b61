"""OHEM settings for any Matterport-style ``Config``.

Turning OHEM on is one line in a user's config::

    from mrcnn.config import Config
    from mrcnn_ohem import OHEMConfigMixin

    class MyConfig(OHEMConfigMixin, Config):
        NAME = "mine"
        OHEM_RPN_POSITIVE_FRACTION = 0.5   # optional knobs

The mixin declares the ``OHEM_*`` attributes, validates them in ``__init__`` and, because
Matterport's ``display()`` lists every upper-case attribute, shows them there.
:func:`ohem_settings` is the one place where a config becomes loss and sampling arguments.
"""
from __future__ import annotations

import numbers
from typing import Any, NamedTuple

from mrcnn_ohem.maskrcnn.config import Config

__all__ = ["OHEMConfigMixin", "OHEMConfig", "OHEMSettings", "ohem_settings", "validate_ohem_config"]


class OHEMSettings(NamedTuple):
    """The OHEM arguments a config resolves to (see :func:`ohem_settings`)."""

    enabled: bool
    top_k: int
    per_image: bool
    positive_fraction: float | None
    negative_pool: int | None


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def validate_ohem_config(config: Any) -> None:
    """Check every ``OHEM_*`` attribute of ``config``; raise ValueError naming the first bad one.

    Missing attributes take the mixin's defaults, so a plain Matterport config validates too.
    """
    def get(name: str) -> Any:
        return getattr(config, name, getattr(OHEMConfigMixin, name))

    def fail(name: str, expected: str) -> None:
        raise ValueError(f"{name} must be {expected}; received {get(name)!r}")

    for name in ("OHEM_RPN", "OHEM_RPN_PER_IMAGE"):
        if not isinstance(get(name), bool):
            fail(name, "True or False")
    top_k = get("OHEM_RPN_TOP_K")
    if top_k is not None and not (_is_int(top_k) and top_k >= 1):
        fail("OHEM_RPN_TOP_K", "None (use RPN_TRAIN_ANCHORS_PER_IMAGE) or an integer >= 1")
    fraction = get("OHEM_RPN_POSITIVE_FRACTION")
    if fraction is not None and not (
        isinstance(fraction, numbers.Real) and not isinstance(fraction, bool) and 0 <= fraction <= 1
    ):
        fail("OHEM_RPN_POSITIVE_FRACTION", "None or a number in [0, 1]")
    pool = get("OHEM_RPN_NEGATIVE_POOL")
    if pool is not None and not (_is_int(pool) and pool >= 1):
        fail("OHEM_RPN_NEGATIVE_POOL", "None (keep every negative) or an integer >= 1")
    if top_k is None:
        anchors_per_image = getattr(config, "RPN_TRAIN_ANCHORS_PER_IMAGE", None)
        if not (_is_int(anchors_per_image) and anchors_per_image >= 1):
            raise ValueError(
                "RPN_TRAIN_ANCHORS_PER_IMAGE must be an integer >= 1 when OHEM_RPN_TOP_K is None; "
                f"received {anchors_per_image!r}"
            )


def ohem_settings(config: Any) -> OHEMSettings:
    """Validate ``config`` and resolve its OHEM arguments (defaults for missing attributes)."""
    validate_ohem_config(config)

    def get(name: str) -> Any:
        return getattr(config, name, getattr(OHEMConfigMixin, name))

    top_k = get("OHEM_RPN_TOP_K")
    fraction = get("OHEM_RPN_POSITIVE_FRACTION")
    return OHEMSettings(
        enabled=get("OHEM_RPN"),
        top_k=int(config.RPN_TRAIN_ANCHORS_PER_IMAGE if top_k is None else top_k),
        per_image=get("OHEM_RPN_PER_IMAGE"),
        positive_fraction=None if fraction is None else float(fraction),
        negative_pool=get("OHEM_RPN_NEGATIVE_POOL"),
    )


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

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        validate_ohem_config(self)


class OHEMConfig(OHEMConfigMixin, Config):
    """The bundled Mask R-CNN ``Config`` with OHEM on: subclass it as you would ``Config``."""
