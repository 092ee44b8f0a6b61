"""Tests for mrcnn_ohem.maskrcnn.weights: class-head surgery with ``class_indices``.

The fast tests use a three-layer stand-in with the class heads' names and shapes; the slow one
loads an 81-class tiny Mask R-CNN into a 3-class one and compares the class logits on an image.
"""
from __future__ import annotations

import numpy as np
import pytest
from conftest import TinyConfig

from mrcnn_ohem._compat import import_tf_keras
from mrcnn_ohem.maskrcnn import weights

keras = import_tf_keras()
KL = keras.layers


def _heads(num_classes: int, seed: int):
    """Layers named and shaped like the class heads: logits [8, C], bbox [8, 4C], mask 1x1 conv."""
    features = keras.Input((8,))
    pixels = keras.Input((2, 2, 6))
    logits = KL.Dense(num_classes, name="mrcnn_class_logits")(features)
    bbox = KL.Dense(num_classes * 4, name="mrcnn_bbox_fc")(features)
    mask = KL.Conv2D(num_classes, 1, name="mrcnn_mask")(pixels)
    shared = KL.Dense(5, name="shared_fc")(features)
    model = keras.Model([features, pixels], [logits, bbox, mask, shared])
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in model.get_weights()])
    return model


@pytest.fixture
def file81(tmp_path):
    model = _heads(81, seed=0)
    path = str(tmp_path / "heads81.h5")
    model.save_weights(path)
    return model, path


def test_class_indices_take_the_rows_with_their_four_deltas(file81):
    source, path = file81
    target = _heads(3, seed=1)
    weights.load_h5_weights(target, path, class_indices=[0, 1, 17])
    rows = np.array([0, 1, 17])
    kernel, bias = source.get_layer("mrcnn_class_logits").get_weights()
    np.testing.assert_array_equal(target.get_layer("mrcnn_class_logits").get_weights()[0], kernel[:, rows])
    np.testing.assert_array_equal(target.get_layer("mrcnn_class_logits").get_weights()[1], bias[rows])
    # bbox: class c owns columns 4c .. 4c+3 -> [0..3, 4..7, 68..71]
    deltas = np.concatenate([np.arange(4 * r, 4 * r + 4) for r in rows])
    for got, want in zip(target.get_layer("mrcnn_bbox_fc").get_weights(),
                         source.get_layer("mrcnn_bbox_fc").get_weights()):
        np.testing.assert_array_equal(got, want[..., deltas])
    for got, want in zip(target.get_layer("mrcnn_mask").get_weights(),
                         source.get_layer("mrcnn_mask").get_weights()):
        np.testing.assert_array_equal(got, want[..., rows])
    for got, want in zip(target.get_layer("shared_fc").get_weights(), source.get_layer("shared_fc").get_weights()):
        np.testing.assert_array_equal(got, want)  # the rest loads by name as before


@pytest.mark.parametrize("indices, message", [
    ([0, 1], r"one file row per model class \(3, background first\); received 2"),
    ([0, 1, 81], r"integers in \[0, 81\).*received \[81\]"),
    ([0, -1, 3], r"received \[-1\]"),
    ([0, 1.0, 3], r"received \[1.0\]"),
])
def test_bad_class_indices_change_nothing(file81, indices, message):
    _, path = file81
    target = _heads(3, seed=1)
    before = target.get_weights()
    with pytest.raises(ValueError, match=message):
        weights.load_h5_weights(target, path, class_indices=indices)
    for a, b in zip(before, target.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_class_head_rows_and_mismatched_heads(file81):
    _, path = file81
    stored = weights.read_h5_weights(path)
    assert weights.class_head_rows(stored) == 81
    assert weights.class_head_rows({"conv1": [np.zeros(3)]}) is None
    stored["mrcnn_mask"] = [v[..., :5] for v in stored["mrcnn_mask"]]
    with pytest.raises(ValueError, match="disagree on the number of classes"):
        weights.class_head_rows(stored)


@pytest.mark.slow
def test_81_class_file_into_3_class_model_gives_the_same_logits(tmp_path):
    from mrcnn_ohem.maskrcnn import model as modellib

    class Tiny81(TinyConfig):
        NAME = "tiny81"
        NUM_CLASSES = 81
        IMAGES_PER_GPU = 1
        DETECTION_MIN_CONFIDENCE = 0.0

    class Tiny3(Tiny81):
        NUM_CLASSES = 3

    big = modellib.MaskRCNN("inference", Tiny81(), str(tmp_path))
    rng = np.random.default_rng(0)
    for name in weights.CLASS_HEADS:  # random biases too, so a wrong row cannot pass
        layer = big.keras_model.get_layer(name)
        layer.set_weights([rng.normal(scale=0.5, size=w.shape).astype(np.float32) for w in layer.get_weights()])
    path = str(tmp_path / "coco81.h5")
    big.keras_model.save_weights(path)

    small = modellib.MaskRCNN("inference", Tiny3(), str(tmp_path))
    rows = [0, 1, 17]  # BG, person, dog in Matterport's COCO order
    small.load_weights(path, by_name=True, class_indices=rows)
    deltas = np.concatenate([np.arange(4 * r, 4 * r + 4) for r in rows])
    for name, columns in (("mrcnn_class_logits", rows), ("mrcnn_bbox_fc", deltas), ("mrcnn_mask", rows)):
        for got, want in zip(small.keras_model.get_layer(name).get_weights(),
                             big.keras_model.get_layer(name).get_weights()):
            np.testing.assert_array_equal(got, want[..., columns], err_msg=name)

    image = rng.integers(0, 255, (64, 64, 3)).astype(np.uint8)
    # Same backbone and RPN -> same ROIs; the class logits of the kept rows must then match.
    # (Softmax probabilities would not: they normalise over 81 vs 3 classes.)
    outputs = {}
    for key, model in (("big", big), ("small", small)):
        outputs[key] = model.run_graph([image], [
            ("rois", model.keras_model.get_layer("ROI").output),
            ("logits", model.keras_model.get_layer("mrcnn_class_logits").output)])
    np.testing.assert_array_equal(outputs["big"]["rois"], outputs["small"]["rois"])
    np.testing.assert_allclose(outputs["small"]["logits"], outputs["big"]["logits"][..., rows],
                               rtol=1e-5, atol=1e-5)
    # ... and so do the probabilities renormalised over the kept classes.
    def softmax(x):
        e = np.exp(x - x.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    np.testing.assert_allclose(softmax(outputs["small"]["logits"]),
                               softmax(outputs["big"]["logits"][..., rows]), rtol=1e-4, atol=1e-6)


# --- ImageNet ResNet files -------------------------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("conv1_conv", "conv1"), ("conv1_bn", "bn_conv1"), ("conv2_block1_0_conv", "res2a_branch1"),
    ("conv2_block1_1_bn", "bn2a_branch2a"), ("conv3_block4_3_conv", "res3d_branch2c"),
    ("conv4_block23_2_bn", "bn4w_branch2b"), ("conv5_block3_out", None), ("res2a_branch2a", None),
    ("mrcnn_mask", None)])
def test_keras_applications_names_map_to_matterport_names(name, expected):
    # ResNet-101's stage 4 has 23 blocks, lettered a..w by Matterport (block 23 -> 'w').
    assert weights.matterport_backbone_name(name) == expected


@pytest.mark.slow
def test_a_keras_applications_imagenet_file_loads_by_name_into_the_backbone(tmp_path):
    """Keras' ResNet-50 file, as today's keras.applications names it, loads into Matterport's
    backbone by name, and the backbone then computes what Keras' own ResNet-50 computes."""
    from mrcnn_ohem.maskrcnn.backbone import resnet_graph

    keras.utils.set_random_seed(0)
    reference = keras.applications.ResNet50(weights=None, include_top=False, input_shape=(64, 64, 3))
    rng = np.random.default_rng(0)
    for layer in reference.layers:  # non-trivial BatchNorm statistics as well
        layer.set_weights([rng.normal(0.5, 0.1, w.shape).astype(np.float32) if "variance" in w.name
                           else rng.normal(0, 0.1, w.shape).astype(np.float32) for w in layer.weights])
    path = str(tmp_path / weights.IMAGENET_WEIGHTS_FILE)
    reference.save_weights(path)

    image = keras.Input((64, 64, 3))
    backbone = keras.Model(image, resnet_graph(image, "resnet50", stage5=True, train_bn=False)[-1])
    weights.load_h5_weights(backbone, path, by_name=True)
    loaded = 0
    for layer in reference.layers:
        if layer.weights:
            mine = backbone.get_layer(weights.matterport_backbone_name(layer.name))
            for got, expected in zip(mine.get_weights(), layer.get_weights(), strict=True):
                np.testing.assert_array_equal(got, expected)
            loaded += 1
    assert loaded == len([layer for layer in backbone.layers if layer.weights]) == 106  # 53 conv + 53 BN
    # The stem computes what Keras' computes once BatchNorm has Matterport's epsilon (Keras' default,
    # 1e-3, as in the original ResNet file's model; keras.applications now uses 1.001e-5). Later
    # outputs differ by design: Matterport max-pools with padding "same" (extra row at the end),
    # keras.applications pads a row on each side first.
    reference.get_layer("conv1_bn").epsilon = 1e-3
    batch = rng.normal(0, 50, (1, 64, 64, 3)).astype(np.float32)
    ours = keras.Model(image, backbone.get_layer("bn_conv1").output)
    theirs = keras.Model(reference.input, reference.get_layer("conv1_bn").output)
    np.testing.assert_allclose(ours(batch, training=False).numpy(), theirs(batch, training=False).numpy(),
                               rtol=1e-4, atol=1e-3)


def test_missing_imagenet_file_names_the_file_and_where_it_goes(tmp_path, monkeypatch):
    from mrcnn_ohem.maskrcnn import model as modellib

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    model = modellib.MaskRCNN.__new__(modellib.MaskRCNN)
    expected = tmp_path / "keras" / "models" / weights.IMAGENET_WEIGHTS_FILE
    with pytest.raises(FileNotFoundError, match=f"ImageNet weights: {expected} does not exist, and this package never "
                                                "downloads. Put Keras' ResNet-50 ImageNet file"):
        model.get_imagenet_weights()
    expected.parent.mkdir(parents=True)
    expected.write_bytes(b"")
    assert model.get_imagenet_weights() == str(expected)
