"""Tests for ``benchmarks/quality`` (metrics, statistics, mining probe, variant wiring, report).

The training runs themselves are the benchmark; here the pieces that turn runs into numbers are
checked on hand-made inputs, and ``--quick`` is executed end to end (slow).
"""
from __future__ import annotations

import contextlib
import io
import logging
import math
from dataclasses import replace

import numpy as np
import pytest
from pycocotools.coco import COCO

from benchmarks.quality import metrics, mining, report, stats, variants
from mrcnn_ohem.datasets.coco_eval import proposal_recall

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
    assert metrics.distractor_false_positives(proposals, gt, distractors) == 2
    # Only the first `top` proposals are looked at.
    assert metrics.distractor_false_positives(proposals, gt, distractors, top=1) == 1


def test_distractor_false_positives_excludes_proposals_that_also_cover_an_object():
    # Object and distractor boxes overlap, so one proposal has IoU >= 0.5 with both.
    gt = np.array([[0, 0, 10, 10]])
    distractors = np.array([[0, 1, 10, 11]])  # IoU with gt = 90/110 = 0.82
    proposals = np.array([[0, 0, 10, 10.5]])  # IoU 1/1.05 with gt and 0.95/1.1 with the distractor
    assert metrics.distractor_false_positives(proposals, gt, distractors) == 0
    # Without ground truth every distractor hit counts.
    assert metrics.distractor_false_positives(proposals, np.zeros((0, 4)), distractors) == 1


def test_detection_quality_by_hand():
    # Image 1: two objects of class 1 and one of class 2. Detections, by score: 0.9 on object A
    # (true), 0.8 a copy of A (false: A is taken), 0.7 on object C but class 1 (false: wrong
    # class), 0.3 on object B (true, but under 0.5 so not counted for recall). Image 2: no
    # object, one detection 0.6 (false).
    ground_truth = {1: [(1, [0, 0, 10, 10]), (1, [50, 50, 10, 10]), (2, [20, 20, 10, 10])], 2: []}
    detections = [
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 10], "score": 0.9},
        {"image_id": 1, "category_id": 1, "bbox": [0, 0, 10, 11], "score": 0.8},
        {"image_id": 1, "category_id": 1, "bbox": [20, 20, 10, 10], "score": 0.7},
        {"image_id": 1, "category_id": 1, "bbox": [50, 50, 10, 10], "score": 0.3},
        {"image_id": 2, "category_id": 2, "bbox": [0, 0, 5, 5], "score": 0.6},
    ]
    q = metrics.detection_quality(ground_truth, detections)
    assert q["det_recall50"] == pytest.approx(1 / 3) and q["detections"] == 5
    # bins: 0.9 -> [0.9, 1.0) one true: |1 - 0.9|; 0.8: |0 - 0.8|; 0.7: |0 - 0.7|; 0.6: |0 - 0.6|;
    # 0.3: |1 - 0.3|; each weighs 1/5.
    assert q["calibration_error"] == pytest.approx((0.1 + 0.8 + 0.7 + 0.6 + 0.7) / 5)
    assert q["mean_score_tp"] == pytest.approx(0.6) and q["mean_score_fp"] == pytest.approx(0.7)
    assert metrics.detection_quality({1: []}, [])["detections"] == 0


def test_distractor_false_positives_empty_inputs():
    assert metrics.distractor_false_positives(np.zeros((0, 4)), np.zeros((0, 4)), np.ones((1, 4))) == 0
    assert metrics.distractor_false_positives(np.ones((3, 4)), np.zeros((0, 4)), np.zeros((0, 4))) == 0


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
    recall = proposal_recall(coco, [1, 2], records)
    # AR@10: only image 2's object is found at every IoU -> 1/2; AR@100 and AR@1000: both.
    assert recall[10] == pytest.approx(0.5)
    assert recall[100] == pytest.approx(1.0)
    assert recall[1000] == pytest.approx(1.0)


def test_proposal_recall_rejects_wrong_budget_count():
    with pytest.raises(ValueError, match="max_dets must hold exactly 3 budgets"):
        proposal_recall(_tiny_coco(), [1], [], max_dets=(100, 1000))


############################################################
#  Statistics
############################################################


def test_summarize_mean_sample_std_and_range():
    summary = stats.summarize([1.0, 2.0, None, 3.0, math.nan])
    # mean 2, sample std sqrt(((1-2)^2 + 0 + (3-2)^2) / 2) = 1
    assert summary == {"n": 3, "mean": 2.0, "std": 1.0, "min": 1.0, "max": 3.0}
    assert stats.summarize([5.0])["std"] == 0.0
    assert stats.summarize([None])["n"] == 0 and math.isnan(stats.summarize([])["mean"])


def test_paired_difference_t_interval_by_hand():
    # d = [1, 2, 3]: mean 2, sample std 1, t(0.975, 2) = 4.3027 -> half-width 4.3027 / sqrt(3) = 2.4841
    diff = stats.paired_difference([2.0, 4.0, 6.0], [1.0, 2.0, 3.0])
    assert diff["n"] == 3 and diff["mean"] == pytest.approx(2.0) and diff["std"] == pytest.approx(1.0)
    assert diff["low"] == pytest.approx(2.0 - 2.4841, abs=1e-4)
    assert diff["high"] == pytest.approx(2.0 + 2.4841, abs=1e-4)
    assert diff["wins"] == 3
    assert stats.includes_zero(diff)  # -0.48 < 0 < 4.48
    assert stats.format_difference(diff, scale=1, digits=2) == "+2.00 [-0.48, +4.48]"


def test_paired_difference_drops_broken_pairs_and_needs_two_for_an_interval():
    diff = stats.paired_difference([0.5, None, 0.7], [0.4, 0.3, math.nan])
    assert diff["n"] == 1 and diff["mean"] == pytest.approx(0.1) and math.isnan(diff["low"])
    assert stats.includes_zero(diff)
    assert stats.format_difference(diff) == "+10.0"
    assert stats.format_difference(stats.paired_difference([], [])) == "-"
    with pytest.raises(ValueError, match="must pair up"):
        stats.paired_difference([1.0], [1.0, 2.0])


def test_interval_excluding_zero():
    diff = stats.paired_difference([0.30, 0.31, 0.32, 0.33], [0.20, 0.20, 0.21, 0.21])
    assert not stats.includes_zero(diff) and diff["low"] > 0


def _run(variant, seed, status="ok", **values):
    return {"variant": variant, "seed": seed, "dataset": "shapes", "status": status, "metrics": values}


def test_paired_by_seed_pairs_only_seeds_both_finished():
    runs = [_run("baseline", 0, AR100=0.5), _run("baseline", 1, AR100=0.4), _run("baseline", 2, AR100=0.3),
            _run("ohem", 0, AR100=0.6), _run("ohem", 1, status="crashed"), _run("ohem", 2, AR100=0.5)]
    diff = stats.paired_by_seed(runs, "ohem", "AR100")
    assert diff["n"] == 2 and diff["mean"] == pytest.approx(0.15)  # (0.1 + 0.2) / 2


############################################################
#  Tables and verdicts
############################################################


def test_format_cell():
    assert report.format_cell({"n": 3, "mean": 0.12345, "std": 0.01, "min": 0, "max": 1}) == "0.123 ± 0.010"
    assert report.format_cell({"n": 1, "mean": 0.5, "std": 0.0, "min": 0.5, "max": 0.5}, 2) == "0.50"
    assert report.format_cell(stats.summarize([])) == "-"


def test_aggregate_skips_crashed_runs_and_table_counts_them():
    runs = [
        _run("baseline", 0, bbox_AP50=0.2, AR100=0.4),
        _run("baseline", 1, bbox_AP50=0.4, AR100=0.6),
        _run("snippet", 0, status="crashed"),
        _run("snippet", 1, bbox_AP50=0.3, AR100=0.5),
    ]
    table = report.aggregate(runs, ["baseline", "snippet"])
    assert table["baseline"]["bbox_AP50"]["mean"] == pytest.approx(0.3)
    assert table["baseline"]["bbox_AP50"]["std"] == pytest.approx(math.sqrt(0.02))  # ((.1)^2+(.1)^2)/1
    assert table["snippet"]["bbox_AP50"]["n"] == 1
    lines = report.markdown_table(table, runs=runs).splitlines()
    assert lines[0].startswith("| variant | bbox AP | bbox AP50 |") and lines[0].endswith("runs ok |")
    assert "| baseline | - | 0.300 ± 0.141 | - | 0.500 ± 0.141 |" in lines[2]
    assert lines[2].endswith("| 2/2 |") and lines[3].endswith("| 1/2 |")


def _paired_runs(ap50_gain, ar_gain, seconds=0.2):
    runs = []
    for seed, (ap50, ar) in enumerate([(0.20, 0.40), (0.22, 0.42), (0.18, 0.41)]):
        runs.append(_run("baseline", seed, bbox_AP50=ap50, AR100=ar, seconds_per_step=0.2))
        runs.append(_run("ohem", seed, bbox_AP50=ap50 + ap50_gain + 0.002 * seed, AR100=ar + ar_gain + 0.001 * seed,
                         seconds_per_step=seconds))
    return runs


def test_goal_verdict_met_and_not_met():
    timing = {"status": "ok", "milliseconds": {"baseline": 200.0, "ohem": 204.0}}  # +2%
    assert "**met**" in report.goal_verdict(_paired_runs(0.03, 0.06), "ohem", timing)
    missed = report.goal_verdict(_paired_runs(0.03, 0.01), "ohem", {"status": "ok",
                                 "milliseconds": {"baseline": 200.0, "ohem": 210.0}})
    assert "**not met**: AR@100 >= +5 points, step time < +3% fails" in missed
    # Without the side-by-side timing the per-run medians are used: 0.21 / 0.2 = +5%.
    assert "step time +5.0%" in report.goal_verdict(_paired_runs(0.03, 0.06, 0.21), "ohem", None)


def test_goal_needs_the_interval_above_zero():
    runs = [_run("baseline", 0, bbox_AP50=0.2, AR100=0.4), _run("baseline", 1, bbox_AP50=0.2, AR100=0.4),
            _run("ohem", 0, bbox_AP50=0.4, AR100=0.6), _run("ohem", 1, bbox_AP50=0.19, AR100=0.39)]
    text = report.goal_verdict(runs, "ohem", {"status": "ok", "milliseconds": {"baseline": 1.0, "ohem": 1.0}})
    assert "AP50's interval above 0" in text and "AR@100's interval above 0" in text


def test_paired_table_and_interval_sentences():
    runs = _paired_runs(0.03, 0.0)
    lines = report.paired_table(runs, ["baseline", "ohem"]).splitlines()
    assert lines[0].startswith("| variant | pairs | Δ bbox AP | Δ AP50 |")
    assert lines[2].startswith("| ohem | 3 | - | +3.2 [")  # AP50 gains 3.0, 3.2, 3.4 points
    assert lines[2].endswith("| 3/3 | +0.0% |")
    sentences = report.interval_sentences(runs, ["baseline", "ohem"])
    assert sentences == ["- `ohem`: AP50: higher than the baseline, interval excludes 0; "
                         "AR@100: the interval includes 0, no detectable difference."]


def test_per_run_table_orders_by_variant_then_seed_and_marks_missing():
    runs = [_run("snippet", 0, status="crashed"), _run("baseline", 1, bbox_AP50=0.5),
            _run("baseline", 0, bbox_AP50=0.25, AR100=0.5, AR1000=0.75, fp_distractors=1.0,
                 seconds_per_step=0.125)]
    lines = report.per_run_table(runs).splitlines()
    assert lines[2] == "| baseline | 0 | ok | 0.250 | 0.500 | 0.750 | 1.000 | 0.125 |"
    assert lines[3] == "| baseline | 1 | ok | 0.500 | - | - | - | - |"
    assert lines[4] == "| snippet | 0 | crashed | - | - | - | - | - |"


def test_load_note_spans_all_runs():
    runs = [{"load_average": [1.5, 2.25]}, {"load_average": [0.5, 3.0]}, {}]
    assert report.load_note(runs).startswith("1-minute load average (this run included) 0.5 to 3.0 on ")
    assert report.load_note([{}]) == "machine load not recorded"


def test_timing_table_relative_to_baseline():
    timing = {"milliseconds": {"baseline": 200.0, "ohem": 206.0}, "negatives": {"baseline": 508, "ohem": 8131}}
    lines = report.timing_table(timing).splitlines()
    assert lines[2] == "| baseline | 200.0 | +0.0% | 508 |"
    assert lines[3] == "| ohem | 206.0 | +3.0% | 8131 |"  # 206 / 200 - 1


def test_mining_curves_average_over_seeds():
    def rec(step, distractor):
        return {"step": step, "distractor": distractor, "near_object": 0.1, "background": 0.9 - distractor,
                "pool_distractor": 0.02, "kept_negatives": 250.0, "kept_positives": 6.0}

    runs = [dict(_run("ohem", 0), mining=[rec(5, 0.1), rec(10, 0.2)]),
            dict(_run("ohem", 1), mining=[rec(5, 0.3), rec(10, 0.4)]), _run("baseline", 0)]
    curves = report.mining_curves(runs, ["baseline", "ohem"])
    assert list(curves) == ["ohem"]
    assert curves["ohem"]["step"] == [5, 10] and curves["ohem"]["distractor"] == pytest.approx([0.2, 0.3])
    lines = report.mining_table(curves).splitlines()
    assert lines[2] == "| ohem | 5 | 250 | 20.0% | 10.0% | 70.0% | 2.0% |"


############################################################
#  Mining probe
############################################################


def test_negative_categories_by_hand():
    anchors = np.array([[0, 0, 10, 10], [20, 20, 30, 30], [0, 0, 10, 12], [50, 50, 60, 60]], np.float32)
    gt = np.array([[0, 0, 10, 30]])  # anchor 0: IoU 100/300 = 0.33 -> near object
    distractors = np.array([[20, 20, 30, 32]])  # anchor 1: IoU 100/120 -> on a distractor
    # anchor 2: IoU 120/300 = 0.4 with the object; anchor 3: nothing -> background
    assert mining.negative_categories(anchors, gt, distractors).tolist() == [1, 0, 1, 2]
    assert mining.negative_categories(anchors, np.zeros((0, 4)), np.zeros((0, 4))).tolist() == [2, 2, 2, 2]


def test_kept_mask_rules():
    match = np.array([[1, -1, -1, -1, 0, -1]])
    losses = np.array([[0.1, 0.9, 0.2, 0.8, 5.0, 0.8]])
    assert mining.kept_mask(match, losses, {"kind": "all"}).tolist() == [[True, True, True, True, False, True]]
    hardest = {"kind": "hardest", "budget": 3, "pooled": False, "per_batch": True, "max_positives": None}
    # 0.9, then the tie 0.8/0.8 (both fit); the neutral 5.0 is never a candidate.
    assert mining.kept_mask(match, losses, hardest).tolist() == [[False, True, False, True, False, True]]
    capped = dict(hardest, max_positives=1)
    # The positive (0.1) is kept first, then the two hardest negatives (0.9 and the lower-index 0.8).
    assert mining.kept_mask(match, losses, capped).tolist() == [[True, True, False, True, False, False]]
    pooled = dict(hardest, budget=2, pooled=True, per_batch=True)
    two = mining.kept_mask(np.repeat(match, 2, 0), np.stack([losses[0], losses[0] / 10]), pooled)
    assert two.sum() == 4 and two[0].sum() == 4  # budget 2 x batch 2, all from the harder image


def test_kept_fractions_and_losses():
    match = np.array([[1, -1, -1, -1, -1]])
    kept = np.array([[True, True, True, False, False]])
    categories = np.array([[1, 0, 2, 0, 2]])
    out = mining.kept_fractions(match, kept, categories)
    assert out["kept_negatives"] == 2 and out["kept_positives"] == 1
    assert (out["distractor"], out["near_object"], out["background"]) == (0.5, 0.0, 0.5)
    assert out["pool_distractor"] == 0.5  # 2 of the 4 negatives
    pool = np.array([[False, True, True, True, True, True]])[:, :5]  # a pool wider than match's negatives
    pool[0, 2] = False  # ... holding anchors 1, 3, 4: two of three on distractors
    assert mining.kept_fractions(match, kept, categories, pool)["pool_distractor"] == pytest.approx(2 / 3)
    # log(2) for equal logits; -log(sigmoid(3)) for a positive scored 3 vs 0.
    losses = mining.rpn_losses(np.array([[[0.0, 0.0], [0.0, 3.0]]]), np.array([[-1, 1]]))
    assert losses[0] == pytest.approx([math.log(2), math.log(1 + math.exp(-3))])


def test_selection_rule_per_variant():
    base = variants.make_config("baseline", variants.QUICK, 4, "training")
    assert mining.selection_rule(base) == {"kind": "all"}
    assert mining.selection_rule(base, snippet=True)["pooled"] is True
    pos50 = mining.selection_rule(variants.make_config("ohem_pos50", variants.QUICK, 4, "training"))
    assert pos50 == {"kind": "hardest", "budget": 256, "pooled": False, "per_batch": True, "max_positives": 128}
    assert mining.selection_rule(variants.make_config("ohem_pooled", variants.QUICK, 4, "training"))["pooled"]


############################################################
#  Variants and run configs
############################################################


def test_make_config_uses_the_runner_config_per_variant():
    from mrcnn_ohem.runner.train_eval import make_config as run_config

    base = variants.make_config("baseline", variants.FULL, 4, "training")
    runner = run_config(variants.run_options("baseline", variants.FULL), 4, "training")
    assert isinstance(base, type(runner).__mro__[1])  # a subclass of the runner's config class
    assert not hasattr(base, "OHEM_RPN") and base.BACKBONE == "tiny" and base.BATCH_SIZE == 2
    assert base.MASK_HEAD_FILTERS == 32 and base.TRAIN_ROIS_PER_IMAGE == 32
    # 128 px: 32^2 + 16^2 + 8^2 + 4^2 + 2^2 = 1364 positions x 3 ratios.
    assert base.PRE_NMS_LIMIT == 4092 and base.POST_NMS_ROIS_INFERENCE == 1000
    assert tuple(base.RPN_ANCHOR_SCALES) == (8, 16, 32, 64, 128)
    assert variants.make_config("ohem", variants.QUICK, 4, "training").OHEM_RPN_PER_IMAGE is True
    assert variants.make_config("ohem_pooled", variants.QUICK, 4, "training").OHEM_RPN_PER_IMAGE is False
    assert variants.make_config("ohem_pos50", variants.QUICK, 4, "training").OHEM_RPN_POSITIVE_FRACTION == 0.5
    inference = variants.make_config("ohem", variants.QUICK, 4, "inference")
    assert inference.BATCH_SIZE == 1
    # BatchNorm normalizes with each batch's statistics in training and at inference (the 2026-11-28
    # setting; the moving averages of 2-image batches scored AP50 0.025 instead of 0.137).
    assert base.TRAIN_BN is True and inference.TRAIN_BN is True
    with pytest.raises(ValueError, match="variant must be one of"):
        variants.make_config("focal", variants.QUICK, 4, "training")


def test_registry_names_the_issue_variants_and_skips_what_has_not_landed(monkeypatch):
    assert list(variants.VARIANTS) == ["baseline", "ohem", "ohem_nms07", "ohem_neg3", "ohem_pos50", "ohem_pooled",
                                       "roi_ohem", "roi_ohem_paper", "rpn_roi_ohem", "focal_rpn", "snippet"]
    paper = variants.make_config("roi_ohem_paper", variants.QUICK, 4, "training")
    assert (paper.OHEM_ROI, paper.OHEM_RPN, paper.OHEM_ROI_RANKING, paper.OHEM_ROI_NMS_THRESHOLD) == (
        True, False, "class+box", 0.7)
    from mrcnn_ohem.config import OHEMConfigMixin

    monkeypatch.delattr(OHEMConfigMixin, "OHEM_RPN_POSITIVE_FRACTION")
    available, skipped = variants.split_available(["baseline", "ohem_pos50"])
    assert available == ["baseline"]
    assert skipped["ohem_pos50"].startswith("skipped: `OHEMConfigMixin` has no OHEM_RPN_POSITIVE_FRACTION")
    with pytest.raises(ValueError, match="variant 'ohem_pos50' is skipped"):
        variants.make_config("ohem_pos50", variants.QUICK, 4, "training")
    with pytest.raises(ValueError, match="variants must be among"):
        variants.split_available(["nope"])


def test_installed_snippet_is_swapped_in_for_the_build_only():
    import tensorflow as tf

    from benchmarks.quality.runs import Installed
    from mrcnn_ohem.maskrcnn import model as modellib

    config = variants.make_config("snippet", variants.QUICK, 4, "training")
    original = modellib.rpn_class_loss_graph
    with Installed("snippet", config, modellib) as installed:
        swapped = modellib.rpn_class_loss_graph
        assert swapped is not original
        installed.built()
        assert modellib.rpn_class_loss_graph is original
    assert modellib.rpn_class_loss_graph is original
    # The snippet with k = 256: with 256 candidates it keeps them all (the plain mean); fewer crash.
    match = tf.constant(np.r_[np.ones(6), -np.ones(250), np.zeros(10)].reshape(1, -1, 1), tf.int32)
    logits = tf.random.stateless_normal([1, 266, 2], seed=[1, 2])
    assert float(swapped(match, logits)) == pytest.approx(float(original(match, logits)), rel=1e-5)
    with pytest.raises(tf.errors.InvalidArgumentError):
        swapped(match[:, :200], logits[:, :200])


def test_installed_ohem_patches_and_restores():
    from benchmarks.quality.runs import Installed
    from mrcnn_ohem.maskrcnn import model as modellib

    original = (modellib.rpn_class_loss_graph, modellib.build_rpn_targets)
    config = variants.make_config("ohem", variants.QUICK, 4, "training")
    with Installed("ohem", config, modellib) as installed:
        installed.built()  # OHEM stays patched for training
        assert (modellib.rpn_class_loss_graph, modellib.build_rpn_targets) != original
    assert (modellib.rpn_class_loss_graph, modellib.build_rpn_targets) == original


def test_step_recorder_keeps_each_steps_own_loss_and_prints_every_100_steps(capsys):
    from benchmarks.quality.runs import step_recorder

    recorder = step_recorder(200)
    recorder.on_train_begin()
    recorder.on_epoch_begin(0)
    # tf-keras logs running means over the epoch: steps of 1, 3, 5, ... log 1, 2, 3, ...
    for batch in range(200):
        recorder.on_train_batch_begin(batch)
        recorder.on_train_batch_end(batch, {"loss": float(batch + 1), "ohem_rpn_kept_negatives": 7.0})
    recorder.on_train_end()
    np.testing.assert_allclose([row["loss"] for row in recorder.steps], 2 * np.arange(200) + 1.0)
    assert all(row["ohem_rpn_kept_negatives"] == 7.0 and row["seconds"] >= 0 for row in recorder.steps)
    lines = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in lines] == ["step 100", "step 200"]
    assert lines[0].startswith("step 100: loss 199.000, ")


def test_runs_in_one_process_share_one_inference_model_per_budget(monkeypatch):
    from benchmarks.quality import runs
    from mrcnn_ohem.maskrcnn import model as modellib

    built = []

    class FakeMaskRCNN:
        def __init__(self, mode, config, model_dir):
            built.append((mode, config.NAME))

    monkeypatch.setattr(modellib, "MaskRCNN", FakeMaskRCNN)
    spec = {"dataset": "shapes", "variant": "baseline", "model_dir": "unused"}
    shared: dict = {}
    first = runs._inference_model(spec, variants.QUICK, 4, shared)
    # Another variant, same budget and classes: the same model (its weights are loaded per run).
    assert runs._inference_model({**spec, "variant": "ohem"}, variants.QUICK, 4, shared) is first
    assert len(built) == 1 and built[0][0] == "inference"
    # A different budget or class count builds its own; None never shares.
    assert runs._inference_model(spec, replace(variants.QUICK, image_size=128), 4, shared) is not first
    assert runs._inference_model(spec, variants.QUICK, 3, shared) is not first
    assert runs._inference_model(spec, variants.QUICK, 4, None) is not first
    assert len(built) == 4 and len(shared) == 3


class _Tracker:
    def __init__(self, tf):
        self.variables = [tf.Variable(0.0, name="total"), tf.Variable(0.0, name="count")]


class _FakeKerasModel:
    """Weights as tf-keras lists them: the layers' weights, then every metric tracker's total and count."""

    def __init__(self, value, trackers=7, reverse=False):
        import tensorflow as tf

        self.layer_variables = [tf.Variable(np.full((2, 3), value, "float32"), name="conv/kernel"),
                                tf.Variable(np.full((3,), value, "float32"), name="conv/bias")]
        if reverse:  # the layers created in another order
            self.layer_variables.reverse()
        self.metrics = [_Tracker(tf) for _ in range(trackers)]
        self.weights = self.layer_variables + [v for m in self.metrics for v in m.variables]

    @property
    def values(self):
        return [w.numpy() for w in self.layer_variables]


def test_layer_weights_leave_out_metric_trackers():
    from benchmarks.quality import runs

    # The baseline tracks 7 running means, an OHEM variant 10 (its selection statistics).
    baseline, ohem = _FakeKerasModel(1.0, trackers=7), _FakeKerasModel(2.0, trackers=10)
    assert runs.layer_weights(ohem) == ohem.layer_variables
    ohem.metrics[0].variables[0].assign(5.0)
    runs._set_layer_weights(ohem, runs._get_layer_weights(baseline))
    assert all((v == 1.0).all() for v in ohem.values)
    assert float(ohem.metrics[0].variables[0].numpy()) == 5.0  # trackers untouched
    with pytest.raises(ValueError):
        runs._set_layer_weights(ohem, runs._get_layer_weights(baseline)[:1])


def test_layer_weights_are_set_by_name_in_any_creation_order():
    from types import SimpleNamespace

    from benchmarks.quality import runs

    # roi_ohem_paper creates some head layers in another order than the baseline, with the same
    # names and shapes: it starts from the baseline's weights, each by its name, under the same key.
    baseline, paper = _FakeKerasModel(1.0), _FakeKerasModel(2.0, reverse=True)
    baseline.layer_variables[1].assign([3.0, 3.0, 3.0])  # the bias apart from the kernel
    runs._set_layer_weights(paper, runs._get_layer_weights(baseline))
    by_name = {w.name: w.numpy() for w in paper.layer_variables}
    assert (by_name["conv/kernel:0"] == 1.0).all() and (by_name["conv/bias:0"] == 3.0).all()
    spec = {"dataset": "shapes", "seed": 0}

    def key(keras_model):
        return runs._seed_key(spec, variants.QUICK, SimpleNamespace(keras_model=keras_model,
                                                                    config=SimpleNamespace(NUM_CLASSES=4)))

    assert key(baseline) == key(paper) != runs._seed_key({**spec, "seed": 1}, variants.QUICK, SimpleNamespace(
        keras_model=baseline, config=SimpleNamespace(NUM_CLASSES=4)))
    with pytest.raises(ValueError, match="each weight of the model once"):  # a name twice
        runs._set_layer_weights(paper, runs._get_layer_weights(baseline) + runs._get_layer_weights(baseline)[:1])


def test_runs_in_one_process_share_traced_models_and_each_seeds_initial_weights(monkeypatch):
    from benchmarks.quality import runs
    from mrcnn_ohem.maskrcnn import model as modellib

    built = []

    class FakeMaskRCNN:
        def __init__(self, mode, config, model_dir):
            built.append(model_dir)
            self.config, self.model_dir = config, model_dir
            # Every build draws new weights; an OHEM model tracks its selection statistics too.
            self.keras_model = _FakeKerasModel(float(len(built)), trackers=10 if "ohem" in model_dir else 7)

        def set_log_dir(self):
            self.log_dir = self.model_dir

    monkeypatch.setattr(modellib, "MaskRCNN", FakeMaskRCNN)
    config = variants.make_config("baseline", variants.QUICK, 4, "training")
    budget = {k: getattr(variants.QUICK, k) for k in variants.QUICK.__dataclass_fields__}

    def spec(variant, seed):
        return {"dataset": "shapes", "variant": variant, "seed": seed, "model_dir": f"{variant}_s{seed}",
                "budget": budget}

    def run(variant, seed):
        return runs._training_model(spec(variant, seed), variants.QUICK, config, shared)

    shared = {"training": {}, "inference": {}, "initial": {}}
    runs.seed_initial_weights([spec(v, s) for s in (0, 1) for v in ("baseline", "ohem")], shared)
    assert built == ["baseline_s0", "baseline_s1"] and len(shared["initial"]) == 2  # one model per seed
    base0 = run("baseline", 0)
    assert len(built) == 2  # the first run trains the model its seed's weights came from
    ohem0 = run("ohem", 0)
    assert len(built) == 3  # one graph per variant, each started from seed 0's weights
    assert base0.keras_model.values[0][0, 0] == ohem0.keras_model.values[0][0, 0] == 1.0
    base1, ohem1 = run("baseline", 1), run("ohem", 1)
    assert (base1, ohem1) == (base0, ohem0) and len(built) == 3  # no build for a later seed
    assert base1.keras_model.values[0][0, 0] == ohem1.keras_model.values[0][0, 0] == 2.0
    assert base1.model_dir == "baseline_s1"
    assert run("baseline", 0).keras_model.values[0][0, 0] == 1.0 and len(built) == 3
    # A seed seed_initial_weights did not build: built here under the seed, then kept.
    assert run("ohem", 2).keras_model.values[0][0, 0] == 4.0 and len(built) == 4
    assert run("baseline", 2).keras_model.values[0][0, 0] == 4.0 and len(built) == 4
    alone = runs._training_model(spec("ohem", 0), variants.QUICK, config, None)
    assert alone is not ohem0 and len(built) == 5


############################################################
#  --quick, end to end
############################################################


#: The variants ``--quick`` trains here: one per way a run installs a variant. baseline (nothing
#: installed), rpn_roi_ohem (the OHEM RPN loss and targets and the RoI heads' OHEM: a patch at
#: build time, the miner probed, the RoI kept counts read from the logs) and snippet (swapped in
#: for the build only). The other variants differ from these only in the functions their patch
#: installs and the settings they pass, which every variant runs below without a model; training
#: with them is tested on the bundled model (focal_rpn and the paper's RoI setting in
#: test_patch_bundled_model_roi.py). Run alone, the test took 44 CPU s with five variants and 30 with
#: these three (2026-12-06).
QUICK_VARIANTS = ("baseline", "rpn_roi_ohem", "snippet")
#: What installing each variant replaces on the bundled model module (everything else stays).
RPN_NAMES = {"rpn_class_loss_graph", "build_rpn_targets"}
ROI_NAMES = {"mrcnn_class_loss_graph", "DetectionTargetLayer", "build_fpn_mask_graph", "mrcnn_mask_loss_graph"}
REPLACED = {"baseline": set(), "ohem": RPN_NAMES, "ohem_nms07": RPN_NAMES, "ohem_neg3": RPN_NAMES,
            "ohem_pos50": RPN_NAMES, "ohem_pooled": RPN_NAMES, "roi_ohem": ROI_NAMES,
            "roi_ohem_paper": ROI_NAMES | {"select_training_rois"}, "rpn_roi_ohem": RPN_NAMES | ROI_NAMES,
            "focal_rpn": RPN_NAMES, "snippet": {"rpn_class_loss_graph"}}


def test_every_variant_validates_installs_computes_its_rpn_loss_and_restores():
    """Each registered variant, as a run installs it, without a model: the configs validate, the
    patch replaces what the variant turns on, the installed targets and loss run on two training
    images, and leaving restores every name of the module (the quick run below trains a subset)."""
    import tensorflow as tf

    from benchmarks.quality.runs import Installed, load_train_set
    from mrcnn_ohem.maskrcnn import model as modellib

    assert set(REPLACED) == set(variants.VARIANTS)
    available, skipped = variants.split_available(list(variants.VARIANTS))
    assert not skipped  # every variant has landed in this checkout
    train_set = load_train_set({"dataset": "shapes"}, variants.QUICK, 0)
    original = dict(vars(modellib))
    absent = object()

    def changed() -> set[str]:  # names of the module added, removed or rebound since `original`
        now = vars(modellib)
        return {name for name in set(now) | set(original) if now.get(name, absent) is not original.get(name, absent)}

    plain_loss = None
    for variant in available:
        config = variants.make_config(variant, variants.QUICK, train_set.num_classes, "training")
        inference = variants.make_config(variant, variants.QUICK, train_set.num_classes, "inference")
        for name, value in variants.VARIANTS[variant].settings.items():
            assert getattr(config, name) == value and getattr(inference, name) == value, (variant, name)
        with Installed(variant, config, modellib) as installed:
            assert changed() == REPLACED[variant], variant
            probe = mining.probe_batch(train_set, config, modellib, count=2)
            np.random.seed(0)  # Matterport's random 256 draws from NumPy's global generator
            match = np.stack([modellib.build_rpn_targets(shape, probe["anchors"], ids, boxes, config)[0]
                              for shape, ids, boxes in probe["gt"]])
            logits = tf.random.stateless_normal([len(match), len(probe["anchors"]), 2], seed=[0, 1])
            loss = float(modellib.rpn_class_loss_graph(tf.constant(match[..., None], tf.int32), logits))
            installed.built()
        assert changed() == set(), variant
        assert math.isfinite(loss) and loss > 0, (variant, loss)
        # Matterport's targets label 256 anchors per image; OHEM's label every anchor but the neutral ones.
        labelled = (match != 0).sum(axis=1)
        if "build_rpn_targets" in REPLACED[variant]:
            assert (labelled > variants.RPN_ANCHORS).all(), variant
        else:
            assert (labelled == variants.RPN_ANCHORS).all(), variant
        if variant == "baseline":
            plain_loss = loss
        elif variant in ("roi_ohem", "roi_ohem_paper"):  # Matterport's RPN, whatever the RoI heads do
            assert loss == pytest.approx(plain_loss, rel=1e-6), variant


@pytest.mark.slow
def test_quick_run_reports_intervals_for_a_variant_of_each_code_path(tmp_path):
    from benchmarks.quality import cli

    results = tmp_path / "RESULTS.md"
    assert cli.main(["--quick", "--no-coco", "--out", str(tmp_path / "work"), "--write", "--results", str(results),
                     "--variants", *QUICK_VARIANTS[1:]]) == 0
    text = results.read_text()
    assert "Quick smoke run" in text and "95% t-interval" in text
    for variant in QUICK_VARIANTS:
        assert f"| {variant} | 0 | ok |" in text and f"| {variant} | 1 | ok |" in text
    for variant in QUICK_VARIANTS[1:]:
        row = next(line for line in text.splitlines() if line.startswith(f"| {variant} | 2 | "))
        assert " [" in row  # an interval from the two pairs
        assert f"- `{variant}`: **" in text  # a goal verdict
    for variant in set(variants.VARIANTS) - set(QUICK_VARIANTS):
        assert f"| {variant} |" not in text  # only the variants asked for ran
    assert "### What the miner keeps" in text
    assert (tmp_path / "quality.png").is_file() and (tmp_path / "quality_mining.png").is_file()


############################################################
#  Real-image mode
############################################################


class _FakeModel:
    def __init__(self, surgery):
        self.calls = []
        if surgery:
            self.load_weights = self._with_surgery

    def load_weights(self, path, by_name=False, exclude=None):
        self.calls.append({"path": path, "by_name": by_name, "exclude": exclude})

    def _with_surgery(self, path, by_name=False, exclude=None, class_indices=None):
        self.calls.append({"path": path, "by_name": by_name, "class_indices": class_indices})


class _Classes:
    class_info = [{"id": 0, "name": "BG"}, {"id": 3, "name": "car"}, {"id": 1, "name": "person"}]


class _Coco:
    cats = {1: {}, 2: {}, 3: {}, 5: {}}


def test_start_weights_slice_class_heads_when_surgery_exists_else_leave_them_out():
    from benchmarks.quality.runs import load_start_weights

    model = _FakeModel(surgery=True)
    note = load_start_weights(model, "coco.h5", _Classes(), _Coco())
    # COCO ids 3 and 1 are the 3rd and 1st of the file's sorted categories [1, 2, 3, 5].
    assert model.calls == [{"path": "coco.h5", "by_name": True, "class_indices": [0, 3, 1]}]
    assert "sliced" in note
    model = _FakeModel(surgery=False)
    note = load_start_weights(model, "coco.h5", _Classes(), _Coco())
    assert model.calls[0]["exclude"] == list(variants.CLASS_HEADS) and "left out" in note


def test_real_mode_needs_weights(tmp_path, capsys):
    from benchmarks.quality import cli

    assert cli.main(["--dataset", str(tmp_path), "--variants", "ohem", "--out", str(tmp_path / "w")]) == 2
    assert "--weights" in capsys.readouterr().err
    budget = cli._budget(cli.build_parser().parse_args(["--dataset", "d", "--image-size", "1024", "--steps", "7"]))
    assert (budget.image_size, budget.steps, budget.backbone, budget.layers) == (1024, 7, "resnet50", "heads")


def test_budget_option_takes_a_name_or_json_fields_and_names_what_it_accepts():
    from benchmarks.quality import cli

    def budget(*argv):
        return cli._budget(cli.build_parser().parse_args(list(argv)))

    assert budget() == variants.FULL and budget("--quick") == variants.QUICK
    assert budget("--budget", "quick", "--steps", "50") == replace(variants.QUICK, steps=50)
    assert budget("--quick", "--budget", "full") == variants.FULL
    assert budget("--budget", '{"learning_rate": 0.01}').learning_rate == 0.01
    for bad in ("dem", '{"learning_rat": 0.01}'):
        with pytest.raises(SystemExit, match=r"--budget must be one of \['full', 'quick'\] or a JSON "
                                             r"object of Budget fields \(image_size, .*received " + repr(bad)[:4]):
            budget("--budget", bad)


def test_budget_sets_the_rpn_width_and_the_proposals_scored():
    narrow = replace(variants.FULL, rpn_filters=128, mask_head_filters=16, val_images=30, proposals=300)
    config = variants.make_config("ohem", narrow, 4, "training")
    assert (config.RPN_SHARED_FILTERS, config.MASK_HEAD_FILTERS) == (128, 16)
    assert variants.make_config("baseline", narrow, 4, "inference").POST_NMS_ROIS_INFERENCE == 300
    assert variants.make_config("baseline", variants.FULL, 4, "training").RPN_SHARED_FILTERS == 512
    line = report.budget_line(narrow)
    assert "RPN convolution 128 filters" in line and "30 evaluation images (300 proposals each)" in line
    assert "RPN convolution" not in report.budget_line(variants.FULL)


def test_graph_optimizations_off_inside_the_block_and_restored_after():
    import tensorflow as tf

    from benchmarks.quality import runs

    def disabled():
        return bool(tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False))

    before = disabled()
    try:
        for previous in (False, True):
            tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": previous})
            with runs.graph_optimizations_off():
                assert disabled()
            assert disabled() is previous
            with runs.graph_optimizations_off(False):
                assert disabled() is previous
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": False})
        with pytest.raises(RuntimeError, match="inside"), runs.graph_optimizations_off():
            raise RuntimeError("inside")
        assert not disabled()
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": before})


def test_retracing_warning_is_dropped_inside_the_block_only(caplog):
    import tensorflow as tf

    from benchmarks.quality import runs

    logger = tf.get_logger()
    retracing = "5 out of the last 13 calls to <function train_function> triggered tf.function retracing."
    with caplog.at_level(logging.WARNING, logger=logger.name):
        with runs.retracing_warnings_off():
            logger.warning(retracing)
            logger.warning("a real warning")
        logger.warning(retracing)
    assert [r.getMessage() for r in caplog.records] == ["a real warning", retracing]
    assert not logger.filters


############################################################
#  Power (issue 28): minimum detectable difference, seeds needed
############################################################


def test_minimum_detectable_difference_by_hand():
    # n = 5, sd = 1: t(0.975, 4) = 2.776 and t(0.80, 4) = 0.941 (printed t tables);
    # (2.776 + 0.941) / sqrt(5) = 3.717 / 2.2361 = 1.6623
    assert stats.minimum_detectable_difference(1.0, 5) == pytest.approx(1.6623, abs=1e-3)
    # n = 3, sd = 2: t(0.975, 2) = 4.303, t(0.80, 2) = 1.061; (5.364 * 2) / sqrt(3) = 6.194
    assert stats.minimum_detectable_difference(2.0, 3) == pytest.approx(6.194, abs=2e-3)
    assert stats.minimum_detectable_difference(0.0, 4) == 0.0


def test_minimum_detectable_difference_has_the_stated_power():
    # Independent of the formula: the exact power of the paired t-test (noncentral t) at the
    # returned difference is close to 80% (the formula is the usual approximation; exact power at
    # n = 5 is a little below it) and grows to it as n grows.
    scipy_stats = pytest.importorskip("scipy.stats")
    for n, tolerance in ((5, 0.04), (10, 0.02), (30, 0.01)):
        mde = stats.minimum_detectable_difference(1.0, n)
        crit = scipy_stats.t.ppf(0.975, n - 1)
        noncentrality = mde * math.sqrt(n)
        power = scipy_stats.nct.sf(crit, n - 1, noncentrality) + scipy_stats.nct.cdf(-crit, n - 1, noncentrality)
        assert power == pytest.approx(0.8, abs=tolerance)


def test_minimum_detectable_difference_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"n must be an integer >= 2.*received 1"):
        stats.minimum_detectable_difference(1.0, 1)
    with pytest.raises(ValueError, match=r"alpha and power must lie in \(0, 1\); received alpha=1.5"):
        stats.minimum_detectable_difference(1.0, 5, alpha=1.5)
    with pytest.raises(ValueError, match=r"sd must be >= 0; received -1.0"):
        stats.minimum_detectable_difference(-1.0, 5)
    with pytest.raises(ValueError, match=r"target must be > 0; received 0"):
        stats.seeds_needed(1.0, 0)


def test_seeds_needed_by_hand():
    # sd 1, target 2: n = 4 gives (3.182 + 0.978) / 2 = 2.08 > 2; n = 5 gives 1.66 <= 2
    assert stats.seeds_needed(1.0, 2.0) == 5
    # sd 2, target 2: n = 10 gives (2.262 + 0.883) * 2 / 3.162 = 1.989 <= 2; n = 9: 2.12
    assert stats.seeds_needed(2.0, 2.0) == 10
    assert stats.seeds_needed(math.nan, 2.0) is None
    assert stats.seeds_needed(100.0, 0.01, limit=20) is None


############################################################
#  The fine-tuning regime: summary, verdicts, kept counts, checkpoint key
############################################################


def _finetune_runs(ap50_diffs, base=0.6, history=None):
    runs = []
    for seed, d in enumerate(ap50_diffs):
        runs.append(_run("baseline", seed, bbox_AP50=base, bbox_AP=0.4, AR100=0.7, fp_distractors=2.0))
        runs.append({**_run("ohem", seed, bbox_AP50=base + d, bbox_AP=0.4 + d / 2, AR100=0.7, fp_distractors=1.5),
                     "history": history or []})
    return runs


def test_power_summary_in_points_with_interval_sd_and_mde():
    from benchmarks.quality import finetune

    summary = finetune.power_summary(_finetune_runs([0.01, 0.02, 0.03]), ["baseline", "ohem"])
    assert list(summary) == ["ohem"]
    ap50 = summary["ohem"]["AP50"]
    # d = [1, 2, 3] points: mean 2, sd 1, half-width t(0.975, 2) / sqrt(3) = 2.4841;
    # MDE (4.3027 + 1.0607) / sqrt(3) = 3.0966
    assert ap50["diff"] == pytest.approx(2.0) and ap50["sd"] == pytest.approx(1.0)
    assert ap50["ci"] == [pytest.approx(-0.4841, abs=1e-4), pytest.approx(4.4841, abs=1e-4)]
    assert ap50["mde80"] == pytest.approx(3.0966, abs=1e-3) and ap50["n"] == 3 and ap50["wins"] == 3
    assert summary["ohem"]["AP"]["diff"] == pytest.approx(1.0)  # half the AP50 gain, in points
    fp = summary["ohem"]["FP_distractors"]  # proposals per image, not points; constant: sd 0
    assert fp["diff"] == pytest.approx(-0.5) and fp["sd"] == 0.0 and fp["mde80"] == 0.0
    assert summary["ohem"]["AR@100"]["ci"] == [0.0, 0.0]
    one = finetune.power_summary(_finetune_runs([0.01]), ["baseline", "ohem"])["ohem"]["AP50"]
    assert one["ci"] == [None, None] and one["sd"] is None and one["mde80"] is None


def test_verdicts_name_power():
    from benchmarks.quality import finetune

    def entry(lo, hi, mde):
        return {"ci": [lo, hi], "mde80": mde}

    assert finetune.verdict(entry(0.5, 3.0, 1.5)) == "higher"
    assert finetune.verdict(entry(-3.0, -0.1, 1.5)) == "lower"
    assert finetune.verdict(entry(-1.0, 1.0, 1.9)) == "not distinguishable"
    assert finetune.verdict(entry(-4.0, 4.0, 5.0)) == "underpowered"
    assert finetune.verdict(entry(None, None, None)) == "no interval"


def test_summary_document_has_the_issue_shape(tmp_path):
    from benchmarks.quality import finetune

    runs = _finetune_runs([0.01, 0.02, 0.03, 0.02, 0.01])
    doc = finetune.summary_document(runs, ["baseline", "ohem"], finetune.FINETUNE, {"key": "k"})
    assert doc["design"] == "finetune" and doc["seeds"] == 5 and doc["val_images"] == finetune.FINETUNE.val_images
    assert set(doc["variants"]["ohem"]) == {"AP50", "AP", "AR@100", "FP_distractors"}
    assert set(doc["variants"]["ohem"]["AP50"]) >= {"diff", "ci", "sd", "mde80"}
    finetune.write_summary(doc, tmp_path / "s.json")
    import json

    assert json.loads((tmp_path / "s.json").read_text())["variants"]["ohem"]["AP50"]["diff"] == pytest.approx(1.8)
    assert "| ohem | +1.80 [" in finetune.summary_table(doc)


def test_kept_counts_per_image_and_step():
    from benchmarks.quality import finetune

    # two steps with 0 positives, two with 4: first 2 steps mean 0, all steps mean 2, half with none
    history = [{"ohem_rpn_kept_positives": p, "ohem_rpn_kept_negatives": 256 - p} for p in (0, 0, 4, 4)]
    kept = finetune.kept_counts(_finetune_runs([0.0, 0.0], history=history), ["baseline", "ohem"], early=2)
    assert list(kept) == ["ohem"]  # the baseline logs no selection counts
    assert kept["ohem"] == {"positives_early": 0.0, "positives": 2.0, "negatives": 254.0,
                            "zero_positive_steps": 0.5}


def test_code_digest_ignores_prose_and_sees_code():
    from benchmarks.quality.pretrain import code_digest

    base = ('def f(x):\n    """Doc."""\n    if x < 0:\n'
            '        raise ValueError(f"x must be >= 0; got {x}")\n    return x + 1\n')
    reworded = ('def f(x):\n    """Other doc."""\n    # a comment\n    if x < 0:\n'
                '        raise ValueError(f"x: expected >= 0, received {x!r}")\n    return x + 1\n')
    logged = base.replace("    return x + 1", "    logger.info('adding one to %s', x)\n    return x + 1")
    changed = base.replace("x + 1", "x + 2")
    assert code_digest(base) == code_digest(reworded)
    assert code_digest(base) != code_digest(changed)
    assert code_digest(base) != code_digest(logged)  # a new call is code, only its text is prose
    assert code_digest(logged) == code_digest(logged.replace("adding one to", "plus one:"))
    # Type hints compute nothing: annotations and `from __future__ import annotations` are left out,
    # while a declared field (a NamedTuple's or a dataclass's) still counts.
    typed = "from __future__ import annotations\n" + base.replace("def f(x):", "def f(x: int) -> int:")
    assert code_digest(typed) == code_digest(base)
    fields = "class P(NamedTuple):\n    a: int\n    b: float = 0.0\n"
    assert code_digest(fields) == code_digest(fields.replace("int", "np.ndarray"))
    assert code_digest(fields) != code_digest(fields.replace("    b: float = 0.0\n", ""))


def test_run_suite_resume_reads_back_finished_runs_of_the_same_spec(tmp_path, monkeypatch):
    import json

    from benchmarks.quality import runs as runs_module

    calls = []

    def fake_run_one(spec, log_path, timeout, in_process, shared=None):
        calls.append((spec["variant"], spec["seed"]))
        result = {"variant": spec["variant"], "seed": spec["seed"], "dataset": "shapes", "metrics": {},
                  "status": "ok" if spec["variant"] == "baseline" else "crashed", "error": None}
        (tmp_path / "written").write_text(json.dumps(result))  # run_one's own file is rewritten with the spec
        return result

    monkeypatch.setattr(runs_module, "run_one", fake_run_one)

    def suite(budget=variants.QUICK, resume=True):
        return runs_module.run_suite("shapes", ["baseline", "ohem"], [0, 1], budget, tmp_path, 10, {"val_dir": "v"},
                                     report=lambda line: None, resume=resume)

    first = suite(resume=False)
    assert len(calls) == 4 and all(r["spec"]["variant"] == r["variant"] for r in first)
    calls.clear()
    again = suite()
    assert calls == [("ohem", 0), ("ohem", 1)]  # finished runs are read back, crashed ones run again
    assert [(r["variant"], r["seed"], r["status"]) for r in again] == [
        ("baseline", 0, "ok"), ("ohem", 0, "crashed"), ("baseline", 1, "ok"), ("ohem", 1, "crashed")]
    calls.clear()
    suite(budget=replace(variants.QUICK, steps=3))  # another spec: nothing is reused
    assert len(calls) == 4


def test_resume_matches_a_start_checkpoint_by_name_not_folder(tmp_path):
    from benchmarks.quality import runs as runs_module

    spec = {"variant": "ohem", "seed": 0, "model_dir": str(tmp_path), "init": "/a/.cache/checkpoints/shapes_k1.h5"}
    (tmp_path / "result.json").write_text(__import__("json").dumps({"status": "ok", "spec": spec}))
    assert runs_module.previous_result({**spec, "init": "/b/benchmarks/checkpoints/shapes_k1.h5"}) is not None
    assert runs_module.previous_result({**spec, "init": "/a/.cache/checkpoints/shapes_k2.h5"}) is None


def test_finetune_section_and_difference_plot(tmp_path):
    from benchmarks.quality import finetune

    history = [{"ohem_rpn_kept_positives": 3.0, "ohem_rpn_kept_negatives": 253.0}]
    runs = _finetune_runs([0.01, 0.03, 0.02], history=history)
    doc = finetune.summary_document(runs, ["baseline", "ohem"], finetune.FINETUNE,
                                    {"key": "abc", "file": "benchmarks/checkpoints/shapes_abc.h5", "AP50": 0.61,
                                     "command": "python -m benchmarks.quality.pretrain"})
    text = finetune.section(doc, runs, finetune.FINETUNE, ["baseline", "ohem"], {}, None)
    assert "shapes_abc.h5" in text and "key `abc`" in text and "MDE" in text
    assert "| ohem | +2.00 [" in text and "| ohem | 3.0 | 3.0 | 253.0 | 0% |" in text
    finetune.plot_differences(doc, tmp_path / "q.png", "title")
    assert (tmp_path / "q.png").stat().st_size > 5_000


def test_run_suite_without_running_reads_back_only_what_is_there(tmp_path, monkeypatch):
    from benchmarks.quality import runs as runs_module

    def fake_run_one(spec, log_path, timeout, in_process, shared=None):
        return {"variant": spec["variant"], "seed": spec["seed"], "dataset": "shapes", "metrics": {}, "status": "ok",
                "error": None}

    monkeypatch.setattr(runs_module, "run_one", fake_run_one)
    args = ("shapes", ["baseline"], [0], variants.QUICK, tmp_path, 10, {"val_dir": "v"})
    runs_module.run_suite(*args, report=lambda line: None)
    monkeypatch.setattr(runs_module, "run_one", lambda *a, **k: pytest.fail("report-only ran a run"))
    found = runs_module.run_suite("shapes", ["baseline", "ohem"], [0, 1], *args[3:], report=lambda line: None,
                                  resume=True, run=False)
    assert [(r["variant"], r["seed"]) for r in found] == [("baseline", 0)]


def test_run_suite_leaves_its_models_in_the_callers_empty_shared_dict(tmp_path, monkeypatch):
    from benchmarks.quality import runs as runs_module

    seen = []

    def fake_seed_initial_weights(specs, shared):
        shared["initial"]["seed"] = "weights"

    def fake_run_one(spec, log_path, timeout, in_process, shared=None):
        seen.append(shared)
        shared["inference"].setdefault("budget", object())  # as _inference_model keeps the model it builds
        return {"variant": spec["variant"], "seed": spec["seed"], "dataset": "shapes", "metrics": {}, "status": "ok",
                "error": None}

    monkeypatch.setattr(runs_module, "seed_initial_weights", fake_seed_initial_weights)
    monkeypatch.setattr(runs_module, "run_one", fake_run_one)
    args = ("shapes", ["baseline", "ohem"], [0], variants.QUICK, tmp_path, 10, {"val_dir": "v"})
    kept: dict = {}
    runs_module.run_suite(*args, in_process=True, report=lambda line: None, shared=kept)
    assert len(seen) == 2 and all(s is kept for s in seen)  # every run shares the caller's dict
    assert set(kept) == {"training", "inference", "initial"} and kept["initial"] == {"seed": "weights"}
    assert list(kept["inference"]) == ["budget"]
    with pytest.raises(ValueError, match="shared must be an empty dict"):  # nothing carries over from a call
        runs_module.run_suite(*args, in_process=True, report=lambda line: None, shared=kept)
    seen.clear()
    runs_module.run_suite(*args, in_process=True, report=lambda line: None)  # None: a dict of the call's own
    assert seen[0] is seen[1] and seen[0] is not kept and set(seen[0]) == {"training", "inference", "initial"}


def test_no_two_benchmark_anchors_overlap_enough_for_nms07_to_act():
    # RESULTS.md reads ohem_nms07 as identical to ohem at the benchmark's anchor layout (8 px
    # anchors every 4 px at 128 px); this holds the fact it rests on.
    from benchmarks.quality.finetune import FINETUNE
    from mrcnn_ohem.binding import config_anchors
    from mrcnn_ohem.core.boxes import compute_overlaps

    anchors = config_anchors(variants.make_config("ohem_nms07", FINETUNE, 4, "training")).astype(np.float64)
    overlaps = compute_overlaps(anchors, anchors)
    np.fill_diagonal(overlaps, 0.0)
    assert len(anchors) == 4092 and overlaps.max() == pytest.approx(0.5469, abs=1e-4)
