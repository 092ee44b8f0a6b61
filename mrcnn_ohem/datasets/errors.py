"""Errors and warnings of the dataset readers, shared by :mod:`.coco` and :mod:`.coco_eval`."""
from __future__ import annotations

__all__ = ["CorruptImageError", "CorruptImageWarning"]


class CorruptImageError(OSError):
    """An image file is missing, truncated or not an image."""


class CorruptImageWarning(UserWarning):
    """An unreadable image was skipped (and replaced by the next readable one)."""
