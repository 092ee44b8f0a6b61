"""``make demo``: baseline vs OHEM Mask R-CNN, trained on the same 3 seeds, compared paired by seed.

Run from the repo root: ``python -m samples.demo`` (``make demo`` runs ``samples/snippet_defects.py``
first). Steps:

1. write a validation set of generated shapes among look-alike distractors
   (:mod:`mrcnn_ohem.datasets.shapes`) as a COCO folder in ``demo_output/``;
2. for seeds 0, 1, 2: train a baseline and an OHEM model (``mrcnn_ohem.patch``) from the same
   initial weights, data and order, at the quality benchmark's budget (128 px, tiny backbone,
   2 images a step, lr 0.02; :mod:`benchmarks.quality`) cut to 110 steps and 30 validation
   images so the six runs fit in under 10 minutes on 2 cores (the benchmark trains 600 steps and
   scores 60 images: ``--steps 600 --val-images 60``), and score both with COCOeval (bbox
   AP/AP50, segm AP, RPN AR@100);
3. print per-seed rows, mean ± std, the paired difference (OHEM minus baseline) with its 95%
   Student t-interval over the seeds, and how many seeds OHEM won, saying plainly when the
   interval includes 0;
4. save ``demo_output/demo.png``: loss curves, per-seed bars, the paired differences, one
   validation image with the anchors OHEM keeps next to the random 256 Matterport keeps, and the
   selection statistics over training.

Three seeds on a small CPU budget: the interval is wide; ``--seeds 5`` narrows it.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from mrcnn_ohem._compat import quiet_tensorflow

quiet_tensorflow()  # before TensorFlow is imported; -v or your own TF_CPP_MIN_LOG_LEVEL shows its C++ log lines

from benchmarks.quality import mining, report, stats  # noqa: E402
from benchmarks.quality.metrics import validation_scene  # noqa: E402
from benchmarks.quality.runs import graph_optimizations_off, run_suite  # noqa: E402
from benchmarks.quality.variants import FULL, QUICK, make_config  # noqa: E402

logger = logging.getLogger("demo")
VARIANTS = ("baseline", "ohem")
#: The ``make demo`` budget: the quality benchmark's, with fewer steps and validation images.
#: ``make demo`` took 8 min 57 s with it on 2 cores at 0.43 to 0.50 s a step (10 min 25 s at 130
#: steps; README, "make demo").
DEMO_STEPS = 110
DEMO_VAL_IMAGES = 30
#: (metric key, label, scale to points)
ROWS = (("bbox_AP", "bbox AP"), ("bbox_AP50", "bbox AP50"), ("segm_AP", "segm AP"), ("AR100", "RPN AR@100"))
#: Training-log keys of the OHEM selection counts (issue 11), plotted when the history has them.
SELECTION_KEYS = ("ohem_rpn_kept_positives", "ohem_rpn_kept_negatives", "ohem_rpn_threshold")


def build_parser() -> argparse.ArgumentParser:
    """The demo's options; the defaults are the ``make demo`` budget."""
    parser = argparse.ArgumentParser(prog="python -m samples.demo", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--output", default="demo_output", help="folder for data, logs, table and plot")
    parser.add_argument("--seeds", type=int, default=3, help="paired seeds (default 3)")
    parser.add_argument("--steps", type=int, default=DEMO_STEPS,
                        help=f"training steps per run (default {DEMO_STEPS}; the benchmark's {FULL.steps})")
    parser.add_argument("--val-images", type=int, default=DEMO_VAL_IMAGES,
                        help=f"validation images (default {DEMO_VAL_IMAGES}; the benchmark's {FULL.val_images})")
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only checks the plumbing")
    parser.add_argument("--no-plot", action="store_true")
    return parser


############################################################
#  Numbers
############################################################


def comparison(runs: Sequence[dict]) -> tuple[str, dict[str, dict]]:
    """Per-seed rows, mean ± std and the paired difference per metric, as printable text.

    Returns:
        (text, ``{metric: paired difference}``)
    """
    seeds = sorted({r["seed"] for r in runs})
    by = {(r["variant"], r["seed"]): r["metrics"] for r in runs if r.get("status") == "ok"}
    lines = ["seed  " + "".join(f"{label + ' base':>16}{'ohem':>8}" for _, label in ROWS)]
    for seed in seeds:
        base, ohem = by.get(("baseline", seed), {}), by.get(("ohem", seed), {})
        cells = "".join(f"{base.get(k, np.nan):16.3f}{ohem.get(k, np.nan):8.3f}" for k, _ in ROWS)
        lines.append(f"{seed:<6}{cells}")
    lines.append("")
    diffs = {}
    for key, label in ROWS:
        base = stats.summarize([by.get(("baseline", s), {}).get(key) for s in seeds])
        ohem = stats.summarize([by.get(("ohem", s), {}).get(key) for s in seeds])
        diff = stats.paired_by_seed(runs, "ohem", key)
        diffs[key] = diff
        if diff["n"] < 2:
            verdict = "fewer than 2 paired seeds: no interval, no conclusion"
        elif stats.includes_zero(diff):
            verdict = "the interval includes 0: no difference this demo can detect"
        else:
            verdict = f"the interval excludes 0: OHEM is {'better' if diff['low'] > 0 else 'worse'}"
        lines.append(f"{label:11s} baseline {base['mean']:.3f} ± {base['std']:.3f}   OHEM {ohem['mean']:.3f} ± "
                     f"{ohem['std']:.3f}   OHEM - baseline {stats.format_difference(diff)} points "
                     f"(95% t-interval over {diff['n']} paired seeds); OHEM won {diff['wins']}/{diff['n']} seeds; "
                     f"{verdict}.")
    return "\n".join(lines), diffs


############################################################
#  Which anchors each sampler keeps, on one validation image
############################################################


def anchors_kept(run: dict, budget: Any, val_dir: Path) -> dict[str, Any]:
    """Anchors OHEM's loss keeps vs Matterport's random 256 on one validation image with distractors.

    Uses the trained OHEM model's RPN objectness (inference graph output ``rpn_class``).

    Returns:
        ``{"image", "anchors", "random_match", "ohem_match", "ohem_kept", "distractors", "gt"}``.
    """
    import mrcnn_ohem
    from benchmarks.quality.metrics import scene_boxes
    from mrcnn_ohem._compat import import_tf_keras
    from mrcnn_ohem.datasets.coco import CocoDataset
    from mrcnn_ohem.maskrcnn import model as modellib
    from mrcnn_ohem.maskrcnn.anchors import compute_backbone_shapes, generate_pyramid_anchors

    import_tf_keras().backend.clear_session()
    dataset = CocoDataset()
    dataset.load_coco(str(val_dir), "val")
    dataset.prepare()
    image_id = max(dataset.image_ids,  # the first image with the most distractors
                   key=lambda i: (len(validation_scene(budget, dataset.image_info[i]["id"]).distractors), -i))
    config = make_config("ohem", budget, dataset.num_classes, "inference")
    model = modellib.MaskRCNN("inference", config, model_dir=str(Path(run["checkpoint"]).parent))
    model.load_weights(run["checkpoint"], by_name=True)
    image, _, class_ids, boxes, _ = modellib.load_image_gt(dataset, config, image_id)
    molded, metas, _ = model.mold_inputs([image])
    anchors_norm = model.get_anchors(molded[0].shape)
    rpn_class = model.keras_model.predict([molded, metas, anchors_norm[None]], verbose=0)[5]
    anchors = generate_pyramid_anchors(config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS,
                                       compute_backbone_shapes(config, config.IMAGE_SHAPE),
                                       config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE)
    random_match, _ = modellib.build_rpn_targets(image.shape, anchors, class_ids, boxes, config)
    ohem_match, _ = mrcnn_ohem.make_build_rpn_targets(config)(image.shape, anchors, class_ids, boxes, config)
    logits = np.log(np.clip(rpn_class, 1e-7, 1.0))  # log-probabilities rank exactly as logits do
    losses = mining.rpn_losses(logits, ohem_match[None])
    kept = mining.kept_mask(ohem_match[None], losses, mining.selection_rule(config))[0]
    gt, distractors = scene_boxes(validation_scene(budget, dataset.image_info[image_id]["id"]))
    return {"image": image, "anchors": anchors, "random_match": random_match, "ohem_match": ohem_match,
            "ohem_kept": kept, "distractors": distractors, "gt": gt}


############################################################
#  Plot
############################################################


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    window = max(1, min(window, len(values)))
    return np.convolve(values, np.ones(window) / window, mode="valid")


def _draw_anchors(ax: Any, kept: dict[str, Any], mask: np.ndarray, match: np.ndarray, title: str) -> None:
    from matplotlib.patches import Rectangle

    ax.imshow(kept["image"])
    for (y1, x1, y2, x2), label in zip(kept["anchors"][mask], match[mask]):
        color = "lime" if label == 1 else "red"
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=0.6 if label != 1 else 1.2,
                               ec=color, alpha=0.9 if label == 1 else 0.35))
    for y1, x1, y2, x2 in kept["distractors"]:
        ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, lw=1.2, ec="yellow", ls="--"))
    negatives = int((mask & (match == -1)).sum())
    positives = int((mask & (match == 1)).sum())
    ax.set_title(f"{title}\n{positives} positives (green), {negatives} negatives (red)", fontsize=8)
    ax.set_xlim(0, kept["image"].shape[1])
    ax.set_ylim(kept["image"].shape[0], 0)
    ax.axis("off")


def _selection_panel(ax: Any, runs: Sequence[dict]) -> None:
    """Selection statistics from the training history when logged (issue 11), else the miner probe."""
    ohem = [r for r in runs if r["variant"] == "ohem" and r.get("status") == "ok"]
    logged = [k for k in SELECTION_KEYS if ohem and any(k in row for row in ohem[0].get("history", []))]
    if logged:
        for key in logged:
            values = np.array([row.get(key, np.nan) for row in ohem[0]["history"]], dtype=float)
            ax.plot(_smooth(values, max(1, len(values) // 20)), label=key.replace("ohem_rpn_", ""))
        ax.set_title("OHEM selection per step (training log, seed 0)", fontsize=9)
        ax.legend(fontsize=7)
        return
    for variant, style in (("baseline", "s--"), ("ohem", "o-")):
        records = [r.get("mining") for r in runs if r["variant"] == variant and r.get("mining")]
        if records:
            steps = [rec["step"] for rec in records[0]]
            ax.plot(steps, [np.mean([rec[i]["distractor"] for rec in records]) for i in range(len(steps))],
                    style, label=f"{variant}: kept negatives on distractors")
    ax.set_title("no ohem_rpn_kept_* in the training log in this checkout;\n"
                 "probe: share of kept negatives on distractors", fontsize=8)
    ax.yaxis.set_major_formatter(__import__("matplotlib").ticker.PercentFormatter(1.0))
    ax.set_xlabel("step", fontsize=8)
    ax.legend(fontsize=7)


def plot(runs: Sequence[dict], diffs: dict[str, dict], kept: dict[str, Any] | None, path: Path) -> None:
    """The demo figure (see the module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(15, 9))
    ax = axes[0, 0]
    for variant, color in zip(VARIANTS, ("tab:gray", "tab:blue")):
        for r in (r for r in runs if r["variant"] == variant and r.get("history")):
            heads = np.array([sum(row.get(k, np.nan) for k in ("mrcnn_class_loss", "mrcnn_bbox_loss",
                                                                 "mrcnn_mask_loss")) for row in r["history"]])
            window = max(1, len(heads) // 20)
            ax.plot(np.arange(window, len(heads) + 1), _smooth(heads, window), color=color, alpha=0.7,
                    label=variant if r["seed"] == 0 else None)
    ax.set_title("detection-head losses (class+bbox+mask), one line per seed", fontsize=9)
    ax.set_xlabel("step")
    ax.legend()
    ax = axes[0, 1]
    x = np.arange(len(ROWS))
    for i, (variant, color) in enumerate(zip(VARIANTS, ("tab:gray", "tab:blue"))):
        values = [[r["metrics"].get(k, np.nan) for r in runs if r["variant"] == variant and r.get("status") == "ok"]
                  for k, _ in ROWS]
        ax.bar(x + (i - 0.5) * 0.38, [np.nanmean(v) for v in values], 0.38, color=color, alpha=0.6, label=variant)
        for j, v in enumerate(values):
            ax.plot(np.full(len(v), x[j] + (i - 0.5) * 0.38), v, "k.", ms=4)
    ax.set_xticks(x, [label for _, label in ROWS], fontsize=8)
    ax.set_title("validation (COCOeval): mean bars, dots = seeds", fontsize=9)
    ax.legend()
    ax = axes[0, 2]
    means = [100 * diffs[k]["mean"] for k, _ in ROWS]
    errors = [[100 * (diffs[k]["mean"] - diffs[k]["low"]) for k, _ in ROWS],
              [100 * (diffs[k]["high"] - diffs[k]["mean"]) for k, _ in ROWS]]
    ax.errorbar(x, means, yerr=np.nan_to_num(errors), fmt="o", capsize=4)
    ax.axhline(0, color="k", lw=0.8)
    ax.set_xticks(x, [label for _, label in ROWS], fontsize=8)
    ax.set_title("OHEM - baseline, points: mean and 95% t-interval over paired seeds", fontsize=9)
    if kept is not None:
        _draw_anchors(axes[1, 0], kept, kept["random_match"] != 0, kept["random_match"],
                      "Matterport: the random 256 anchors it trains on")
        _draw_anchors(axes[1, 1], kept, kept["ohem_kept"], kept["ohem_match"],
                      "OHEM: the hardest 256 by the trained RPN's loss (seed 0)")
    else:
        for ax in axes[1, :2]:
            ax.axis("off")
    _selection_panel(axes[1, 2], runs)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


############################################################
#  Main
############################################################


def demo_budget(args: argparse.Namespace) -> Any:
    """The benchmark's full budget with the demo's steps and validation images (``--smoke``: quick)."""
    if args.smoke:
        return replace(QUICK, val_images=3)
    return replace(FULL, steps=args.steps, val_images=args.val_images)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; print the comparison; return the exit code."""
    # The library's own INFO lines ("Re-starting from epoch 1" at every checkpoint load) are not
    # the demo's progress: its warnings only, while the demo runs.
    library = logging.getLogger("mrcnn_ohem")
    level = library.level
    library.setLevel(logging.WARNING)
    try:
        return _run(argv)
    finally:
        library.setLevel(level)


def _run(argv: Sequence[str] | None) -> int:
    from mrcnn_ohem.datasets.shapes import write_coco_folder

    args = build_parser().parse_args(argv)
    budget = demo_budget(args)
    if args.smoke:
        args.seeds = 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    output = Path(args.output)
    val_dir = output / "val"
    write_coco_folder(val_dir, "val", budget.val_images, budget.image_size, budget.image_size, budget.val_seed,
                      max_targets=budget.max_targets, max_distractors=budget.max_distractors)
    try:
        with graph_optimizations_off(args.smoke):
            runs = run_suite("shapes", VARIANTS, range(args.seeds), budget, output / "runs", timeout=0,
                             extra={"val_dir": str(val_dir)}, in_process=True, report=logger.info)
    except KeyboardInterrupt:
        logger.warning("Interrupted.")
        return 130
    text, diffs = comparison(runs)
    print(f"\nBaseline vs OHEM on synthetic shapes with look-alike distractors: {report.budget_line(budget)}; "
          f"seeds {list(range(args.seeds))} (same seed = same initial weights and data order for both)\n")
    print(text)
    results = [{k: v for k, v in r.items() if k != "history"} for r in runs]
    (output / "results.json").write_text(json.dumps({"budget": asdict(budget), "runs": results, "differences": diffs},
                                                    indent=1, default=str))
    (output / "table.txt").write_text(text + "\n")
    if not args.no_plot:
        ohem0 = next((r for r in runs if r["variant"] == "ohem" and r.get("status") == "ok"), None)
        kept = anchors_kept(ohem0, budget, val_dir) if ohem0 else None
        plot(runs, diffs, kept, output / "demo.png")
        print(f"\nplot: {output / 'demo.png'}")
    print(f"results: {output / 'results.json'}  (total {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
