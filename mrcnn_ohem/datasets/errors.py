"""What can be wrong with a dataset's records: errors, warnings, skip records and the checks.

Shared by :mod:`.coco` and :mod:`.coco_eval`; it imports neither. The checks return why a record
is unusable (a sentence naming the received value) or None; :mod:`.coco` turns them into
:class:`SkippedRecord` entries.
"""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

__all__ = [
    "CorruptImageError", "CorruptImageWarning", "SkippedRecord", "bbox_problem", "check_image_file",
    "count_skips", "format_skips", "polygon_problem",
]

#: What a :class:`SkippedRecord` left out: a whole image, one annotation, or one polygon of an
#: annotation that is otherwise kept.
SKIP_KINDS = ("image", "annotation", "polygon")


class CorruptImageError(OSError):
    """An image file is missing, truncated or not an image."""


class CorruptImageWarning(UserWarning):
    """An unreadable image was skipped (and replaced by the next readable one)."""


@dataclass(frozen=True)
class SkippedRecord:
    """One damaged record of a COCO file that a dataset leaves out instead of failing on.

    Attributes:
        kind: ``"image"``, ``"annotation"`` or ``"polygon"`` (see :data:`SKIP_KINDS`).
        image_id: the COCO image id (as in the JSON, not the dataset's internal index).
        annotation_id: the COCO annotation id; None for an image.
        file: the image file the record belongs to (None when the JSON names no such image).
        reason: what is wrong, e.g. ``"polygon 0 has 2 points; a polygon needs at least 3"``.
    """

    kind: str
    image_id: int | None
    annotation_id: int | None
    file: str | None
    reason: str

    def __str__(self) -> str:
        what = f"{self.kind} (COCO image id {self.image_id}"
        if self.annotation_id is not None:
            what += f", annotation id {self.annotation_id}"
        return f"{what}, file {self.file}): {self.reason}"

    def to_dict(self) -> dict:
        """The record as a JSON-ready dict."""
        return asdict(self)


def count_skips(records: Sequence[SkippedRecord]) -> dict[str, int]:
    """``{"image": n, "annotation": n, "polygon": n}`` for a run summary (zeros included).

    Args:
        records: the skipped records to count by ``kind``.
    """
    counts = Counter(record.kind for record in records)
    return {kind: int(counts.get(kind, 0)) for kind in SKIP_KINDS}


def format_skips(records: Sequence[SkippedRecord], limit: int = 20) -> str:
    """The first ``limit`` records, one per line, then ``... and N more`` when there are more.

    Args:
        records: the skipped records, in the order to show them.
        limit: how many to show in full.

    Returns:
        The lines, each indented by two spaces, joined by newlines.
    """
    lines = [f"  {record}" for record in records[:limit]]
    if len(records) > limit:
        lines.append(f"  ... and {len(records) - limit} more")
    return "\n".join(lines)


def polygon_problem(polygon: Any) -> str | None:
    """Why a polygon cannot be rasterised, or None.

    Args:
        polygon: one polygon of a COCO segmentation, a flat ``[x1, y1, x2, y2, ...]`` list (or
            tuple) of finite numbers, at least 3 points.
    """
    if not isinstance(polygon, (list, tuple)):
        return f"is a {type(polygon).__name__}, not a list of coordinates"
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in polygon):
        return "holds coordinates that are not finite numbers"
    if len(polygon) % 2:
        return f"has an odd number of coordinates ({len(polygon)})"
    if len(polygon) < 6:
        return f"has {len(polygon) // 2} points ({len(polygon)} coordinates); a polygon needs at least 3"
    return None


def bbox_problem(bbox: Any, height: int, width: int) -> str | None:
    """Why a COCO ``bbox`` is unusable for an image of that size, or None.

    Args:
        bbox: ``[x, y, width, height]`` in pixels, as COCO writes it: 4 finite numbers, positive
            width and height, at least partly inside the image.
        height: the image's height in pixels.
        width: the image's width in pixels.
    """
    if not isinstance(bbox, (list, tuple)) or len(bbox) != 4 or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in bbox):
        return f"bbox must be 4 finite numbers [x, y, width, height]; received {str(bbox)[:60]}"
    x, y, w, h = bbox
    if w <= 0 or h <= 0:
        return f"bbox {bbox} has zero width or height"
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        return f"bbox {bbox} lies outside the {width}x{height} image"
    return None


def check_image_file(path: str | Path, height: Any, width: Any, decode: bool = False) -> str | None:
    """Why the image file does not match its JSON record, or None.

    Reads the header only (Pillow's ``Image.open`` does not decode the pixels) unless
    ``decode``, which also decodes the pixels and so finds truncated files.

    Args:
        path: the image file.
        height: the image's height as the JSON gives it (must be a positive integer).
        width: the image's width as the JSON gives it (must be a positive integer).
        decode: also decode the pixels (slower; finds truncated files).
    """
    if not all(isinstance(v, (int, float, np.integer)) and not isinstance(v, bool) and v > 0
               and float(v).is_integer() for v in (height, width)):
        return f"the JSON's width and height must be positive integers; received {width!r} x {height!r}"
    height, width = int(height), int(width)
    path = Path(path)
    if not path.is_file():
        return "file does not exist"
    try:
        with Image.open(path) as image:
            size = image.size
            if decode:
                image.load()
    except Exception as err:  # Pillow raises OSError, ValueError, SyntaxError, DecompressionBombError...
        return f"cannot be {'decoded' if decode else 'read'} ({err})"
    if size != (width, height):
        return f"file is {size[0]}x{size[1]} (width x height); the JSON says {width}x{height}"
    return None
