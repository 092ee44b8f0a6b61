"""The mining options through the config and patch(): validation, anchors, the statistics in the
bundled model's History, and training on background-only images (issue 11)."""
from __future__ import annotations

import numpy as np
import pytest
import tensorflow as tf
from conftest import ShapesDataset, TinyConfig

import mrcnn_ohem
from mrcnn_ohem.binding import SELECTION_METRICS, config_anchors
from mrcnn_ohem.core import auxiliary
from mrcnn_ohem.maskrcnn import model as modellib
from mrcnn_ohem.maskrcnn.data import DataGenerator

BACKGROUND = []  # a background-only image: no instances
OBJECTS = [("square", (12, 10, 6)), ("circle", (30, 28, 7))]


class MiningTiny(mrcnn_ohem.OHEMConfigMixin, TinyConfig):
    NAME = "miningtiny"
    TRAIN_BACKGROUND_IMAGES = True
    OHEM_RPN_TOP_K = 16
    OHEM_RPN_NMS_THRESHOLD = 0.7
    OHEM_RPN_MAX_NEGATIVES_PER_POSITIVE = 3.0
    OHEM_RPN_MIN_NEGATIVES = 4


def shapes(*specs):
    dataset = ShapesDataset()
    dataset.load_shapes(list(specs))
    dataset.prepare()
    return dataset


# --- config, anchors, patch-time errors ---------------------------------------------------------

def test_settings_resolve_and_validate():
    settings = mrcnn_ohem.ohem_settings(MiningTiny())
    assert (settings.nms_threshold, settings.max_negatives_per_positive, settings.min_negatives) == (0.7, 3.0, 4)
    plain = mrcnn_ohem.ohem_settings(TinyConfig())  # a config without the mixin: the defaults
    assert (plain.nms_threshold, plain.max_negatives_per_positive, plain.min_negatives) == (None, None, 0)


@pytest.mark.parametrize("attribute,value,message", [
    ("OHEM_RPN_NMS_THRESHOLD", 0.0, r"OHEM_RPN_NMS_THRESHOLD must be None or a number in \(0, 1\]"),
    ("OHEM_RPN_NMS_THRESHOLD", 1.2, r"OHEM_RPN_NMS_THRESHOLD must be .*; received 1.2"),
    ("OHEM_RPN_MAX_NEGATIVES_PER_POSITIVE", -0.5, r"OHEM_RPN_MAX_NEGATIVES_PER_POSITIVE must be None or a number >= 0"),
    ("OHEM_RPN_MIN_NEGATIVES", -1, r"OHEM_RPN_MIN_NEGATIVES must be an integer >= 0; received -1"),
    ("OHEM_RPN_MIN_NEGATIVES", None, r"OHEM_RPN_MIN_NEGATIVES must be an integer >= 0; received None"),
])
def test_bad_settings_name_the_attribute(attribute, value, message):
    bad = type("Bad", (MiningTiny,), {attribute: value})
    with pytest.raises(ValueError, match=message):
        bad()


def test_background_flag_is_validated():
    with pytest.raises(ValueError, match=r"TRAIN_BACKGROUND_IMAGES must be True or False; received 1"):
        type("Bad", (TinyConfig,), {"TRAIN_BACKGROUND_IMAGES": 1})()


def test_config_anchors_are_the_models_in_rpn_order():
    config = MiningTiny()
    generator = DataGenerator(shapes(OBJECTS), config, shuffle=False)
    np.testing.assert_array_equal(config_anchors(config), generator.anchors.astype(np.float32))


def test_nms_without_a_fixed_image_shape_fails_at_patch_time():
    config = type("Pad", (MiningTiny,), {"IMAGE_RESIZE_MODE": "pad64"})()
    original = modellib.rpn_class_loss_graph
    with pytest.raises(ValueError, match=r"IMAGE_RESIZE_MODE must be one of \['square', 'crop'\] when "
                                         r"OHEM_RPN_NMS_THRESHOLD is set.*received 'pad64'"):
        mrcnn_ohem.patch(config, module=modellib)
    assert modellib.rpn_class_loss_graph is original  # nothing was changed
    type("PadNoNMS", (MiningTiny,), {"IMAGE_RESIZE_MODE": "pad64", "OHEM_RPN_NMS_THRESHOLD": None})()


def test_bound_loss_reports_only_to_a_listener():
    loss_graph = mrcnn_ohem.make_rpn_class_loss_graph(MiningTiny())
    anchors = config_anchors(MiningTiny())
    rng = np.random.default_rng(0)
    match = rng.choice([-1, 0, 1], size=(2, anchors.shape[0], 1), p=[0.8, 0.15, 0.05]).astype(np.int32)
    logits = rng.normal(size=(2, anchors.shape[0], 2)).astype(np.float32)
    silent = loss_graph(match, logits)
    with auxiliary.recording() as recorded:
        heard = loss_graph(match, logits)
    assert recorded.names == list(SELECTION_METRICS)
    assert silent.numpy() == heard.numpy()
    loss, stats = mrcnn_ohem.ohem_rpn_class_loss(match, logits, top_k=16, anchors=anchors, nms_threshold=0.7,
                                                 max_negatives_per_positive=3.0, min_negatives=4,
                                                 return_stats=True)
    assert loss.numpy() == heard.numpy()
    assert recorded.values["ohem_rpn_kept_negatives"].numpy() == pytest.approx(
        stats["kept_negatives"].numpy().mean())


# --- the bundled model: statistics in the History, background-only images ------------------------

@pytest.mark.slow
def test_background_only_batch_has_zero_head_box_and_mask_losses_and_training_reports_stats(tmp_path):
    """One patched model (a build and its traced steps are most of the time) for both checks: its
    losses on a background-only batch, then the selection statistics in train()'s History."""
    config = MiningTiny()
    # Every batch of 2 holds a background-only image (three of the four are). Two batches, not
    # one: a training or validation set of a single batch made Keras' data queue wait out its
    # 5 s timeout at the end of every epoch (tf_keras OrderedEnqueuer.get).
    dataset = shapes(BACKGROUND, OBJECTS, BACKGROUND, BACKGROUND)
    with mrcnn_ohem.patch(config, module=modellib):
        tf.random.set_seed(2)
        model = modellib.MaskRCNN("training", config, str(tmp_path))
        assert model.keras_model.auxiliary_names == SELECTION_METRICS
        generator = DataGenerator(shapes(BACKGROUND, BACKGROUND), config, shuffle=False)
        inputs, _ = generator[0]
        assert (inputs[2] == -1).all() or ((inputs[2] != 1).all() and (inputs[2] == -1).any())
        assert not inputs[4].any()  # no GT class ids
        outputs = dict(zip(model.keras_model.output_names, model.keras_model(inputs, training=True)))
        history = model.train(dataset, dataset, 0.001, 2, "heads", verbose=0, seed=0)

    # The background-only batch (random weights, before training).
    for name in ("rpn_bbox_loss", "mrcnn_bbox_loss", "mrcnn_mask_loss"):
        assert outputs[name].numpy() == 0.0, name
    for name in ("rpn_class_loss", "mrcnn_class_loss"):  # (0.0 only if confidently right)
        assert np.isfinite(outputs[name].numpy()) and outputs[name].numpy() >= 0, name
    # The heads saw background RoIs (not only padding): rows of output_rois that are not zero.
    real_rois = np.abs(outputs["output_rois"].numpy()).sum(axis=-1) > 0
    assert real_rois.sum(axis=1).min() > 0

    # The History of train().
    logs = history.history
    for name in (*SELECTION_METRICS, *(f"val_{n}" for n in SELECTION_METRICS)):
        assert name in logs and len(logs[name]) == 2 and np.all(np.isfinite(logs[name])), name
    # Per image at least OHEM_RPN_MIN_NEGATIVES negatives; the background image has no positives.
    assert min(logs["ohem_rpn_kept_negatives"]) >= 4
    assert max(logs["ohem_rpn_kept_positives"]) <= 16 / 2 + 1e-6
    assert min(logs["ohem_rpn_threshold"]) > 0
    for name in ("loss", "mrcnn_bbox_loss", "mrcnn_mask_loss"):
        assert np.all(np.isfinite(logs[name])), name
    # (Unpatched, the bundled model reports no auxiliary metric: test_maskrcnn_model's
    # test_train_twice_keeps_five_losses_plus_weight_decay.)


def test_generator_skips_background_images_unless_asked():
    dataset = shapes(BACKGROUND, OBJECTS)
    skipping = DataGenerator(dataset, TinyConfig(), shuffle=False, batch_size=2)
    assert skipping[0][0][4].any(axis=1).all()  # both images of the batch have objects
    keeping = DataGenerator(dataset, MiningTiny(), shuffle=False, batch_size=2)
    gt_class_ids = keeping[0][0][4]
    assert not gt_class_ids[0].any() and gt_class_ids[1].any()


# --- the neutral recorder ---------------------------------------------------------------------------

def test_auxiliary_recordings_nest_and_are_per_thread():
    import threading

    assert not auxiliary.listening() and auxiliary.record("x", 1.0) is False
    with auxiliary.recording() as outer:
        with auxiliary.recording() as inner:
            assert auxiliary.record("a", 1.0)
        auxiliary.record("b", 2.0)
        seen = []
        thread = threading.Thread(target=lambda: seen.append(auxiliary.listening()))
        thread.start()
        thread.join()
    assert inner.values == {"a": 1.0} and outer.names == ["b"] and seen == [False]
    assert not auxiliary.listening()


# --- a fork trained by stock Keras fit ------------------------------------------------------------

def test_add_selection_metrics_on_a_stock_keras_model(tmp_path):
    import sys
    import types

    from test_patch import MINI_MODEL_SOURCE, Cfg

    module = types.ModuleType("mini_fork_model")
    exec(compile(MINI_MODEL_SOURCE, "mini_fork_model.py", "exec"), module.__dict__)
    sys.modules[module.__name__] = module
    try:
        with mrcnn_ohem.patch(Cfg(), module=module):
            model = module.build_model(300)
            assert mrcnn_ohem.add_selection_metrics(model) == list(SELECTION_METRICS)
            model.add_loss(tf.reduce_mean(model.outputs[1]))
            model.compile(optimizer="sgd")
            rng = np.random.default_rng(0)
            match = rng.choice([-1, 0, 1], size=(4, 300, 1)).astype(np.int32)
            features = rng.normal(size=(4, 300, 3)).astype(np.float32)
            history = model.fit([match, features], epochs=2, batch_size=2, verbose=0)
        for name in SELECTION_METRICS:
            assert len(history.history[name]) == 2 and np.all(np.isfinite(history.history[name])), name
        # top_k = 5 per image, labels drawn uniformly: 5 kept per image in all.
        kept = np.add(history.history["ohem_rpn_kept_positives"], history.history["ohem_rpn_kept_negatives"])
        np.testing.assert_allclose(kept, 5.0, rtol=1e-6)
        plain = module.build_model(300)  # not patched any more
        with pytest.raises(ValueError, match="must compute the OHEM loss of a patched module"):
            mrcnn_ohem.add_selection_metrics(plain)
    finally:
        sys.modules.pop(module.__name__, None)
