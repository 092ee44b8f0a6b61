"""Does the Python data path keep up at 1024x1024? OHEM targets vs Matterport's random 256.

Builds training batches of Matterport's default size (1024x1024, mini masks 56x56, batch 2)
from COCO-like JPEG files (640x480, 1 to 10 instances each, written to a temporary folder),
with the bundled ``DataGenerator``: image load, resize to 1024, masks (resize and mini masks),
anchor labelling and RPN targets, collation. Two variants on the same images:

- ``plain``: Matterport's ``build_rpn_targets`` (random 256 anchors per image);
- ``ohem``: ``mrcnn_ohem.make_build_rpn_targets(config)`` (every negative kept).

Measured in one process, the variants interleaved (alternating order) over several rounds:

1. ms per image: ``generator[i]`` in the calling thread, divided by the batch size;
2. images/s with the generator's workers: tf-keras' ``OrderedEnqueuer`` with ``--workers``
   threads, what ``MaskRCNN.train`` runs under ``fit``;
3. where the time goes: a cProfile of one pass per variant, by stage;
4. one image and its masks resized to 1024 square, interleaved, per image: ``resize_image`` and
   ``resize_mask`` now (Matterport's pixels: truncating cast, scipy's nearest grid for masks),
   as they were before issue 27 (rounding cast, pixel-centre nearest masks; a frozen copy
   below) and as Matterport computes them (``skimage.transform.resize`` on all three axes,
   ``scipy.ndimage.zoom`` on the masks).

Run from the repo root: ``python -m benchmarks.data_path [--write]``.
"""
from __future__ import annotations

import argparse
import cProfile
import logging
import os
import pstats
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

logger = logging.getLogger("benchmarks.data_path")
VARIANTS = ("plain", "ohem")
#: (label, function name in the profile) of the stages reported.
STAGES = (
    ("load_image (JPEG decode)", "load_image"),
    ("load_mask (draw instance masks)", "load_mask"),
    ("resize_image (to 1024)", "resize_image"),
    ("resize_mask", "resize_mask"),
    ("minimize_mask (56x56)", "minimize_mask"),
    ("RPN targets: build_rpn_targets", "build_rpn_targets"),
    ("  of which match_anchors (IoU and labels)", "match_anchors"),
    ("collate + mold", "_collate"),
)


def make_config(batch: int = 2):
    import mrcnn_ohem

    class DataPathConfig(mrcnn_ohem.OHEMConfig):
        NAME = "datapath"
        NUM_CLASSES = 1 + 3
        IMAGES_PER_GPU = batch

    return DataPathConfig()


def make_dataset(folder: Path, count: int, seed: int = 0):
    """``count`` 640x480 JPEG files with 1-10 elliptic instances each, as a Dataset."""
    from PIL import Image

    from mrcnn_ohem.maskrcnn.utils import Dataset

    class Ellipses(Dataset):
        def load_image(self, image_id):
            return np.asarray(Image.open(self.image_info[image_id]["path"]).convert("RGB"))

        def load_mask(self, image_id):
            info = self.image_info[image_id]
            h, w = info["height"], info["width"]
            masks = np.zeros((h, w, len(info["shapes"])), dtype=bool)
            for k, (_, cy, cx, ry, rx) in enumerate(info["shapes"]):
                y0, y1 = max(cy - ry, 0), min(cy + ry + 1, h)
                x0, x1 = max(cx - rx, 0), min(cx + rx + 1, w)
                yy, xx = np.ogrid[y0:y1, x0:x1]
                masks[y0:y1, x0:x1, k] = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
            return masks, np.array([s[0] for s in info["shapes"]], dtype=np.int32)

    rng = np.random.default_rng(seed)
    dataset = Ellipses()
    for class_id, name in enumerate(("ellipse", "disc", "blob"), start=1):
        dataset.add_class("synthetic", class_id, name)
    for i in range(count):
        h, w = 480, 640
        shapes = [(int(rng.integers(1, 4)), int(rng.integers(20, h - 20)), int(rng.integers(20, w - 20)),
                   int(rng.integers(8, 120)), int(rng.integers(8, 160)))
                  for _ in range(int(rng.integers(1, 11)))]
        image = rng.integers(0, 60, (h, w, 3), dtype=np.uint8)
        for class_id, cy, cx, ry, rx in shapes:
            yy, xx = np.ogrid[:h, :w]
            image[((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1] = (60 * class_id, 200, 90)
        path = folder / f"{i:04d}.jpg"
        Image.fromarray(image).save(path, quality=90)
        dataset.add_image("synthetic", image_id=i, path=str(path), height=h, width=w, shapes=shapes)
    dataset.prepare()
    return dataset


def make_generators(dataset, config) -> dict:
    import mrcnn_ohem
    from mrcnn_ohem.maskrcnn import targets as matterport_targets
    from mrcnn_ohem.maskrcnn.data import DataGenerator

    builders = {"plain": matterport_targets.build_rpn_targets,
                "ohem": mrcnn_ohem.make_build_rpn_targets(config)}
    return {name: DataGenerator(dataset, config, shuffle=False, seed=0, build_rpn_targets=fn)
            for name, fn in builders.items()}


def time_serial(generators: dict, rounds: int) -> dict[str, list[float]]:
    """Seconds per batch, variants interleaved batch by batch, order alternating."""
    times: dict[str, list[float]] = {name: [] for name in generators}
    for r in range(rounds):
        for i in range(len(next(iter(generators.values())))):
            order = list(generators) if (r + i) % 2 == 0 else list(generators)[::-1]
            for name in order:
                start = time.perf_counter()
                generators[name][i]
                times[name].append(time.perf_counter() - start)
    return times


def time_workers(generators: dict, rounds: int, workers: int, batches: int) -> dict[str, list[float]]:
    """Images per second through ``OrderedEnqueuer`` with ``workers`` threads, per round."""
    from mrcnn_ohem._compat import import_tf_keras

    keras = import_tf_keras()
    rates: dict[str, list[float]] = {name: [] for name in generators}
    for r in range(rounds):
        order = list(generators) if r % 2 == 0 else list(generators)[::-1]
        for name in order:
            generator = generators[name]
            enqueuer = keras.utils.OrderedEnqueuer(generator, use_multiprocessing=False)
            start = time.perf_counter()
            enqueuer.start(workers=workers, max_queue_size=10)
            stream = enqueuer.get()
            for _ in range(batches):
                next(stream)
            rates[name].append(batches * generator.batch_size / (time.perf_counter() - start))
            enqueuer.stop()
    return rates


def profile_stages(generators: dict) -> dict[str, dict[str, float]]:
    """Cumulative seconds per image of each stage in :data:`STAGES`, from one cProfile pass."""
    result = {}
    for name, generator in generators.items():
        profiler = cProfile.Profile()
        profiler.enable()
        for i in range(len(generator)):
            generator[i]
        profiler.disable()
        images = len(generator) * generator.batch_size
        stats = pstats.Stats(profiler).stats  # {(file, line, func): (cc, nc, tt, ct, callers)}
        by_function: dict[str, float] = {}
        for (_, _, function), (_, _, _, cumulative, _) in stats.items():
            by_function[function] = max(by_function.get(function, 0.0), cumulative)
        total = sum(v[2] for v in stats.values())
        result[name] = {label: by_function.get(function, 0.0) / images for label, function in STAGES}
        result[name]["total (profiled)"] = total / images
    return result


def time_resize(dataset, rounds: int) -> dict[str, list[float]]:
    """Seconds to resize one source image, or its masks, to 1024 square: now, before, Matterport.

    Returns:
        row label -> ``rounds`` durations, every row measured interleaved in this process.
    """
    import scipy.ndimage

    from benchmarks._results import interleave
    from mrcnn_ohem.maskrcnn import utils

    image_id = dataset.image_ids[0]
    image = dataset.load_image(image_id)
    masks = dataset.load_mask(image_id)[0]
    _, _, scale, padding, _ = utils.resize_image(image, 800, 1024, mode="square")
    shape = (round(image.shape[0] * scale), round(image.shape[1] * scale))

    def matterport_image():  # Matterport's resize_image, square mode, written out
        resized = utils.resize(image, shape, order=1, mode="constant", preserve_range=True)
        return np.pad(resized, padding, mode="constant").astype(image.dtype)

    def matterport_masks():
        return np.pad(scipy.ndimage.zoom(masks, [scale, scale, 1], order=0), padding)

    return interleave({
        "resize_image now (Matterport's pixels)": lambda: utils.resize_image(image, 800, 1024),
        "resize_image before (rounded)": lambda: _resize_image_before(image, scale, padding),
        "Matterport: skimage resize + astype": matterport_image,
        f"resize_mask now ({masks.shape[-1]} masks)": lambda: utils.resize_mask(masks, scale, padding),
        "resize_mask before (pixel-centre nearest)": lambda: _resize_mask_before(masks, scale, padding),
        "Matterport: scipy.ndimage.zoom": matterport_masks,
    }, rounds)


def _resize_image_before(image: np.ndarray, scale: float, padding) -> np.ndarray:
    """``resize_image``'s square mode as of commit 92b4de9 (rounded, not truncated), for timing."""
    import scipy.ndimage

    h, w = image.shape[:2]
    shape = (round(h * scale), round(w * scale))
    source = image.astype(np.float64)
    out = np.empty(shape + (image.shape[2],), dtype=np.float64)
    for c in range(image.shape[2]):
        out[:, :, c] = scipy.ndimage.zoom(source[:, :, c], (shape[0] / h, shape[1] / w), order=1,
                                          mode="grid-constant", cval=0, grid_mode=True)
    np.clip(out, min(float(source.min()), 0.0), float(source.max()), out=out)
    out = np.clip(np.round(out), 0, 255).astype(image.dtype)
    return np.pad(out, padding, mode="constant")


def _resize_mask_before(mask: np.ndarray, scale: float, padding) -> np.ndarray:
    """``resize_mask`` as of commit 92b4de9 (nearest pixel centre), for timing."""
    h, w = mask.shape[:2]
    new_h, new_w = round(h * scale), round(w * scale)
    rows = np.minimum(((np.arange(new_h) + 0.5) * h / new_h).astype(np.int64), h - 1)
    cols = np.minimum(((np.arange(new_w) + 0.5) * w / new_w).astype(np.int64), w - 1)
    return np.pad(mask[rows][:, cols], padding, mode="constant")


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def render(args, serial, rates, stages, loads, batch_size, resize_times=None) -> str:
    from benchmarks._results import command_line, machine_line

    ms = {name: 1000 * statistics.median(t) / batch_size for name, t in serial.items()}
    spread = {name: (1000 * min(t) / batch_size, 1000 * max(t) / batch_size) for name, t in serial.items()}
    rate = {name: statistics.median(r) for name, r in rates.items()}
    ratio = ms["ohem"] / ms["plain"]
    needed = 2 / 0.5
    lines = [
        "## Data path at 1024x1024 (`benchmarks/data_path.py`)",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine_line()}; 1/5/15-minute load average {loads[0]} before, {loads[1]} "
        "after. **The machine was shared** with other TensorFlow jobs during this run, so "
        "absolute times are inflated; the variants ran interleaved in one process, which keeps "
        "their ratio fair.",
        "",
        f"{args.images} COCO-like 640x480 JPEG images with 1-10 instances each, resized to "
        "1024x1024 (Matterport's defaults: square mode, 56x56 mini masks, 261,888 anchors), "
        f"batch {batch_size}, {args.rounds} rounds; `plain` = Matterport's random-256 RPN "
        "targets, `ohem` = every negative kept (mrcnn_ohem).",
        "",
        "| variant | median ms / image (one thread) | min - max | images/s, "
        f"{args.workers} worker threads (median) |",
        "| --- | ---: | ---: | ---: |",
    ]
    for name in VARIANTS:
        lines.append(f"| {name} | {ms[name]:.1f} | {spread[name][0]:.1f} - {spread[name][1]:.1f} | "
                     f"{rate[name]:.1f} |")
    lines += [
        "",
        f"OHEM path / plain path: **{ratio:.2f}x** per image (goal <= 1.05x). A GPU step of "
        f"~0.5 s on 2 images needs {needed:.0f} images/s: the OHEM path delivers "
        f"{rate['ohem']:.1f} with {args.workers} threads "
        f"({'enough' if rate['ohem'] >= needed else 'not enough'} on this machine).",
        "",
        "Where the time goes (cProfile, one pass, ms per image; stages nest, so they do not add up):",
        "",
        "| stage | plain | ohem |",
        "| --- | ---: | ---: |",
    ]
    for label in [s[0] for s in STAGES] + ["total (profiled)"]:
        lines.append(f"| {label} | {1000 * stages['plain'][label]:.1f} | {1000 * stages['ohem'][label]:.1f} |")
    if resize_times:
        lines += ["", "Resizing one 640x480 image and its masks to 1024x1024 (square mode; interleaved, "
                  "median ms; the `now` rows give Matterport's arrays exactly):", "",
                  "| resize | median ms |", "| --- | ---: |"]
        lines += [f"| {name} | {1000 * statistics.median(t):.1f} |" for name, t in resize_times.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8, help="images in the synthetic set")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per measurement")
    parser.add_argument("--workers", type=int, default=2, help="data threads for the images/s figure")
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    loads = [load_average()]
    config = make_config()
    with tempfile.TemporaryDirectory(prefix="data_path_") as folder:
        dataset = make_dataset(Path(folder), args.images)
        generators = make_generators(dataset, config)
        for generator in generators.values():  # warm-up: file cache, anchors, imports
            generator[0]
        logger.info("timing one-thread batches (%d rounds)", args.rounds)
        serial = time_serial(generators, args.rounds)
        logger.info("timing %d worker threads", args.workers)
        rates = time_workers(generators, args.rounds, args.workers, batches=len(generators["plain"]))
        logger.info("profiling")
        stages = profile_stages(generators)
        resize_times = time_resize(dataset, args.rounds)
    loads.append(load_average())
    text = render(args, serial, rates, stages, loads, config.BATCH_SIZE, resize_times)
    print(text)
    if args.write:
        from benchmarks._results import write_section

        write_section("data_path", text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
