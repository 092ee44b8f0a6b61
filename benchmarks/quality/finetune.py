"""The fine-tuning regime: every variant fine-tunes the same detector, paired by seed, with power stated.

Users switch OHEM on while fine-tuning weights that already detect; hard-example mining is about
what such a detector still gets wrong. So the main design of the quality benchmark (issue 28):

- one checkpoint, the plain model trained on the shapes until it detects
  (:mod:`benchmarks.quality.pretrain`, bbox AP50 >= 0.6), is every run's starting point;
- each seed ``s`` draws its own training images (generator seed ``s``, none of them seen in
  pretraining) and data order (``MaskRCNN.train(seed=s)``), identical across the variants of
  that seed (the benchmark uses no augmentation); a run is its own subprocess seeded with ``s``;
- every variant fine-tunes for :data:`FINETUNE` steps and is scored on hundreds of validation
  images (evaluation is cheap next to training: a few hundredths of a second per image);
- for every metric, the paired difference with the baseline, its 95% t-interval, the sample SD
  of the per-seed differences and the minimum detectable difference at 80% power
  (:func:`benchmarks.quality.stats.minimum_detectable_difference`).

The from-scratch design (random weights, 600 steps) stays available as ``--regime scratch``.
"""
from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.quality.stats import minimum_detectable_difference, paired_by_seed, seeds_needed
from benchmarks.quality.variants import FULL, REPO, Budget

#: Fine-tuning budget: the benchmark's model and data, 200 steps at a quarter of its learning
#: rate, 300 validation images.
FINETUNE = replace(FULL, steps=200, learning_rate=0.005, val_images=300, probes=2)
SUMMARY = REPO / "benchmarks" / "results" / "quality_finetune.json"
#: (name in the summary, run metric key, scale: 100 turns AP/AR fractions into points).
SUMMARY_METRICS = (("AP50", "bbox_AP50", 100.0), ("AP", "bbox_AP", 100.0), ("AR@100", "AR100", 100.0),
                   ("FP_distractors", "fp_distractors", 1.0))
#: The minimum detectable difference the design aims at, in points, for AP50 and AR@100.
TARGET_MDE = 2.0
#: What the detections of a run are like (issue 28 item 4): recall of the confident detections at
#: IoU 0.5 and the expected calibration error of their scores (points), confident detections on
#: distractors (per image). Same layout as SUMMARY_METRICS.
DETECTION_METRICS = (("det_recall50", "det_recall50", 100.0), ("calibration_error", "calibration_error", 100.0),
                     ("FP_detections_distractors", "fp_detections_distractors", 1.0))
#: Training-log keys of the RPN selection counts (OHEM variants record them per step).
KEPT_KEYS = ("ohem_rpn_kept_positives", "ohem_rpn_kept_negatives")
#: The same for the RoI-head class loss (``OHEM_ROI`` variants).
ROI_KEPT_KEYS = ("ohem_roi_kept_positives", "ohem_roi_kept_negatives")


############################################################
#  Power
############################################################


def power_summary(runs: Sequence[dict], variants: Sequence[str], reference: str = "baseline",
                  metrics: Sequence[tuple[str, str, float]] = SUMMARY_METRICS) -> dict[str, dict[str, dict[str, Any]]]:
    """Paired difference, 95% interval, SD and 80%-power MDE per variant and metric.

    Args:
        runs: finished and failed runs (``{"variant", "seed", "status", "metrics"}``).
        variants: variants to summarize; ``reference`` itself is left out.
        reference: the variant every other one is compared with, seed by seed.
        metrics: (name, run metric key, scale) triples; runs without a key are left out.

    Returns:
        ``{variant: {metric: {"diff", "ci": [lo, hi], "sd", "mde80", "n", "wins"}}}`` in points for
        AP and AR, proposals per image for ``FP_distractors``; NaN (JSON null) where fewer than
        two seeds paired up.
    """
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for variant in variants:
        if variant == reference:
            continue
        out[variant] = {}
        for name, key, scale in metrics:
            d = paired_by_seed(runs, variant, key, reference)
            mde = minimum_detectable_difference(d["std"], d["n"]) if d["n"] >= 2 else math.nan
            out[variant][name] = {"diff": _num(scale * d["mean"]),
                                  "ci": [_num(scale * d["low"]), _num(scale * d["high"])],
                                  "sd": _num(scale * d["std"]), "mde80": _num(scale * mde), "n": d["n"],
                                  "wins": d["wins"]}
    return out


def _num(value: float) -> float | None:
    return None if value is None or math.isnan(value) else round(float(value), 4)


def verdict(entry: dict[str, Any], target: float = TARGET_MDE) -> str:
    """``higher``, ``lower``, ``not distinguishable`` (the design could see ``target``), or ``underpowered``."""
    low, high = entry["ci"]
    if low is None or high is None:
        return "no interval"
    if low > 0:
        return "higher"
    if high < 0:
        return "lower"
    if entry["mde80"] is not None and entry["mde80"] <= target:
        return "not distinguishable"
    return "underpowered"


def power_note(summary: dict[str, dict[str, dict[str, Any]]], seeds: int, target: float = TARGET_MDE) -> str:
    """What the measured SDs mean: seeds needed for an MDE of ``target`` points on AP50 and AR@100."""
    parts = []
    for variant, metrics in summary.items():
        cells = []
        for name in ("AP50", "AR@100"):
            sd = metrics[name]["sd"]
            if sd is None:
                continue
            need = seeds_needed(sd, target)
            cells.append(f"{name} sd {sd:.2f} -> MDE {metrics[name]['mde80']:.2f} at {metrics[name]['n']} seeds, "
                         f"{need if need else '>1000'} seeds for {target:g}")
        if cells:
            parts.append(f"`{variant}`: " + "; ".join(cells))
    return "; ".join(parts)


############################################################
#  What the miner keeps
############################################################


def kept_counts(runs: Sequence[dict], variants: Sequence[str], early: int = 20,
                keys: tuple[str, str] = KEPT_KEYS) -> dict[str, dict[str, float]]:
    """RPN anchors (or, with ``keys=ROI_KEPT_KEYS``, RoIs) kept per image and step, from the
    training logs (OHEM variants only).

    Returns:
        ``{variant: {"positives_early", "positives", "negatives", "zero_positive_steps"}}``:
        mean kept positives per image over the first ``early`` steps and over all steps, mean
        kept negatives, and the fraction of steps where no positive was kept; variants whose
        logs have no counts are left out.
    """
    out = {}
    for variant in variants:
        histories = [r.get("history") or [] for r in runs if r["variant"] == variant and r.get("status") == "ok"]
        histories = [h for h in histories if h and keys[0] in h[0]]
        if not histories:
            continue
        pos = [np.array([row[keys[0]] for row in h], dtype=float) for h in histories]
        neg = [np.array([row.get(keys[1], np.nan) for row in h], dtype=float) for h in histories]
        out[variant] = {"positives_early": float(np.mean([p[:early].mean() for p in pos])),
                        "positives": float(np.mean([p.mean() for p in pos])),
                        "negatives": float(np.mean([n.mean() for n in neg])),
                        "zero_positive_steps": float(np.mean([(p < 0.5).mean() for p in pos]))}
    return out


def positives_in_random_sample(budget: Budget, seed: int = 0, images: int = 50) -> float:
    """Positive anchors per image in Matterport's random sample (every positive, up to half of 256).

    Matterport's ``build_rpn_targets`` keeps every positive anchor (at most
    ``RPN_TRAIN_ANCHORS_PER_IMAGE // 2``) and fills the rest with random negatives, so this is
    what the baseline trains on per image: the reference for the OHEM variants' kept positives.

    Args:
        budget: image size and generator limits of the run.
        seed: training-set seed.
        images: images averaged over (the first of the seed's training set).
    """
    from benchmarks.quality.variants import make_config
    from mrcnn_ohem.datasets.shapes import ShapesDataset
    from mrcnn_ohem.maskrcnn import model as modellib
    from mrcnn_ohem.maskrcnn.anchors import compute_backbone_shapes, generate_pyramid_anchors

    dataset = ShapesDataset()
    dataset.load_shapes(images, budget.image_size, budget.image_size, seed=seed, max_targets=budget.max_targets,
                        max_distractors=budget.max_distractors)
    dataset.prepare()
    config = make_config("baseline", budget, dataset.num_classes, "training")
    anchors = generate_pyramid_anchors(config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS,
                                       compute_backbone_shapes(config, config.IMAGE_SHAPE), config.BACKBONE_STRIDES,
                                       config.RPN_ANCHOR_STRIDE)
    counts = []
    for image_id in dataset.image_ids:
        image, _, class_ids, boxes, _ = modellib.load_image_gt(dataset, config, image_id)
        match, _ = modellib.build_rpn_targets(image.shape, anchors, class_ids, boxes, config)
        counts.append(int((match == 1).sum()))
    return float(np.mean(counts))


############################################################
#  Summary, section, plot
############################################################


def summary_document(runs: Sequence[dict], variants: Sequence[str], budget: Budget, checkpoint: dict[str, Any],
                     design: str = "finetune") -> dict[str, Any]:
    """The ``quality_finetune.json`` document: design, seeds, validation images, per-variant metrics."""
    seeds = sorted({r["seed"] for r in runs if r["variant"] == "baseline" and r.get("status") == "ok"})
    summary = power_summary(runs, variants)
    return {"design": design, "seeds": len(seeds), "val_images": budget.val_images, "variants": summary,
            "verdicts": {v: {m: verdict(e) for m, e in metrics.items()} for v, metrics in summary.items()},
            "power_note": power_note(summary, len(seeds)),
            "kept_per_image_and_step": kept_counts(runs, variants),
            "roi_kept_per_image_and_step": kept_counts(runs, variants, keys=ROI_KEPT_KEYS),
            "detection_details": power_summary(runs, variants, metrics=DETECTION_METRICS),
            "detection_means": detection_means(runs, variants),
            "units": "AP, AP50, AR@100 in points (x100); FP_distractors in proposals per image (top 100)",
            "test": "paired by seed; ci: 95% Student t; mde80: (t(0.975, n-1) + t(0.8, n-1)) * sd / sqrt(n)",
            "budget": asdict(budget), "checkpoint": checkpoint,
            "made": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def detection_means(runs: Sequence[dict], variants: Sequence[str]) -> dict[str, dict[str, float | None]]:
    """Mean over a variant's finished seeds of each :data:`DETECTION_METRICS` key and the mean
    scores of true and false positives (points for recall, calibration error and scores)."""
    keys = [(key, scale) for _, key, scale in DETECTION_METRICS] + [("mean_score_tp", 100.0),
                                                                      ("mean_score_fp", 100.0)]
    out = {}
    for variant in ("baseline", *[v for v in variants if v != "baseline"]):
        done = [r["metrics"] for r in runs if r["variant"] == variant and r.get("status") == "ok"]
        values = {key: [m[key] for m in done if m.get(key) is not None and not math.isnan(m[key])]
                  for key, _ in keys}
        if any(values.values()):
            out[variant] = {key: _num(scale * float(np.mean(values[key]))) if values[key] else None
                            for key, scale in keys}
    return out


def detection_table(document: dict[str, Any]) -> str:
    """Markdown: each variant's detection recall, calibration error and mean TP / FP scores, with
    the paired difference from the baseline of the first three."""
    means, details = document.get("detection_means") or {}, document.get("detection_details") or {}
    lines = ["| variant | recall of detections >= 0.5 at IoU 0.5 | calibration error (ECE) | "
             "confident detections on distractors / image | mean score, true / false positives |",
             "|" + " --- |" * 5]

    def cell(variant: str, name: str, key: str) -> str:
        mean = means[variant].get(key)
        text = "-" if mean is None else f"{mean:.2f}" if name.startswith("FP") else f"{mean:.1f}"
        e = details.get(variant, {}).get(name)
        if e and e["ci"][0] is not None:
            text += f" (Δ {e['diff']:+.2f} [{e['ci'][0]:+.2f}, {e['ci'][1]:+.2f}])"
        return text

    for variant, m in means.items():
        scores = "/".join("-" if m.get(k) is None else f"{m[k]:.0f}" for k in ("mean_score_tp", "mean_score_fp"))
        lines.append(f"| {variant} | " + " | ".join(cell(variant, name, key) for name, key, _ in DETECTION_METRICS)
                     + f" | {scores} |")
    return "\n".join(lines)


def write_summary(document: dict[str, Any], path: Path = SUMMARY) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1) + "\n", encoding="utf-8")


def summary_table(document: dict[str, Any]) -> str:
    """Markdown: one row per variant, ``diff [lo, hi] (sd, MDE)`` per metric, and the verdicts."""
    names = [name for name, _, _ in SUMMARY_METRICS]
    lines = ["| variant | " + " | ".join(f"Δ {n} [95% CI] (sd; MDE80)" for n in names) + " | verdict AP50 / AR@100 |",
             "|" + " --- |" * (len(names) + 2)]
    for variant, metrics in document["variants"].items():
        cells = []
        for name in names:
            e = metrics[name]
            if e["diff"] is None:
                cells.append("-")
            elif e["ci"][0] is None:
                cells.append(f"{e['diff']:+.2f}")
            else:
                cells.append(f"{e['diff']:+.2f} [{e['ci'][0]:+.2f}, {e['ci'][1]:+.2f}] "
                             f"({e['sd']:.2f}; {e['mde80']:.2f})")
        v = document["verdicts"][variant]
        lines.append(f"| {variant} | " + " | ".join(cells) + f" | {v['AP50']} / {v['AR@100']} |")
    return "\n".join(lines)


def kept_table(kept: dict[str, dict[str, float]]) -> str:
    lines = ["| variant | kept positives / image, first 20 steps | kept positives / image, all steps | "
             "kept negatives / image | steps with no positive kept |", "|" + " --- |" * 5]
    for variant, k in kept.items():
        lines.append(f"| {variant} | {k['positives_early']:.1f} | {k['positives']:.1f} | {k['negatives']:.1f} | "
                     f"{k['zero_positive_steps']:.0%} |")
    return "\n".join(lines)


def section(document: dict[str, Any], runs: Sequence[dict], budget: Budget, variants: Sequence[str],
            skipped: dict[str, str], timing: dict | None) -> str:
    """The ``quality_finetune`` section of RESULTS.md (markdown)."""
    from benchmarks._results import command_line, machine_line
    from benchmarks.quality import report as rep
    from benchmarks.quality.variants import VARIANTS

    checkpoint = document["checkpoint"]
    seeds = sorted({r["seed"] for r in runs})
    parts = [
        "## Quality, fine-tuning regime: does OHEM pay where users train? (`python -m benchmarks.quality`)", "",
        f"Command: `{command_line()}` -- {document['made']}", f"Machine: {machine_line()}", "",
        f"Every run fine-tunes `{checkpoint['file']}` (key `{checkpoint['key']}`, bbox AP50 "
        f"{checkpoint['AP50'] if checkpoint['AP50'] is None else round(checkpoint['AP50'], 3)} on the validation "
        f"shapes; made by `{checkpoint['command']}`) on synthetic shapes with look-alike distractors "
        f"({rep.budget_line(budget)}); seeds {seeds}: seed s draws its own training images and data order, the "
        f"same for every variant; {rep.load_note(runs)}.", "",
        "Variants: " + "; ".join(f"`{v}` = {VARIANTS[v].help}" for v in variants) + ".",
    ]
    if skipped:
        parts += ["", *(f"- `{v}` {reason}." for v, reason in skipped.items())]
    table = rep.markdown_table(rep.aggregate(runs, variants), runs=runs)
    parts += ["", "Means ± sample std over seeds:", "", table, "",
              "Paired by seed, variant minus baseline: mean difference [95% t-interval] (sample sd of the per-seed "
              "differences; minimum detectable difference at 80% power, two-sided 0.05, "
              "(t(0.975, n-1) + t(0.8, n-1)) x sd / sqrt(n)); AP and AR in points, FP in proposals per image. "
              f"Verdict: higher/lower when the interval excludes 0; \"not distinguishable\" when it includes 0 and "
              f"the MDE is at most {TARGET_MDE:g} points; \"underpowered\" when the MDE is larger.", "",
              summary_table(document), "", f"Power: {document['power_note']}."]
    if document["kept_per_image_and_step"]:
        reference = document.get("positives_in_random_sample")
        parts += ["", "RPN anchors the OHEM variants kept per image and step (training logs, mean over seeds)"
                  + (f"; Matterport's random 256 (`baseline`, `snippet`) keeps every positive anchor, {reference:.1f} "
                     "per image on average (first 50 training images of seed 0)" if reference else "") + ":", "",
                  kept_table(document["kept_per_image_and_step"])]
    if document.get("roi_kept_per_image_and_step"):
        cap = int(budget.train_rois * 0.33)
        parts += ["", "RoIs the RoI-OHEM variants kept per image and step (training logs, mean over seeds; "
                  f"Matterport's sample is {budget.train_rois} RoIs, at most {cap} of them positive):", "",
                  kept_table(document["roi_kept_per_image_and_step"])]
    if document.get("detection_means"):
        parts += ["", "Detections (score >= 0.5 for recall and on distractors; every detection for the calibration "
                  "error, 10 score bins; points, mean over seeds, paired difference from the baseline with its 95% "
                  "interval):", "", detection_table(document)]
    if timing and timing.get("status") == "ok":
        parts += ["", f"Step time side by side (one process, pre-built batches, graph only, {timing['rounds']} "
                  "rounds of one step per variant in rotating order):", "", rep.timing_table(timing)]
    parts += ["", "Per run:", "", rep.per_run_table(runs), "",
              "Plot: [quality.png](quality.png) (paired differences with 95% intervals, every variant)."]
    return "\n".join(parts)


def plot_differences(document: dict[str, Any], path: Path, title: str) -> None:
    """Paired differences with their 95% intervals, every variant, one panel per metric.

    Each panel has its own axis in its own unit; the grey band is ± the design's 80%-power MDE
    for that variant (differences inside it can go unseen). Green: better than the baseline with
    the interval clear of 0, red: worse, blue: the interval includes 0.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    variants = list(document["variants"])
    names = [(n, "points" if scale == 100 else "proposals / image") for n, _, scale in SUMMARY_METRICS]
    fig, axes = plt.subplots(1, len(names), figsize=(3.3 * len(names), 0.45 * len(variants) + 1.8), sharey=True)
    y = np.arange(len(variants))[::-1]
    for ax, (name, unit) in zip(axes, names):
        entries = [document["variants"][v][name] for v in variants]
        diff = np.array([np.nan if e["diff"] is None else e["diff"] for e in entries])
        low = np.array([np.nan if e["ci"][0] is None else e["ci"][0] for e in entries])
        high = np.array([np.nan if e["ci"][1] is None else e["ci"][1] for e in entries])
        mde = np.array([np.nan if e["mde80"] is None else e["mde80"] for e in entries])
        for yi, m in zip(y, mde):
            if not np.isnan(m):
                ax.fill_betweenx([yi - 0.3, yi + 0.3], -m, m, color="0.88", lw=0)
        higher_better = not name.startswith("FP")  # fewer false positives is better
        colors = ["tab:blue" if np.isnan(lo) or lo <= 0 <= hi else
                  "tab:green" if (lo > 0) == higher_better else "tab:red" for lo, hi in zip(low, high)]
        for yi, d, lo, hi, color in zip(y, diff, low, high, colors):
            if not np.isnan(lo):
                ax.errorbar([d], [yi], xerr=[[d - lo], [hi - d]], fmt="none", ecolor=color, capsize=3)
            ax.scatter([d], [yi], color=color, zorder=3, s=18)
        ax.axvline(0, color="k", lw=0.8)
        better = "lower is better" if name.startswith("FP") else "higher is better"
        ax.set_xlabel(f"variant - baseline ({unit}; {better})", fontsize=8)
        ax.set_title(f"Δ {name}", fontsize=9)
        ax.tick_params(labelsize=8)
    axes[0].set_yticks(y, variants, fontsize=8)
    axes[0].set_ylabel("variant", fontsize=8)
    fig.suptitle(title + "\ndots: mean paired difference; bars: 95% t-interval; grey: ± MDE at 80% power", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
