"""mrcnn_ohem.maskrcnn.utils against the Matterport TF2 fork in ../shared: the same pixels and masks."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mrcnn_ohem.maskrcnn import utils

SHARED = Path(__file__).resolve().parents[2] / "shared"
FORK_UTILS = SHARED / "forks" / "mask_rcnn_tf2_14" / "mrcnn" / "utils.py"
COCO_VAL = SHARED / "data" / "coco_mini" / "val2017"


# Oracle: the public Matterport TF2 fork's own utils.py in ../shared. It imports TensorFlow at
# the top, so it runs once per module in a child process; arrays go through .npz files.

_FORK_ORACLE = r"""
import importlib.util, json, random, sys
import numpy as np

fork_path, folder = sys.argv[1:3]
spec = importlib.util.spec_from_file_location("matterport_utils", fork_path)
fork = importlib.util.module_from_spec(spec)
spec.loader.exec_module(fork)


class NumpyWithBool:
    # The fork's mask functions call np.bool, which NumPy 1.24 removed (= bool).
    def __getattr__(self, name):
        return bool if name == "bool" else getattr(np, name)


fork.np = NumpyWithBool()
skimage_resize = fork.resize


def resize_bool_as_float(image, *args, **kwargs):
    # scikit-image < 0.19 resized a bool image as img_as_float (0.0/1.0 float64); newer ones
    # refuse bool. Other images pass through untouched.
    if image.dtype == bool:
        image = image.astype(np.float64)
    return skimage_resize(image, *args, **kwargs)


fork.resize = resize_bool_as_float
arrays = dict(np.load(folder + "/inputs.npz"))
with open(folder + "/cases.json") as f:
    cases = json.load(f)
out, meta = {}, {}
for name, (kind, inputs, kwargs) in cases.items():
    args = [arrays[key] for key in inputs]
    if kind == "resize_image":
        random.seed(kwargs.pop("seed"))
        image, window, scale, padding, crop = fork.resize_image(*args, **kwargs)
        out[name] = image
        meta[name] = [list(window), scale, [list(p) for p in padding], crop and list(crop)]
    else:  # JSON gave lists; the fork adds tuples to these two
        kwargs = {k: tuple(v) if k in ("mini_shape", "image_shape") else v for k, v in kwargs.items()}
        out[name] = getattr(fork, kind)(*args, **kwargs)
np.savez(folder + "/outputs.npz", **out)
with open(folder + "/meta.json", "w") as f:
    json.dump(meta, f)
"""


def _fork_inputs(folder: Path) -> dict[str, np.ndarray]:
    """Seeded images and masks, a real COCO image, and that image in grayscale as 3 channels."""
    rng = np.random.default_rng(27)
    arrays = {
        "rgb200x300": rng.integers(0, 256, (200, 300, 3), dtype=np.uint8),
        "rgb60x90": rng.integers(0, 256, (60, 90, 3), dtype=np.uint8),
        "rgb70x90": rng.integers(0, 256, (70, 90, 3), dtype=np.uint8),
        "bright60x90": rng.integers(40, 256, (60, 90, 3), dtype=np.uint8),  # no 0 pixel
        "float200x300": (rng.random((200, 300, 3)) * 255).astype(np.float32),
        "float60x90": (rng.random((60, 90, 3)) * 255).astype(np.float32),
        "masks50x80": rng.random((50, 80, 3)) > 0.5,
        "masks480x640": rng.random((480, 640, 2)) > 0.5,
        "masks200x300": rng.random((200, 300, 2)) > 0.5,
        "masks60x90": rng.random((60, 90, 2)) > 0.5,
        "mini16": rng.random((16, 16, 3)) > 0.5,
        "mini56": rng.random((56, 56, 2)) > 0.5,
        "soft28": rng.random((28, 28)).astype(np.float32),
        "boxes40x50": np.array([[5, 10, 25, 40], [30, 2, 38, 9], [8, 13, 33, 38]]),
        "boxes_big": np.array([[0, 0, 480, 300], [100, 37, 161, 640]]),
    }
    # Shapes in a 40x50 image, one striped so that the bilinear mini mask hits 0.5 exactly.
    yy, xx = np.mgrid[:40, :50]
    shapes = np.zeros((40, 50, 3), bool)
    shapes[5:25, 10:40:2, 0] = True
    shapes[30:38, 2:9, 1] = True
    shapes[..., 2] = (yy - 20) ** 2 + (xx - 25) ** 2 <= 12 ** 2
    arrays["shapes40x50"] = shapes
    arrays["shape_boxes"] = utils.extract_bboxes(shapes)
    # A real COCO image, and the same image stored in grayscale and loaded by Dataset.load_image
    # (skimage.io.imread, then gray2rgb: 3 equal channels), as the data pipeline gives it.
    from PIL import Image

    source = sorted(COCO_VAL.glob("*.jpg"))[0]
    arrays["coco"] = np.asarray(Image.open(source).convert("RGB"))
    Image.open(source).convert("L").save(folder / "gray.png")
    dataset = utils.Dataset()
    dataset.add_image("coco", image_id=1, path=str(folder / "gray.png"))
    dataset.prepare()
    arrays["coco_gray"] = dataset.load_image(0)
    assert arrays["coco_gray"].shape == arrays["coco"].shape
    return arrays


def _case(image, seed=0, **kwargs):
    return ("resize_image", [image], {"seed": seed, **kwargs})


RESIZE_CASES = {
    "square 200x300 -> 256 (down)": _case("rgb200x300", max_dim=256),
    "square 60x90 -> 256 (up)": _case("rgb60x90", min_dim=256, max_dim=256),
    "square min_dim 100 max_dim 512": _case("rgb60x90", min_dim=100, max_dim=512),
    "square min_dim 800 max_dim 1024, COCO": _case("coco", min_dim=800, max_dim=1024),
    "square 256, COCO": _case("coco", min_dim=256, max_dim=256),
    "square min_scale 2": _case("rgb200x300", max_dim=1024, min_scale=2),
    "square, no scaling": _case("rgb60x90", max_dim=128),
    "square up, no 0 pixel": _case("bright60x90", min_dim=256, max_dim=256),
    "square 800/1024, COCO grayscale": _case("coco_gray", min_dim=800, max_dim=1024),
    "square 256, COCO grayscale": _case("coco_gray", min_dim=256, max_dim=256),
    "pad64 70x90 up to 128": _case("rgb70x90", min_dim=128, mode="pad64"),
    "pad64, no scaling": _case("rgb60x90", min_dim=64, mode="pad64"),
    "pad64 COCO": _case("coco", min_dim=512, mode="pad64"),
    "crop up, seed 0": _case("rgb60x90", seed=0, min_dim=128, mode="crop"),
    "crop up, seed 1": _case("rgb60x90", seed=1, min_dim=128, mode="crop"),
    "crop, no scaling, seed 7": _case("rgb200x300", seed=7, min_dim=128, mode="crop"),
    "crop COCO, seed 3": _case("coco", seed=3, min_dim=512, mode="crop"),
    "none": _case("rgb200x300", min_dim=800, max_dim=1024, mode="none"),
    "float32 square down": _case("float200x300", max_dim=256),
    "float32 square up": _case("float60x90", min_dim=256, max_dim=256),
    "float32 pad64": _case("float60x90", min_dim=128, mode="pad64"),
    "float32 crop, seed 2": _case("float60x90", seed=2, min_dim=128, mode="crop"),
}
PAD = [(0, 0), (0, 0), (0, 0)]
MASK_CASES = {
    "resize_mask up 1.28, padded": ("resize_mask", ["masks50x80"],
                                    {"scale": 1.28, "padding": [(32, 32), (13, 13), (0, 0)]}),
    "resize_mask 480x640 x1.6": ("resize_mask", ["masks480x640"],
                                 {"scale": 1.6, "padding": [(128, 128), (0, 0), (0, 0)]}),
    "resize_mask down 256/300": ("resize_mask", ["masks200x300"],
                                 {"scale": 256 / 300, "padding": [(42, 43), (0, 0), (0, 0)]}),
    "resize_mask up, cropped": ("resize_mask", ["masks60x90"],
                                {"scale": 128 / 60, "padding": PAD, "crop": (0, 37, 128, 128)}),
    "resize_mask scale 1, padded": ("resize_mask", ["masks50x80"],
                                    {"scale": 1, "padding": [(7, 7), (0, 0), (0, 0)]}),
    "minimize_mask 16x16": ("minimize_mask", ["shape_boxes", "shapes40x50"], {"mini_shape": (16, 16)}),
    "minimize_mask 10x15": ("minimize_mask", ["shape_boxes", "shapes40x50"], {"mini_shape": (10, 15)}),
    # Box 0 spans the 30 striped columns whole: 30 -> 15 averages pairs to exactly 0.5.
    "minimize_mask 10x15, exact halves": ("minimize_mask", ["boxes40x50", "shapes40x50"],
                                          {"mini_shape": (10, 15)}),
    "minimize_mask 56x56": ("minimize_mask", ["shape_boxes", "shapes40x50"], {"mini_shape": (56, 56)}),
    "expand_mask 16 -> boxes": ("expand_mask", ["boxes40x50", "mini16"], {"image_shape": (40, 50, 3)}),
    "expand_mask 56 -> big boxes": ("expand_mask", ["boxes_big", "mini56"],
                                    {"image_shape": (480, 640, 3)}),
    "unmold_mask small box": ("unmold_mask", ["soft28"], {"bbox": (2, 4, 10, 12), "image_shape": (120, 120, 3)}),
    "unmold_mask large box": ("unmold_mask", ["soft28"], {"bbox": (5, 5, 100, 80), "image_shape": (120, 120, 3)}),
}


@pytest.fixture(scope="module")
def fork_oracle(tmp_path_factory):
    """(inputs, the fork's outputs, the fork's window/scale/padding/crop) of every case."""
    if not FORK_UTILS.is_file() or not COCO_VAL.is_dir():
        pytest.skip(f"../shared is missing: expected the Matterport fork at {FORK_UTILS} and "
                    f"COCO images in {COCO_VAL}")
    folder = tmp_path_factory.mktemp("fork_oracle")
    arrays = _fork_inputs(folder)
    np.savez(folder / "inputs.npz", **arrays)
    (folder / "cases.json").write_text(json.dumps(RESIZE_CASES | MASK_CASES))
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="2",
               TF_ENABLE_ONEDNN_OPTS="0")
    done = subprocess.run([sys.executable, "-c", _FORK_ORACLE, str(FORK_UTILS), str(folder)],
                          env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = dict(np.load(folder / "outputs.npz"))
    meta = json.loads((folder / "meta.json").read_text())
    return arrays, outputs, meta


@pytest.mark.slow
@pytest.mark.parametrize("name", list(RESIZE_CASES))
def test_resize_image_gives_the_fork_s_pixels(fork_oracle, name):
    arrays, outputs, meta = fork_oracle
    _, (image,), kwargs = RESIZE_CASES[name]
    kwargs = dict(kwargs)
    random.seed(kwargs.pop("seed"))
    ours, window, scale, padding, crop = utils.resize_image(arrays[image], **kwargs)
    want_window, want_scale, want_padding, want_crop = meta[name]
    assert ours.dtype == arrays[image].dtype == outputs[name].dtype
    np.testing.assert_array_equal(ours, outputs[name])
    assert list(window) == want_window and scale == want_scale
    assert [list(p) for p in padding] == want_padding
    assert (crop and list(crop)) == want_crop


@pytest.mark.slow
@pytest.mark.parametrize("name", list(MASK_CASES))
def test_mask_functions_give_the_fork_s_masks(fork_oracle, name):
    arrays, outputs, _ = fork_oracle
    kind, inputs, kwargs = MASK_CASES[name]
    ours = getattr(utils, kind)(*[arrays[key] for key in inputs], **kwargs)
    assert ours.dtype == outputs[name].dtype == bool
    np.testing.assert_array_equal(ours, outputs[name])
