"""``make demo``: baseline vs OHEM, both fine-tuned from one detector that detects, paired by seed.

Run from the repo root: ``python -m samples.demo`` (``make demo`` runs ``samples/snippet_defects.py``
first). Steps:

1. find the checkpoint of :mod:`benchmarks.quality.pretrain` for this code (the plain model
   trained on the synthetic shapes until it detects; shipped in ``benchmarks/checkpoints/``).
   When the model code changed since it was made, the demo starts from the checkpoint earlier
   code made with the same settings, seeds and TensorFlow, and says so; when none matches, it
   stops with the command that rebuilds it (25 to 50 minutes on 2 cores, more than the demo's
   budget);
2. write validation shapes among look-alike distractors (:mod:`mrcnn_ohem.datasets.shapes`) as a
   COCO folder in ``demo_output/``;
3. for seeds 0, 1, 2: fine-tune a baseline and an OHEM model (``mrcnn_ohem.patch``) from that
   checkpoint, on the seed's own training images in the seed's order (the same for both arms),
   at the fine-tuning regime's budget of :mod:`benchmarks.quality.finetune` cut to
   :data:`DEMO_STEPS` steps and :data:`DEMO_VAL_IMAGES` validation images; score both with
   COCOeval (bbox AP/AP50, segm AP, RPN AR@100). TensorFlow's op determinism is on while they
   train, so the same command prints the same numbers on the same machine and TensorFlow;
4. print per-seed rows, mean ± std, the paired difference (OHEM minus baseline) with its 95%
   Student t-interval, the paired SD and the difference these seeds could detect at 80% power;
5. save ``demo_output/demo.png``: ground truth and both arms' detections on one validation
   image; on the same image, the negatives Matterport's random 256 trains on next to the ones
   OHEM's loss picks; the anchors OHEM kept per step; the paired differences per metric, each
   on its own axis.

Three seeds on a CPU budget: the interval is wide (``--seeds 5`` narrows it); the benchmark
(``python -m benchmarks.quality``) is the measurement.
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

from mrcnn_ohem._compat import op_determinism, quiet_tensorflow

quiet_tensorflow()  # before TensorFlow is imported; -v or your own TF_CPP_MIN_LOG_LEVEL shows its C++ log lines

from benchmarks.quality import mining, pretrain, report, stats  # noqa: E402
from benchmarks.quality.finetune import FINETUNE  # noqa: E402
from benchmarks.quality.metrics import scene_boxes, validation_scene  # noqa: E402
from benchmarks.quality.runs import graph_optimizations_off, run_suite  # noqa: E402
from benchmarks.quality.variants import QUICK, make_config  # noqa: E402

logger = logging.getLogger("demo")
VARIANTS = ("baseline", "ohem")
#: The ``make demo`` budget: the fine-tuning regime's, with fewer steps and validation images.
DEMO_STEPS = 100
DEMO_VAL_IMAGES = 100
#: (metric key, label)
ROWS = (("bbox_AP", "bbox AP"), ("bbox_AP50", "bbox AP50"), ("segm_AP", "segm AP"), ("AR100", "RPN AR@100"))
#: Training-log keys of the OHEM selection counts (anchors kept per image and step).
SELECTION_KEYS = ("ohem_rpn_kept_positives", "ohem_rpn_kept_negatives")
#: Detections drawn in the figure: score at least this (below it, a detector at AP50 0.9 still
#: lays a row of 0.6-0.7 boxes on striped backgrounds, which hides the rest).
DRAW_SCORE = 0.8


def build_parser() -> argparse.ArgumentParser:
    """The demo's options; the defaults are the ``make demo`` budget."""
    parser = argparse.ArgumentParser(prog="python -m samples.demo", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--output", default="demo_output", help="folder for data, logs, table and plot")
    parser.add_argument("--seeds", type=int, default=3, help="paired seeds (default 3)")
    parser.add_argument("--steps", type=int, default=DEMO_STEPS,
                        help=f"fine-tuning steps per run (default {DEMO_STEPS}; the benchmark's {FINETUNE.steps})")
    parser.add_argument("--val-images", type=int, default=DEMO_VAL_IMAGES,
                        help=f"validation images (default {DEMO_VAL_IMAGES}; the benchmark's {FINETUNE.val_images})")
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only checks the plumbing")
    parser.add_argument("--no-plot", action="store_true")
    return parser


def demo_budget(args: argparse.Namespace) -> Any:
    """The fine-tuning budget with the demo's steps and validation images (``--smoke``: quick, 64 px).

    Neither probes the miner during training: the demo draws its figure from the trained models.
    """
    if args.smoke:
        return replace(QUICK, val_images=3, probes=0)
    return replace(FINETUNE, steps=args.steps, val_images=args.val_images, probes=0)


############################################################
#  Numbers
############################################################


def comparison(runs: Sequence[dict]) -> tuple[str, dict[str, dict]]:
    """Per-seed rows, mean ± std, the paired difference and its power per metric, as printable text.

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
        else:
            mde = 100 * stats.minimum_detectable_difference(diff["std"], diff["n"])
            power = (f"paired sd {100 * diff['std']:.1f} points: {diff['n']} seeds detect {mde:.1f} points at "
                     f"80% power")
            if stats.includes_zero(diff):
                verdict = f"the interval includes 0 ({power})"
            else:
                verdict = f"the interval excludes 0: OHEM is {'better' if diff['low'] > 0 else 'worse'} ({power})"
        lines.append(f"{label:11s} baseline {base['mean']:.3f} ± {base['std']:.3f}   OHEM {ohem['mean']:.3f} ± "
                     f"{ohem['std']:.3f}   OHEM - baseline {stats.format_difference(diff)} points "
                     f"(95% t-interval over {diff['n']} paired seeds); OHEM won {diff['wins']}/{diff['n']} seeds; "
                     f"{verdict}.")
    return "\n".join(lines), diffs


############################################################
#  What the figure shows, on one validation image
############################################################


def figure_data(runs: Sequence[dict], budget: Any, val_dir: Path, model: Any = None) -> dict[str, Any]:
    """Detections of both arms (seed 0) and the anchors each sampler trains on, for one validation image.

    The image is the first with the most distractors. OHEM's pick uses the trained OHEM model's
    RPN objectness (inference output ``rpn_class``) and the patched targets' labels. ``model``:
    the inference ``MaskRCNN`` the runs were evaluated with (built and traced already; the
    variants differ in losses, not in the inference graph), or None to build one here.

    Returns:
        ``{"image", "gt", "gt_class_ids", "distractors", "class_names", "detections": {variant:
        {"rois", "class_ids", "scores"}}, "anchors", "random_match", "ohem_match", "ohem_kept",
        "categories"}`` (boxes in pixels, ``(y1, x1, y2, x2)``).
    """
    import mrcnn_ohem
    from mrcnn_ohem._compat import import_tf_keras
    from mrcnn_ohem.datasets.coco import CocoDataset
    from mrcnn_ohem.maskrcnn import model as modellib

    if model is None:
        import_tf_keras().backend.clear_session()
    dataset = CocoDataset()
    dataset.load_coco(str(val_dir), "val")
    dataset.prepare()
    image_id = max(dataset.image_ids,
                   key=lambda i: (len(validation_scene(budget, dataset.image_info[i]["id"]).distractors), -i))
    config = make_config("ohem", budget, dataset.num_classes, "inference")
    seed0 = {r["variant"]: r for r in runs if r.get("status") == "ok" and r["seed"] == min(x["seed"] for x in runs)}
    if model is None:
        model = modellib.MaskRCNN("inference", config, model_dir=str(val_dir))
    image, _, class_ids, boxes, _ = modellib.load_image_gt(dataset, config, image_id)
    detections = {}
    for variant in VARIANTS:
        model.load_weights(seed0[variant]["checkpoint"], by_name=True)
        out = model.detect([image])[0]
        detections[variant] = {k: out[k] for k in ("rois", "class_ids", "scores")}
    # the OHEM model is loaded last: its RPN ranks the anchors
    molded, metas, _ = model.mold_inputs([image])
    rpn_class = model.keras_model.predict([molded, metas, model.get_anchors(molded[0].shape)[None]], verbose=0)[5]
    anchors = model.anchors  # pixels, set by get_anchors
    np.random.seed(0)  # Matterport's random 256 draws from NumPy's global generator
    random_match, _ = modellib.build_rpn_targets(image.shape, anchors, class_ids, boxes, config)
    ohem_match, _ = mrcnn_ohem.make_build_rpn_targets(config)(image.shape, anchors, class_ids, boxes, config)
    losses = mining.rpn_losses(np.log(np.clip(rpn_class, 1e-7, 1.0)), ohem_match[None])  # log-probs rank as logits
    kept = mining.kept_mask(ohem_match[None], losses, mining.selection_rule(config))[0]
    gt, distractors = scene_boxes(validation_scene(budget, dataset.image_info[image_id]["id"]))
    return {"image": image, "gt": boxes, "gt_class_ids": class_ids, "distractors": distractors,
            "class_names": [c["name"] for c in dataset.class_info], "detections": detections, "anchors": anchors,
            "random_match": random_match, "ohem_match": ohem_match, "ohem_kept": kept,
            "categories": mining.negative_categories(anchors, gt, distractors)}


############################################################
#  Plot
############################################################

#: Colours of the negative-anchor categories (:data:`benchmarks.quality.mining.CATEGORIES`).
CATEGORY_COLORS = {"distractor": "orangered", "near_object": "magenta", "background": "deepskyblue"}


def _image_axes(ax: Any, image: np.ndarray, title: str) -> None:
    ax.imshow(image)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x (pixels)", fontsize=8)
    ax.set_ylabel("y (pixels)", fontsize=8)
    ax.tick_params(labelsize=7)


def _box(ax: Any, box: Sequence[float], color: str, style: str = "-", width: float = 1.4) -> None:
    from matplotlib.patches import Rectangle

    y1, x1, y2, x2 = box
    ax.add_patch(Rectangle((x1 - 0.5, y1 - 0.5), x2 - x1, y2 - y1, fill=False, ec=color, ls=style, lw=width))


def _draw_truth_and_distractors(ax: Any, data: dict[str, Any], labels: bool = True) -> None:
    for box, class_id in zip(data["gt"], data["gt_class_ids"]):
        _box(ax, box, "lime")
        if labels:
            ax.text(box[1], box[0] + 1, data["class_names"][class_id], color="lime", fontsize=7, va="top",
                    bbox={"facecolor": "black", "alpha": 0.6, "pad": 0.5, "lw": 0})
    for box in data["distractors"]:
        _box(ax, box, "yellow", "--", 1.0)


def _draw_detections(ax: Any, data: dict[str, Any], variant: str) -> None:
    det = data["detections"][variant]
    confident = det["scores"] >= DRAW_SCORE
    _image_axes(ax, data["image"], f"{variant}: {int(confident.sum())} detections with score >= {DRAW_SCORE}\n"
                f"(white; green: ground truth, yellow dashed: distractors)")
    _draw_truth_and_distractors(ax, data, labels=False)
    for box, class_id, score in zip(det["rois"][confident], det["class_ids"][confident], det["scores"][confident]):
        _box(ax, box, "white", "-", 1.1)
        ax.text(box[1], box[2] + 1, f"{data['class_names'][class_id]} {score:.2f}", color="white", fontsize=6,
                va="top", bbox={"facecolor": "black", "alpha": 0.5, "pad": 0.5, "lw": 0})


def _draw_negatives(ax: Any, data: dict[str, Any], mask: np.ndarray, match: np.ndarray, title: str) -> None:
    """Centres of the negative anchors a sampler keeps, coloured by where they lie."""
    negatives = mask & (match == -1)
    counts = {name: int((negatives & (data["categories"] == i)).sum()) for i, name in enumerate(mining.CATEGORIES)}
    positives = int((mask & (match == 1)).sum())
    _image_axes(ax, data["image"], f"{title}\n{positives} positives, {int(negatives.sum())} negatives: "
                f"{counts['distractor']} on distractors, {counts['near_object']} near objects, "
                f"{counts['background']} background")
    _draw_truth_and_distractors(ax, data, labels=False)
    anchors = data["anchors"]
    for i, name in enumerate(mining.CATEGORIES):
        chosen = anchors[negatives & (data["categories"] == i)]
        ax.scatter((chosen[:, 1] + chosen[:, 3]) / 2, (chosen[:, 0] + chosen[:, 2]) / 2, s=9, c=CATEGORY_COLORS[name],
                   edgecolors="black", linewidths=0.3, label=f"negative anchor centre: {name.replace('_', ' ')}")
    ax.set_xlim(-0.5, data["image"].shape[1] - 0.5)
    ax.set_ylim(data["image"].shape[0] - 0.5, -0.5)


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    window = max(1, min(window, len(values)))
    return np.convolve(values, np.ones(window) / window, mode="valid")


def _kept_panel(ax: Any, runs: Sequence[dict]) -> None:
    """Anchors OHEM kept per image and step (counts only), one line per seed."""
    ohem = [r for r in runs if r["variant"] == "ohem" and r.get("status") == "ok" and r.get("history")]
    for key, color in zip(SELECTION_KEYS, ("tab:green", "tab:red")):
        for r in ohem:
            values = np.array([row.get(key, np.nan) for row in r["history"]], dtype=float)
            window = max(1, len(values) // 10)
            ax.plot(np.arange(window, len(values) + 1), _smooth(values, window), color=color, alpha=0.8,
                    label=f"{key.replace('ohem_rpn_kept_', 'kept ')}" if r is ohem[0] else None)
    ax.set_yscale("symlog", linthresh=10)
    ax.set_title("OHEM: anchors kept per image and step\n(training log, one line per seed)", fontsize=9)
    ax.set_xlabel("fine-tuning step", fontsize=8)
    ax.set_ylabel("anchors per image (symlog scale)", fontsize=8)
    ax.tick_params(labelsize=7)
    if ohem:
        ax.legend(fontsize=7)


def _difference_panel(ax: Any, diff: dict[str, float], label: str) -> None:
    mean = 100 * diff["mean"]
    ax.axvline(0, color="k", lw=0.8)
    if diff["n"] >= 2:
        ax.errorbar([mean], [0], xerr=[[mean - 100 * diff["low"]], [100 * diff["high"] - mean]], fmt="o", capsize=4)
    else:
        ax.plot([mean], [0], "o")
    ax.set_yticks([])
    ax.set_title(label, fontsize=9)
    ax.set_xlabel("OHEM - baseline (points)", fontsize=8)
    ax.tick_params(labelsize=7)


def plot(runs: Sequence[dict], diffs: dict[str, dict], data: dict[str, Any] | None, path: Path) -> None:
    """The demo figure (see the module docstring)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(15, 12.5))
    grid = fig.add_gridspec(3, 12, height_ratios=[1, 1, 0.35])
    top = [fig.add_subplot(grid[0, i * 4:(i + 1) * 4]) for i in range(3)]
    middle = [fig.add_subplot(grid[1, i * 4:(i + 1) * 4]) for i in range(3)]
    if data is not None:
        _image_axes(top[0], data["image"], "validation image: ground truth (green)\nand distractors (yellow dashed)")
        _draw_truth_and_distractors(top[0], data)
        for ax, variant in zip(top[1:], VARIANTS):
            _draw_detections(ax, data, variant)
        _draw_negatives(middle[0], data, data["random_match"] != 0, data["random_match"],
                        "Matterport: the random 256 it trains on")
        _draw_negatives(middle[1], data, data["ohem_kept"], data["ohem_match"],
                        "OHEM: the hardest 256 by the fine-tuned RPN's loss")
        middle[1].legend(fontsize=6, loc="lower left", framealpha=0.7)
    else:
        for ax in top + middle[:2]:
            ax.axis("off")
    _kept_panel(middle[2], runs)
    for i, (key, label) in enumerate(ROWS):
        _difference_panel(fig.add_subplot(grid[2, i * 3:(i + 1) * 3]), diffs[key],
                          f"Δ {label}: mean, 95% t-interval")
    seeds = len({r["seed"] for r in runs})
    fig.suptitle(f"Baseline vs OHEM, both fine-tuned from the same detector, {seeds} paired seeds (detections and "
                 "anchors: seed 0)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


############################################################
#  Main
############################################################


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
    key = pretrain.checkpoint_key()
    checkpoint = pretrain.find_checkpoint(key)
    earlier = pretrain.find_earlier_checkpoint() if checkpoint is None else None
    if earlier is not None:
        checkpoint, made_by = earlier
        print(f"Starting from {checkpoint.name}: the same settings, seeds and TensorFlow, trained by earlier model "
              f"code (key {made_by}; this code's key is {key}). Its weights fit by name; "
              f"`{sys.executable} -m benchmarks.quality.pretrain` rebuilds it for this code.\n")
    if checkpoint is None and args.smoke:
        logger.warning("no pretrained checkpoint for key %s: the smoke run starts from random weights", key)
    elif checkpoint is None:
        print(f"No pretrained checkpoint for this code and these settings (key {key}; the shipped one was made by "
              f"other code). Rebuild it first (25 to 50 minutes on 2 cores), then run the demo again:\n\n"
              f"    {sys.executable} -m benchmarks.quality.pretrain\n", file=sys.stderr)
        return 2
    logger.info("fine-tuning both arms from %s", checkpoint)
    extra = {"val_dir": str(Path(args.output) / "val")}
    if checkpoint is not None:
        extra["init"] = str(checkpoint)
    output = Path(args.output)
    val_dir = output / "val"
    write_coco_folder(val_dir, "val", budget.val_images, budget.image_size, budget.image_size, budget.val_seed,
                      max_targets=budget.max_targets, max_distractors=budget.max_distractors)
    shared: dict[str, dict] = {}  # the runs' models, kept for the figure
    try:
        with graph_optimizations_off(args.smoke), op_determinism():
            runs = run_suite("shapes", VARIANTS, range(args.seeds), budget, output / "runs", timeout=0,
                             extra=extra, in_process=True, report=logger.info, shared=shared)
    except KeyboardInterrupt:
        logger.warning("Interrupted.")
        return 130
    text, diffs = comparison(runs)
    start = checkpoint.name if checkpoint else "random weights (smoke run)"
    print(f"\nBaseline vs OHEM, both fine-tuned from {start} on synthetic shapes with look-alike "
          f"distractors: {report.budget_line(budget)}; seeds {list(range(args.seeds))} (same seed = same training "
          "images and order for both)\n")
    print(text)
    results = [{k: v for k, v in r.items() if k != "history"} for r in runs]
    (output / "results.json").write_text(json.dumps({"budget": asdict(budget), "checkpoint": str(checkpoint),
                                                    "runs": results, "differences": diffs}, indent=1, default=str))
    (output / "table.txt").write_text(text + "\n")
    if not args.no_plot:
        finished = {r["variant"] for r in runs if r.get("status") == "ok" and r["seed"] == 0}
        inference = next(iter(shared.get("inference", {}).values()), None)
        shared.clear()  # the training models are done with
        data = figure_data(runs, budget, val_dir, inference) if finished == set(VARIANTS) else None
        plot(runs, diffs, data, output / "demo.png")
        print(f"\nplot: {output / 'demo.png'}")
    print(f"results: {output / 'results.json'}  (total {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
