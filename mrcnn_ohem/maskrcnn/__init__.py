"""A Mask R-CNN for TensorFlow 2.16-2.21 (tf-keras) with Matterport Mask R-CNN's public API.

Written from scratch after the contract of matterport/Mask_RCNN (``mrcnn.config``,
``mrcnn.utils``, ``mrcnn.model``, ``mrcnn.visualize``) so user configs, datasets and weight
files carry over. Split by pipeline stage:

- :mod:`.config` -- ``Config`` (NumPy only).
- :mod:`.utils` -- ``Dataset``, resizing, box and mask helpers, AP metrics.
- :mod:`.anchors` -- anchor pyramid in Matterport's order.
- :mod:`.targets` -- RPN and detection training targets (NumPy).
- :mod:`.data` -- ``load_image_gt``, image meta, ``DataGenerator`` (a Keras ``Sequence``).
- :mod:`.backbone`, :mod:`.layers`, :mod:`.heads`, :mod:`.losses`, :mod:`.model` -- the graph.
- :mod:`.checkpoints` -- run folders and checkpoint names (no TensorFlow).
- :mod:`.precision` -- ``Config.MIXED_PRECISION``: which layers compute in float16/bfloat16.
- :mod:`.visualize` -- matplotlib drawing helpers.

Submodules load on first attribute access, so ``import mrcnn_ohem.maskrcnn.config`` never
imports TensorFlow.
"""
from __future__ import annotations

import importlib
from typing import Any

_SUBMODULES = ("config", "utils", "dataset", "metrics", "anchors", "targets", "data", "visualize",
               "backbone", "layers", "heads", "losses", "training", "checkpoints", "weights", "inference",
               "distribute", "model")

__all__ = list(_SUBMODULES)


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_SUBMODULES))
