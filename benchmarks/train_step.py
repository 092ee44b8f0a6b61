"""Training-step time of the bundled Mask R-CNN with and without the OHEM patch.

The variants are built in one process (same synthetic images, same seed) and timed
interleaved step by step: every round runs ``--steps`` steps of each variant, one step of each
in turn, the order rotating each step, over ``--rounds`` rounds, so drift in machine speed
reaches every variant alike. The section reports the median over all timed steps, the spread of
the per-round medians, the median ratio of paired steps (a variant's step next to plain's), and
the load average before and after:

- ``plain``: the bundled model as shipped (Matterport's loss and random 256-anchor targets);
- ``ohem``: ``mrcnn_ohem.patch(config, module=mrcnn_ohem.maskrcnn.model)`` applied before the
  model and the data generator are built (OHEM loss in the graph, every negative kept);
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
import logging
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VARIANTS = ("plain", "ohem", "ohem_roi", "focal")
logger = logging.getLogger("benchmarks.train_step")


def _make_config(args: argparse.Namespace, variant: str = "ohem"):
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
        OHEM_RPN = variant in ("ohem", "focal")
        OHEM_RPN_LOSS = "focal" if variant == "focal" else "ohem"
        OHEM_ROI = variant == "ohem_roi"
        OHEM_ROI_POOL = max(args.roi_pool, args.rois)
        MASK_HEAD_FILTERS = args.mask_filters
        STEPS_PER_EPOCH = 1
        VALIDATION_STEPS = 1

    if getattr(args, "cpu_heads", False):  # the runner's CPU-sized heads (those of the demo), keeping --rois
        from mrcnn_ohem.runner.train_eval import CPU_SETTINGS

        for name, value in CPU_SETTINGS.items():
            if name != "TRAIN_ROIS_PER_IMAGE":
                setattr(BenchConfig, name, value)
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


def build_variant(variant: str, args: argparse.Namespace) -> dict:
    """Build one variant's model and batches; the OHEM patch is restored before returning."""
    import numpy as np
    import tensorflow as tf

    import mrcnn_ohem
    from mrcnn_ohem.maskrcnn import model as modellib

    np.random.seed(0)
    tf.random.set_seed(0)
    config = _make_config(args, variant)
    handle = mrcnn_ohem.patch(config, module=modellib) if variant != "plain" else None
    try:
        dataset = _make_dataset(8, args.size)
        generator = modellib.DataGenerator(dataset, config, shuffle=False, seed=0,
                                           build_rpn_targets=modellib.build_rpn_targets)
        batch_times, batches = [], []
        for i in range(len(generator)):
            start = time.perf_counter()
            batches.append(generator[i][0])
            batch_times.append(time.perf_counter() - start)
        model = modellib.MaskRCNN("training", config, str(REPO / "benchmarks" / ".logs"))
        model.set_trainable(modellib.LAYER_PRESETS[args.layers], verbose=0)
        model.compile(config.LEARNING_RATE, config.LEARNING_MOMENTUM)
    finally:
        if handle is not None:
            handle.restore()
    negatives = int(np.sum(batches[0][2] == -1))
    return {"model": model, "batches": batches, "batch_times": batch_times,
            "negatives_per_batch": negatives, "next": 0}


def _steps(built: dict, count: int) -> list[float]:
    """Run ``count`` ``train_on_batch`` steps of one variant; seconds per step."""
    times = []
    for _ in range(count):
        inputs = built["batches"][built["next"] % len(built["batches"])]
        built["next"] += 1
        start = time.perf_counter()
        built["model"].keras_model.train_on_batch(inputs)
        times.append(time.perf_counter() - start)
    return times


def run(args: argparse.Namespace) -> dict[str, dict]:
    """Build the variants, warm them up, then time them interleaved over ``args.rounds``."""
    variants = selected(args)
    built = {variant: build_variant(variant, args) for variant in variants}
    for variant in variants:
        _steps(built[variant], args.warmup)
    results = {v: {"rounds": [], "batch_times": built[v]["batch_times"],
                   "negatives_per_batch": built[v]["negatives_per_batch"]} for v in variants}
    for round_index in range(args.rounds):
        for variant in variants:
            results[variant]["rounds"].append([])
        # Step by step, the order rotating each step: a variant's step j sits next to every
        # other variant's step j in time, so drift in machine speed reaches them alike.
        for step in range(args.steps):
            shift = (round_index * args.steps + step) % len(variants)
            for variant in variants[shift:] + variants[:shift]:
                results[variant]["rounds"][-1].extend(_steps(built[variant], 1))
        logger.info("round %d: %s", round_index + 1, ", ".join(
            f"{v} {1000 * statistics.median(results[v]['rounds'][-1]):.0f} ms" for v in variants))
    return results


def selected(args: argparse.Namespace) -> list[str]:
    """The variants to time, in :data:`VARIANTS` order; ``plain`` always (the reference)."""
    return [v for v in VARIANTS if v == "plain" or v in args.variants]


def render(args: argparse.Namespace, results: dict[str, dict], loads: list[str]) -> str:
    """The markdown section: settings, command, load average, and one row per variant."""
    def all_steps(variant):
        return [t for r in results[variant]["rounds"] for t in r]

    plain = statistics.median(all_steps("plain"))
    plain_rounds = [statistics.median(r) for r in results["plain"]["rounds"]]
    lines = [
        "## Training step of the bundled Mask R-CNN, with and without the OHEM patch"
        + (" (CPU-sized heads)" if getattr(args, "cpu_heads", False) else ""),
        "",
        f"Machine: {_machine()}; 1/5/15-minute load average {loads[0]} before, {loads[1]} after "
        "(the value after includes this benchmark's own threads)"
        f"{SHARED_NOTE if _loaded(loads) else ''}.",
        f"Command: `{_command()}`",
        "",
        f"Config: {args.size}x{args.size} images, {args.backbone}, batch {args.batch}, layers "
        f"\"{args.layers}\", TRAIN_ROIS_PER_IMAGE {args.rois} of {_proposals(args)} proposals, mask head "
        f"{args.mask_filters} filters{_heads_note(args)}; ohem_roi: a pool of {max(args.roi_pool, args.rois)} RoIs per "
        f"image, class loss on the hardest {args.rois}; all variants built in one process, "
        f"{args.warmup} warm-up steps each, then {args.rounds} rounds of "
        f"{args.steps} timed `train_on_batch` steps per variant, interleaved step by step (order "
        "rotating each step).",
        "",
        "| variant | median step (ms) | per-round medians (ms) | vs plain | per-round vs plain | "
        "median data batch (ms) | negatives in batch |",
        "| --- | ---: | --- | ---: | --- | ---: | ---: |",
    ]
    for variant in results:
        step = statistics.median(all_steps(variant))
        rounds = [statistics.median(r) for r in results[variant]["rounds"]]
        relative = [100 * (r / p - 1) for r, p in zip(rounds, plain_rounds)]
        lines.append(
            f"| {variant} | {1000 * step:.0f} | {', '.join(f'{1000 * r:.0f}' for r in rounds)} | "
            f"{100 * (step / plain - 1):+.1f}% | {', '.join(f'{x:+.1f}%' for x in relative)} | "
            f"{1000 * statistics.median(results[variant]['batch_times']):.0f} | "
            f"{results[variant]['negatives_per_batch']} |")
    if "ohem" in results:
        ohem_rel = [100 * (statistics.median(o) / statistics.median(p) - 1)
                    for o, p in zip(results["ohem"]["rounds"], results["plain"]["rounds"])]
        lines += ["", f"OHEM overhead: median {100 * (statistics.median(all_steps('ohem')) / plain - 1):+.1f}%, "
                  f"per-round range {min(ohem_rel):+.1f}% to {max(ohem_rel):+.1f}% (goal < 3%)."]
    paired = [v for v in results if v != "plain"]
    if paired:
        lines += ["", "Paired steps (each variant's step j against plain's step j of the same round, run "
                  "next to it): median ratio - 1 " + ", ".join(
                      f"{v} {paired_overhead(results, v):+.1f}%" for v in paired) + "."]
    lines += ["", "Step = graph only (forward, five losses, backward, SGD) on pre-built batches; "
              "data batch = `DataGenerator[i]` (image loading, resizing, RPN targets), which "
              "Keras overlaps with the step in worker threads during `train()`."]
    return "\n".join(lines)


def _proposals(args: argparse.Namespace) -> int:
    return _make_config(args, "plain").POST_NMS_ROIS_TRAINING


def _heads_note(args: argparse.Namespace) -> str:
    if not getattr(args, "cpu_heads", False):
        return ""
    from mrcnn_ohem.runner.train_eval import CPU_SETTINGS

    return (f", CPU-sized heads (`--cpu-heads`: FPN {CPU_SETTINGS['TOP_DOWN_PYRAMID_SIZE']} channels, "
            f"classifier FC {CPU_SETTINGS['FPN_CLASSIF_FC_LAYERS_SIZE']}, {CPU_SETTINGS['PRE_NMS_LIMIT']} "
            "anchors before NMS)")


def paired_overhead(results: dict[str, dict], variant: str) -> float:
    """Median over the paired steps of ``variant / plain - 1``, in percent."""
    ratios = [v / p for rv, rp in zip(results[variant]["rounds"], results["plain"]["rounds"])
              for v, p in zip(rv, rp)]
    return 100 * (statistics.median(ratios) - 1)


SHARED_NOTE = (" (**shared machine**: other TensorFlow jobs ran during the measurement, so "
               "absolute times are inflated; the interleaving keeps the comparison fair)")


def _loaded(loads: list[str]) -> bool:
    """Whether other jobs used the machine: the 1-minute load before the run is above 1.

    Only the value before counts: the one after includes this benchmark's own threads (about 2
    on 2 cores), so it says nothing about other jobs.
    """
    before = loads[0] if loads else "unknown"
    return before != "unknown" and float(before.split()[0]) > 1.0


def _machine() -> str:
    from benchmarks._results import machine_line

    return machine_line()


def _command() -> str:
    from benchmarks._results import command_line

    return command_line()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--backbone", default="resnet50")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--layers", default="heads", choices=["heads", "3+", "4+", "5+", "all"])
    parser.add_argument("--rois", type=int, default=64, help="TRAIN_ROIS_PER_IMAGE")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=5, help="timed steps per variant per round")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (>= 3 for a spread)")
    parser.add_argument("--roi-pool", type=int, default=512, help="OHEM_ROI_POOL of the ohem_roi variant")
    parser.add_argument("--mask-filters", type=int, default=256,
                        help="MASK_HEAD_FILTERS (256 as Matterport; 64 for CPU-sized heads)")
    parser.add_argument("--cpu-heads", action="store_true",
                        help="the runner's CPU-sized FPN, heads and proposal counts (CPU_SETTINGS of "
                             "mrcnn_ohem.runner.train_eval, as in the demo): a step short enough for many "
                             "steps per round")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=["ohem"],
                        help="variants to time beside plain (default: ohem; the RoI pool and focal are slower "
                             "to build)")
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    from mrcnn_ohem._compat import quiet_tensorflow

    quiet_tensorflow()  # before TensorFlow is imported
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    from benchmarks._results import load_average

    loads = [load_average()]
    results = run(args)
    loads.append(load_average())
    text = render(args, results, loads)
    print(text)
    if args.write:
        from benchmarks._results import write_section

        # CPU-sized heads get their own section beside the Matterport-width one.
        write_section("train_step_cpu" if args.cpu_heads else "train_step", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
