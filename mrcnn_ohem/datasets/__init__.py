"""Datasets for the bundled Mask R-CNN: COCO-format folders and generated shapes.

- :mod:`.coco` -- :class:`~.coco.CocoDataset` (official COCO layout, class subsets, crowd,
  corrupt-file skipping).
- :mod:`.coco_eval` -- COCOeval for bbox/segm AP and RPN proposal recall AR@100.
- :mod:`.errors` -- the corrupt-image error and warning both readers use, and the checks and
  records of damaged annotations (:class:`~.errors.SkippedRecord`).
- :mod:`.shapes` -- a synthetic dataset with look-alike distractors (hard negatives) that can
  write itself out as a COCO folder.

Submodules load on first attribute access.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "CocoDataset": "coco",
    "CorruptImageError": "errors",
    "CorruptImageWarning": "errors",
    "SkippedRecord": "errors",
    "build_coco_results": "coco_eval",
    "evaluate_coco": "coco_eval",
    "ShapesDataset": "shapes",
    "write_coco_folder": "shapes",
}
_SUBMODULES = ("coco", "coco_eval", "errors", "shapes")

__all__ = sorted(_EXPORTS) + list(_SUBMODULES)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
