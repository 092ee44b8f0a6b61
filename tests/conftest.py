"""Shared fixtures: a tiny Mask R-CNN config and a hand-specified shapes dataset (classes in helpers.py)."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import pytest  # noqa: E402
from helpers import SHAPE_SPECS, ShapesDataset, TinyConfig  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _graph_optimizer_off():
    """TensorFlow's graph optimizer (grappler) off for the graphs the tests build in process.

    A test's graph runs a few steps, fewer than it takes to win back the seconds grappler spends
    on a freshly traced Mask R-CNN step: measured on the four in-process model test files, their
    12 slowest tests took 226 s instead of 254 s (2026-12-02). Grappler rewrites graphs without
    changing what they compute; the fine-tune command-line test, the notebooks and the
    multi-worker test run in subprocesses, with it on, as users run them.
    """
    from mrcnn_ohem._compat import graph_optimizations_off

    with graph_optimizations_off():  # (what --quick and the demo's --smoke use, restored after)
        yield


@pytest.fixture
def tiny_config() -> TinyConfig:
    return TinyConfig()


@pytest.fixture
def shapes_dataset() -> ShapesDataset:
    dataset = ShapesDataset()
    dataset.load_shapes(SHAPE_SPECS)
    dataset.prepare()
    return dataset
