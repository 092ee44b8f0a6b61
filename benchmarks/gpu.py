"""One command that measures a GPU: training step, memory, data path and detect() (issue 30).

``python -m benchmarks.gpu`` (or ``make bench-gpu``) on a machine where TensorFlow sees a CUDA GPU
measures, in one process:

1. the training-step time at Matterport's COCO setting (1024x1024 images, ResNet-101, 2 images per
   GPU, 81 classes, Matterport's RoI and proposal counts, layers "all") for the variants
   ``baseline``, ``ohem``, ``ohem_nms07``, ``focal_rpn`` and ``roi_ohem`` of the quality benchmark
   (:data:`benchmarks.quality.variants.VARIANTS`, which define them), each in float32 and in mixed
   precision (``Config.MIXED_PRECISION``). Every model is built first; then ``--rounds`` rounds of
   ``--steps`` ``train_on_batch`` steps per model run interleaved step by step (the order rotating),
   after ``--warmup`` untimed steps each, as :mod:`benchmarks.train_step` does. Each figure is the
   median over the timed steps; OHEM's cost is the ratio to ``baseline``'s step in the same
   precision and the same run;
2. the GPU memory per model: what its weights and optimizer hold once built, and the peak its step
   allocates above what was in use before it (``tf.config.experimental.get_memory_info``, reset
   with ``reset_memory_stats`` before every step);
3. the data path (:mod:`benchmarks.data_path`'s COCO-like JPEGs, generators and worker timing):
   images/s with 1, 2, 4, ... loader threads, Matterport's targets and OHEM's, and the fewest
   threads that deliver the images/s the measured step consumes;
4. ``detect()`` latency per image (batch 1, float32 and mixed, interleaved).

It writes a markdown report (default ``benchmarks/results/gpu.md``) naming the device it ran on,
the GPU, its driver (``nvidia-smi``) and TensorFlow's build (``tf.sysconfig.get_build_info()``).
Without a GPU it says so and exits with status 2. ``--quick`` runs the same code on the CPU at a
tiny size (64 px, the small "tiny" backbone, bfloat16 as the mixed precision) in a few tens of
seconds; the test suite runs it, so the command cannot rot. Its figures are CPU figures, and the
report says so; its default output is a file in the temporary folder, never ``benchmarks/results``.

The GPU-only code is :func:`gpu_devices`, :func:`memory_in_use` / :func:`reset_peak`,
:func:`device_lines` and the refusal in :func:`main`; everything else is what ``--quick`` runs.
"""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "gpu.md"
#: The variants of :data:`benchmarks.quality.variants.VARIANTS` this benchmark times.
VARIANTS = ("baseline", "ohem", "ohem_nms07", "focal_rpn", "roi_ohem")
#: Exit status when no GPU is visible (and ``--quick`` was not given).
NO_GPU = 2
logger = logging.getLogger("benchmarks.gpu")

#: Matterport's COCO training setting (``samples/coco/coco.py``: 80 classes + background, 2 images
#: per GPU, ResNet-101, 1024 px; every other value the Config default).
FULL = {"BACKBONE": "resnet101", "NUM_CLASSES": 81, "IMAGES_PER_GPU": 2, "IMAGE_MIN_DIM": 800,
        "IMAGE_MAX_DIM": 1024}
#: ``--quick``: a 64 px model with the small CPU backbone and CPU-sized heads.
QUICK = {"BACKBONE": "tiny", "NUM_CLASSES": 3, "IMAGES_PER_GPU": 2, "IMAGE_MIN_DIM": 64, "IMAGE_MAX_DIM": 64,
         "RPN_ANCHOR_SCALES": (8, 16, 32, 64, 128), "RPN_TRAIN_ANCHORS_PER_IMAGE": 32, "TRAIN_ROIS_PER_IMAGE": 16,
         "MAX_GT_INSTANCES": 4, "MINI_MASK_SHAPE": (16, 16), "POST_NMS_ROIS_TRAINING": 64,
         "POST_NMS_ROIS_INFERENCE": 32, "PRE_NMS_LIMIT": 256, "DETECTION_MAX_INSTANCES": 8,
         "FPN_CLASSIF_FC_LAYERS_SIZE": 32, "TOP_DOWN_PYRAMID_SIZE": 32, "MASK_HEAD_FILTERS": 16,
         "RPN_SHARED_FILTERS": 32, "OHEM_ROI_POOL": 40}


# ---------------------------------------------------------------------------- GPU-only helpers


def gpu_devices() -> list:
    """The physical GPUs TensorFlow sees (empty on a CPU-only machine or a CPU-only build)."""
    import tensorflow as tf

    return tf.config.list_physical_devices("GPU")


def memory_in_use(device: str | None) -> dict[str, int] | None:
    """``{"current": bytes, "peak": bytes}`` TensorFlow's allocator holds on ``device`` ("GPU:0"),
    the peak since the last :func:`reset_peak`; None on the CPU, where TensorFlow does not count them."""
    import tensorflow as tf

    return tf.config.experimental.get_memory_info(device) if device else None


def reset_peak(device: str | None) -> None:
    """Start a new peak for :func:`memory_in_use` (nothing on the CPU)."""
    import tensorflow as tf

    if device:
        tf.config.experimental.reset_memory_stats(device)


def device_lines(device: str | None) -> list[str]:
    """The report's lines on the device: the GPU, its driver and TensorFlow's build, or the CPU."""
    import tensorflow as tf

    from benchmarks._results import machine_line

    build = tf.sysconfig.get_build_info()
    build_text = ", ".join(f"{key} {build[key]}" for key in ("is_cuda_build", "cuda_version", "cudnn_version")
                           if key in build)
    lines = [f"Machine: {machine_line()}; TensorFlow build: {build_text or 'no CUDA information'}."]
    if device is None:
        return [f"**Device: CPU** (`--quick`: no GPU was used; the figures are CPU figures). {lines[0]}"]
    details = tf.config.experimental.get_device_details(gpu_devices()[0])
    lines.insert(0, f"**Device: GPU {device}**, {details.get('device_name', 'unknown name')}, compute capability "
                    f"{details.get('compute_capability', 'unknown')}.")
    if shutil.which("nvidia-smi"):
        query = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                               capture_output=True, text=True, check=False)
        lines.append(f"nvidia-smi: {query.stdout.strip() or query.stderr.strip()}.")
    else:
        lines.append("nvidia-smi: not found on PATH (driver version unknown).")
    return lines


# ---------------------------------------------------------------------------- models


def make_config(variant: str, precision: str | None, sizes: dict, mode: str = "training"):
    """The Config of one variant: ``sizes`` (:data:`FULL` or :data:`QUICK`), the variant's ``OHEM_*``
    settings from :data:`benchmarks.quality.variants.VARIANTS`, and ``MIXED_PRECISION``."""
    import mrcnn_ohem
    from benchmarks.quality.variants import VARIANTS as REGISTRY

    spec = REGISTRY[variant]
    reason = spec.skip_reason()
    if reason:
        raise ValueError(f"variant {variant!r} is {reason}")
    settings = {**sizes, **spec.settings, "NAME": f"gpu_{variant}", "MIXED_PRECISION": precision,
                "STEPS_PER_EPOCH": 1, "VALIDATION_STEPS": 1}
    if mode == "inference":
        settings.update(IMAGES_PER_GPU=1, DETECTION_MIN_CONFIDENCE=0.0)
    return type("GPUBenchConfig", (mrcnn_ohem.OHEMConfig,), settings)()


def build_training(variant: str, precision: str | None, sizes: dict, dataset, batches: int,
                   layers: str, device: str | None) -> dict:
    """One variant's training model, compiled, with ``batches`` pre-built batches.

    Returns:
        ``{"model", "batches", "next", "resident"}``: ``resident`` is the memory the built model
        holds (bytes; None on the CPU).
    """
    import numpy as np
    import tensorflow as tf

    import mrcnn_ohem
    from benchmarks.quality.variants import VARIANTS as REGISTRY
    from mrcnn_ohem.maskrcnn import model as modellib

    np.random.seed(0)
    tf.random.set_seed(0)
    config = make_config(variant, precision, sizes)
    before = memory_in_use(device)
    handle = mrcnn_ohem.patch(config, module=modellib) if REGISTRY[variant].ohem else None
    try:
        generator = modellib.DataGenerator(dataset, config, shuffle=False, seed=0,
                                           build_rpn_targets=modellib.build_rpn_targets)
        data = [generator[i % len(generator)][0] for i in range(batches)]
        model = modellib.MaskRCNN("training", config, str(REPO / "benchmarks" / ".logs"))
        model.set_trainable(modellib.LAYER_PRESETS[layers], verbose=0)
        model.compile(config.LEARNING_RATE, config.LEARNING_MOMENTUM)
    finally:
        if handle is not None:
            handle.restore()
    after = memory_in_use(device)
    return {"model": model, "batches": data, "next": 0,
            "resident": after["current"] - before["current"] if after else None}


def timed_step(built: dict, device: str | None) -> tuple[float, int | None]:
    """One ``train_on_batch`` step: (seconds, peak bytes allocated above those in use before it)."""
    inputs = built["batches"][built["next"] % len(built["batches"])]
    built["next"] += 1
    before = memory_in_use(device)
    reset_peak(device)
    start = time.perf_counter()
    built["model"].keras_model.train_on_batch(inputs)
    seconds = time.perf_counter() - start
    after = memory_in_use(device)
    return seconds, (after["peak"] - before["current"] if after else None)


def time_training(built: dict[str, dict], args: argparse.Namespace, device: str | None) -> dict[str, dict]:
    """Warm every model up, then time them interleaved step by step, the order rotating each step."""
    names = list(built)
    for name in names:
        for _ in range(args.warmup):
            timed_step(built[name], device)
    results = {name: {"rounds": [], "peak": 0} for name in names}
    for round_index in range(args.rounds):
        for name in names:
            results[name]["rounds"].append([])
        for step in range(args.steps):
            shift = (round_index * args.steps + step) % len(names)
            for name in names[shift:] + names[:shift]:
                seconds, peak = timed_step(built[name], device)
                results[name]["rounds"][-1].append(seconds)
                results[name]["peak"] = max(results[name]["peak"], peak or 0) if peak is not None else None
        logger.info("round %d: %s", round_index + 1, ", ".join(
            f"{n} {1000 * statistics.median(results[n]['rounds'][-1]):.0f} ms" for n in names))
    for name in names:
        results[name]["resident"] = built[name]["resident"]
    return results


def time_detect(precisions: list, sizes: dict, images: list, rounds: int) -> dict[str, list[float]]:
    """Seconds per ``detect([image])`` of a batch-1 inference model per precision, interleaved."""
    from benchmarks._results import interleave
    from mrcnn_ohem.maskrcnn import model as modellib

    models = {label(p): modellib.MaskRCNN("inference", make_config("baseline", p, sizes, "inference"),
                                          str(REPO / "benchmarks" / ".logs")) for p in precisions}
    counter = {"i": 0}

    def detect(model):
        def run():
            model.detect([images[counter["i"] % len(images)]])
            counter["i"] += 1
        return run

    return interleave({name: detect(model) for name, model in models.items()}, rounds, warmup=2)


# ---------------------------------------------------------------------------- data path


def time_data_path(sizes: dict, args: argparse.Namespace, folder: Path) -> tuple[dict[str, dict[int, float]], object]:
    """Images/s of :mod:`benchmarks.data_path`'s generators (Matterport's and OHEM's targets) with
    1, 2, 4, ... loader threads up to ``--max-threads``.

    Returns:
        (``{"plain"|"ohem": {threads: images/s}}``, the JPEG dataset, for :func:`time_detect`).
    """
    from benchmarks import data_path

    base = type(data_path.make_config(sizes["IMAGES_PER_GPU"]))
    overrides = {k: v for k, v in sizes.items() if k not in ("BACKBONE", "NUM_CLASSES", "OHEM_ROI_POOL")}
    config = type("GPUDataConfig", (base,), overrides)()
    dataset = data_path.make_dataset(folder, args.data_images)
    generators = data_path.make_generators(dataset, config)
    for generator in generators.values():  # warm-up: file cache, anchors
        generator[0]
    rates: dict[str, dict[int, float]] = {name: {} for name in generators}
    threads = 1
    while threads <= args.max_threads:
        measured = data_path.time_workers(generators, args.data_rounds, threads,
                                          batches=len(generators["plain"]))
        for name, values in measured.items():
            rates[name][threads] = statistics.median(values)
        threads *= 2
    return rates, dataset


def threads_needed(rates: dict[int, float], images_per_second: float) -> str:
    """The fewest measured thread count whose images/s reaches ``images_per_second``."""
    for threads, rate in sorted(rates.items()):
        if rate >= images_per_second:
            return str(threads)
    return f"more than {max(rates)}"


# ---------------------------------------------------------------------------- report


def label(precision: str | None) -> str:
    return precision or "float32"


def render(args, device, sizes, training, rates, detect_times, loads) -> str:
    from benchmarks._results import command_line

    mixed = args.mixed_precision
    batch = sizes["IMAGES_PER_GPU"]
    lines = ["# GPU benchmark (`benchmarks/gpu.py`)" if device else "# GPU benchmark, `--quick` on the CPU", "",
             *device_lines(device), "",
             f"Command: `{command_line()}`; 1/5/15-minute load average {loads[0]} before, {loads[1]} after.", "",
             f"Setting: {sizes['IMAGE_MAX_DIM']}x{sizes['IMAGE_MAX_DIM']} images, {sizes['BACKBONE']}, "
             f"{batch} images per step, {sizes['NUM_CLASSES']} classes, layers \"{args.layers}\"; "
             f"mixed precision = `{mixed}`. All models built in one process; {args.warmup} warm-up steps each, "
             f"then {args.rounds} rounds of {args.steps} `train_on_batch` steps per model, interleaved step by "
             "step (order rotating). Figures are medians over the timed steps.", "",
             "## Training step", "",
             "| variant | precision | median step (ms) | images/s | vs baseline, same precision | "
             "mixed vs float32 | weights + optimizer (MB) | step peak above that (MB) |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    median = {name: statistics.median(t for r in result["rounds"] for t in r) for name, result in training.items()}
    for name, result in training.items():
        variant, precision = name.split("/")
        base = median[f"baseline/{precision}"]
        float32 = median.get(f"{variant}/float32")
        speedup = "" if precision == "float32" or not float32 else f"{median[name] / float32:.3f}x"
        lines.append(
            f"| {variant} | {precision} | {1000 * median[name]:.0f} | {batch / median[name]:.1f} | "
            f"{median[name] / base:.3f}x | {speedup} | {_mb(result['resident'])} | {_mb(result['peak'])} |")
    lines += ["", "OHEM's cost = a variant's median step / `baseline`'s median step in the same precision and run "
              "(1.000x: no cost).", "", "## Data path", "",
              f"{args.data_images} COCO-like 640x480 JPEGs (`benchmarks/data_path.py`), resized to "
              f"{sizes['IMAGE_MAX_DIM']} px, batch {batch}; images/s through tf-keras' `OrderedEnqueuer` "
              f"(median of {args.data_rounds} rounds), the loader `MaskRCNN.train` uses.", "",
              "| targets | " + " | ".join(f"{t} thread{'s' * (t > 1)}" for t in sorted(rates["plain"])) + " |",
              "| --- | " + " | ".join("---:" for _ in rates["plain"]) + " |"]
    for name, by_threads in rates.items():
        lines.append(f"| {name} | " + " | ".join(f"{by_threads[t]:.1f}" for t in sorted(by_threads)) + " |")
    lines += ["", "Loader threads needed to feed each step (its images/s against the row of its targets: "
              "`baseline` uses Matterport's, the others OHEM's):", "",
              "| variant | precision | step images/s | threads needed |", "| --- | --- | ---: | ---: |"]
    for name in training:
        variant, precision = name.split("/")
        need = batch / median[name]
        kind = "plain" if variant == "baseline" else "ohem"
        lines.append(f"| {variant} | {precision} | {need:.1f} | {threads_needed(rates[kind], need)} |")
    lines += ["", "## detect() latency", "", "| precision | median ms per image | min - max |", "| --- | ---: | ---: |"]
    for name, times in detect_times.items():
        lines.append(f"| {name} | {1000 * statistics.median(times):.0f} | {1000 * min(times):.0f} - "
                     f"{1000 * max(times):.0f} |")
    lines += ["", f"`detect([image])` on a batch-1 inference model (random weights, DETECTION_MIN_CONFIDENCE 0, "
              f"so the mask head always runs on its {sizes.get('DETECTION_MAX_INSTANCES', 100)} rows), "
              f"{len(next(iter(detect_times.values())))} calls each after 2 warm-up calls, precisions interleaved."]
    return "\n".join(lines) + "\n"


def _mb(value: int | None) -> str:
    return "n/a (CPU)" if value is None else f"{value / 2 ** 20:.0f}"


# ---------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="a tiny model on the CPU (the test suite's run); figures are CPU figures")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS),
                        help="variants to time (baseline is always timed: the ratios need it)")
    parser.add_argument("--mixed-precision", choices=["mixed_float16", "mixed_bfloat16"], default=None,
                        help="the mixed policy beside float32 (default: mixed_float16 on a GPU, which every "
                             "Tensor Core GPU runs; mixed_bfloat16 with --quick, which the CPU computes natively)")
    parser.add_argument("--layers", default="all", choices=["heads", "3+", "4+", "5+", "all"])
    parser.add_argument("--warmup", type=int, default=None, help="untimed steps per model (default 5; quick 2)")
    parser.add_argument("--steps", type=int, default=None, help="timed steps per model per round (default 5; quick 2)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved rounds (default 3; quick 2)")
    parser.add_argument("--data-images", type=int, default=None,
                        help="JPEGs in the data-path set (default 16; quick 4)")
    parser.add_argument("--data-rounds", type=int, default=None, help="rounds per thread count (default 3; quick 1)")
    parser.add_argument("--max-threads", type=int, default=None,
                        help="largest loader thread count tried, doubling from 1 (default 16; quick 2)")
    parser.add_argument("--detect-rounds", type=int, default=None, help="timed detect() calls (default 20; quick 3)")
    parser.add_argument("--output", type=Path, default=None,
                        help=f"report path (default {DEFAULT_OUTPUT.relative_to(REPO)}; with --quick a file in the "
                             "temporary folder)")
    return parser


def _defaults(args: argparse.Namespace) -> argparse.Namespace:
    quick = args.quick
    for name, full, small in (("warmup", 5, 2), ("steps", 5, 2), ("rounds", 3, 2), ("data_images", 16, 4),
                              ("data_rounds", 3, 1), ("max_threads", 16, 2), ("detect_rounds", 20, 3)):
        if getattr(args, name) is None:
            setattr(args, name, small if quick else full)
    if args.mixed_precision is None:
        args.mixed_precision = "mixed_bfloat16" if quick else "mixed_float16"
    if args.output is None:
        args.output = Path(tempfile.gettempdir()) / "mrcnn_ohem_gpu_quick.md" if quick else DEFAULT_OUTPUT
    return args


def main(argv: list[str] | None = None) -> int:
    args = _defaults(build_parser().parse_args(argv))
    if args.quick:  # --quick measures the CPU, GPU or not (set before TensorFlow starts)
        os.environ["CUDA_VISIBLE_DEVICES"] = "-1"
    from mrcnn_ohem._compat import quiet_tensorflow

    quiet_tensorflow()  # before TensorFlow is imported
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.quick:
        device = None
    elif not gpu_devices():
        print("benchmarks.gpu: TensorFlow sees no GPU on this machine, so there is nothing to measure. Install "
              "the CUDA build (pip install 'tensorflow[and-cuda]'), check it with python -c \"import tensorflow "
              "as tf; print(tf.config.list_physical_devices('GPU'))\", or run --quick for the CPU smoke run.",
              file=sys.stderr)
        return NO_GPU
    else:
        device = "GPU:0"
    from benchmarks._results import load_average
    from benchmarks.train_step import _make_dataset

    sizes = QUICK if args.quick else FULL
    variants = ["baseline", *(v for v in VARIANTS if v in args.variants and v != "baseline")]
    precisions = [None, args.mixed_precision]
    loads = [load_average()]
    shapes = _make_dataset(8, sizes["IMAGE_MAX_DIM"])
    built = {}
    for variant in variants:
        for precision in precisions:
            logger.info("building %s in %s", variant, label(precision))
            built[f"{variant}/{label(precision)}"] = build_training(
                variant, precision, sizes, shapes, 4, args.layers, device)
    training = time_training(built, args, device)
    del built
    with tempfile.TemporaryDirectory(prefix="gpu_bench_") as folder:
        logger.info("data path")
        rates, dataset = time_data_path(sizes, args, Path(folder))
        images = [dataset.load_image(i) for i in dataset.image_ids]
        logger.info("detect()")
        detect_times = time_detect(precisions, sizes, images, args.detect_rounds)
    loads.append(load_average())
    text = render(args, device, sizes, training, rates, detect_times, loads)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(text, encoding="utf-8")
    print(text)
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
