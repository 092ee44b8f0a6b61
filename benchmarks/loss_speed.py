"""What OHEM costs in the loss and in the data pipeline, at Matterport's full 1024x1024 size.

Times, for batch 2 x 261,888 anchors labelled by the OHEM target builder (every negative kept):

- forward + backward of ``ohem_rpn_class_loss`` (per image, pooled, positive cap);
- one plain softmax cross-entropy over all anchors, the floor any RPN loss pays;
- Matterport's plain ``rpn_class_loss_graph`` (mean over the non-neutral anchors).

The mining options of issue 11 (NMS de-duplication at IoU 0.7 over the real anchors, the
negative ratio, the selection statistics) get their own table and section, as ratios to the same
floor; ``--mining-only`` times just that table.

And per image, in NumPy: ``mrcnn_ohem.targets.build_rpn_targets``, the bundled model's Matterport
``build_rpn_targets`` (random 256) and one bare IoU pass (``compute_overlaps``), the floor.

Run from the repo root: ``python -m benchmarks.loss_speed [--write]``.
"""
from __future__ import annotations

import argparse
import os  # noqa: F401 (main's version of this file reads os.getloadavg)
import statistics
import sys
import time

from mrcnn_ohem._compat import quiet_tensorflow

quiet_tensorflow()  # before TensorFlow is imported; -v or your own TF_CPP_MIN_LOG_LEVEL shows its C++ log lines

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks._results import command_line, machine_line, write_section  # noqa: E402
from mrcnn_ohem import (  # noqa: E402
    build_rpn_targets,  # noqa: E402
    ohem_rpn_class_loss,  # noqa: E402
)
from mrcnn_ohem.core.boxes import compute_overlaps  # noqa: E402
from mrcnn_ohem.maskrcnn import targets as matterport_targets  # noqa: E402
from mrcnn_ohem.maskrcnn.anchors import compute_backbone_shapes, generate_pyramid_anchors  # noqa: E402
from mrcnn_ohem.maskrcnn.config import Config  # noqa: E402
from samples.snippet import circulated_rpn_class_loss  # noqa: E402


class FullSizeConfig(Config):
    NAME = "bench"
    NUM_CLASSES = 2


def median_ms(function, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def make_inputs(config, rng):
    shapes = compute_backbone_shapes(config, config.IMAGE_SHAPE)
    anchors = generate_pyramid_anchors(
        config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS, shapes, config.BACKBONE_STRIDES,
        config.RPN_ANCHOR_STRIDE,
    )
    images = []
    for _ in range(config.BATCH_SIZE):
        count = int(rng.integers(3, 12))
        y1 = rng.uniform(0, 900, count)
        x1 = rng.uniform(0, 900, count)
        size = rng.uniform(30, 300, (count, 2))
        boxes = np.stack([y1, x1, np.minimum(y1 + size[:, 0], 1024), np.minimum(x1 + size[:, 1], 1024)], 1)
        images.append((np.arange(1, count + 1) % 2 + 1, boxes.astype(np.float32)))
    return anchors, images


def loss_timings(rpn_match, repeats):
    batch, anchors = rpn_match.shape
    logits = tf.Variable(tf.random.normal([batch, anchors, 2], seed=1))
    match = tf.constant(rpn_match[..., None])

    def timed(loss_fn):
        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = loss_fn(match, logits)
            return loss, tape.gradient(loss, logits)

        return median_ms(lambda: [t.numpy() for t in step()], repeats)

    def floor(m, l):
        labels = tf.cast(tf.equal(tf.squeeze(m, -1), 1), tf.int32)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=l))

    def matterport(m, l):
        m = tf.squeeze(m, -1)
        where = tf.where(tf.not_equal(m, 0))
        labels = tf.gather_nd(tf.cast(tf.equal(m, 1), tf.int32), where)
        return tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=tf.gather_nd(l, where)))

    rows = [
        ("plain softmax cross-entropy over all anchors (floor)", timed(floor)),
        ("Matterport rpn_class_loss_graph (all non-neutral)", timed(matterport)),
        ("circulated snippet (pooled top-k, >= threshold)", timed(lambda m, l: circulated_rpn_class_loss(m, l, 256))),
        ("ohem_rpn_class_loss, per image, k=256", timed(lambda m, l: ohem_rpn_class_loss(m, l, top_k=256))),
        ("ohem_rpn_class_loss, pooled, k=256",
         timed(lambda m, l: ohem_rpn_class_loss(m, l, top_k=256, per_image=False))),
        ("ohem_rpn_class_loss, per image, positive_fraction=0.5",
         timed(lambda m, l: ohem_rpn_class_loss(m, l, top_k=256, positive_fraction=0.5))),
    ]
    return rows


def median_cpu_ms(function, repeats: int) -> float:
    """Median CPU time of this process per call (all threads), less sensitive than wall time to
    other jobs on a shared machine."""
    times = []
    for _ in range(repeats):
        start = time.process_time()
        function()
        times.append(time.process_time() - start)
    return 1000 * statistics.median(times)


def mining_table(rows) -> str:
    wall0, cpu0 = rows[0][1]
    lines = ["| what | median wall ms | x floor (wall) | median CPU ms | x floor (CPU) |",
             "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {name} | {wall:.1f} | {wall / wall0:.2f} | {cpu:.1f} | {cpu / cpu0:.2f} |"
              for name, (wall, cpu) in rows]
    return "\n".join(lines)


def mining_timings(rpn_match, anchors, repeats):
    """Forward + backward of the mining options, beside the floor and the plain OHEM loss."""
    batch, count = rpn_match.shape
    logits = tf.Variable(tf.random.normal([batch, count, 2], seed=1))
    match = tf.constant(rpn_match[..., None])
    boxes = tf.constant(anchors, tf.float32)

    def timed(loss_fn):
        @tf.function
        def step():
            with tf.GradientTape() as tape:
                loss = loss_fn(match, logits)
            return loss, tape.gradient(loss, logits)

        run = lambda: [t.numpy() for t in step()]  # noqa: E731
        return median_ms(run, repeats), median_cpu_ms(run, repeats)

    def floor(m, l):
        labels = tf.cast(tf.equal(tf.squeeze(m, -1), 1), tf.int32)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=l))

    def ohem(**options):
        def loss(m, l):
            result = ohem_rpn_class_loss(m, l, top_k=256, **options)
            return result[0] if isinstance(result, tuple) else result
        return loss

    nms = dict(anchors=boxes, nms_threshold=0.7)
    ratio = dict(max_negatives_per_positive=3.0, min_negatives=64)
    return [
        ("plain softmax cross-entropy over all anchors (floor)", timed(floor)),
        ("ohem_rpn_class_loss, per image, k=256 (no mining options)", timed(ohem())),
        ("+ nms_threshold=0.7", timed(ohem(**nms))),
        ("+ nms_threshold=0.7, pooled", timed(ohem(per_image=False, **nms))),
        ("+ max_negatives_per_positive=3, min_negatives=64", timed(ohem(**ratio))),
        ("+ return_stats=True", timed(ohem(return_stats=True))),
        ("+ all three (nms 0.7, ratio 3 / 64, stats)", timed(ohem(return_stats=True, **nms, **ratio))),
    ]


def target_timings(config, anchors, images, repeats):
    gt_ids, gt_boxes = images[0]
    rows = [
        ("compute_overlaps(anchors, gt) alone (floor)",
         median_ms(lambda: compute_overlaps(anchors, gt_boxes), repeats)),
        ("Matterport build_rpn_targets (random 256)", median_ms(
            lambda: matterport_targets.build_rpn_targets(config.IMAGE_SHAPE, anchors, gt_ids, gt_boxes, config),
            repeats)),
        ("mrcnn_ohem build_rpn_targets (every negative)", median_ms(
            lambda: build_rpn_targets(config.IMAGE_SHAPE, anchors, gt_ids, gt_boxes, config), repeats)),
    ]
    return rows


def table(rows, floor_ms, unit):
    lines = [f"| what | median {unit} | x floor |", "| --- | ---: | ---: |"]
    lines += [f"| {name} | {ms:.1f} | {ms / floor_ms:.2f} |" for name, ms in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per row (median reported)")
    parser.add_argument("--write", action="store_true", help="write the tables to benchmarks/RESULTS.md")
    parser.add_argument("--mining-only", action="store_true",
                        help="time only the mining options (section loss_speed_mining)")
    args = parser.parse_args(argv)

    config = FullSizeConfig()
    rng = np.random.default_rng(0)
    anchors, images = make_inputs(config, rng)
    rpn_match = np.stack([
        build_rpn_targets(config.IMAGE_SHAPE, anchors, ids, boxes, config)[0] for ids, boxes in images
    ])
    negatives = int((rpn_match == -1).sum())
    positives = int((rpn_match == 1).sum())
    load_before = os.getloadavg()[0]
    mining_rows = mining_timings(rpn_match, anchors, args.repeats)
    nms_wall = mining_rows[2][1][0] / mining_rows[0][1][0]
    nms_cpu = mining_rows[2][1][1] / mining_rows[0][1][1]
    mining = "\n".join([
        "## Cost of the mining options at 1024x1024 (`benchmarks/loss_speed.py`)",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine_line()}; 1-minute load average {load_before:.1f} before and "
        f"{os.getloadavg()[0]:.1f} after this table (shared machine: other jobs ran meanwhile)",
        "",
        f"Batch {rpn_match.shape[0]} x {rpn_match.shape[1]:,} anchors, OHEM targets ({negatives:,} negatives, "
        f"{positives} positives), random logits; NMS over the model's own anchors. Forward + backward, "
        f"`tf.function`, median of {args.repeats} runs (wall time, then process CPU time over all threads).",
        "",
        mining_table(mining_rows),
        "",
        f"NMS at 0.7 costs **{nms_wall:.2f}x** the floor in wall time and **{nms_cpu:.2f}x** in CPU time "
        f"(goal: <= 2x); on a loaded machine trust the CPU column more.",
    ])
    print(mining)
    if args.write:
        write_section("loss_speed_mining", mining)
    if args.mining_only:
        return 0
    loss_rows = loss_timings(rpn_match, args.repeats)
    target_rows = target_timings(config, anchors, images, args.repeats)
    ratio = loss_rows[3][1] / loss_rows[0][1]
    body = "\n".join([
        "## Loss and target cost at 1024x1024 (`benchmarks/loss_speed.py`)",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine_line()}",
        "",
        f"Batch {rpn_match.shape[0]} x {rpn_match.shape[1]:,} anchors; targets from the OHEM builder: "
        f"{negatives:,} negatives and {positives} positives are candidates. Forward + backward, "
        f"`tf.function`, median of {args.repeats} runs.",
        "",
        table(loss_rows, loss_rows[0][1], "ms"),
        "",
        f"OHEM per image costs **{ratio:.2f}x** the floor (goal: <= 1.3x).",
        "",
        f"Target building for one image ({anchors.shape[0]:,} anchors, {images[0][1].shape[0]} GT boxes), NumPy:",
        "",
        table(target_rows, target_rows[0][1], "ms"),
    ])
    print(body)
    if args.write:
        write_section("loss_speed", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
