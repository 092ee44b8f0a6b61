"""mrcnn_ohem.core.selection: exact, gradient-free top-k selection (hand cases and a NumPy reference)."""
import numpy as np
import pytest
import tensorflow as tf

from mrcnn_ohem.core.selection import hardest, hardest_with_positive_cap

RUNNERS = {"eager": lambda fn: fn, "tf.function": tf.function}


def kept(indices, keep):
    """Per row, the kept indices in slot order."""
    return [[int(i) for i, k in zip(row_i, row_k) if k] for row_i, row_k in zip(np.asarray(indices), np.asarray(keep))]


def reference_hardest(scores, candidates, budget):
    """Per row: candidates sorted by score, highest first, ties by lower index, first `budget`."""
    return [sorted(np.flatnonzero(c).tolist(), key=lambda i: (-s[i], i))[:budget] for s, c in zip(scores, candidates)]


@pytest.mark.parametrize("mode", RUNNERS)
def test_hardest_hand_computed(mode):
    scores = tf.constant([[0.1, 0.9, 0.5, 0.9], [3.0, 2.0, 1.0, 0.0]])
    candidates = tf.constant([[True, True, True, True], [False, True, False, False]])
    indices, keep = RUNNERS[mode](lambda s, c: hardest(s, c, 3))(scores, candidates)
    # row 0: 0.9 (index 1) and 0.9 (index 3) tie -> lower index first, then 0.5 (index 2)
    # row 1: one candidate only -> exactly one slot kept
    assert indices.shape == (2, 3) and keep.dtype == tf.bool
    assert kept(indices, keep) == [[1, 3, 2], [1]]


def test_hardest_budget_larger_than_n_and_zero():
    scores = tf.constant([[1.0, 2.0]])
    indices, keep = hardest(scores, tf.constant([[True, True]]), 5)
    assert indices.shape == (1, 2) and kept(indices, keep) == [[1, 0]]  # width min(budget, n)
    indices, keep = hardest(scores, tf.constant([[True, True]]), 0)
    assert indices.shape == (1, 0)


def test_selection_carries_no_gradient_only_the_gather_does():
    scores = tf.Variable([[1.0, 3.0, 2.0]])
    with tf.GradientTape() as tape:
        losses = scores * 1.0
        indices, keep = hardest(losses, tf.constant([[True, True, True]]), 2)
        total = tf.reduce_sum(tf.gather(losses, indices, batch_dims=1))  # the caller's gather
    np.testing.assert_array_equal(tape.gradient(total, scores).numpy(), [[0.0, 1.0, 1.0]])


@pytest.mark.parametrize("mode", RUNNERS)
def test_positive_cap_hand_computed(mode):
    scores = tf.constant([[5.0, 4.0, 3.0, 2.0, 1.0, 0.5]])
    positives = tf.constant([[True, True, True, False, False, False]])
    negatives = tf.constant([[False, False, False, True, True, True]])
    fn = RUNNERS[mode](lambda s, p, n: hardest_with_positive_cap(s, p, n, 4, 2))
    indices, keep = fn(scores, positives, negatives)
    # at most 2 positives (0, 1), then 4 - 2 = 2 negatives (3, 4)
    assert kept(indices, keep) == [[0, 1, 3, 4]]


def test_positive_cap_fills_with_negatives_when_positives_are_few():
    scores = tf.constant([[1.0, 9.0, 8.0, 7.0]])
    positives = tf.constant([[True, False, False, False]])
    indices, keep = hardest_with_positive_cap(scores, positives, ~positives, 3, 2)
    # 1 positive kept, so 3 - 1 = 2 negatives: 9.0 (1) and 8.0 (2)
    assert kept(indices, keep) == [[0, 1, 2]]


@pytest.mark.parametrize("seed", range(4))
def test_hardest_against_numpy_reference(seed):
    rng = np.random.default_rng(seed)
    scores = rng.integers(0, 6, (3, 40)).astype(np.float32)  # many exact ties
    candidates = rng.uniform(size=(3, 40)) < 0.6
    budget = int(rng.integers(0, 45))
    for run in RUNNERS.values():
        indices, keep = run(lambda s, c: hardest(s, c, budget))(tf.constant(scores), tf.constant(candidates))
        assert kept(indices, keep) == reference_hardest(scores, candidates, budget)


@pytest.mark.parametrize("seed", range(4))
def test_positive_cap_against_numpy_reference(seed):
    rng = np.random.default_rng(10 + seed)
    scores = rng.integers(0, 6, (2, 50)).astype(np.float32)
    label = rng.choice([-1, 0, 1], (2, 50), p=[0.6, 0.2, 0.2])
    budget = int(rng.integers(1, 30))
    cap = int(rng.integers(0, budget + 1))
    indices, keep = hardest_with_positive_cap(tf.constant(scores), tf.constant(label == 1), tf.constant(label == -1),
                                              budget, cap)
    expected = []
    for s, row in zip(scores, label):
        pos = reference_hardest([s], [row == 1], cap)[0]
        expected.append(pos + reference_hardest([s], [row == -1], budget - len(pos))[0])
    assert kept(indices, keep) == expected
