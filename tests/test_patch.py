"""mrcnn_ohem.patch on a small Matterport-style module built in the test."""
import sys
import textwrap
import types

import numpy as np
import pytest
import reference
import tensorflow as tf

import mrcnn_ohem
from mrcnn_ohem.core.boxes import NEGATIVE

# A miniature of mrcnn/model.py: module-level loss and targets, and a builder whose Lambda looks
# rpn_class_loss_graph up by global name when the model is built (as Matterport's does).
MINI_MODEL_SOURCE = textwrap.dedent(
    '''
    import numpy as np
    import tensorflow as tf
    from mrcnn_ohem._compat import import_tf_keras
    from mrcnn_ohem.core.matching import encode_rpn_bbox, match_anchors, subsample_labels

    keras = import_tf_keras()
    KL = keras.layers

    def rpn_class_loss_graph(rpn_match, rpn_class_logits):
        rpn_match = tf.squeeze(rpn_match, -1)
        anchor_class = tf.cast(tf.equal(rpn_match, 1), tf.int32)
        indices = tf.where(tf.not_equal(rpn_match, 0))
        logits = tf.gather_nd(rpn_class_logits, indices)
        labels = tf.gather_nd(anchor_class, indices)
        loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
        return tf.cond(tf.size(loss) > 0, lambda: tf.reduce_mean(loss), lambda: tf.constant(0.0))

    def build_rpn_targets(image_shape, anchors, gt_class_ids, gt_boxes, config):
        match = match_anchors(anchors, gt_class_ids, gt_boxes)
        subsample_labels(match.rpn_match, 1, config.RPN_TRAIN_ANCHORS_PER_IMAGE // 2)
        subsample_labels(match.rpn_match, -1, config.RPN_TRAIN_ANCHORS_PER_IMAGE - (match.rpn_match == 1).sum())
        bbox = encode_rpn_bbox(anchors, match.rpn_match, match, config.RPN_TRAIN_ANCHORS_PER_IMAGE,
                               config.RPN_BBOX_STD_DEV)
        return match.rpn_match, bbox

    def build_model(num_anchors):
        input_rpn_match = KL.Input(shape=(num_anchors, 1), dtype="int32", name="input_rpn_match")
        features = KL.Input(shape=(num_anchors, 3), name="features")
        rpn_class_logits = KL.Dense(2, name="rpn_class_logits")(features)
        loss = KL.Lambda(lambda x: rpn_class_loss_graph(*x), name="rpn_class_loss")(
            [input_rpn_match, rpn_class_logits])
        return keras.Model([input_rpn_match, features], [rpn_class_logits, loss])
    '''
)


@pytest.fixture
def mini_model():
    module = types.ModuleType("mini_matterport_model")
    exec(compile(MINI_MODEL_SOURCE, "mini_matterport_model.py", "exec"), module.__dict__)
    sys.modules[module.__name__] = module
    yield module
    sys.modules.pop(module.__name__, None)


class Cfg(mrcnn_ohem.OHEMConfig):
    NAME = "patch_test"
    NUM_CLASSES = 2
    RPN_TRAIN_ANCHORS_PER_IMAGE = 16
    OHEM_RPN_TOP_K = 5


def run_model(module, match, features):
    model = module.build_model(match.shape[1])
    logits, loss = model([tf.constant(match), tf.constant(features)])
    return logits.numpy(), float(loss.numpy())


def test_model_built_after_patch_uses_ohem_loss(mini_model):
    rng = np.random.default_rng(0)
    match = rng.choice([-1, 0, 1], size=(2, 300, 1)).astype(np.int32)
    features = rng.normal(size=(2, 300, 3)).astype(np.float32)
    plain_logits, plain_loss = run_model(mini_model, match, features)
    assert plain_loss == pytest.approx(reference.matterport_rpn_loss(match, plain_logits), rel=1e-5)

    with mrcnn_ohem.patch(Cfg(), module=mini_model) as handle:
        assert handle.active
        logits, loss = run_model(mini_model, match, features)
        assert loss == pytest.approx(reference.ohem_rpn_loss(match, logits, 5), rel=1e-5)
        assert loss != pytest.approx(reference.matterport_rpn_loss(match, logits), rel=1e-3)
    assert not handle.active
    logits, loss = run_model(mini_model, match, features)
    assert loss == pytest.approx(reference.matterport_rpn_loss(match, logits), rel=1e-5)


def test_patched_targets_keep_every_negative(mini_model):
    anchors = np.array([[y, x, y + 8, x + 8] for y in range(0, 64, 4) for x in range(0, 64, 4)], np.float32)
    args = ((64, 64, 3), anchors, np.array([1]), np.array([[8, 8, 16, 16]], np.float32), Cfg())
    plain, _ = mini_model.build_rpn_targets(*args)
    assert (plain != 0).sum() == Cfg.RPN_TRAIN_ANCHORS_PER_IMAGE
    handle = mrcnn_ohem.patch(Cfg(), module="mini_matterport_model")
    try:
        ohem, bbox = mini_model.build_rpn_targets(*args)
        assert (ohem == NEGATIVE).sum() > 200 and bbox.shape == (16, 4)
    finally:
        handle.restore()


def test_restore_and_double_patch_do_not_stack(mini_model):
    original_loss = mini_model.rpn_class_loss_graph
    original_targets = mini_model.build_rpn_targets
    first = mrcnn_ohem.patch(Cfg(), module=mini_model)
    first_loss = mini_model.rpn_class_loss_graph

    class Other(Cfg):
        OHEM_RPN_TOP_K = 9

    second = mrcnn_ohem.patch(Other(), module=mini_model)
    assert mini_model.rpn_class_loss_graph is not first_loss
    assert mini_model.rpn_class_loss_graph.ohem_settings.top_k == 9
    assert not first.active and second.active
    assert second.originals["rpn_class_loss_graph"] is original_loss
    first.restore()  # stale handle: changes nothing
    assert mini_model.rpn_class_loss_graph.ohem_settings.top_k == 9
    second.restore()
    second.restore()  # idempotent
    assert mini_model.rpn_class_loss_graph is original_loss
    assert mini_model.build_rpn_targets is original_targets


def test_ohem_off_patches_nothing(mini_model):
    class Off(Cfg):
        OHEM_RPN = False

    original = mini_model.rpn_class_loss_graph
    handle = mrcnn_ohem.patch(Off(), module=mini_model)
    assert mini_model.rpn_class_loss_graph is original and handle.originals == {}
    handle.restore()
    assert mini_model.rpn_class_loss_graph is original


def test_missing_function_changes_nothing(mini_model):
    del mini_model.build_rpn_targets
    original = mini_model.rpn_class_loss_graph
    with pytest.raises(AttributeError, match=r"module 'mini_matterport_model' has no function 'build_rpn_targets'"):
        mrcnn_ohem.patch(Cfg(), module=mini_model)
    assert mini_model.rpn_class_loss_graph is original


def test_wrong_signature_is_rejected(mini_model):
    mini_model.rpn_class_loss_graph = lambda rpn_match: rpn_match
    with pytest.raises(TypeError, match=r"rpn_class_loss_graph must accept 2 positional arguments"):
        mrcnn_ohem.patch(Cfg(), module=mini_model)


def test_bad_module_arguments():
    with pytest.raises(ImportError, match=r"could not import module 'no_such_module_xyz'.*TF_USE_LEGACY_KERAS=1"):
        mrcnn_ohem.patch(Cfg(), module="no_such_module_xyz")
    with pytest.raises(TypeError, match=r"module must be a module object or a dotted module name; received int"):
        mrcnn_ohem.patch(Cfg(), module=3)


def test_invalid_config_raises_before_patching(mini_model):
    class Bad(Cfg):
        OHEM_RPN_TOP_K = -1

    original = mini_model.rpn_class_loss_graph
    with pytest.raises(ValueError, match="OHEM_RPN_TOP_K"):
        mrcnn_ohem.patch(Bad.__new__(Bad), module=mini_model)  # skip __init__ to reach patch()
    assert mini_model.rpn_class_loss_graph is original


def test_import_patches_nothing():
    import subprocess

    code = (
        "import mrcnn_ohem, mrcnn_ohem.patching as p\n"
        "import mrcnn_ohem.maskrcnn.model as m\n"
        "assert p._ACTIVE == {}, p._ACTIVE\n"
        "import mrcnn_ohem.maskrcnn.losses as l, mrcnn_ohem.maskrcnn.targets as t\n"
        "assert m.rpn_class_loss_graph is l.rpn_class_loss_graph, m.rpn_class_loss_graph\n"
        "assert m.build_rpn_targets is t.build_rpn_targets, m.build_rpn_targets\n"
        "print('clean')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.stdout.strip() == "clean", result.stderr[-2000:]


def test_config_missing_a_matterport_attribute_is_named_before_patching(mini_model):
    class Bare:  # a config that is not Matterport's: no RPN_BBOX_STD_DEV
        OHEM_RPN = True
        RPN_TRAIN_ANCHORS_PER_IMAGE = 16

    original = mini_model.build_rpn_targets
    with pytest.raises(AttributeError, match=r"config must define RPN_BBOX_STD_DEV \(Matterport's Config does\), "
                                             r"which the OHEM RPN targets \(rpn_bbox scaling\) reads; received a "
                                             r"Bare without it"):
        mrcnn_ohem.patch(Bare(), module=mini_model)
    assert mini_model.build_rpn_targets is original

    class Roi(Cfg):
        OHEM_ROI = True

    with pytest.raises(AttributeError, match=r"config must define MASK_SHAPE .* OHEM_ROI"):
        mrcnn_ohem.patch(_without(Roi(), "MASK_SHAPE"), module=mini_model)


def _without(config, name):
    """``config`` whose class lacks ``name`` (Matterport defines every attribute on the class)."""
    namespace = {key: getattr(config, key) for key in dir(config) if key.isupper() and key != name}
    return type(type(config).__name__, (), namespace)()


def test_patch_and_restore_log_one_info_line_each(mini_model, caplog):
    with caplog.at_level("INFO", logger="mrcnn_ohem"):
        handle = mrcnn_ohem.patch(Cfg(), module=mini_model)
        handle.restore()
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("mrcnn_ohem")]
    assert lines == [
        "mrcnn_ohem.patch: replaced rpn_class_loss_graph, build_rpn_targets on mini_matterport_model (OHEM RPN "
        "top_k=5 per_image=True positive_fraction=None negative_pool=None nms_threshold=None "
        "max_negatives_per_positive=None min_negatives=0)",
        "mrcnn_ohem.patch: restored the original rpn_class_loss_graph, build_rpn_targets on mini_matterport_model",
    ]


def test_restore_warns_when_a_fork_model_built_in_the_block_outlives_it(mini_model, caplog):
    """A fork's generator looks build_rpn_targets up when train() runs: after the block, a model
    built inside it would get random-256 targets for its OHEM loss, so restore() says so."""
    with caplog.at_level("WARNING", logger="mrcnn_ohem"):
        with mrcnn_ohem.patch(Cfg(), module=mini_model):
            pass  # nothing built: nothing to warn about
        assert caplog.records == []
        with mrcnn_ohem.patch(Cfg(), module=mini_model):
            mini_model.build_model(10)
    assert len(caplog.records) == 1
    assert "restored mini_matterport_model while a model built with the OHEM RPN loss may still train" in (
        caplog.records[0].getMessage())


def test_a_module_built_against_keras3_is_refused(mini_model):
    """A fork imported without TF_USE_LEGACY_KERAS=1 on TensorFlow 2.16+ holds Keras 3 layers; its
    Lambda layers would fail deep inside Keras, so patch() refuses it first."""
    import keras  # Keras 3, as tf.keras is on TensorFlow 2.16+ without TF_USE_LEGACY_KERAS

    assert keras.__version__.startswith("3.")
    original = mini_model.rpn_class_loss_graph
    mini_model.KL = keras.layers
    with pytest.raises(ValueError, match=r"module must be built against Keras 2 \(tf_keras\); received "
                                         r"mini_matterport_model built against Keras 3 \(KL from keras\.src"):
        mrcnn_ohem.patch(Cfg(), module=mini_model)
    assert mini_model.rpn_class_loss_graph is original
