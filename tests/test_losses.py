"""mrcnn_ohem.losses against the NumPy references in tests/reference.py."""
from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
import reference
import tensorflow as tf
from helpers import random_rpn

from mrcnn_ohem import TopKCrossEntropy, make_rpn_class_loss_graph, ohem_rpn_class_loss, topk_cross_entropy
from mrcnn_ohem._compat import import_tf_keras

keras2 = import_tf_keras()


def loss_and_grad(match, logits, **options):
    logits_var = tf.Variable(tf.cast(logits, tf.float32))
    with tf.GradientTape() as tape:
        loss = ohem_rpn_class_loss(match, logits_var, **options)
    return loss, tape.gradient(loss, logits_var)


# --- hand-computed cases ---------------------------------------------------------------------

def test_hand_computed_two_hardest():
    # One image, 4 anchors: labels pos, neg, neutral, neg. Logits chosen so the losses are
    # log(1 + e^d) with d = (BG - FG) for positives and (FG - BG) for negatives:
    #   a0 positive, logits (0, 0) -> ln 2      = 0.6931
    #   a1 negative, logits (0, 2) -> ln(1+e^2) = 2.1269
    #   a2 neutral,  logits (0, 9) -> ignored
    #   a3 negative, logits (0, 1) -> ln(1+e)   = 1.3133
    # top_k=2 keeps a1 and a3: (2.1269 + 1.3133) / 2 = 1.7201
    match = np.array([[[1], [-1], [0], [-1]]])
    logits = np.array([[[0, 0], [0, 2], [0, 9], [0, 1]]], np.float32)
    expected = (np.log1p(np.e**2) + np.log1p(np.e)) / 2
    assert ohem_rpn_class_loss(match, logits, top_k=2).numpy() == pytest.approx(expected, rel=1e-6)
    # positive_fraction=0.5 with k=2: one positive (a0) and one negative (a1):
    # (0.6931 + 2.1269) / 2 = 1.4100
    expected = (np.log(2) + np.log1p(np.e**2)) / 2
    got = ohem_rpn_class_loss(match, logits, top_k=2, positive_fraction=0.5).numpy()
    assert got == pytest.approx(expected, rel=1e-6)


def test_exactly_k_kept_on_ties_lower_index_wins():
    # 10 negatives with identical logits: every loss ties. top_k=3 must keep exactly 3 and the
    # gradient must land on anchors 0, 1, 2 (lower index first), each with weight 1/3.
    match = -np.ones((1, 10, 1), np.int32)
    logits = np.zeros((1, 10, 2), np.float32)
    loss, grad = loss_and_grad(match, logits, top_k=3)
    assert loss.numpy() == pytest.approx(np.log(2), rel=1e-6)
    touched = np.flatnonzero(np.abs(grad.numpy()[0]).sum(axis=1))
    np.testing.assert_array_equal(touched, [0, 1, 2])
    # d/dz of -log softmax(z)[BG] at z = (0, 0) is (0.5 - 1, 0.5) = (-0.5, 0.5); divided by 3.
    np.testing.assert_allclose(grad.numpy()[0, :3], [[-0.5 / 3, 0.5 / 3]] * 3, rtol=1e-6)


# --- edge cases --------------------------------------------------------------------------------

def test_no_candidates_gives_connected_zero():
    match = np.zeros((2, 7, 1), np.int32)
    logits = np.random.default_rng(0).normal(size=(2, 7, 2)).astype(np.float32)
    for per_image, fraction in itertools.product([True, False], [None, 0.5]):
        loss, grad = loss_and_grad(match, logits, top_k=4, per_image=per_image, positive_fraction=fraction)
        assert loss.dtype == tf.float32 and loss.numpy() == 0.0
        assert grad is not None and not np.any(grad.numpy())


def test_zero_anchors():
    loss, grad = loss_and_grad(np.zeros((2, 0, 1), np.int32), np.zeros((2, 0, 2), np.float32), top_k=3)
    assert loss.numpy() == 0.0 and grad.shape == (2, 0, 2)


@pytest.mark.parametrize(
    "case,probs",
    [("all_positive", (0, 0, 1)), ("all_negative", (1, 0, 0)), ("mixed", (0.45, 0.1, 0.45))],
)
@pytest.mark.parametrize("count", ["fewer", "exact", "more"])
def test_edge_counts_match_reference(case, probs, count):
    rng = np.random.default_rng(zlib.crc32(f"{case}/{count}".encode()))  # not hash(): it is salted per run
    anchors = {"fewer": 5, "exact": 8, "more": 40}[count]
    match, logits = random_rpn(rng, 1, anchors, probs=probs)
    top_k = 8 if count != "exact" else int((match != 0).sum())
    for fraction in (None, 0.0, 0.25, 1.0):
        expected = reference.ohem_rpn_loss(match, logits, top_k, True, fraction)
        got = ohem_rpn_class_loss(match, logits, top_k=top_k, positive_fraction=fraction).numpy()
        assert got == pytest.approx(expected, rel=1e-5, abs=1e-7), (case, count, fraction)


@pytest.mark.parametrize("dtype", [np.float16, tf.bfloat16.as_numpy_dtype])
def test_half_precision_logits_run_in_float32(dtype):
    rng = np.random.default_rng(3)
    match, logits = random_rpn(rng, 2, 300, dtype=dtype)
    loss = ohem_rpn_class_loss(match, logits, top_k=20)
    assert loss.dtype == tf.float32
    # The reference sees the same rounded half-precision values.
    expected = reference.ohem_rpn_loss(match, np.asarray(logits, np.float64), 20)
    assert loss.numpy() == pytest.approx(expected, rel=1e-5)
    assert np.isfinite(loss.numpy())


def test_large_half_logits_do_not_overflow():
    match = np.array([[[1], [-1]]], np.int32)
    logits = np.array([[[60000, -60000], [-60000, 60000]]], np.float16)  # confident and wrong
    loss = ohem_rpn_class_loss(match, logits, top_k=2).numpy()
    assert np.isfinite(loss) and loss == pytest.approx(120000, rel=1e-3)


# --- random inputs, every option -----------------------------------------------------------------

def _random_cases(count=36, seed=20261128):
    rng = np.random.default_rng(seed)
    options = list(itertools.product([True, False], [None, 0.0, 0.25, 0.5, 1.0]))
    for i in range(count):
        batch = int(rng.integers(1, 5))
        anchors = int(rng.choice([1, 2, 17, 256, 1000, 5000]))
        probs = rng.dirichlet([1, 1, 1])
        top_k = int(rng.choice([1, 3, 64, 256, 10000]))
        per_image, fraction = options[i % len(options)]
        yield i, batch, anchors, probs, top_k, per_image, fraction, rng


@pytest.mark.parametrize("case", list(_random_cases()), ids=lambda c: f"case{c[0]}")
def test_random_inputs_match_reference(case):
    _, batch, anchors, probs, top_k, per_image, fraction, rng = case
    match, logits = random_rpn(rng, batch, anchors, probs=probs)
    expected = reference.ohem_rpn_loss(match, logits, top_k, per_image, fraction)
    got = ohem_rpn_class_loss(match, logits, top_k=top_k, per_image=per_image, positive_fraction=fraction)
    assert got.numpy() == pytest.approx(expected, rel=2e-5, abs=1e-6)


@pytest.mark.parametrize("per_image,fraction", [(True, None), (False, None), (True, 0.25), (False, 0.5)])
def test_gradient_only_on_kept_anchors(per_image, fraction):
    rng = np.random.default_rng(7)
    match, logits = random_rpn(rng, 3, 400, probs=(0.5, 0.2, 0.3), scale=5.0)
    kept, _ = reference.ohem_rpn_kept(match, logits, 16, per_image, fraction)
    loss, grad = loss_and_grad(match, logits, top_k=16, per_image=per_image, positive_fraction=fraction)
    kept_mask = np.zeros(match.shape[:2], bool)
    for b, a in kept:
        kept_mask[b, a] = True
    grad = grad.numpy()
    assert not np.any(grad[~kept_mask]), "an anchor that was not kept received gradient"
    # Kept anchors get (softmax - onehot) / kept_count.
    z = logits[kept_mask].astype(np.float64)
    p = np.exp(z - z.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    onehot = np.eye(2)[(match[..., 0][kept_mask] == 1).astype(int)]
    np.testing.assert_allclose(grad[kept_mask], (p - onehot) / len(kept), rtol=1e-4, atol=1e-8)


def test_keeping_every_candidate_equals_matterport_loss():
    rng = np.random.default_rng(11)
    match, logits = random_rpn(rng, 2, 3000)
    plain = reference.matterport_rpn_loss(match, logits)
    for per_image in (True, False):
        got = ohem_rpn_class_loss(match, logits, top_k=3000, per_image=per_image).numpy()
        assert got == pytest.approx(plain, rel=1e-5)


def test_batch_of_one_per_image_equals_pooled():
    rng = np.random.default_rng(12)
    match, logits = random_rpn(rng, 1, 800)
    a = ohem_rpn_class_loss(match, logits, top_k=50, per_image=True).numpy()
    b = ohem_rpn_class_loss(match, logits, top_k=50, per_image=False).numpy()
    assert a == pytest.approx(b, rel=1e-6)


def test_per_image_budget_is_not_taken_by_one_cluttered_image():
    # Image 0 has 100 very hard negatives, image 1 has 100 easy ones. Pooled, all 2*10 slots go
    # to image 0; per image, each image gets 10.
    match = -np.ones((2, 100, 1), np.int32)
    logits = np.zeros((2, 100, 2), np.float32)
    logits[0, :, 1] = 5.0  # hard negatives: loss ~ 5.0067
    logits[1, :, 1] = -5.0  # easy negatives: loss ~ 0.0067
    _, grad_pooled = loss_and_grad(match, logits, top_k=10, per_image=False)
    _, grad_image = loss_and_grad(match, logits, top_k=10, per_image=True)
    def touched(g, b):
        return int(np.count_nonzero(np.abs(g.numpy()[b]).sum(1)))
    assert (touched(grad_pooled, 0), touched(grad_pooled, 1)) == (20, 0)
    assert (touched(grad_image, 0), touched(grad_image, 1)) == (10, 10)


# --- execution modes ---------------------------------------------------------------------------

def test_eager_tf_function_and_v1_graph_agree():
    rng = np.random.default_rng(5)
    match, logits = random_rpn(rng, 3, 500)
    options = dict(top_k=32, per_image=True, positive_fraction=0.25)
    eager = ohem_rpn_class_loss(match, logits, **options).numpy()

    @tf.function(input_signature=[tf.TensorSpec([None, None, 1], tf.int32), tf.TensorSpec([None, None, 2], tf.float32)])
    def compiled(m, l):
        return ohem_rpn_class_loss(m, l, **options)

    graph = tf.Graph()
    with graph.as_default():
        m_ph = tf.compat.v1.placeholder(tf.int32, [None, None, 1])
        l_ph = tf.compat.v1.placeholder(tf.float32, [None, None, 2])
        loss_op = ohem_rpn_class_loss(m_ph, l_ph, **options)
        grad_op = tf.compat.v1.gradients(loss_op, l_ph)[0]
        with tf.compat.v1.Session(graph=graph) as session:
            v1, v1_grad = session.run([loss_op, grad_op], {m_ph: match, l_ph: logits})
    expected = reference.ohem_rpn_loss(match, logits, 32, True, 0.25)
    assert eager == pytest.approx(expected, rel=1e-5)
    assert compiled(match, logits).numpy() == pytest.approx(eager, rel=1e-6)
    assert v1 == pytest.approx(eager, rel=1e-6)
    _, eager_grad = loss_and_grad(match, logits, **options)
    np.testing.assert_allclose(v1_grad, eager_grad.numpy(), rtol=1e-5, atol=1e-9)


def test_inside_tf_keras_lambda_model():
    KL = keras2.layers
    match_in = KL.Input(shape=(None, 1), dtype="int32", name="input_rpn_match")
    logits_in = KL.Input(shape=(None, 2), name="rpn_class_logits")
    loss = KL.Lambda(lambda x: ohem_rpn_class_loss(*x, top_k=10), name="rpn_class_loss")([match_in, logits_in])
    model = keras2.Model([match_in, logits_in], loss)
    rng = np.random.default_rng(8)
    match, logits = random_rpn(rng, 2, 120)
    got = model([tf.constant(match), tf.constant(logits)]).numpy()
    assert got == pytest.approx(reference.ohem_rpn_loss(match, logits, 10), rel=1e-5)


def test_inside_keras3_layer():
    keras3 = pytest.importorskip("keras")
    assert keras3.__version__.startswith("3"), "TF 2.16+ ships Keras 3 as 'keras'"

    class OHEMLossLayer(keras3.layers.Layer):
        def call(self, match, logits):
            return ohem_rpn_class_loss(match, logits, top_k=12, per_image=False)

    rng = np.random.default_rng(9)
    match, logits = random_rpn(rng, 2, 90)
    layer = OHEMLossLayer()
    expected = reference.ohem_rpn_loss(match, logits, 12, per_image=False)
    assert float(layer(tf.constant(match), tf.constant(logits))) == pytest.approx(expected, rel=1e-5)
    match_in = keras3.Input(shape=(90, 1), dtype="int32")
    logits_in = keras3.Input(shape=(90, 2))
    model = keras3.Model([match_in, logits_in], OHEMLossLayer()(match_in, logits_in))
    assert float(model([tf.constant(match), tf.constant(logits)])) == pytest.approx(expected, rel=1e-5)


# --- the config-bound graph function ------------------------------------------------------------

class _Config:
    RPN_TRAIN_ANCHORS_PER_IMAGE = 6
    OHEM_RPN_TOP_K = None
    OHEM_RPN_PER_IMAGE = False
    OHEM_RPN_POSITIVE_FRACTION = 0.5


def test_make_rpn_class_loss_graph_binds_config():
    loss_graph = make_rpn_class_loss_graph(_Config())
    rng = np.random.default_rng(13)
    match, logits = random_rpn(rng, 2, 60)
    expected = reference.ohem_rpn_loss(match, logits, 6, per_image=False, positive_fraction=0.5)
    assert loss_graph(match, logits).numpy() == pytest.approx(expected, rel=1e-5)
    assert loss_graph.ohem_settings.top_k == 6


# --- bad input -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(top_k=0), r"top_k must be an integer >= 1; received 0"),
        (dict(top_k=2.5), r"top_k must be an integer >= 1; received 2.5"),
        (dict(top_k=True), r"top_k must be an integer >= 1; received True"),
        (dict(per_image="yes"), r"per_image must be True or False; received 'yes'"),
        (dict(positive_fraction=1.5), r"positive_fraction must be a number in \[0, 1\]; received 1.5"),
        (dict(positive_fraction=float("nan")), r"positive_fraction must be a number in \[0, 1\]"),
    ],
)
def test_bad_options_raise_before_work(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ohem_rpn_class_loss(np.zeros((1, 3, 1), np.int32), np.zeros((1, 3, 2), np.float32), **kwargs)


@pytest.mark.parametrize(
    "match_shape,logits_shape,error,message",
    [
        ((1, 3, 1), (1, 3, 3), ValueError,
         r"rpn_class_logits must have shape \[batch, anchors, 2\]; received shape \[1, 3, 3\]"),
        ((1, 3, 2), (1, 3, 2), ValueError, r"rpn_match must have shape \[batch, anchors, 1\]"),
        ((3,), (1, 3, 2), ValueError, r"rpn_match must have shape .* received shape \[3\]"),
        ((1, 4, 1), (1, 3, 2), ValueError, r"agree on the anchors axis"),
        ((2, 3, 1), (1, 3, 2), ValueError, r"agree on the batch axis"),
    ],
)
def test_bad_shapes(match_shape, logits_shape, error, message):
    with pytest.raises(error, match=message):
        ohem_rpn_class_loss(np.zeros(match_shape, np.int32), np.zeros(logits_shape, np.float32))


def test_integer_logits_rejected():
    with pytest.raises(TypeError, match=r"rpn_class_logits must be a floating-point tensor; received dtype int32"):
        ohem_rpn_class_loss(np.zeros((1, 3, 1), np.int32), np.zeros((1, 3, 2), np.int32))


def test_rank2_match_is_accepted():
    rng = np.random.default_rng(14)
    match, logits = random_rpn(rng, 2, 30)
    a = ohem_rpn_class_loss(match[..., 0], logits, top_k=5).numpy()
    assert a == pytest.approx(reference.ohem_rpn_loss(match, logits, 5), rel=1e-5)


# --- generic top-k cross-entropy ------------------------------------------------------------------

@pytest.mark.parametrize("top_k", [0.1, 0.3, 0.5, 1.0, 1, 3, 1000])
def test_topk_cross_entropy_matches_reference(top_k):
    rng = np.random.default_rng(15)
    labels = rng.integers(0, 5, size=40)
    logits = rng.normal(size=(40, 5)).astype(np.float32) * 2
    got = topk_cross_entropy(labels, logits, top_k).numpy()
    assert got == pytest.approx(reference.topk_ce(labels, logits, top_k), rel=1e-5)


def test_topk_fraction_does_not_round_up_on_float_error():
    # 0.3 * 10 = 3.0000000000000004 in floating point; k must be 3, not 4.
    labels = np.zeros(10, np.int64)
    logits = np.stack([np.zeros(10), np.arange(10.0)], axis=1).astype(np.float32)
    losses = reference.softmax_cross_entropy(logits, labels)
    expected = np.sort(losses)[::-1][:3].mean()
    assert topk_cross_entropy(labels, logits, 0.3).numpy() == pytest.approx(expected, rel=1e-6)


def test_topk_cross_entropy_one_hot_and_probabilities_and_empty():
    rng = np.random.default_rng(16)
    labels = rng.integers(0, 3, size=12)
    logits = rng.normal(size=(12, 3)).astype(np.float32)
    sparse = topk_cross_entropy(labels, logits, 0.5).numpy()
    one_hot = topk_cross_entropy(np.eye(3, dtype=np.float32)[labels], logits, 0.5).numpy()
    probs = tf.nn.softmax(logits).numpy()
    from_probs = topk_cross_entropy(labels, probs, 0.5, from_logits=False).numpy()
    assert one_hot == pytest.approx(sparse, rel=1e-6)
    assert from_probs == pytest.approx(sparse, rel=1e-4)
    logits_var = tf.Variable(np.zeros((0, 3), np.float32))
    with tf.GradientTape() as tape:
        empty = topk_cross_entropy(np.zeros(0, np.int64), logits_var, 0.5)
    assert empty.numpy() == 0.0 and tape.gradient(empty, logits_var) is not None


@pytest.mark.parametrize("top_k", [0, 0.0, -1, 1.5, 2.0, "3", None, True])
def test_topk_cross_entropy_bad_top_k(top_k):
    with pytest.raises(ValueError, match=r"top_k must be"):
        topk_cross_entropy(np.zeros(2, np.int64), np.zeros((2, 2), np.float32), top_k)


def test_topk_loss_class_in_tf_keras_training_and_config_round_trip():
    loss = TopKCrossEntropy(0.5)
    config = loss.get_config()
    assert config == {"top_k": 0.5, "from_logits": True, "reduction": "auto", "name": "topk_cross_entropy"}
    assert TopKCrossEntropy.from_config(config).top_k == 0.5
    assert TopKCrossEntropy.from_config(TopKCrossEntropy(2, reduction="sum").get_config()).reduction == "sum"
    rng = np.random.default_rng(17)
    x = rng.normal(size=(64, 4)).astype(np.float32)
    y = (x[:, 0] + x[:, 1] > 0).astype(np.int64)
    direct = loss(y, x[:, :2]).numpy()
    assert direct == pytest.approx(reference.topk_ce(y, x[:, :2], 0.5), rel=1e-5)
    model = keras2.Sequential([keras2.layers.Dense(2, input_shape=(4,))])
    model.compile(optimizer=keras2.optimizers.SGD(0.1), loss=TopKCrossEntropy(0.5))
    history = model.fit(x, y, batch_size=16, epochs=5, verbose=0)
    assert history.history["loss"][-1] < history.history["loss"][0]
    with pytest.raises(ValueError, match="does not take sample_weight"):
        loss(y, x[:, :2], sample_weight=np.ones(64))


def test_topk_loss_class_reduces_the_kept_losses_as_tf_keras_losses_do():
    # call() gives the kept examples' cross-entropies, hardest first; the base Loss reduces them.
    # Hand-computed: labels 0, logits (0, d) -> loss ln(1 + e^d); d = 2, -1, 1, 0 give
    # 2.1269, 0.3133, 1.3133, 0.6931. top_k = 0.5 keeps the first and third (k = 2).
    labels = np.zeros(4, np.int64)
    logits = np.array([[0, 2], [0, -1], [0, 1], [0, 0]], np.float32)
    kept = [np.log1p(np.e**2), np.log1p(np.e)]
    none = TopKCrossEntropy(0.5, reduction="none")(labels, logits).numpy()
    np.testing.assert_allclose(none, kept, rtol=1e-6)
    assert TopKCrossEntropy(0.5, reduction="sum")(labels, logits).numpy() == pytest.approx(sum(kept), rel=1e-6)
    for reduction in ("auto", "sum_over_batch_size"):
        got = TopKCrossEntropy(0.5, reduction=reduction)(labels, logits).numpy()
        assert got == pytest.approx(np.mean(kept), rel=1e-6)
    # The default reduction keeps the function's value (the mean of the kept), pinned on random data.
    rng = np.random.default_rng(18)
    labels = rng.integers(0, 5, size=40)
    logits = rng.normal(size=(40, 5)).astype(np.float32) * 2
    for top_k in (0.3, 1.0, 7):
        got = TopKCrossEntropy(top_k)(labels, logits).numpy()
        assert got == pytest.approx(reference.topk_ce(labels, logits, top_k), rel=1e-5)
        assert got == topk_cross_entropy(labels, logits, top_k).numpy()
    assert TopKCrossEntropy(0.5)(np.zeros(0, np.int64), np.zeros((0, 3), np.float32)).numpy() == 0.0


def test_topk_loss_class_rejects_an_unknown_reduction():
    with pytest.raises(ValueError, match=r"reduction must be one of \[.*'sum_over_batch_size'.*\]; received 'mean'"):
        TopKCrossEntropy(0.5, reduction="mean")


# --- TopKCrossEntropy under tf.distribute (issue 27 item 5) ------------------------------------

REPO = Path(__file__).resolve().parents[1]
TWO_REPLICAS = """
import json, sys
import numpy as np
import tensorflow as tf

# Two logical CPUs, before TensorFlow initialises its devices.
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
from mrcnn_ohem import TopKCrossEntropy
from mrcnn_ohem._compat import import_tf_keras

keras = import_tf_keras()
tf.config.threading.set_intra_op_parallelism_threads(1)
data = np.load(sys.argv[1])

def step(strategy, top_k):
    with strategy.scope():
        model = keras.Sequential([keras.layers.Dense(2, input_shape=(3,))])
        model.set_weights([data["kernel"], data["bias"]])
        model.compile(optimizer=keras.optimizers.SGD(float(data["learning_rate"])), loss=TopKCrossEntropy(top_k))
    assert strategy.num_replicas_in_sync == (2 if isinstance(strategy, tf.distribute.MirroredStrategy) else 1)
    model.fit(data["x"], data["y"], batch_size=len(data["y"]), epochs=1, shuffle=False, verbose=0)
    return [w.tolist() for w in model.get_weights()]

result = {}
for top_k in (0.5, 1.0):
    result[str(top_k)] = {"one": step(tf.distribute.get_strategy(), top_k),
                          "two": step(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), top_k)}
print(json.dumps(result))
"""


def replica_friendly_batch(seed=0):
    """8 examples ordered so that the hardest 4 sit at positions 0, 1, 4 and 5.

    Whether the global batch is split into halves (0-3, 4-7) or alternately (even, odd), each
    replica then holds 2 of the global hardest 4, so top_k = 0.5 of each replica's 4 keeps the
    same examples as top_k = 0.5 of the 8 on one device."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(8, 3)).astype(np.float32)
    y = rng.integers(0, 2, size=8).astype(np.int64)
    kernel = rng.normal(size=(3, 2)).astype(np.float32)
    bias = rng.normal(size=2).astype(np.float32) * 0.1
    losses = reference.softmax_cross_entropy(x.astype(np.float64) @ kernel + bias, y)
    order = np.argsort(-losses, kind="stable")  # hardest first
    placed = np.empty(8, np.int64)
    placed[[0, 1, 4, 5]] = order[:4]
    placed[[2, 3, 6, 7]] = order[4:]
    assert np.unique(np.round(losses, 6)).size == 8  # no ties to blur the selection
    return x[placed], y[placed], kernel, bias


@pytest.mark.slow
def test_topk_loss_under_two_replicas_takes_the_single_device_step(tmp_path):
    # A tiny Dense model compiled with TopKCrossEntropy, one fit step on one global batch of 8:
    # with MirroredStrategy on two logical CPUs (a child process: the devices must be set up
    # before TensorFlow initialises them) the weights move exactly as on one device, and both
    # match the NumPy step. A loss that reduces with SUM doubles the two-replica step.
    x, y, kernel, bias = replica_friendly_batch()
    learning_rate = 0.5
    np.savez(tmp_path / "batch.npz", x=x, y=y, kernel=kernel, bias=bias, learning_rate=learning_rate)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO)}
    env.pop("TF_USE_LEGACY_KERAS", None)
    result = subprocess.run([sys.executable, "-c", TWO_REPLICAS, str(tmp_path / "batch.npz")], env=env,
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    steps = json.loads(result.stdout.strip().splitlines()[-1])
    for top_k in (0.5, 1.0):
        expected = reference.topk_ce_dense_sgd_step(x, y, kernel, bias, top_k, learning_rate)
        assert np.abs(expected[0] - kernel).max() > 1e-2  # the step moves the weights
        for replicas in ("one", "two"):
            for got, want, name in zip(steps[str(top_k)][replicas], expected, ("kernel", "bias")):
                np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6,
                                           err_msg=f"top_k={top_k}, {replicas} replica(s), {name}")
