"""Tests for mrcnn_ohem.maskrcnn.model: building, training, detection, weights, devices."""
from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from helpers import RandomShapes, TinyModelConfig

from mrcnn_ohem._compat import import_tf_keras
from mrcnn_ohem.maskrcnn import model as modellib
from mrcnn_ohem.maskrcnn.config import Config
from mrcnn_ohem.maskrcnn.data import DataGenerator

REPO = Path(__file__).resolve().parents[1]
LOSSES = list(modellib.LOSS_NAMES)
keras = import_tf_keras()


def keras_seed(seed):
    """Seed Python, NumPy's global generator and TensorFlow (Matterport's code draws from all)."""
    keras.utils.set_random_seed(seed)


@pytest.fixture(scope="module")
def config():
    return TinyModelConfig()


@pytest.fixture(scope="module")
def dataset():
    ds = RandomShapes()
    ds.load(6)
    ds.prepare()
    return ds


@pytest.fixture(scope="module")
def trained(tmp_path_factory, config, dataset):
    """A training model after two train() calls (epochs 1-2 on 'all', epoch 3 on 'heads')."""
    keras_seed(0)
    model = modellib.MaskRCNN("training", config, str(tmp_path_factory.mktemp("logs")))
    first = model.train(dataset, dataset, 0.01, 2, "all", verbose=0, seed=0)
    second = model.train(dataset, dataset, 0.01, 3, "heads", verbose=0, seed=1)
    return model, first, second


# ---------------------------------------------------------------------- module contract

def test_module_exposes_matterport_names():
    for name in ("rpn_class_loss_graph", "rpn_bbox_loss_graph", "mrcnn_class_loss_graph",
                 "mrcnn_bbox_loss_graph", "mrcnn_mask_loss_graph", "build_rpn_targets",
                 "load_image_gt", "DataGenerator", "MaskRCNN", "mold_image",
                 "compose_image_meta", "parse_image_meta", "parse_image_meta_graph",
                 "norm_boxes_graph", "BatchNorm", "ProposalLayer", "PyramidROIAlign",
                 "DetectionTargetLayer", "DetectionLayer", "resnet_graph", "rpn_graph",
                 "build_rpn_model", "fpn_classifier_graph", "build_fpn_mask_graph", "log"):
        assert hasattr(modellib, name), name


def test_image_size_not_divisible_by_64_is_rejected(tmp_path):
    config = TinyModelConfig()
    config.IMAGE_SHAPE = np.array([96, 96, 3])
    with pytest.raises(ValueError, match="divisible by 64.*received 96x96"):
        modellib.MaskRCNN("inference", config, str(tmp_path))


def test_unknown_mode_is_rejected(tmp_path, config):
    with pytest.raises(ValueError, match="mode: expected 'training' or 'inference'.*'train'"):
        modellib.MaskRCNN("train", config, str(tmp_path))


def test_set_log_dir_resumes_epoch_from_checkpoint_name(tmp_path, config):
    model = modellib.MaskRCNN.__new__(modellib.MaskRCNN)
    model.config, model.model_dir = config, str(tmp_path)
    model.set_log_dir(str(tmp_path / "tinymodel20240102T0304" / "mask_rcnn_tinymodel_0007.h5"))
    assert model.epoch == 7
    assert model.log_dir == str(tmp_path / "tinymodel20240102T0304")
    assert model.checkpoint_path.endswith("mask_rcnn_tinymodel_{epoch:04d}.h5")


# ---------------------------------------------------------------------- weight compatibility

def matterport_resnet101_layers(num_classes=81):
    """Expected {layer name: kernel shape} of Matterport's ResNet-101 Mask R-CNN."""
    expected = {"conv1": (7, 7, 3, 64), "bn_conv1": (64,)}
    stages = {2: (3, 64, 256), 3: (4, 128, 512), 4: (23, 256, 1024), 5: (3, 512, 2048)}
    channels = 64
    for stage, (blocks, width, out) in stages.items():
        for b in range(blocks):
            block = chr(ord("a") + b)
            base = f"{stage}{block}_branch"
            expected[f"res{base}2a"] = (1, 1, channels, width)
            expected[f"res{base}2b"] = (3, 3, width, width)
            expected[f"res{base}2c"] = (1, 1, width, out)
            for branch, size in (("2a", width), ("2b", width), ("2c", out)):
                expected[f"bn{base}{branch}"] = (size,)
            if b == 0:
                expected[f"res{base}1"] = (1, 1, channels, out)
                expected[f"bn{base}1"] = (out,)
            channels = out
    for level, c in zip((5, 4, 3, 2), (2048, 1024, 512, 256)):
        expected[f"fpn_c{level}p{level}"] = (1, 1, c, 256)
        expected[f"fpn_p{level}"] = (3, 3, 256, 256)
    expected.update({
        "rpn_conv_shared": (3, 3, 256, 512), "rpn_class_raw": (1, 1, 512, 6),
        "rpn_bbox_pred": (1, 1, 512, 12),
        "mrcnn_class_conv1": (7, 7, 256, 1024), "mrcnn_class_bn1": (1024,),
        "mrcnn_class_conv2": (1, 1, 1024, 1024), "mrcnn_class_bn2": (1024,),
        "mrcnn_class_logits": (1024, num_classes), "mrcnn_bbox_fc": (1024, 4 * num_classes),
        "mrcnn_mask_deconv": (2, 2, 256, 256), "mrcnn_mask": (1, 1, 256, num_classes),
    })
    for i in range(1, 5):
        expected[f"mrcnn_mask_conv{i}"] = (3, 3, 256, 256)
        expected[f"mrcnn_mask_bn{i}"] = (256,)
    return expected


def weighted_layers(keras_model):
    """{name: first weight's shape} of every weighted layer, descending into nested models."""
    found = {}
    for layer in keras_model.layers:
        if hasattr(layer, "layers") and not hasattr(layer, "layer"):  # nested model
            found.update(weighted_layers(layer))
        elif layer.weights:
            found[layer.name] = tuple(layer.weights[0].shape)
    return found


def test_rpn_shared_filters_set_the_width_of_the_rpn_convolution():
    from mrcnn_ohem.maskrcnn import heads

    assert weighted_layers(heads.build_rpn_model(1, 3, 16)) == {
        "rpn_conv_shared": (3, 3, 16, 512), "rpn_class_raw": (1, 1, 512, 6), "rpn_bbox_pred": (1, 1, 512, 12)}
    assert weighted_layers(heads.build_rpn_model(1, 3, 16, filters=24)) == {
        "rpn_conv_shared": (3, 3, 16, 24), "rpn_class_raw": (1, 1, 24, 6), "rpn_bbox_pred": (1, 1, 24, 12)}


@pytest.mark.slow
def test_resnet101_layer_names_and_shapes_equal_matterports(tmp_path):
    class CocoLike(Config):
        NAME = "coco"
        NUM_CLASSES = 81
        IMAGES_PER_GPU = 1
        IMAGE_MIN_DIM = 1024
        IMAGE_MAX_DIM = 1024

    model = modellib.MaskRCNN("inference", CocoLike(), str(tmp_path))
    assert weighted_layers(model.keras_model) == matterport_resnet101_layers()
    bn = model.keras_model.get_layer("bn2a_branch2a")
    assert [w.name.split("/")[-1] for w in bn.weights] == [
        "gamma:0", "beta:0", "moving_mean:0", "moving_variance:0"]


# ---------------------------------------------------------------------- building

@pytest.mark.slow
def test_training_model_inputs_outputs_and_patched_loss_at_build(tmp_path, config, dataset,
                                                                 monkeypatch):
    calls = []

    def fake_rpn_class_loss(rpn_match, rpn_class_logits):
        calls.append(1)
        return tf.reduce_sum(tf.cast(rpn_match, tf.float32)) * 0.0 + 7.0

    monkeypatch.setattr(modellib, "rpn_class_loss_graph", fake_rpn_class_loss)
    keras_seed(2)
    model = modellib.MaskRCNN("training", config, str(tmp_path))
    monkeypatch.undo()  # the graph keeps the function it was built with
    keras_model = model.keras_model
    assert [t.name.split(":")[0] for t in keras_model.inputs][:3] == [
        "input_image", "input_image_meta", "input_rpn_match"]
    assert {"rpn_class_logits", "rpn_class_loss", *LOSSES} <= set(keras_model.output_names)
    inputs, _ = DataGenerator(dataset, config, shuffle=False, seed=0)[0]
    outputs = dict(zip(keras_model.output_names, keras_model(inputs, training=False)))
    assert outputs["rpn_class_loss"].numpy() == pytest.approx(7.0)
    assert outputs["rpn_class_logits"].shape[-1] == 2
    assert calls


class _NoClipConfig(TinyModelConfig):
    GRADIENT_CLIP_NORM = 0  # no global clipping: the RPN's update depends on the RPN losses only


@pytest.mark.slow
def test_a_few_steps_lower_the_loss_and_compiling_again_keeps_the_traced_step_and_starts_sgd_afresh(
        tmp_path, dataset):
    """One model (a build and a traced step are most of the time) for two checks: a few SGD steps
    on a batch lower its total loss; compiling again keeps the traced step, with SGD reset."""
    config = _NoClipConfig()
    keras_seed(3)
    model = modellib.MaskRCNN("training", config, str(tmp_path))
    keras_model, rpn = model.keras_model, model.keras_model.get_layer("rpn_model")
    inputs, _ = DataGenerator(dataset, config, shuffle=False, seed=0)[0]
    model.set_trainable(".*", verbose=0)
    # Without clipping, 0.01 (with the default GRADIENT_CLIP_NORM) makes the first steps diverge
    # (measured: NaN after 4 steps at 0.01, 6 at 0.005); 0.001 lowers the loss about 3 times.
    model.compile(0.001, 0.9)

    def mean_loss():
        return np.mean([keras_model.test_on_batch(inputs, return_dict=True)["loss"] for _ in range(3)])

    loss_before = mean_loss()
    for _ in range(8):  # momentum and iteration are non-zero afterwards
        keras_model.train_on_batch(inputs)
    loss_after = mean_loss()
    assert np.isfinite(loss_before) and loss_after < 0.8 * loss_before, (loss_before, loss_after)

    step, optimizer = keras_model.train_function, keras_model.optimizer
    start, rpn_start = keras_model.get_weights(), rpn.get_weights()

    model.compile(0.02, 0.9)  # same layers, momentum and clipping: kept, reset
    assert keras_model.train_function is step and keras_model.optimizer is optimizer
    assert float(optimizer.learning_rate.numpy()) == pytest.approx(0.02)
    assert all(not np.any(v.numpy()) for v in optimizer.variables)
    keras_model.train_on_batch(inputs)
    assert step.experimental_get_tracing_count() == 1
    kept = rpn.get_weights()

    # The reference: the same start weights and batch through a newly compiled SGD (a compile()
    # of the user's own in between means nothing is kept). Only the RPN's weights are compared:
    # the RoI heads sample their RoIs at random in the graph, the RPN losses use the batch's
    # anchor labels alone.
    keras_model.set_weights(start)
    keras_model.compile(optimizer="adam")
    model.compile(0.02, 0.9)
    assert keras_model.optimizer is not optimizer and keras_model.train_function is None
    keras_model.train_on_batch(inputs)
    fresh = rpn.get_weights()
    for before, got, want in zip(rpn_start, kept, fresh):
        assert not np.allclose(before, want, rtol=0, atol=1e-7)  # the step moved every weight
        np.testing.assert_allclose(got - before, want - before, rtol=1e-3, atol=1e-7)

    model.set_trainable(modellib.LAYER_PRESETS["heads"], verbose=0)
    model.compile(0.02, 0.9)  # other trainable weights: a new optimizer, traced anew
    assert keras_model.train_function is None


# ---------------------------------------------------------------------- train()

@pytest.mark.slow
def test_train_twice_keeps_five_losses_plus_weight_decay(trained):
    model, first, second = trained
    names = ["loss", *LOSSES, modellib.WEIGHT_DECAY_NAME]
    for history in (first, second):
        assert set(history.history) == set(names) | {f"val_{n}" for n in names}
        for prefix in ("", "val_"):
            for epoch in range(len(history.history["loss"])):
                parts = sum(history.history[prefix + n][epoch] for n in names[1:])
                total = history.history[prefix + "loss"][epoch]
                assert total == pytest.approx(parts, rel=1e-5), (prefix, epoch)
    assert [m.name for m in model.keras_model.metrics] == names
    assert model.keras_model.auxiliary_names == ()  # not patched: no selection statistics
    assert len(first.history["loss"]) == 2 and len(second.history["loss"]) == 1
    assert model.epoch == 3


@pytest.mark.slow
def test_train_forwards_seed_to_both_data_generators(trained, dataset, monkeypatch):
    model, _, _ = trained
    seen = []

    class Recording(modellib.DataGenerator):
        def __init__(self, *args, **kwargs):
            seen.append(kwargs.get("seed"))
            super().__init__(*args, **kwargs)
            if len(seen) == 2:
                raise RuntimeError("stop before fit")

    monkeypatch.setattr(modellib, "DataGenerator", Recording)
    with pytest.raises(RuntimeError, match="stop before fit"):
        model.train(dataset, dataset, 0.01, model.epoch + 1, "heads", verbose=0, seed=7)
    assert seen == [7, 7]


@pytest.mark.slow
def test_train_writes_upstream_checkpoints_and_find_last(trained):
    model, _, _ = trained
    assert re.fullmatch(r"tinymodel\d{8}T\d{4}", os.path.basename(model.log_dir))
    files = sorted(os.listdir(model.log_dir))
    assert [f for f in files if f.endswith(".h5")] == [
        f"mask_rcnn_tinymodel_{e:04d}.h5" for e in (1, 2, 3)]
    assert model.find_last() == os.path.join(model.log_dir, "mask_rcnn_tinymodel_0003.h5")


@pytest.mark.slow
def test_train_rejects_unknown_layer_preset(trained, dataset):
    model, _, _ = trained
    with pytest.raises(ValueError, match=r"layers: expected one of \['heads'.*received '\(\['"):
        model.train(dataset, dataset, 0.01, 4, "([")


# ---------------------------------------------------------------------- inference and weights

def steer_classifier(model, class_id):
    """Make the classifier head score every ROI as ``class_id`` with probability ~1 and leave the
    proposals unrefined (zero kernels, a bias of 30 on that class), so what ``detect`` returns
    follows from the code, not from the random weights."""
    for name in ("mrcnn_class_logits", "mrcnn_bbox_fc"):
        layer = model.keras_model.get_layer(name)
        kernel, bias = layer.get_weights()
        bias = np.zeros_like(bias)
        if name == "mrcnn_class_logits":
            bias[class_id] = 30.0
        layer.set_weights([np.zeros_like(kernel), bias])


def assert_detection_dicts(results, images, config):
    """What detect() guarantees for any weights: one dict per image with consistent shapes."""
    assert len(results) == len(images)
    for image, r in zip(images, results):
        n = r["class_ids"].shape[0]
        assert n <= config.DETECTION_MAX_INSTANCES
        assert r["rois"].shape == (n, 4) and r["scores"].shape == (n,)
        assert r["class_ids"].dtype == np.int32 and r["scores"].dtype == np.float32
        assert r["masks"].shape == image.shape[:2] + (n,) and r["masks"].dtype == bool
        assert np.all(np.diff(r["scores"]) <= 1e-6)  # sorted by score
        assert np.all(r["rois"][:, 2:] > r["rois"][:, :2])  # zero-area boxes are dropped
        assert set(r["class_ids"].tolist()) <= set(range(1, config.NUM_CLASSES))


@pytest.fixture(scope="module")
def inference_model(tmp_path_factory, config):
    """An inference model with seeded random weights. The detection test below steers its heads;
    the weights round trip then loads every weight into it from a file (and checks them all)."""
    keras_seed(0)
    return modellib.MaskRCNN("inference", config, str(tmp_path_factory.mktemp("inference")))


@pytest.mark.slow
def test_detect_structure_for_any_weights_and_zero_detections(inference_model, config, dataset):
    model = inference_model
    images = [dataset.load_image(0), dataset.load_image(1)[:40, :56]]
    assert_detection_dicts(model.detect(images), images, config)  # random weights: any count

    steer_classifier(model, 1)  # every ROI is class 1 with score ~1
    results = model.detect(images)
    assert_detection_dicts(results, images, config)
    for r in results:
        assert set(r["class_ids"].tolist()) <= {1} and np.all(r["scores"] > 0.99)

    steer_classifier(model, 0)  # every ROI is background: nothing is detected
    for image, r in zip(images, model.detect(images)):
        assert r["rois"].shape == (0, 4) and r["class_ids"].shape == (0,) and r["scores"].shape == (0,)
        assert r["masks"].shape == image.shape[:2] + (0,) and r["masks"].dtype == bool

    probe = model.run_graph(images, [("proposals", model.keras_model.get_layer("ROI").output),
                                     ("detections", model.keras_model.get_layer("mrcnn_detection").output)])
    assert list(probe) == ["proposals", "detections"]
    assert probe["proposals"].shape == (2, config.POST_NMS_ROIS_INFERENCE, 4)
    assert probe["detections"].shape == (2, config.DETECTION_MAX_INSTANCES, 6)
    assert not probe["detections"].any()  # background everywhere: all padding
    assert len(model.get_trainable_layers()) == len(
        [layer for layer in model.keras_model.layers if layer.weights])

    with pytest.raises(ValueError, match=r"images: expected a list of config.BATCH_SIZE=2 .*received 1"):
        model.detect(images[:1])


@pytest.mark.slow
def test_weights_round_trip_gives_the_same_outputs(tmp_path, trained, inference_model, config, dataset):
    model, _, _ = trained
    images = [dataset.load_image(0), dataset.load_image(1)[:40, :56]]

    # A training checkpoint loads into an inference model by name.
    first = modellib.MaskRCNN("inference", config, str(tmp_path))
    first.load_weights(model.find_last(), by_name=True)
    for name in ("res3a_tiny", "fpn_p2", "mrcnn_mask"):
        for a, b in zip(first.keras_model.get_layer(name).get_weights(),
                        model.keras_model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(a, b)

    # Saved and reloaded weights (these trained ones) give another inference model the same raw
    # outputs and the same detections. The other model is the module's (random weights, heads
    # steered if the detection test ran): the load must replace every one of its weights.
    saved = str(tmp_path / "inference.h5")
    first.keras_model.save_weights(saved)
    second = inference_model
    second.load_weights(saved, by_name=True)
    for a, b in zip(first.keras_model.weights, second.keras_model.weights):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.name)
    molded, metas, _ = first.mold_inputs(images)
    anchors = np.broadcast_to(first.get_anchors(molded[0].shape), (2, *first.get_anchors(molded[0].shape).shape))
    raw = [m.keras_model.predict([molded, metas, np.ascontiguousarray(anchors)], verbose=0) for m in (first, second)]
    for a, b in zip(*raw):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    results, again = first.detect(images), second.detect(images)
    assert_detection_dicts(results, images, config)
    for a, b in zip(results, again):
        assert a["class_ids"].shape == b["class_ids"].shape
        for key in ("rois", "class_ids", "scores", "masks"):
            np.testing.assert_allclose(a[key], b[key], atol=1e-5, err_msg=key)

    with pytest.raises(ValueError, match="detect\\(\\) needs a model built with mode='inference'"):
        model.detect(images)


@pytest.mark.slow
def test_load_weights_errors_list_layers(tmp_path, trained):
    model, _, _ = trained
    checkpoint = model.find_last()

    class FourClasses(TinyModelConfig):
        NUM_CLASSES = 4

    other = modellib.MaskRCNN("inference", FourClasses(), str(tmp_path))
    with pytest.raises(ValueError, match=r"mrcnn_class_logits \(model \[\(32, 4\), \(4,\)\], "
                                         r"file \[\(32, 3\), \(3,\)\]\)"):
        other.load_weights(checkpoint, by_name=True)
    heads = ["mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_mask"]
    other.load_weights(checkpoint, exclude=heads)
    np.testing.assert_array_equal(other.keras_model.get_layer("fpn_p2").get_weights()[0],
                                  model.keras_model.get_layer("fpn_p2").get_weights()[0])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        other.load_weights(str(tmp_path / "missing.h5"))

    empty = tmp_path / "partial.h5"
    import h5py

    with h5py.File(empty, "w") as f:
        f.attrs["layer_names"] = [b"conv1"]
        group = f.create_group("conv1")
        group.attrs["weight_names"] = [b"conv1/kernel:0", b"conv1/bias:0"]
        group["conv1/kernel:0"] = np.zeros((3, 3, 3, 8), np.float32)
        group["conv1/bias:0"] = np.zeros((8,), np.float32)
    with pytest.raises(ValueError, match="Missing from the file: .*'bn_conv1'"):
        other.load_weights(str(empty))


# ---------------------------------------------------------------------- multi-device

MIRRORED_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration(), tf.config.LogicalDeviceConfiguration()])

    sys.path.insert(0, {tests!r})
    from helpers import RandomShapes, TinyModelConfig
    from mrcnn_ohem._compat import import_tf_keras
    from mrcnn_ohem.maskrcnn import model as modellib
    from mrcnn_ohem.maskrcnn.data import DataGenerator

    import_tf_keras().utils.set_random_seed(0)

    class TwoReplicas(TinyModelConfig):
        GPU_COUNT = 2
        IMAGES_PER_GPU = 1
        GRADIENT_CLIP_NORM = 0
        LEARNING_MOMENTUM = 0.0  # the step is -learning_rate * gradient
        STEPS_PER_EPOCH = 1

    config = TwoReplicas()
    dataset = RandomShapes()
    dataset.load(2)  # one batch of two images, the batch train() steps on
    dataset.prepare()
    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    model = modellib.MaskRCNN("training", config, {logs!r}, strategy=strategy)
    keras_model = model.keras_model
    # train(seed=0)'s batch: a seeded generator draws each image's targets from the seed, the
    # epoch and the image's position, so this one gives the same batch.
    inputs, _ = DataGenerator(dataset, config, shuffle=True, seed=0)[0]

    # Gradient of one image's loss w.r.t. the RPN weights (no randomness reaches them).
    model.set_trainable(r"rpn\\_.*", verbose=0)
    variables = keras_model.trainable_variables
    def image_grads(i):
        with tf.GradientTape() as tape:
            terms = keras_model._loss_terms(keras_model([x[i:i + 1] for x in inputs],
                                                        training=True))
            total = tf.add_n(list(terms.values()))
        return [g.numpy() for g in tape.gradient(total, variables)]
    expected = [(a + b) / 2 for a, b in zip(image_grads(0), image_grads(1))]
    before = [v.numpy() for v in variables]
    # One step of train() at learning rate 1 (one batch: Keras' data queue then waits out its
    # 5 s timeout as train() ends; no CPU is spent meanwhile).
    history = model.train(dataset, None, 1.0, 1, r"rpn\\_.*", verbose=0, seed=0)
    after = [v.numpy() for v in keras_model.trainable_variables]
    for b, a, g in zip(before, after, expected):
        np.testing.assert_allclose(b - a, g, rtol=1e-3, atol=1e-5)
    assert np.isfinite(history.history["loss"][0])
    print("REPLICAS", strategy.num_replicas_in_sync)
""")


@pytest.mark.slow
def test_two_replica_mirrored_strategy_trains_with_averaged_gradients(tmp_path):
    script = MIRRORED_SCRIPT.format(tests=str(REPO / "tests"), logs=str(tmp_path))
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    result = subprocess.run([sys.executable, "-c", script], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "REPLICAS 2" in result.stdout
