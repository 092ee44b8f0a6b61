"""What OHEM costs in the loss and in the data pipeline, at Matterport's full 1024x1024 size.

Times, for batch 2 x 261,888 anchors labelled by the OHEM target builder (every negative kept):

- forward + backward of ``ohem_rpn_class_loss`` (per image, pooled, positive cap);
- one plain softmax cross-entropy over all anchors, the floor any RPN loss pays;
- Matterport's plain ``rpn_class_loss_graph`` (mean over the non-neutral anchors).

And per image, in NumPy: ``mrcnn_ohem.targets.build_rpn_targets``, the bundled model's Matterport
``build_rpn_targets`` (random 256) and one bare IoU pass (``compute_overlaps``), the floor.

Every table's rows are measured side by side in one process, interleaved (each round calls
every variant once, alternating the order), so load drift on a shared machine reaches all rows
alike; the section states the load average before and after.

Run from the repo root: ``python -m benchmarks.loss_speed [--write]``. The mining options (NMS,
negative ratio, statistics) have their own script, :mod:`benchmarks.mining_speed`.
"""
from __future__ import annotations

import argparse
import sys

from mrcnn_ohem._compat import quiet_tensorflow

quiet_tensorflow()  # before TensorFlow is imported; -v or your own TF_CPP_MIN_LOG_LEVEL shows its C++ log lines

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks._results import (  # noqa: E402
    command_line,
    interleave,
    load_average,
    machine_line,
    median_and_spread,
    write_section,
)
from benchmarks.snippet import circulated_rpn_class_loss  # noqa: E402
from mrcnn_ohem import (  # noqa: E402
    build_rpn_targets,  # noqa: E402
    ohem_rpn_class_loss,  # noqa: E402
)
from mrcnn_ohem.core.boxes import compute_overlaps  # noqa: E402
from mrcnn_ohem.maskrcnn import targets as matterport_targets  # noqa: E402
from mrcnn_ohem.maskrcnn.anchors import compute_backbone_shapes, generate_pyramid_anchors  # noqa: E402
from mrcnn_ohem.maskrcnn.config import Config  # noqa: E402


class FullSizeConfig(Config):
    NAME = "bench"
    NUM_CLASSES = 2


def interleaved_ms(functions: dict, repeats: int) -> list[tuple[str, float, float, float]]:
    """``(name, median, min, max)`` ms of each function, measured interleaved."""
    times = interleave(functions, repeats, warmup=2)
    return [(name, *(1000 * v for v in median_and_spread(t))) for name, t in times.items()]


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

        return lambda: [t.numpy() for t in step()]

    def floor(m, l):
        labels = tf.cast(tf.equal(tf.squeeze(m, -1), 1), tf.int32)
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=l))

    def matterport(m, l):
        m = tf.squeeze(m, -1)
        where = tf.where(tf.not_equal(m, 0))
        labels = tf.gather_nd(tf.cast(tf.equal(m, 1), tf.int32), where)
        return tf.reduce_mean(
            tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=tf.gather_nd(l, where)))

    functions = dict([
        ("plain softmax cross-entropy over all anchors (floor)", timed(floor)),
        ("Matterport rpn_class_loss_graph (all non-neutral)", timed(matterport)),
        ("circulated snippet (pooled top-k, >= threshold)", timed(lambda m, l: circulated_rpn_class_loss(m, l, 256))),
        ("ohem_rpn_class_loss, per image, k=256", timed(lambda m, l: ohem_rpn_class_loss(m, l, top_k=256))),
        ("ohem_rpn_class_loss, pooled, k=256",
         timed(lambda m, l: ohem_rpn_class_loss(m, l, top_k=256, per_image=False))),
        ("ohem_rpn_class_loss, per image, positive_fraction=0.5",
         timed(lambda m, l: ohem_rpn_class_loss(m, l, top_k=256, positive_fraction=0.5))),
    ])
    return interleaved_ms(functions, repeats)


def target_timings(config, anchors, images, repeats):
    gt_ids, gt_boxes = images[0]
    functions = {
        "compute_overlaps(anchors, gt) alone (floor)": lambda: compute_overlaps(anchors, gt_boxes),
        "Matterport build_rpn_targets (random 256)":
            lambda: matterport_targets.build_rpn_targets(config.IMAGE_SHAPE, anchors, gt_ids, gt_boxes, config),
        "mrcnn_ohem build_rpn_targets (every negative)":
            lambda: build_rpn_targets(config.IMAGE_SHAPE, anchors, gt_ids, gt_boxes, config),
    }
    return interleaved_ms(functions, repeats)


def table(rows, floor_ms, unit):
    lines = [f"| what | median {unit} | min - max | x floor |", "| --- | ---: | ---: | ---: |"]
    lines += [f"| {name} | {ms:.1f} | {low:.1f} - {high:.1f} | {ms / floor_ms:.2f} |"
              for name, ms, low, high in rows]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=15, help="timed runs per row (median reported)")
    parser.add_argument("--write", action="store_true", help="write the tables to benchmarks/RESULTS.md")
    args = parser.parse_args(argv)

    config = FullSizeConfig()
    rng = np.random.default_rng(0)
    anchors, images = make_inputs(config, rng)
    rpn_match = np.stack([
        build_rpn_targets(config.IMAGE_SHAPE, anchors, ids, boxes, config)[0] for ids, boxes in images
    ])
    loads = [load_average()]
    negatives = int((rpn_match == -1).sum())
    positives = int((rpn_match == 1).sum())
    loss_rows = loss_timings(rpn_match, args.repeats)
    target_rows = target_timings(config, anchors, images, args.repeats)
    loads.append(load_average())
    shared = (" (**shared machine**: other jobs ran, so absolute times are inflated; the rows were "
              "measured interleaved, which keeps the ratios fair)")
    shared = shared if max([float(v.split()[0]) for v in loads if v != "unknown"] or [0.0]) > 1.0 else ""
    ratio = loss_rows[3][1] / loss_rows[0][1]
    body = "\n".join([
        "## Loss and target cost at 1024x1024 (`benchmarks/loss_speed.py`)",
        "",
        f"Command: `{command_line()}`  ",
        f"Machine: {machine_line()}; 1/5/15-minute load average {loads[0]} before, {loads[1]} after{shared}.",
        "",
        f"Batch {rpn_match.shape[0]} x {rpn_match.shape[1]:,} anchors; targets from the OHEM builder: "
        f"{negatives:,} negatives and {positives} positives are candidates. Forward + backward, "
        f"`tf.function`, median of {args.repeats} interleaved rounds.",
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
