"""Tests for the timing helpers of the benchmarks (``benchmarks/_results.py``, ``data_path``,
``train_step``): interleaving, load average, and the sections they write, on hand-made inputs."""
from __future__ import annotations

import argparse
import itertools
import sys

import numpy as np

from benchmarks import _results, data_path, train_step


def test_interleave_alternates_the_order_and_times_every_round():
    calls = []
    functions = {name: (lambda name=name: calls.append(name)) for name in ("a", "b", "c")}
    ticks = itertools.count()
    times = _results.interleave(functions, rounds=3, warmup=1, clock=lambda: float(next(ticks)))
    # warm-up a b c, then rounds: a b c / c b a / a b c
    assert calls == list("abc") + list("abc") + list("cba") + list("abc")
    assert {name: len(t) for name, t in times.items()} == {"a": 3, "b": 3, "c": 3}
    assert all(t == 1.0 for values in times.values() for t in values)  # one tick per call


def test_median_and_spread():
    assert _results.median_and_spread([3.0, 1.0, 2.0, 10.0]) == (2.5, 1.0, 10.0)


def test_load_average_is_three_numbers_or_unknown():
    load = _results.load_average()
    assert load == "unknown" or len([float(v) for v in load.split()]) == 3


def test_command_line_names_the_package_a_user_runs_with_dash_m(monkeypatch):
    import types

    for spec_name, module in (("benchmarks.quality.__main__", "benchmarks.quality"),
                              ("benchmarks.train_step", "benchmarks.train_step")):
        main = types.ModuleType("__main__")
        main.__spec__ = types.SimpleNamespace(name=spec_name)
        monkeypatch.setitem(sys.modules, "__main__", main)
        monkeypatch.setattr(sys, "argv", ["ignored", "--quick", "--out", "a b"])
        assert _results.command_line() == f"python -m {module} --quick --out 'a b'"


def test_data_path_dataset_has_one_to_ten_instances_per_image(tmp_path):
    dataset = data_path.make_dataset(tmp_path, 3)
    for image_id in dataset.image_ids:
        image = dataset.load_image(image_id)
        masks, class_ids = dataset.load_mask(image_id)
        assert image.shape == (480, 640, 3) and image.dtype == np.uint8
        assert masks.shape[:2] == (480, 640) and 1 <= masks.shape[-1] <= 10
        assert masks.shape[-1] == class_ids.shape[0] and masks.any(axis=(0, 1)).all()


def test_data_path_profiles_every_stage_it_reports(tmp_path):
    # A stage whose function the data path no longer calls would read 0.0 ms in the table.
    config = data_path.make_config(batch=1)
    generators = data_path.make_generators(data_path.make_dataset(tmp_path, 1), config)
    stages = data_path.profile_stages(generators)
    for variant in data_path.VARIANTS:
        missing = [label for label, _ in data_path.STAGES if not stages[variant][label] > 0]
        assert missing == [], (variant, missing)


def test_data_path_render_states_ratio_load_and_stages():
    args = argparse.Namespace(images=4, rounds=3, workers=2)
    serial = {"plain": [0.2, 0.4, 0.3], "ohem": [0.3, 0.3, 0.33]}
    rates = {"plain": [6.0, 7.0], "ohem": [5.0, 5.0]}
    stages = {v: {label: 0.01 for label, _ in data_path.STAGES} | {"total (profiled)": 0.1}
              for v in ("plain", "ohem")}
    text = data_path.render(args, serial, rates, stages, ["3.0 2.0 1.0", "2.5 2.0 1.0"], 2)
    assert "| plain | 150.0 | 100.0 - 200.0 | 6.5 |" in text
    assert "**1.00x** per image" in text  # medians 0.3 and 0.3
    assert "load average 3.0 2.0 1.0 before, 2.5 2.0 1.0 after" in text
    assert "delivers 5.0 with 2 threads (enough" in text


def test_train_step_render_reports_median_and_per_round_spread():
    args = argparse.Namespace(size=64, backbone="tiny", batch=2, layers="heads", rois=16,
                              warmup=1, steps=2, rounds=3, roi_pool=32, mask_filters=64)
    results = {
        "plain": {"rounds": [[1.0, 1.0], [2.0, 2.0], [1.0, 1.0]], "batch_times": [0.01],
                  "negatives_per_batch": 500},
        "ohem": {"rounds": [[1.1, 1.1], [2.0, 2.0], [1.0, 1.0]], "batch_times": [0.02],
                 "negatives_per_batch": 9000},
    }
    text = train_step.render(args, results, ["0.50 0.40 0.30", "0.60 0.40 0.30"])
    assert "| ohem | 1100 | 1100, 2000, 1000 | +10.0% | +10.0%, +0.0%, +0.0% | 20 | 9000 |" in text
    assert "per-round range +0.0% to +10.0%" in text
    assert "median ratio - 1 ohem +0.0%." in text  # paired ratios 1.1, 1.1, 1, 1, 1, 1
    assert "shared machine" not in text  # load below 1 on both readings
    assert "16 of 1000 proposals" in text and "CPU-sized" not in text
    args.cpu_heads = True
    text = train_step.render(args, results, ["0.50 0.40 0.30", "0.60 0.40 0.30"])
    assert "16 of 300 proposals" in text and "CPU-sized heads (`--cpu-heads`: FPN 64 channels" in text


def test_train_step_cpu_heads_keep_the_rois_asked_for():
    args = argparse.Namespace(size=64, backbone="tiny", batch=2, rois=16, roi_pool=32, mask_filters=64,
                              cpu_heads=True)
    config = train_step._make_config(args, "ohem")
    assert (config.TRAIN_ROIS_PER_IMAGE, config.TOP_DOWN_PYRAMID_SIZE, config.POST_NMS_ROIS_TRAINING) == (16, 64, 300)
    args.cpu_heads = False
    assert train_step._make_config(args, "ohem").TOP_DOWN_PYRAMID_SIZE == 256


def test_train_step_runs_variants_step_by_step_in_rotating_order(monkeypatch):
    calls = []

    class FakeKerasModel:
        def __init__(self, name):
            self.name = name

        def train_on_batch(self, inputs):
            calls.append(self.name)

    def fake_build(variant, args):
        model = argparse.Namespace(keras_model=FakeKerasModel(variant))
        return {"model": model, "batches": [None], "batch_times": [0.01], "negatives_per_batch": 1, "next": 0}

    monkeypatch.setattr(train_step, "build_variant", fake_build)
    args = argparse.Namespace(variants=["ohem", "focal"], warmup=1, steps=2, rounds=2)
    results = train_step.run(args)
    assert calls[:3] == ["plain", "ohem", "focal"]  # warm-up
    timed = calls[3:]
    assert [timed[i:i + 3] for i in range(0, len(timed), 3)] == [
        ["plain", "ohem", "focal"], ["ohem", "focal", "plain"],   # round 1, steps 1-2
        ["focal", "plain", "ohem"], ["plain", "ohem", "focal"]]   # round 2, steps 1-2
    assert {v: [len(r) for r in results[v]["rounds"]] for v in results} == {
        "plain": [2, 2], "ohem": [2, 2], "focal": [2, 2]}


def test_data_path_times_resize_now_before_and_matterport_side_by_side(tmp_path):
    times = data_path.time_resize(data_path.make_dataset(tmp_path, 1), rounds=2)
    assert [name.split(" (")[0] for name in times] == [
        "resize_image now", "resize_image before", "Matterport: skimage resize + astype",
        "resize_mask now", "resize_mask before", "Matterport: scipy.ndimage.zoom"]
    assert all(len(t) == 2 and min(t) > 0 for t in times.values())
