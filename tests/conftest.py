"""Shared fixtures: a tiny Mask R-CNN config and a hand-specified shapes dataset (classes in helpers.py)."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from helpers import SHAPE_SPECS, ShapesDataset, TinyConfig  # noqa: E402


@pytest.fixture
def tiny_config() -> TinyConfig:
    return TinyConfig()


@pytest.fixture
def shapes_dataset() -> ShapesDataset:
    dataset = ShapesDataset()
    dataset.load_shapes(SHAPE_SPECS)
    dataset.prepare()
    return dataset
