"""Tests of mrcnn_ohem.maskrcnn.config."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import TinyConfig

from mrcnn_ohem.maskrcnn.config import Config

# Matterport's Config attributes and defaults (mrcnn/config.py of matterport/Mask_RCNN).
MATTERPORT_DEFAULTS = {
    "NAME": None, "GPU_COUNT": 1, "IMAGES_PER_GPU": 2, "STEPS_PER_EPOCH": 1000,
    "VALIDATION_STEPS": 50, "BACKBONE": "resnet101", "COMPUTE_BACKBONE_SHAPE": None,
    "BACKBONE_STRIDES": [4, 8, 16, 32, 64], "FPN_CLASSIF_FC_LAYERS_SIZE": 1024,
    "TOP_DOWN_PYRAMID_SIZE": 256, "NUM_CLASSES": 1,
    "RPN_ANCHOR_SCALES": (32, 64, 128, 256, 512), "RPN_ANCHOR_RATIOS": [0.5, 1, 2],
    "RPN_ANCHOR_STRIDE": 1, "RPN_NMS_THRESHOLD": 0.7, "RPN_TRAIN_ANCHORS_PER_IMAGE": 256,
    "PRE_NMS_LIMIT": 6000, "POST_NMS_ROIS_TRAINING": 2000, "POST_NMS_ROIS_INFERENCE": 1000,
    "USE_MINI_MASK": True, "MINI_MASK_SHAPE": (56, 56), "IMAGE_RESIZE_MODE": "square",
    "IMAGE_MIN_DIM": 800, "IMAGE_MAX_DIM": 1024, "IMAGE_MIN_SCALE": 0,
    "IMAGE_CHANNEL_COUNT": 3, "TRAIN_ROIS_PER_IMAGE": 200, "ROI_POSITIVE_RATIO": 0.33,
    "POOL_SIZE": 7, "MASK_POOL_SIZE": 14, "MASK_SHAPE": [28, 28], "MAX_GT_INSTANCES": 100,
    "DETECTION_MAX_INSTANCES": 100, "DETECTION_MIN_CONFIDENCE": 0.7,
    "DETECTION_NMS_THRESHOLD": 0.3, "LEARNING_RATE": 0.001, "LEARNING_MOMENTUM": 0.9,
    "WEIGHT_DECAY": 0.0001, "USE_RPN_ROIS": True, "TRAIN_BN": False,
    "GRADIENT_CLIP_NORM": 5.0,
    "LOSS_WEIGHTS": {"rpn_class_loss": 1., "rpn_bbox_loss": 1., "mrcnn_class_loss": 1.,
                     "mrcnn_bbox_loss": 1., "mrcnn_mask_loss": 1.},
}


class CocoLike(Config):
    NAME = "coco"
    NUM_CLASSES = 81


def test_class_defaults_match_matterport():
    for name, expected in MATTERPORT_DEFAULTS.items():
        assert getattr(Config, name) == expected, name
    np.testing.assert_array_equal(Config.MEAN_PIXEL, [123.7, 116.8, 103.9])
    np.testing.assert_array_equal(Config.RPN_BBOX_STD_DEV, [0.1, 0.1, 0.2, 0.2])
    np.testing.assert_array_equal(Config.BBOX_STD_DEV, [0.1, 0.1, 0.2, 0.2])


def test_derived_values():
    config = CocoLike()
    assert config.BATCH_SIZE == 2
    np.testing.assert_array_equal(config.IMAGE_SHAPE, [1024, 1024, 3])
    assert config.IMAGE_META_SIZE == 1 + 3 + 3 + 4 + 1 + 81

    class Crop(CocoLike):
        IMAGE_RESIZE_MODE = "crop"
        IMAGE_MIN_DIM = 512
        GPU_COUNT = 3
        IMAGES_PER_GPU = 4
        IMAGE_CHANNEL_COUNT = 4
        MEAN_PIXEL = np.array([1., 2., 3., 4.])

    crop = Crop()
    np.testing.assert_array_equal(crop.IMAGE_SHAPE, [512, 512, 4])
    assert crop.BATCH_SIZE == 12


def test_tiny_config_is_valid(tiny_config):
    np.testing.assert_array_equal(tiny_config.IMAGE_SHAPE, [64, 64, 3])
    assert tiny_config.IMAGE_META_SIZE == 15


def test_init_is_cooperative_with_mixins():
    calls = []

    class Before:
        OHEM_TEST_KNOB = 3

        def __init__(self):
            super().__init__()
            calls.append(("before", hasattr(self, "BATCH_SIZE")))

    class After:
        def __init__(self):
            super().__init__()
            calls.append(("after", hasattr(self, "BATCH_SIZE")))

    class Mixed(Before, CocoLike, After):
        pass

    config = Mixed()
    # Config.__init__ runs between the two mixins and passes control on to `After`.
    assert calls == [("after", False), ("before", True)]
    assert config.BATCH_SIZE == 2


def test_display_lists_every_upper_case_setting(capsys):
    class WithKnob(CocoLike):
        OHEM_RPN_TOP_K = 128

        def helper(self):  # methods are not settings
            return 1

    WithKnob().display()
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.strip() and line != "Configurations:"]
    names = [line.split()[0] for line in lines]
    assert names == sorted(names)
    assert "OHEM_RPN_TOP_K                 128" in lines
    for name in list(MATTERPORT_DEFAULTS) + ["BATCH_SIZE", "IMAGE_SHAPE", "IMAGE_META_SIZE",
                                              "MEAN_PIXEL", "BBOX_STD_DEV"]:
        assert name in names, name
    assert "helper" not in out and "display" not in out


def test_to_dict_and_callable_backbone():
    def backbone(image, stage5=False, train_bn=True):
        return []

    def shapes(image_shape):
        return np.array([[16, 16]] * 5)

    class Custom(CocoLike):
        BACKBONE = staticmethod(backbone)
        COMPUTE_BACKBONE_SHAPE = staticmethod(shapes)

    settings = Custom().to_dict()
    assert settings["BACKBONE"] is backbone
    assert settings["COMPUTE_BACKBONE_SHAPE"] is shapes
    assert settings["NUM_CLASSES"] == 81 and settings["BATCH_SIZE"] == 2
    assert all(name.isupper() for name in settings)


def test_config_module_needs_neither_tensorflow_nor_tf_keras():
    # Execute config.py on its own in a fresh interpreter (the parent package may import TF).
    path = Path(__file__).resolve().parents[1] / "mrcnn_ohem" / "maskrcnn" / "config.py"
    code = ("import sys, importlib.util\n"
            f"spec = importlib.util.spec_from_file_location('solo_config', {str(path)!r})\n"
            "mod = importlib.util.module_from_spec(spec); spec.loader.exec_module(mod)\n"
            "class C(mod.Config):\n    NUM_CLASSES = 2\n"
            "C()\n"
            "print(sorted(n for n in sys.modules if n.split('.')[0] in ('tensorflow', 'tf_keras')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("overrides, match", [
    ({"IMAGE_MAX_DIM": 100}, r"IMAGE_MAX_DIM must be a multiple of 64.*64 and 128.*received 100"),
    ({"IMAGE_RESIZE_MODE": "crop", "IMAGE_MIN_DIM": 200},
     r"IMAGE_MIN_DIM must be a multiple of 64 .*'crop'.*received 200"),
    ({"IMAGE_RESIZE_MODE": "pad64", "IMAGE_MAX_DIM": 1000}, r"IMAGE_MAX_DIM must be .*received 1000"),
    ({"IMAGE_RESIZE_MODE": "stretch"}, r"IMAGE_RESIZE_MODE must be one of .*'square'.*'stretch'"),
    ({"BACKBONE": "resnet152"}, r"BACKBONE must be one of \['resnet50', 'resnet101', 'tiny', 'compact'\]"
                                r" or a callable; received 'resnet152'"),
    ({"NUM_CLASSES": 0}, r"NUM_CLASSES must be an integer >= 1 .*received 0"),
    ({"GPU_COUNT": 0}, r"GPU_COUNT must be an integer >= 1; received 0"),
    ({"IMAGES_PER_GPU": 1.5}, r"IMAGES_PER_GPU must be an integer >= 1; received 1.5"),
    ({"RPN_TRAIN_ANCHORS_PER_IMAGE": True}, r"RPN_TRAIN_ANCHORS_PER_IMAGE must be .*received True"),
    ({"RPN_ANCHOR_SCALES": (32, 64)}, r"RPN_ANCHOR_SCALES must be one scale per FPN level.*5"
                                      r" values.*received \(32, 64\)"),
    ({"RPN_ANCHOR_RATIOS": [1, -2]}, r"RPN_ANCHOR_RATIOS must be .*positive"),
    ({"DETECTION_MIN_CONFIDENCE": 1.5}, r"DETECTION_MIN_CONFIDENCE must be a number in"
                                        r" \[0, 1\]; received 1.5"),
    ({"ROI_POSITIVE_RATIO": 0}, r"ROI_POSITIVE_RATIO must be a number in \(0, 1\]"),
    ({"MEAN_PIXEL": np.array([1., 2.])}, r"MEAN_PIXEL must be 3 values"),
    ({"MINI_MASK_SHAPE": (56,)}, r"MINI_MASK_SHAPE must be \(height, width\)"),
    ({"RPN_BBOX_STD_DEV": np.array([0.1, 0.1, 0.2])}, r"RPN_BBOX_STD_DEV must be 4 positive"),
    ({"RPN_SHARED_FILTERS": 0}, r"RPN_SHARED_FILTERS must be an integer >= 1; received 0"),
])
def test_invalid_settings_raise_value_error(overrides, match):
    bad = type("Bad", (CocoLike,), dict(overrides))
    with pytest.raises(ValueError, match=match):
        bad()


def test_callable_backbone_needs_callable_shape_function():
    class Bad(CocoLike):
        BACKBONE = staticmethod(lambda image, stage5=False, train_bn=True: [])

    with pytest.raises(TypeError, match=r"COMPUTE_BACKBONE_SHAPE must be a callable.*None"):
        Bad()


def test_valid_modes_accept_multiples_of_64():
    for mode, extra in [("square", {}), ("pad64", {}), ("none", {}),
                        ("crop", {"IMAGE_MIN_DIM": 256, "IMAGE_MAX_DIM": 1000})]:
        config = type("Ok", (TinyConfig,), {"IMAGE_RESIZE_MODE": mode, **extra})()
        assert config.IMAGE_SHAPE[0] % 64 == 0
