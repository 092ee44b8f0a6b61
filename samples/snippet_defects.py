"""Show the circulated OHEM snippet's four defects beside mrcnn_ohem's loss, on generated inputs.

Run from the repo root: ``python -m samples.snippet_defects``. Part of ``make demo``. The snippet's
reproduction is :mod:`benchmarks.snippet` (the quality benchmark trains with it too).
"""
from __future__ import annotations

import logging
import sys

from mrcnn_ohem._compat import quiet_tensorflow

quiet_tensorflow()  # before TensorFlow is imported; -v or your own TF_CPP_MIN_LOG_LEVEL shows its C++ log lines

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from benchmarks.snippet import circulated_rpn_class_loss  # noqa: E402
from mrcnn_ohem import build_rpn_targets, ohem_rpn_class_loss  # noqa: E402
from mrcnn_ohem.maskrcnn import targets as matterport_targets  # noqa: E402
from mrcnn_ohem.maskrcnn.anchors import compute_backbone_shapes, generate_pyramid_anchors  # noqa: E402
from mrcnn_ohem.maskrcnn.config import Config  # noqa: E402

LOG = logging.getLogger("snippet_defects")
K = 256


def kept_count(loss_fn, match, logits) -> int:
    """How many anchors receive gradient from ``loss_fn``."""
    variable = tf.Variable(logits)
    with tf.GradientTape() as tape:
        loss = loss_fn(match, variable)
    return int(np.count_nonzero(np.abs(tape.gradient(loss, variable).numpy()).sum(-1)))


def per_image_counts(loss_fn, match, logits) -> list[int]:
    variable = tf.Variable(logits)
    with tf.GradientTape() as tape:
        loss = loss_fn(match, variable)
    grad = np.abs(tape.gradient(loss, variable).numpy()).sum(-1)
    return [int(np.count_nonzero(g)) for g in grad]


def snippet(match, logits):
    return circulated_rpn_class_loss(match, logits, k=K)


def ours(match, logits):
    return ohem_rpn_class_loss(match, logits, top_k=K)


def defect_few_candidates(rng) -> list[str]:
    match = rng.choice([-1, 0, 1], size=(1, 200, 1)).astype(np.int32)  # ~133 candidates < 256
    logits = rng.normal(size=(1, 200, 2)).astype(np.float32)
    try:
        snippet(match, logits)
        theirs = "no error"
    except tf.errors.InvalidArgumentError as err:
        start = err.message.find("input must have")
        theirs = "crash: " + (err.message[start:start + 34] if start >= 0 else "InvalidArgumentError")
    none = np.zeros_like(match)
    try:
        snippet(none, logits)
        theirs_none = "no error"
    except tf.errors.InvalidArgumentError:
        theirs_none = "crash: InvalidArgumentError"
    return [
        f"| 1. {int((match != 0).sum())} candidates < k | {theirs} | loss {float(ours(match, logits)):.4f} |",
        f"| 1. no candidates at all | {theirs_none} | loss {float(ours(none, logits)):.1f} (zero gradient) |",
    ]


def defect_ties() -> list[str]:
    match = -np.ones((1, 1000, 1), np.int32)
    logits = np.zeros((1, 1000, 2), np.float32)  # every loss ties at ln 2
    return [
        f"| 2. 1000 tied losses, k={K} | keeps {kept_count(snippet, match, logits)} anchors "
        f"| keeps {kept_count(ours, match, logits)} anchors |"
    ]


def defect_pooled_budget() -> list[str]:
    match = -np.ones((2, 2000, 1), np.int32)
    logits = np.zeros((2, 2000, 2), np.float32)
    logits[0, :, 1] = 4.0  # image 0 cluttered with hard negatives
    logits[0, :, 1] += np.linspace(0, 1, 2000, dtype=np.float32)
    logits[1, :, 1] = np.linspace(-1, 1, 2000, dtype=np.float32)
    theirs = per_image_counts(snippet, match, logits)
    mine = per_image_counts(ours, match, logits)
    return [f"| 3. batch of 2, k={K} per image | per image kept {theirs} | per image kept {mine} |"]


def defect_random_targets(rng) -> list[str]:
    class Cfg(Config):
        NAME = "defects"
        NUM_CLASSES = 2
        IMAGE_MIN_DIM = IMAGE_MAX_DIM = 1024

    config = Cfg()
    shapes = compute_backbone_shapes(config, config.IMAGE_SHAPE)
    anchors = generate_pyramid_anchors(config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS, shapes,
                                       config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE)
    gt_boxes = np.array([[100, 100, 300, 260], [500, 600, 640, 900]], np.float32)
    gt_ids = np.array([1, 1])
    np.random.seed(0)
    plain, _ = matterport_targets.build_rpn_targets(config.IMAGE_SHAPE, anchors, gt_ids, gt_boxes, config)
    full, _ = build_rpn_targets(config.IMAGE_SHAPE, anchors, gt_ids, gt_boxes, config)
    logits = rng.normal(size=(1, anchors.shape[0], 2)).astype(np.float32)
    kept_theirs = kept_count(snippet, plain[None, :, None], logits)
    kept_ours = kept_count(ours, full[None, :, None], logits)
    negatives = int((full == -1).sum())
    surviving = int((plain == -1).sum())
    return [
        f"| 4. 1024x1024, {anchors.shape[0]:,} anchors | Matterport targets leave {surviving} of "
        f"{negatives:,} negatives ({100 * surviving / negatives:.2f}%); top-k keeps {kept_theirs} of "
        f"{int((plain != 0).sum())} candidates: no mining | OHEM targets keep all {negatives:,}; "
        f"loss keeps the hardest {kept_ours} |"
    ]


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    rng = np.random.default_rng(0)
    rows = ["| defect | circulated snippet | mrcnn_ohem.ohem_rpn_class_loss |", "| --- | --- | --- |"]
    rows += defect_few_candidates(rng)
    rows += defect_ties()
    rows += defect_pooled_budget()
    rows += defect_random_targets(rng)
    print("\nThe circulated OHEM snippet vs mrcnn_ohem (k = RPN_TRAIN_ANCHORS_PER_IMAGE = 256)\n")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
