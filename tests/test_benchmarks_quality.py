"""Tests for the helpers of ``benchmarks/quality.py`` (aggregation, metrics, variant wiring).

The training runs themselves are the benchmark; here only the pieces that turn runs into
numbers and the per-variant setup are checked, on hand-made inputs.
"""
from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest
from pycocotools.coco import COCO

from benchmarks import quality

############################################################
#  distractor_false_positives
############################################################


def test_distractor_false_positives_counts_by_hand():
    gt = np.array([[0, 0, 10, 10]])
    distractors = np.array([[20, 20, 30, 30]])
    proposals = np.array([
        [20, 20, 30, 30],  # IoU 1 with the distractor, 0 with the object -> counted
        [20, 20, 30, 28],  # IoU 80/100 = 0.8 with the distractor -> counted
        [20, 20, 30, 24],  # IoU 40/100 = 0.4 < 0.5 -> not counted
        [0, 0, 10, 10],  # the object itself -> not counted
        [25, 25, 35, 35],  # IoU 25/175 = 0.14 -> not counted
    ])
    assert quality.distractor_false_positives(proposals, gt, distractors) == 2
    # Only the first `top` proposals are looked at.
    assert quality.distractor_false_positives(proposals, gt, distractors, top=1) == 1


def test_distractor_false_positives_excludes_proposals_that_also_cover_an_object():
    # Object and distractor boxes overlap, so one proposal has IoU >= 0.5 with both.
    gt = np.array([[0, 0, 10, 10]])
    distractors = np.array([[0, 1, 10, 11]])  # IoU with gt = 90/110 = 0.82
    proposals = np.array([[0, 0, 10, 10.5]])  # IoU 1/1.05 with gt and 0.95/1.1 with the distractor
    assert quality.distractor_false_positives(proposals, gt, distractors) == 0
    # Without ground truth every distractor hit counts.
    assert quality.distractor_false_positives(proposals, np.zeros((0, 4)), distractors) == 1


def test_distractor_false_positives_empty_inputs():
    assert quality.distractor_false_positives(np.zeros((0, 4)), np.zeros((0, 4)), np.ones((1, 4))) == 0
    assert quality.distractor_false_positives(np.ones((3, 4)), np.zeros((0, 4)), np.zeros((0, 4))) == 0


############################################################
#  proposal_recall
############################################################


def _tiny_coco() -> COCO:
    coco = COCO()
    coco.dataset = {
        "images": [{"id": 1, "height": 100, "width": 100}, {"id": 2, "height": 100, "width": 100}],
        "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}],
        "annotations": [
            {"id": 1, "image_id": 1, "category_id": 1, "bbox": [10, 10, 20, 20], "area": 400, "iscrowd": 0},
            {"id": 2, "image_id": 2, "category_id": 2, "bbox": [50, 50, 30, 30], "area": 900, "iscrowd": 0},
        ],
    }
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


def _record(image_id, x, y, w, h, score):
    return {"image_id": image_id, "category_id": 1, "bbox": [x, y, w, h], "score": score}


def test_proposal_recall_counts_budget_and_ignores_classes():
    coco = _tiny_coco()
    # Image 1: the exact box is ranked 11th, after ten misses; image 2: exact box first
    # (class-agnostic: category 1 matches a category-2 object).
    records = [_record(1, 80, 80, 5, 5, 1.0 - k / 100) for k in range(10)]
    records += [_record(1, 10, 10, 20, 20, 0.5), _record(2, 50, 50, 30, 30, 1.0)]
    recall = quality.proposal_recall(coco, [1, 2], records)
    # AR@10: only image 2's object is found at every IoU -> 1/2; AR@100 and AR@1000: both.
    assert recall[10] == pytest.approx(0.5)
    assert recall[100] == pytest.approx(1.0)
    assert recall[1000] == pytest.approx(1.0)


def test_proposal_recall_rejects_wrong_budget_count():
    with pytest.raises(ValueError, match="max_dets must hold exactly 3 budgets"):
        quality.proposal_recall(_tiny_coco(), [1], [], max_dets=(100, 1000))


############################################################
#  Aggregation and tables
############################################################


def test_summarize_mean_sample_std_and_range():
    stats = quality.summarize([1.0, 2.0, None, 3.0, math.nan])
    # mean 2, sample std sqrt(((1-2)^2 + 0 + (3-2)^2) / 2) = 1
    assert stats == {"n": 3, "mean": 2.0, "std": 1.0, "min": 1.0, "max": 3.0}
    assert quality.summarize([5.0])["std"] == 0.0
    assert quality.summarize([None])["n"] == 0 and math.isnan(quality.summarize([])["mean"])


def test_format_cell():
    assert quality.format_cell({"n": 3, "mean": 0.12345, "std": 0.01, "min": 0, "max": 1}) == "0.123 ± 0.010"
    assert quality.format_cell({"n": 1, "mean": 0.5, "std": 0.0, "min": 0.5, "max": 0.5}, 2) == "0.50"
    assert quality.format_cell(quality.summarize([])) == "-"


def _run(variant, seed, status="ok", **metrics):
    return {"variant": variant, "seed": seed, "dataset": "shapes", "status": status, "metrics": metrics}


def test_aggregate_skips_crashed_runs_and_table_counts_them():
    runs = [
        _run("baseline", 0, bbox_AP50=0.2, AR100=0.4),
        _run("baseline", 1, bbox_AP50=0.4, AR100=0.6),
        _run("snippet", 0, status="crashed"),
        _run("snippet", 1, bbox_AP50=0.3, AR100=0.5),
    ]
    table = quality.aggregate(runs, ["baseline", "snippet"])
    assert table["baseline"]["bbox_AP50"]["mean"] == pytest.approx(0.3)
    assert table["baseline"]["bbox_AP50"]["std"] == pytest.approx(math.sqrt(0.02))  # ((.1)^2+(.1)^2)/1
    assert table["snippet"]["bbox_AP50"]["n"] == 1
    assert table["snippet"]["seconds_per_step"]["n"] == 0
    text = quality.markdown_table(table, runs=runs)
    lines = text.splitlines()
    assert lines[0].startswith("| variant | bbox AP | bbox AP50 |") and lines[0].endswith("runs ok |")
    assert len(lines) == 4
    assert "| baseline | - | 0.300 ± 0.141 | - | 0.500 ± 0.141 |" in lines[2]
    assert lines[2].endswith("| 2/2 |") and lines[3].endswith("| 1/2 |")
    assert quality.relative_change(table, "snippet", "bbox_AP50") == pytest.approx(0.0)


def test_verdict_reports_differences_in_points_and_percent():
    runs = [_run("baseline", 0, bbox_AP50=0.20, AR100=0.40, fp_distractors=2.0, seconds_per_step=0.2),
            _run("ohem", 0, bbox_AP50=0.25, AR100=0.38, fp_distractors=1.5, seconds_per_step=0.21)]
    text = quality._verdict(quality.aggregate(runs, ["baseline", "ohem"]))
    assert text == ("- `ohem` vs baseline: AP50 +5.0 points, AR@100 -2.0 points, "
                    "FP proposals on distractors -0.50 / image, step time +5.0%.")


############################################################
#  Variant wiring (no model is built)
############################################################


def test_make_config_per_variant():
    base = quality.make_config("baseline", quality.QUICK, 4, "training")
    assert not hasattr(base, "OHEM_RPN") and base.BACKBONE == "tiny" and base.BATCH_SIZE == 2
    # 128 px: 32^2 + 16^2 + 8^2 + 4^2 + 2^2 = 1364 positions x 3 ratios.
    assert base.PRE_NMS_LIMIT == 4092
    assert tuple(base.RPN_ANCHOR_SCALES) == (8, 16, 32, 64, 128)
    assert quality.make_config("ohem", quality.QUICK, 4, "training").OHEM_RPN_PER_IMAGE is True
    assert quality.make_config("ohem_pooled", quality.QUICK, 4, "training").OHEM_RPN_PER_IMAGE is False
    assert quality.make_config("ohem_pos50", quality.QUICK, 4, "training").OHEM_RPN_POSITIVE_FRACTION == 0.5
    assert quality.make_config("ohem", quality.QUICK, 4, "inference").BATCH_SIZE == 1
    with pytest.raises(ValueError, match="variant must be one of"):
        quality.make_config("focal", quality.QUICK, 4, "training")


def test_installed_snippet_is_swapped_in_for_the_build_only():
    from mrcnn_ohem.maskrcnn import model as modellib

    config = quality.make_config("snippet", quality.QUICK, 4, "training")
    original = modellib.rpn_class_loss_graph
    with quality._Installed("snippet", config, modellib) as installed:
        swapped = modellib.rpn_class_loss_graph
        assert swapped is not original
        installed.built()
        assert modellib.rpn_class_loss_graph is original
    assert modellib.rpn_class_loss_graph is original
    # The wrapper is the snippet with k = RPN_TRAIN_ANCHORS_PER_IMAGE: with 256 candidates it
    # keeps them all (the plain mean); with fewer it crashes, as the circulated code does.
    import tensorflow as tf

    match = tf.constant(np.r_[np.ones(6), -np.ones(250), np.zeros(10)].reshape(1, -1, 1), tf.int32)
    logits = tf.random.stateless_normal([1, 266, 2], seed=[1, 2])
    plain = modellib.rpn_class_loss_graph(match, logits)
    assert float(swapped(match, logits)) == pytest.approx(float(plain), rel=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError):
        swapped(match[:, :200], logits[:, :200])


def test_installed_ohem_patches_and_restores():
    from mrcnn_ohem.maskrcnn import model as modellib

    original = (modellib.rpn_class_loss_graph, modellib.build_rpn_targets)
    config = quality.make_config("ohem", quality.QUICK, 4, "training")
    with quality._Installed("ohem", config, modellib) as installed:
        installed.built()  # OHEM stays patched for training
        assert (modellib.rpn_class_loss_graph, modellib.build_rpn_targets) != original
    assert (modellib.rpn_class_loss_graph, modellib.build_rpn_targets) == original


def test_goal_sentence_names_the_failing_parts():
    def table(ap50, ar, seconds):
        runs = [_run("baseline", 0, bbox_AP50=0.20, AR100=0.40, seconds_per_step=0.200),
                _run("ohem", 0, bbox_AP50=ap50, AR100=ar, seconds_per_step=seconds)]
        return quality.aggregate(runs, ["baseline", "ohem"])

    assert quality._goal(table(0.23, 0.46, 0.205)).endswith("**met**.")  # +3, +6, +2.5%
    missed = quality._goal(table(0.21, 0.46, 0.210))  # +1 AP50, +6 AR, +5% time
    assert "**not met** (AP50 >= +2 points, step time < +3% fails)" in missed


def test_per_run_table_orders_by_variant_then_seed_and_marks_missing():
    runs = [_run("snippet", 0, status="crashed"), _run("baseline", 1, bbox_AP50=0.5),
            _run("baseline", 0, bbox_AP50=0.25, AR100=0.5, AR1000=0.75, fp_distractors=1.0,
                 seconds_per_step=0.125)]
    lines = quality.per_run_table(runs).splitlines()
    assert lines[2] == "| baseline | 0 | ok | 0.250 | 0.500 | 0.750 | 1.000 | 0.125 |"
    assert lines[3] == "| baseline | 1 | ok | 0.500 | - | - | - | - |"
    assert lines[4] == "| snippet | 0 | crashed | - | - | - | - | - |"


def test_load_note_spans_all_runs():
    runs = [{"load_average": [1.5, 2.25]}, {"load_average": [0.5, 3.0]}, {}]
    assert quality._load_note(runs).startswith("1-minute load average (this run included) 0.5 to 3.0 on ")
    assert quality._load_note([{}]) == "machine load not recorded"


def test_timing_table_relative_to_baseline():
    timing = {"milliseconds": {"baseline": 200.0, "ohem": 206.0}, "negatives": {"baseline": 508, "ohem": 8131}}
    lines = quality.timing_table(timing).splitlines()
    assert lines[2] == "| baseline | 200.0 | +0.0% | 508 |"
    assert lines[3] == "| ohem | 206.0 | +3.0% | 8131 |"  # 206 / 200 - 1
