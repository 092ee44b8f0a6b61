"""What the mining options of ``ohem_rpn_class_loss`` cost at Matterport's full 1024x1024 size.

Forward + backward for batch 2 x 261,888 anchors labelled by the OHEM target builder, beside one
plain softmax cross-entropy over all anchors (the floor): NMS de-duplication at 0.7 (per image
and pooled), the negative ratio with a floor, the selection statistics, and all three together.
Wall time and process CPU time (all threads) are both reported, since the second is less
sensitive to other jobs on a shared machine.

Run from the repo root: ``python -m benchmarks.mining_speed [--write]``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

from mrcnn_ohem._compat import quiet_tensorflow

quiet_tensorflow()  # before TensorFlow is imported; -v or your own TF_CPP_MIN_LOG_LEVEL shows its C++ log lines

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks._results import command_line, machine_line, write_section  # noqa: E402
from benchmarks.loss_speed import FullSizeConfig, make_inputs  # noqa: E402
from mrcnn_ohem import build_rpn_targets, ohem_rpn_class_loss  # noqa: E402


def median_ms(function, repeats: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


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


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per row (median reported)")
    parser.add_argument("--write", action="store_true", help="write the table to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)

    config = FullSizeConfig()
    anchors, images = make_inputs(config, np.random.default_rng(0))
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
        "## Cost of the mining options at 1024x1024 (`benchmarks/mining_speed.py`)",
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
