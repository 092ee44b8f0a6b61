"""Turning runs into the RESULTS.md section, the goal verdicts and the plots."""
from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.quality import mining
from benchmarks.quality.stats import format_difference, includes_zero, paired_by_seed, summarize
from benchmarks.quality.variants import RPN_ANCHORS, VARIANTS, WARMUP_STEPS, Budget

#: (key, label, higher is better) in table order.
METRICS = (
    ("bbox_AP", "bbox AP", True),
    ("bbox_AP50", "bbox AP50", True),
    ("segm_AP", "segm AP", True),
    ("AR100", "AR@100", True),
    ("AR1000", "AR@1000", True),
    ("fp_distractors", "FP proposals on distractors / image (top 100)", False),
    ("seconds_per_step", "s / step", False),
)
SECONDARY = (("fp_detections_distractors", "FP detections on distractors / image (score >= 0.5)", False),
             ("segm_AP50", "segm AP50", True), ("last_loss", "loss, last 20 steps", False))
#: (key, label, scale, digits): paired differences vs the baseline; AP/AR in points.
DIFFERENCES = (("bbox_AP", "Δ bbox AP", 100, 1), ("bbox_AP50", "Δ AP50", 100, 1), ("segm_AP", "Δ segm AP", 100, 1),
               ("AR100", "Δ AR@100", 100, 1), ("AR1000", "Δ AR@1000", 100, 1),
               ("fp_distractors", "Δ FP on distractors / image", 1, 2))
GOAL = ("On the synthetic hard-negative benchmark, OHEM per image vs baseline: AP50 +2 points and AR@100 "
        "+5 points, with the 95% interval of the paired difference above 0, at < 3% step time.")


############################################################
#  Tables
############################################################


def aggregate(runs: Sequence[dict], variants: Sequence[str], metrics: Sequence[tuple] = METRICS
              ) -> dict[str, dict[str, dict[str, float]]]:
    """``{variant: {metric: summarize(values over that variant's finished runs)}}``."""
    table = {}
    for variant in variants:
        finished = [r for r in runs if r["variant"] == variant and r.get("status") == "ok"]
        table[variant] = {key: summarize([r["metrics"].get(key) for r in finished]) for key, _, _ in metrics}
    return table


def format_cell(stats: dict[str, float], digits: int = 3) -> str:
    """``mean ± std`` (``-`` when there is no value)."""
    if stats["n"] == 0:
        return "-"
    if stats["n"] == 1:
        return f"{stats['mean']:.{digits}f}"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def markdown_table(table: dict[str, dict[str, dict[str, float]]], metrics: Sequence[tuple] = METRICS,
                   runs: Sequence[dict] = ()) -> str:
    """One row per variant, one column per metric, cells ``mean ± std``; a ``runs ok`` column
    counts finished/started runs when ``runs`` is given."""
    header = ["variant", *(label for _, label, _ in metrics)]
    if runs:
        header.append("runs ok")
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for variant, stats in table.items():
        cells = [variant] + [format_cell(stats[key], 2 if key.startswith("fp_") else 3) for key, _, _ in metrics]
        if runs:
            mine = [r for r in runs if r["variant"] == variant]
            cells.append(f"{sum(r.get('status') == 'ok' for r in mine)}/{len(mine)}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def step_time_change(runs: Sequence[dict], variant: str, timing: dict | None) -> float:
    """Percent step-time change vs the baseline: side-by-side timing if there is one, else the
    ratio of the per-run medians' means."""
    if timing and timing.get("status") == "ok" and variant in timing["milliseconds"]:
        ms = timing["milliseconds"]
        return 100 * (ms[variant] / ms["baseline"] - 1)
    table = aggregate(runs, [variant, "baseline"], (("seconds_per_step", "", False),))
    base = table["baseline"]["seconds_per_step"]["mean"]
    return 100 * (table[variant]["seconds_per_step"]["mean"] / base - 1) if base else math.nan


def paired_table(runs: Sequence[dict], variants: Sequence[str], timing: dict | None = None) -> str:
    """Per variant: paired differences vs the baseline with 95% t-intervals, AP50 wins, step time."""
    header = ["variant", "pairs", *(label for _, label, _, _ in DIFFERENCES), "AP50 won", "step time"]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for variant in variants:
        if variant == "baseline":
            continue
        diffs = {key: paired_by_seed(runs, variant, key) for key, _, _, _ in DIFFERENCES}
        ap50 = diffs["bbox_AP50"]
        cells = [variant, str(ap50["n"])]
        cells += [format_difference(diffs[key], scale, digits) for key, _, scale, digits in DIFFERENCES]
        cells += [f"{ap50['wins']}/{ap50['n']}", f"{step_time_change(runs, variant, timing):+.1f}%"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def goal_verdict(runs: Sequence[dict], variant: str, timing: dict | None) -> str:
    """Whether ``variant`` meets :data:`GOAL` vs the baseline: ``met``, or ``not met`` naming what fails."""
    ap50 = paired_by_seed(runs, variant, "bbox_AP50")
    ar = paired_by_seed(runs, variant, "AR100")
    change = step_time_change(runs, variant, timing)
    checks = [
        ("AP50 >= +2 points", ap50["n"] > 0 and 100 * ap50["mean"] >= 2),
        ("its interval above 0", not includes_zero(ap50) and ap50["low"] > 0),
        ("AR@100 >= +5 points", ar["n"] > 0 and 100 * ar["mean"] >= 5),
        ("its interval above 0", not includes_zero(ar) and ar["low"] > 0),
        ("step time < +3%", change < 3),
    ]
    missed = []
    for i, (name, ok) in enumerate(checks):
        if not ok:
            missed.append(name.replace("its", "AP50's" if i == 1 else "AR@100's"))
    measured = (f"AP50 {format_difference(ap50)} points, AR@100 {format_difference(ar)} points, "
                f"step time {change:+.1f}%")
    if not missed:
        return f"- `{variant}`: **met** ({measured})."
    return f"- `{variant}`: **not met**: {', '.join(missed)} fails ({measured})."


def interval_sentences(runs: Sequence[dict], variants: Sequence[str]) -> list[str]:
    """Plain sentences for AP50 and AR@100: the interval includes 0, or lies above/below it."""
    lines = []
    for variant in variants:
        if variant == "baseline":
            continue
        parts = []
        for key, label in (("bbox_AP50", "AP50"), ("AR100", "AR@100")):
            d = paired_by_seed(runs, variant, key)
            if d["n"] < 2:
                parts.append(f"{label}: fewer than 2 pairs, no interval")
            elif includes_zero(d):
                parts.append(f"{label}: the interval includes 0, no detectable difference")
            else:
                parts.append(f"{label}: {'higher' if d['low'] > 0 else 'lower'} than the baseline, interval excludes 0")
        lines.append(f"- `{variant}`: " + "; ".join(parts) + ".")
    return lines


def timing_table(timing: dict) -> str:
    """Markdown rows of ``paired_step_times``: median ms and change vs the baseline."""
    ms = timing["milliseconds"]
    base = ms.get("baseline")
    lines = ["| variant | median step (ms) | vs baseline | negatives labelled in a batch |", "|" + " --- |" * 4]
    for variant, value in ms.items():
        change = f"{100 * (value / base - 1):+.1f}%" if base else "-"
        lines.append(f"| {variant} | {value:.1f} | {change} | {timing['negatives'][variant]} |")
    return "\n".join(lines)


def per_run_table(runs: Sequence[dict]) -> str:
    """One markdown row per run: variant, seed, status and the main metrics."""
    keys = ("bbox_AP50", "AR100", "AR1000", "fp_distractors", "seconds_per_step")
    lines = ["| variant | seed | status | AP50 | AR@100 | AR@1000 | FP/img | s/step |", "|" + " --- |" * 8]
    order = list(VARIANTS)
    for r in sorted(runs, key=lambda r: (order.index(r["variant"]), r["seed"])):
        values = [r.get("metrics", {}).get(k) for k in keys]
        cells = ["-" if v is None or math.isnan(v) else f"{v:.3f}" for v in values]
        lines.append(f"| {r['variant']} | {r['seed']} | {r['status']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def mining_curves(runs: Sequence[dict], variants: Sequence[str]) -> dict[str, dict[str, list[float]]]:
    """``{variant: {"step": [...], category: [mean over seeds], "pool_distractor": [...]}}``."""
    curves = {}
    for variant in variants:
        records = [r.get("mining") or [] for r in runs if r["variant"] == variant and r.get("status") == "ok"]
        records = [rec for rec in records if rec]
        if not records:
            continue
        length = min(len(rec) for rec in records)
        curve: dict[str, list[float]] = {"step": [rec["step"] for rec in records[0][:length]]}
        for key in (*mining.CATEGORIES, "pool_distractor", "kept_negatives"):
            curve[key] = [float(np.mean([rec[i][key] for rec in records])) for i in range(length)]
        curves[variant] = curve
    return curves


def mining_table(curves: dict[str, dict[str, list[float]]]) -> str:
    """Kept negatives by place at the first and last probe, per variant (means over seeds)."""
    lines = ["| variant | step | kept negatives / image | on distractors | near objects | background | "
             "all candidate negatives on distractors |", "|" + " --- |" * 7]
    for variant, curve in curves.items():
        for i in sorted({0, len(curve["step"]) - 1}):
            lines.append(f"| {variant} | {curve['step'][i]} | {curve['kept_negatives'][i]:.0f} | "
                         f"{curve['distractor'][i]:.1%} | {curve['near_object'][i]:.1%} | "
                         f"{curve['background'][i]:.1%} | {curve['pool_distractor'][i]:.1%} |")
    return "\n".join(lines)


############################################################
#  The RESULTS.md section
############################################################


def budget_line(budget: Budget) -> str:
    return (f"{budget.image_size} px, {budget.backbone} backbone, {budget.steps} steps x {budget.batch_size} images, "
            f"SGD lr {budget.learning_rate}, {budget.train_rois} RoIs/image"
            f"{f' (RoI OHEM: from a pool of {budget.roi_pool})' if budget.roi_pool else ''}, mask head "
            f"{budget.mask_head_filters} filters"
            f"{f', RPN convolution {budget.rpn_filters} filters' if budget.rpn_filters != 512 else ''}, "
            f"{budget.train_images or 'all'} training images, {budget.val_images} evaluation images"
            f"{f' ({budget.proposals} proposals each)' if budget.proposals != 1000 else ''}")


def load_note(runs: Sequence[dict]) -> str:
    """The 1-minute load average seen at the start/end of training, over the runs."""
    loads = [v for r in runs for v in r.get("load_average", [])[:2]]
    if not loads:
        return "machine load not recorded"
    return (f"1-minute load average (this run included) {min(loads):.1f} to {max(loads):.1f} "
            f"on {os.cpu_count()} cores")


def _crash_notes(runs: Sequence[dict]) -> list[str]:
    return [f"- `{r['variant']}` seed {r['seed']} ({r['dataset']}): **{r['status']}** after "
            f"{r.get('steps_done', '?')} steps: `{r['error']}`" for r in runs if r.get("status") != "ok"]


def report(shapes_runs: list[dict], budget: Budget, variants: Sequence[str], skipped: dict[str, str],
           quick: bool, timing: dict | None = None, real: dict | None = None) -> str:
    """The RESULTS.md section (markdown).

    Args:
        shapes_runs: the synthetic-shapes runs.
        budget: their budget.
        variants: the variants that ran; ``skipped``: ``{variant: reason}`` for the others.
        quick: a ``--quick`` smoke run (said in bold).
        timing: ``paired_step_times`` result.
        real: ``{"title", "note", "runs", "budget"}`` of the real-image runs, or None.
    """
    from benchmarks._results import command_line, machine_line

    table = aggregate(shapes_runs, variants)
    seeds = sorted({r["seed"] for r in shapes_runs})
    parts = [
        "## Quality: does OHEM pay? (`python -m benchmarks.quality`)", "",
        f"Command: `{command_line()}` -- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"Machine: {machine_line()}", "",
        ("**Quick smoke run (`--quick`): a few steps, numbers are not meaningful.**\n\n" if quick else "")
        + f"Synthetic shapes with look-alike distractors ({budget_line(budget)}); seeds {seeds}, the same seeds "
        "for every variant (same initial weights, data and order). AP/AR are COCOeval (IoU .50:.95 unless "
        "named), AR is class-agnostic proposal recall, \"FP proposals on distractors\" counts top-100 proposals "
        "with IoU >= 0.5 on a distractor and < 0.5 on every object (lower is better), s/step is the median "
        f"after {WARMUP_STEPS} warm-up steps; {load_note(shapes_runs)}. Threaded CPU kernels are not "
        "bit-reproducible, so a rerun gives slightly different numbers.", "",
        "Variants: " + "; ".join(f"`{v}` = {VARIANTS[v].help}" for v in variants) + ".",
    ]
    if skipped:
        parts += ["", *(f"- `{v}` {reason}." for v, reason in skipped.items())]
    parts += ["", "Means ± sample std over seeds:", "", markdown_table(table, runs=shapes_runs), "",
              "Paired by seed, variant minus baseline: mean difference [95% t-interval over seeds, "
              "t(0.975, pairs - 1) x std / sqrt(pairs)]; AP and AR in points, FP in proposals per image; "
              "\"AP50 won\" counts seeds where the variant's AP50 is higher; step time "
              + ("from the side-by-side timing below." if timing and timing.get("status") == "ok" else
                 "from the per-run medians (no side-by-side timing in this run; other load skews them)."),
              "", paired_table(shapes_runs, variants, timing), "",
              *interval_sentences(shapes_runs, variants), "",
              f"**Goal** (issue 13, stated before the run and not tuned toward): {GOAL}", "",
              *(goal_verdict(shapes_runs, v, timing) for v in variants if v != "baseline")]
    parts += ["", "Secondary numbers (same runs):", "",
              markdown_table(aggregate(shapes_runs, variants, SECONDARY), SECONDARY)]
    if timing and timing.get("status") == "ok":
        parts += ["", f"Step time side by side (one process, pre-built batches, graph only, {timing['rounds']} "
                  "rounds of one step per variant in rotating order):", "", timing_table(timing)]
    curves = mining_curves(shapes_runs, variants)
    if curves:
        parts += ["", "### What the miner keeps", "", mining_note(), "", mining_table(curves), "",
                  "Curves: [quality_mining.png](quality_mining.png)."]
    parts += ["", "Per run:", "", per_run_table(shapes_runs)]
    notes = _crash_notes(shapes_runs + (real["runs"] if real else []))
    if notes:
        parts += ["", "Runs that did not finish:", *notes]
    if real:
        parts += ["", f"### {real['title']}", "", real["note"], ""]
        if real["runs"]:
            real_variants = [v for v in variants if any(r["variant"] == v for r in real["runs"])]
            metrics = tuple(m for m in METRICS if m[0] != "fp_distractors")
            parts += [markdown_table(aggregate(real["runs"], real_variants, metrics), metrics, runs=real["runs"])]
    parts += ["", "Plot: [quality.png](quality.png) (bars = mean, error bars = std over seeds)."]
    return "\n".join(parts)


def mining_note() -> str:
    return ("Probed during training on 4 fixed training images with distractors: "
            "the run's own targets and current RPN logits, its selection rule applied "
            "(`benchmarks/quality/mining.py`). A kept negative lies \"on a distractor\" at IoU >= "
            f"{mining.DISTRACTOR_IOU} with a distractor's box, \"near an object\" at IoU >= "
            f"{mining.NEAR_OBJECT_IOU} with a labelled object, else on the background. The last column is the "
            "same fraction over every candidate negative, i.e. what random sampling keeps on average; "
            f"`baseline` trains on Matterport's random {RPN_ANCHORS}, so its kept fraction should sit near it. "
            "Selection options beyond top-k and the positive cap (NMS, negative ratio, focal weighting) are "
            "probed with their plain top-k rule.")


############################################################
#  Plots
############################################################


def plot(table: dict[str, dict[str, dict[str, float]]], path: Path, title: str) -> None:
    """Bars with std error bars for AP50, AR@100, FP on distractors and s/step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("bbox_AP50", "bbox AP50"), ("AR100", "AR@100"),
              ("fp_distractors", "FP proposals on\ndistractors / image"), ("seconds_per_step", "s / step"))
    variants = list(table)
    colors = plt.get_cmap("tab10")(np.arange(len(variants)) % 10)
    fig, axes = plt.subplots(1, len(panels), figsize=(12, 3.1), dpi=80)
    for ax, (key, label) in zip(axes, panels):
        means = [table[v][key]["mean"] for v in variants]
        stds = [table[v][key]["std"] for v in variants]
        ax.bar(range(len(variants)), np.nan_to_num(means), yerr=np.nan_to_num(stds), color=colors, capsize=3)
        ax.set_xticks(range(len(variants)))
        ax.set_xticklabels(variants, rotation=35, ha="right", fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def plot_mining(curves: dict[str, dict[str, list[float]]], path: Path) -> None:
    """Fraction of kept negatives on distractors over training, per variant (dashed: all candidates)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2), dpi=80)
    for i, (variant, curve) in enumerate(curves.items()):
        color = plt.get_cmap("tab10")(i % 10)
        axes[0].plot(curve["step"], curve["distractor"], "o-", color=color, label=variant)
        axes[0].plot(curve["step"], curve["pool_distractor"], ":", color=color)
        axes[1].plot(curve["step"], curve["background"], "o-", color=color, label=variant)
    axes[0].set_title("kept negatives on distractors (dotted: all candidate negatives)", fontsize=9)
    axes[1].set_title("kept negatives on the background", fontsize=9)
    for ax in axes:
        ax.set_xlabel("training step", fontsize=8)
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        ax.tick_params(labelsize=8)
    axes[1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
