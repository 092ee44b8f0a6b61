"""Training-step time of the bundled Mask R-CNN with and without the OHEM patch.

Each variant runs in its own Python process (same code, same synthetic batches, same seed),
so neither inherits the other's traced graphs, caches or memory:

- ``plain``: the bundled model as shipped (Matterport's loss and random 256-anchor targets);
- ``ohem``: ``mrcnn_ohem.patch(config, module=mrcnn_ohem.maskrcnn.model)`` applied before the
  model and the data generator are built (OHEM loss in the graph, every negative kept).
- ``ohem_roi``: the patch with ``OHEM_RPN = False`` and ``OHEM_ROI = True``: the heads see a
  pool of ``--roi-pool`` RoIs per image instead of ``--rois`` and the class loss keeps the
  hardest ``--rois`` (the RPN is Matterport's);
- ``focal``: the patch with ``OHEM_RPN_LOSS = "focal"`` (focal loss over every anchor, every
  negative kept).

Per variant it reports the median of ``keras_model.train_on_batch`` over pre-built batches
(the graph: backbone, heads, losses, backward, SGD) after a few warm-up steps, and the median
time the data generator takes to build one batch (where the OHEM targets are computed).
Default: 256x256 images, ResNet-50, batch 2, layers "heads" (the cheapest step, so the one
where a fixed OHEM cost weighs most).

Run from the repo root: ``python -m benchmarks.train_step [--variants plain ohem_roi] [--write]``.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("plain", "ohem", "ohem_roi", "focal")
logger = logging.getLogger("benchmarks.train_step")


def _make_config(args: argparse.Namespace):
    import mrcnn_ohem

    class BenchConfig(mrcnn_ohem.OHEMConfig):
        NAME = "bench"
        BACKBONE = args.backbone
        NUM_CLASSES = 3
        IMAGES_PER_GPU = args.batch
        IMAGE_MIN_DIM = args.size
        IMAGE_MAX_DIM = args.size
        # CPU-sized heads (Matterport: 200 ROIs of 2000 proposals): the step gets cheaper, so
        # a fixed OHEM cost shows up larger, not smaller.
        TRAIN_ROIS_PER_IMAGE = args.rois
        POST_NMS_ROIS_TRAINING = 1000
        STEPS_PER_EPOCH = 1
        VALIDATION_STEPS = 1
        OHEM_RPN = args.child in ("ohem", "focal")
        OHEM_RPN_LOSS = "focal" if args.child == "focal" else "ohem"
        OHEM_ROI = args.child == "ohem_roi"
        OHEM_ROI_POOL = max(args.roi_pool, args.rois)
        MASK_HEAD_FILTERS = args.mask_filters

    return BenchConfig()


def _make_dataset(count: int, size: int):
    import numpy as np

    from mrcnn_ohem.maskrcnn.utils import Dataset

    class Shapes(Dataset):
        def load_mask(self, image_id):
            info = self.image_info[image_id]
            yy, xx = np.mgrid[:size, :size]
            masks = [(yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2 if kind == 2
                     else (abs(yy - cy) <= r) & (abs(xx - cx) <= r)
                     for kind, cy, cx, r in info["shapes"]]
            ids = np.array([s[0] for s in info["shapes"]], np.int32)
            return np.stack(masks, -1), ids

        def load_image(self, image_id):
            mask, ids = self.load_mask(image_id)
            image = np.full((size, size, 3), 40, np.uint8)
            for k, class_id in enumerate(ids):
                image[mask[:, :, k]] = (200, 80, 40) if class_id == 1 else (40, 190, 90)
            return image

    rng = np.random.default_rng(0)
    dataset = Shapes()
    dataset.add_class("shapes", 1, "square")
    dataset.add_class("shapes", 2, "disc")
    for i in range(count):
        shapes = []
        for _ in range(rng.integers(1, 5)):
            kind = int(rng.integers(1, 3))
            cy, cx = (int(v) for v in rng.integers(size // 8, size - size // 8, 2))
            shapes.append((kind, cy, cx, int(rng.integers(size // 16, size // 6))))
        dataset.add_image("shapes", image_id=i, path=None, shapes=shapes)
    dataset.prepare()
    return dataset


def run_variant(args: argparse.Namespace) -> dict:
    """Time one variant in this process; returns the raw step and batch times (seconds)."""
    import numpy as np
    import tensorflow as tf

    import mrcnn_ohem
    from mrcnn_ohem.maskrcnn import model as modellib

    np.random.seed(0)
    tf.random.set_seed(0)
    config = _make_config(args)
    handle = mrcnn_ohem.patch(config, module=modellib) if args.child != "plain" else None
    dataset = _make_dataset(8, args.size)
    generator = modellib.DataGenerator(dataset, config, shuffle=False, seed=0)
    batch_times, batches = [], []
    for i in range(len(generator)):
        start = time.perf_counter()
        batches.append(generator[i][0])
        batch_times.append(time.perf_counter() - start)
    negatives = int(np.sum(batches[0][2] == -1))
    model = modellib.MaskRCNN("training", config, str(REPO / "benchmarks" / ".logs"))
    model.set_trainable(modellib.LAYER_PRESETS[args.layers], verbose=0)
    model.compile(config.LEARNING_RATE, config.LEARNING_MOMENTUM)
    step_times = []
    for step in range(args.warmup + args.steps):
        inputs = batches[step % len(batches)]
        start = time.perf_counter()
        model.keras_model.train_on_batch(inputs)
        if step >= args.warmup:
            step_times.append(time.perf_counter() - start)
    if handle is not None:
        handle.restore()
    return {"variant": args.child, "step_times": step_times, "batch_times": batch_times,
            "negatives_per_batch": negatives}


def _spawn(variant: str, argv: list[str]) -> dict:
    command = [sys.executable, "-m", "benchmarks.train_step", "--child", variant, *argv]
    logger.info("running %s", " ".join(command[1:]))
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"benchmark child {variant!r} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def render(args: argparse.Namespace, results: dict[str, list[dict]]) -> str:
    """The markdown section: settings, command, and one row per variant."""
    def median_ms(key, variant):
        return 1000 * statistics.median(t for r in results[variant] for t in r[key])

    plain_step = median_ms("step_times", "plain")
    lines = [
        "## Training step of the bundled Mask R-CNN, with and without the OHEM patch",
        "",
        f"Machine: {_machine()}",
        f"Load average (1, 5, 15 min) before / after: {results['load'][0]} / {results['load'][1]}",
        f"Command: `{_command()}`",
        "",
        f"Config: {args.size}x{args.size} images, {args.backbone}, batch {args.batch}, layers "
        f"\"{args.layers}\", TRAIN_ROIS_PER_IMAGE {args.rois} of 1000 proposals, "
        f"{args.warmup} warm-up + {args.steps} timed `train_on_batch` steps per run, "
        f"{args.rounds} run(s) per variant, each in its own process, alternating; ohem_roi: a pool "
        f"of {max(args.roi_pool, args.rois)} RoIs per image, class loss on the hardest {args.rois}; "
        f"mask head {args.mask_filters} filters.",
        "",
        "| variant | median step (ms) | vs plain | median data batch (ms) | negatives in batch |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for variant in (v for v in VARIANTS if results.get(v)):
        step = median_ms("step_times", variant)
        lines.append(
            f"| {variant} | {step:.0f} | {100 * (step / plain_step - 1):+.1f}% | "
            f"{median_ms('batch_times', variant):.0f} | "
            f"{results[variant][0]['negatives_per_batch']} |")
    lines += ["", "Step = graph only (forward, five losses, backward, SGD) on pre-built batches; "
              "data batch = `DataGenerator[i]` (image loading, resizing, RPN targets), which "
              "Keras overlaps with the step in worker threads during `train()`."]
    return "\n".join(lines)


def _load_average() -> str:
    """The 1, 5 and 15 minute load averages (the machine may be shared)."""
    try:
        return ", ".join(f"{v:.1f}" for v in os.getloadavg())
    except OSError:
        return "unknown"


def _machine() -> str:
    from benchmarks._results import machine_line

    return machine_line()


def _command() -> str:
    from benchmarks._results import command_line

    return command_line()


def main(argv: list[str] | None = None) -> int:
    from mrcnn_ohem._compat import quiet_tensorflow

    quiet_tensorflow()  # before TensorFlow is imported (here and in the child processes)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--layers", default="heads", choices=["heads", "3+", "4+", "5+", "all"])
    parser.add_argument("--rois", type=int, default=64, help="TRAIN_ROIS_PER_IMAGE")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--rounds", type=int, default=1, help="runs per variant")
    parser.add_argument("--roi-pool", type=int, default=512, help="OHEM_ROI_POOL of the ohem_roi variant")
    parser.add_argument("--mask-filters", type=int, default=256,
                        help="MASK_HEAD_FILTERS (Matterport's 256; the runner uses 64 on the CPU backbones)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                        help="variants to time (plain is always included: the others are relative to it)")
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    parser.add_argument("--child", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(run_variant(args)))
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    passthrough = [f"--size={args.size}", f"--backbone={args.backbone}", f"--batch={args.batch}",
                   f"--layers={args.layers}", f"--rois={args.rois}", f"--warmup={args.warmup}",
                   f"--steps={args.steps}", f"--roi-pool={args.roi_pool}", f"--mask-filters={args.mask_filters}"]
    variants = [v for v in VARIANTS if v == "plain" or v in args.variants]
    results: dict[str, list] = {v: [] for v in variants}
    load_before = _load_average()
    for round_index in range(args.rounds):
        order = variants if round_index % 2 == 0 else variants[::-1]
        for variant in order:
            results[variant].append(_spawn(variant, passthrough))
    results["load"] = [load_before, _load_average()]
    text = render(args, results)
    print(text)
    if args.write:
        from benchmarks._results import write_section

        write_section("train_step", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
