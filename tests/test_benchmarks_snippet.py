"""benchmarks/snippet.py: the circulated OHEM snippet keeps its defects, beside mrcnn_ohem's loss."""
from __future__ import annotations

import numpy as np
import pytest
import reference
import tensorflow as tf
from helpers import random_rpn

from benchmarks.snippet import circulated_rpn_class_loss
from mrcnn_ohem import ohem_rpn_class_loss


def test_circulated_snippet_keeps_every_tie_we_keep_k():
    match = -np.ones((1, 10, 1), np.int32)
    logits = np.zeros((1, 10, 2), np.float32)
    # The snippet keeps all 10 tied anchors (>= threshold); gradient mass shows it.
    logits_var = tf.Variable(logits)
    with tf.GradientTape() as tape:
        loss = circulated_rpn_class_loss(match, logits_var, k=3)
    touched = np.flatnonzero(np.abs(tape.gradient(loss, logits_var).numpy()[0]).sum(axis=1))
    assert touched.size == 10


def test_circulated_snippet_crashes_below_k_ours_does_not():
    rng = np.random.default_rng(1)
    match, logits = random_rpn(rng, 1, 20)
    with pytest.raises(tf.errors.InvalidArgumentError):
        circulated_rpn_class_loss(match, logits, k=256)
    expected = reference.ohem_rpn_loss(match, logits, 256)
    assert ohem_rpn_class_loss(match, logits, top_k=256).numpy() == pytest.approx(expected, rel=1e-5)
