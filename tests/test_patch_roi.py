"""mrcnn_ohem.patch with OHEM_ROI and the focal RPN loss on a small Matterport-style module.

The module mimics upstream ``mrcnn/model.py``: a ``DetectionTargetLayer(config, **kwargs)``
that keeps ``self.config`` and derives its output size from ``config.TRAIN_ROIS_PER_IMAGE``, a
module-level ``mrcnn_class_loss_graph`` and a builder that looks both up by global name.
"""
import sys
import textwrap
import types

import numpy as np
import pytest
import reference
import tensorflow as tf

import mrcnn_ohem
from mrcnn_ohem.patching import _ACTIVE

FORK_SOURCE = textwrap.dedent(
    '''
    import tensorflow as tf
    from mrcnn_ohem._compat import import_tf_keras

    keras = import_tf_keras()
    KL = keras.layers

    def rpn_class_loss_graph(rpn_match, rpn_class_logits):
        return tf.constant(0.0)

    def build_rpn_targets(image_shape, anchors, gt_class_ids, gt_boxes, config):
        raise NotImplementedError

    def mrcnn_class_loss_graph(target_class_ids, pred_class_logits, active_class_ids):
        return tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(
            labels=tf.cast(target_class_ids, tf.int64), logits=pred_class_logits))

    class DetectionTargetLayer(KL.Layer):
        """Upstream style: keeps the config, takes the first TRAIN_ROIS_PER_IMAGE proposals."""

        def __init__(self, config, **kwargs):
            super().__init__(**kwargs)
            self.config = config

        def call(self, inputs):
            rois = inputs[0][:, :self.config.TRAIN_ROIS_PER_IMAGE]
            zeros = tf.zeros_like(rois[..., 0], tf.int32)
            masks = tf.zeros(tf.concat([tf.shape(zeros), self.config.MASK_SHAPE], 0))
            return [rois, zeros, tf.zeros_like(rois), masks]

        def compute_output_shape(self, input_shape):
            t = self.config.TRAIN_ROIS_PER_IMAGE
            return [(None, t, 4), (None, t), (None, t, 4), (None, t, *self.config.MASK_SHAPE)]

    def build_model(config, proposals, max_gt, mask_hw):
        input_rois = KL.Input(shape=(proposals, 4), name="input_rois")
        input_gt_class_ids = KL.Input(shape=(max_gt,), dtype="int32", name="input_gt_class_ids")
        input_gt_boxes = KL.Input(shape=(max_gt, 4), name="input_gt_boxes")
        input_gt_masks = KL.Input(shape=(*mask_hw, max_gt), dtype="bool", name="input_gt_masks")
        active_class_ids = KL.Input(shape=(config.NUM_CLASSES,), name="active_class_ids")
        rois, target_class_ids, target_bbox, target_mask = DetectionTargetLayer(
            config, name="proposal_targets")([input_rois, input_gt_class_ids, input_gt_boxes, input_gt_masks])
        logits = KL.Dense(config.NUM_CLASSES, name="mrcnn_class_logits")(rois)
        loss = KL.Lambda(lambda x: mrcnn_class_loss_graph(*x), name="mrcnn_class_loss")(
            [target_class_ids, logits, active_class_ids])
        return keras.Model([input_rois, input_gt_class_ids, input_gt_boxes, input_gt_masks, active_class_ids],
                           [rois, target_class_ids, target_bbox, target_mask, logits, loss])
    '''
)


@pytest.fixture
def fork():
    module = types.ModuleType("mini_fork_model")
    exec(compile(FORK_SOURCE, "mini_fork_model.py", "exec"), module.__dict__)
    sys.modules[module.__name__] = module
    yield module
    handle = _ACTIVE.get(module.__name__)
    if handle is not None:
        handle.restore()
    sys.modules.pop(module.__name__, None)


class RoiConfig(mrcnn_ohem.OHEMConfig):
    NAME = "roi"
    NUM_CLASSES = 3
    OHEM_RPN = False
    OHEM_ROI = True
    TRAIN_ROIS_PER_IMAGE = 8
    OHEM_ROI_POOL = 24
    OHEM_ROI_TOP_K = 5
    MASK_SHAPE = [6, 6]
    USE_MINI_MASK = False


def fork_inputs(rng, batch=2, proposals=40):
    gt_boxes = np.zeros((batch, 3, 4), np.float32)
    gt_boxes[:, 0] = [0.2, 0.2, 0.5, 0.5]
    gt_class_ids = np.zeros((batch, 3), np.int32)
    gt_class_ids[:, 0] = 2
    rois = rng.uniform(0.0, 0.5, size=(batch, proposals, 2)).astype(np.float32)
    rois = np.concatenate([rois, rois + 0.3], axis=-1)
    rois[:, :3] = gt_boxes[:, :1] + rng.uniform(-0.02, 0.02, size=(batch, 3, 4))
    masks = np.zeros((batch, 16, 16, 3), bool)
    masks[:, 3:8, 3:8, 0] = True
    active = np.ones((batch, 3), np.float32)
    return [rois, gt_class_ids, gt_boxes, masks, active]


def test_roi_ohem_reaches_a_fork_and_restores(fork):
    original_layer, original_loss = fork.DetectionTargetLayer, fork.mrcnn_class_loss_graph
    rpn_loss = fork.rpn_class_loss_graph
    config = RoiConfig()
    with mrcnn_ohem.patch(config, module=fork) as handle:
        assert set(handle.originals) == {"DetectionTargetLayer", "mrcnn_class_loss_graph"}
        assert fork.rpn_class_loss_graph is rpn_loss  # OHEM_RPN = False: the RPN is left alone
        assert issubclass(fork.DetectionTargetLayer, original_layer)
        tf.random.set_seed(0)
        model = fork.build_model(config, 40, 3, (16, 16))
        layer = model.get_layer("proposal_targets")
        # The fork's own __init__ saw the pool size; the user's config is untouched.
        assert layer.config.TRAIN_ROIS_PER_IMAGE == 24 and config.TRAIN_ROIS_PER_IMAGE == 8
        inputs = fork_inputs(np.random.default_rng(0))
        rois, class_ids, _, masks, logits, loss = (t.numpy() for t in model(inputs))
        assert rois.shape == (2, 24, 4) and masks.shape == (2, 24, 6, 6)
        assert ((class_ids == 2).sum(axis=1) == 2).all()  # the positive cap int(8 * 0.33) = 2
        expected = reference.ohem_mrcnn_class_loss(class_ids, logits, inputs[4], 5)
        assert loss == pytest.approx(expected, rel=1e-5)
    assert fork.DetectionTargetLayer is original_layer and fork.mrcnn_class_loss_graph is original_loss
    model = fork.build_model(config, 40, 3, (16, 16))
    assert model(fork_inputs(np.random.default_rng(0)))[0].shape == (2, 8, 4)


def test_repatching_never_stacks_and_drops_what_the_new_config_leaves_off(fork):
    original_layer, original_rpn = fork.DetectionTargetLayer, fork.rpn_class_loss_graph
    first = mrcnn_ohem.patch(RoiConfig(), module=fork)

    class Bigger(RoiConfig):
        OHEM_ROI_POOL = 40
        OHEM_RPN = True
        OHEM_RPN_LOSS = "focal"
        OHEM_RPN_FOCAL_GAMMA = 1.0

    second = mrcnn_ohem.patch(Bigger(), module=fork)
    assert fork.DetectionTargetLayer.__bases__ == (original_layer,)  # built on the original
    assert fork.DetectionTargetLayer.ohem_arguments["pool_size"] == 40
    assert fork.rpn_class_loss_graph.rpn_loss_settings == ("focal", 0.25, 1.0)
    assert second.originals["DetectionTargetLayer"] is original_layer and not first.active

    class RpnOnly(RoiConfig):
        OHEM_ROI = False
        OHEM_RPN = True

    third = mrcnn_ohem.patch(RpnOnly(), module=fork)
    assert fork.DetectionTargetLayer is original_layer  # RoI OHEM switched off: original back
    assert set(third.originals) == {"rpn_class_loss_graph", "build_rpn_targets"}
    third.restore()
    assert fork.rpn_class_loss_graph is original_rpn and fork.DetectionTargetLayer is original_layer


def test_focal_rpn_is_installed_with_the_full_negative_pool(fork):
    class Focal(RoiConfig):
        OHEM_ROI = False
        OHEM_RPN = True
        OHEM_RPN_LOSS = "focal"
        RPN_TRAIN_ANCHORS_PER_IMAGE = 16

    with mrcnn_ohem.patch(Focal(), module=fork):
        rng = np.random.default_rng(0)
        match = rng.choice([-1, 0, 1], size=(2, 50, 1)).astype(np.int32)
        logits = rng.normal(size=(2, 50, 2)).astype(np.float32)
        got = fork.rpn_class_loss_graph(tf.constant(match), tf.constant(logits)).numpy()
        assert got == pytest.approx(reference.focal_rpn_loss(match, logits), rel=1e-5)
        anchors = np.array([[y, x, y + 8, x + 8] for y in range(0, 64, 4) for x in range(0, 64, 4)], np.float32)
        rpn_match, _ = fork.build_rpn_targets((64, 64, 3), anchors, np.array([1]),
                                              np.array([[8, 8, 16, 16]], np.float32), Focal())
        assert (rpn_match == -1).sum() > 200  # every negative, not Matterport's random 16


def test_layer_with_another_constructor_is_rejected_before_anything_changes(fork):
    class Other(fork.DetectionTargetLayer):
        def __init__(self, *, name=None):
            super().__init__(None, name=name)

    fork.DetectionTargetLayer = Other
    loss = fork.mrcnn_class_loss_graph
    with pytest.raises(TypeError, match=r"DetectionTargetLayer must be constructed as DetectionTargetLayer\(config"):
        mrcnn_ohem.patch(RoiConfig(), module=fork)
    assert fork.mrcnn_class_loss_graph is loss and fork.DetectionTargetLayer is Other


def test_missing_class_loss_is_rejected(fork):
    del fork.mrcnn_class_loss_graph
    with pytest.raises(AttributeError, match=r"has no function 'mrcnn_class_loss_graph'"):
        mrcnn_ohem.patch(RoiConfig(), module=fork)


def test_roi_names_are_not_checked_when_roi_ohem_is_off(fork):
    del fork.DetectionTargetLayer

    class RpnOnly(RoiConfig):
        OHEM_ROI = False
        OHEM_RPN = True

    with mrcnn_ohem.patch(RpnOnly(), module=fork) as handle:
        assert set(handle.originals) == {"rpn_class_loss_graph", "build_rpn_targets"}


def test_make_rpn_class_loss_graph_follows_the_rpn_loss_switch():
    class Focal(RoiConfig):
        OHEM_RPN_LOSS = "focal"
        OHEM_RPN_FOCAL_ALPHA = 0.4

    loss = mrcnn_ohem.make_rpn_class_loss_graph(Focal())
    match = np.array([[[1], [-1], [0]]])
    logits = np.array([[[0.0, 1.0], [2.0, -1.0], [0.0, 0.0]]], np.float32)
    assert loss(match, logits).numpy() == pytest.approx(reference.focal_rpn_loss(match, logits, 0.4), rel=1e-6)
