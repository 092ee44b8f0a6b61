"""Shared fixtures: a tiny Mask R-CNN config and a hand-specified shapes dataset (classes in helpers.py)."""
from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# One TensorFlow thread per process (set before TensorFlow starts its thread pools; the child
# processes of the command-line, notebook, fork and multi-worker tests inherit it). `make test`
# runs 3 pytest workers on 2 cores, and TensorFlow's default pools (a thread per core for the ops'
# own work and as many for running ops side by side) spent CPU waiting for work the other
# processes held: full suite, same checkout, back to back (2026-12-06, docs/measurements.md):
# 307 s wall and 575 CPU s with the defaults, 280 s and 519 CPU s with one thread.
os.environ.setdefault("TF_NUM_INTRAOP_THREADS", "1")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")

import pytest  # noqa: E402
from helpers import SHAPE_SPECS, ShapesDataset, TinyConfig  # noqa: E402

#: The longest test files, longest first (summed ``--durations`` of a full run, 2026-12-06). The
#: Makefile runs the suite on pytest-xdist with ``--dist loadfile --no-loadscope-reorder``, which
#: hands out files in collection order; starting the long files first lets the short ones fill
#: the workers' gaps at the end, instead of one long file running alone after the rest. A file
#: not listed runs after these, in the usual order: the list decides when tests run, not whether.
LONGEST_FIRST = (
    "test_maskrcnn_model.py", "test_maskrcnn_mixed_precision.py", "test_notebooks.py", "test_readme.py",
    "test_samples.py", "test_benchmarks_quality.py", "test_benchmarks_gpu.py", "test_patch_bundled_model_roi.py",
    "test_maskrcnn_distribute.py", "test_fork.py", "test_compat.py", "test_patch_mining.py", "test_patch_reach.py",
    "test_losses.py", "test_patch_bundled_model.py", "test_diagnose.py", "test_maskrcnn_weights.py",
    "test_runner_finetune.py", "test_losses_mining.py", "test_roi.py", "test_patch.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Put the files of :data:`LONGEST_FIRST` first, in its order (a stable sort: within a file,
    and among the other files, the collection order stays)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


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
