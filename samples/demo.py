"""``make demo``: baseline vs OHEM Mask R-CNN on generated shapes, same seed, same budget.

Steps (CPU-sized: 2 x 800 steps of two 128-px images; 8 minutes measured on two shared cores):

1. write the synthetic COCO-format dataset (target shapes among look-alike distractors, see
   :mod:`mrcnn_ohem.datasets.shapes`) to ``demo_output/data``;
2. train a baseline model and an OHEM model (``mrcnn_ohem.patch``) from the same random
   initialisation and data order, with the same number of steps;
3. evaluate both on the validation images with COCOeval (bbox and segm AP, RPN AR@100);
4. print one comparison table and save ``demo_output/demo.png`` (loss curves and AP bars) and
   ``demo_output/results.json``.

The circulated OHEM snippet's defects are shown by ``samples/snippet_defects.py``, which
``make demo`` runs first. A short budget on a small backbone measures the mechanics; it is not a
verdict on OHEM at scale -- rerun with more ``--epochs`` for firmer numbers.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mrcnn_ohem._compat import quiet_tensorflow

quiet_tensorflow()  # before TensorFlow is imported; -v or your own TF_CPP_MIN_LOG_LEVEL shows its C++ log lines

from mrcnn_ohem.datasets.coco_eval import format_table  # noqa: E402
from mrcnn_ohem.datasets.shapes import ensure_coco_folder  # noqa: E402
from mrcnn_ohem.runner import cli, train_eval  # noqa: E402

logger = logging.getLogger("demo")
RUNS = (("baseline", "--no-ohem"), ("ohem", "--ohem"))


def build_parser() -> argparse.ArgumentParser:
    """The demo's options; the defaults are the ``make demo`` budget."""
    parser = argparse.ArgumentParser(prog="demo.py", description=__doc__.split("\n")[0])
    parser.add_argument("--output", default="demo_output", help="folder for data, logs, table and plot")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--train-images", type=int, default=200)
    parser.add_argument("--val-images", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--steps-per-epoch", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--learning-rate", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="a tiny run that only checks the plumbing")
    parser.add_argument("--no-plot", action="store_true")
    return parser


def _train_eval_args(args: argparse.Namespace, data: Path, logs: Path, label: str, flag: str,
                     command: str, extra: Sequence[str] = ()) -> argparse.Namespace:
    parser = cli.build_parser("demo", "demo", prefix="demo", image_size=args.image_size,
                                     backbone="compact", dataset=str(data), anchor_fraction=0.25)
    return parser.parse_args([
        command, "--logs", str(logs), "--name", f"demo_{label}", flag,
        "--epochs", str(args.epochs), "--steps-per-epoch", str(args.steps_per_epoch),
        "--learning-rate", str(args.learning_rate), "--seed", str(args.seed),
        "--batch-size", str(args.batch_size),
        *extra,
    ])


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Generate, train both models, evaluate; return ``{label: metrics + training summary}``."""
    from mrcnn_ohem._compat import import_tf_keras

    keras = import_tf_keras()
    output = Path(args.output)
    data, logs = output / "data", output / "logs"
    subsets = (("train", args.train_images, 2 * args.seed), ("val", args.val_images, 2 * args.seed + 1))
    for subset, count, seed in subsets:
        ensure_coco_folder(data, subset, count, args.image_size, seed)
    runs: dict[str, Any] = {}
    for label, flag in RUNS:
        keras.backend.clear_session()
        started = time.perf_counter()
        summary = train_eval.train(_train_eval_args(args, data, logs, label, flag, "train"))
        keras.backend.clear_session()
        metrics = train_eval.evaluate(_train_eval_args(
            args, data, logs, label, flag, "evaluate", ["--model", summary["checkpoint"]]))
        metrics.update(seconds_per_step=summary["seconds_per_step"], history=summary["history"],
                       wall_seconds=time.perf_counter() - started)
        runs[label] = metrics
        logger.info("%s done in %.0f s", label, metrics["wall_seconds"])
    return runs


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    window = max(1, min(window, len(values)))
    return np.convolve(values, np.ones(window) / window, mode="valid")


def plot(runs: dict[str, Any], path: Path) -> None:
    """Loss curves (moving average) and AP bars, saved as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    heads = ("mrcnn_class_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss")
    for label, metrics in runs.items():
        history = metrics["history"]
        window = max(1, len(history) // 20)
        curves = (
            np.array([sum(row.get(k, np.nan) for k in heads) for row in history], dtype=float),
            np.array([row.get("rpn_class_loss", np.nan) for row in history], dtype=float),
        )
        for ax, values in zip(axes[:2], curves):
            if values.size:
                ax.plot(np.arange(window, len(values) + 1), _smooth(values, window), label=label)
    # The heads' losses are computed alike in both runs; the RPN objectness loss is not: OHEM
    # averages it over the hardest anchors only, so its level is higher by construction.
    axes[0].set_title("detection-head losses, class+bbox+mask (moving avg)")
    axes[1].set_title("RPN objectness loss (OHEM: hardest anchors only)")
    for ax in axes[:2]:
        ax.set_xlabel("step")
        ax.legend()
    names = [("bbox", "AP"), ("bbox", "AP50"), ("segm", "AP"), ("rpn", "AR@100")]
    x = np.arange(len(names))
    width = 0.8 / max(len(runs), 1)
    for i, (label, metrics) in enumerate(runs.items()):
        heights = [max(metrics.get(kind, {}).get(name, 0.0), 0.0) for kind, name in names]
        axes[2].bar(x + i * width, heights, width, label=label)
    axes[2].set_xticks(x + width * (len(runs) - 1) / 2, [f"{k} {n}" for k, n in names])
    axes[2].set_title("validation (COCOeval)")
    axes[2].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; print the table; return the exit code."""
    args = build_parser().parse_args(argv)
    if args.smoke:
        args.image_size, args.train_images, args.val_images = 64, 4, 3
        args.epochs, args.steps_per_epoch, args.batch_size = 1, 2, 1
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    started = time.perf_counter()
    try:
        runs = run(args)
    except KeyboardInterrupt:
        logger.warning("Interrupted.")
        return 130
    output = Path(args.output)
    table = format_table(runs, extra=["seconds_per_step"])
    print(f"\nBaseline vs OHEM: {args.image_size}px shapes, compact backbone, {args.epochs} x "
          f"{args.steps_per_epoch} steps of {args.batch_size} image(s) each, seed {args.seed}, "
          f"{args.val_images} validation images\n")
    print(table)
    print("\nOne seed and a small budget: read the differences as indicative, not significant.")
    results = {label: {k: v for k, v in m.items() if k != "history"} for label, m in runs.items()}
    (output / "results.json").write_text(json.dumps({"settings": vars(args), "runs": results}, indent=1))
    (output / "table.txt").write_text(table + "\n")
    if not args.no_plot:
        plot(runs, output / "demo.png")
        print(f"\nplot: {output / 'demo.png'}")
    print(f"results: {output / 'results.json'}  (total {time.perf_counter() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
