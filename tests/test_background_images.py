"""Background-only images and the mining flags on the data and command-line side (issue 11):
``CocoDataset.load_coco(empty_images=N)``, shapes background scenes, ``--empty-images`` and the
``--ohem-*`` mining flags through ``make_config``."""
from __future__ import annotations

import json

import numpy as np
import pytest

from mrcnn_ohem.datasets.coco import CocoDataset
from mrcnn_ohem.datasets.shapes import CLASS_NAMES, ensure_coco_folder, write_coco_folder
from mrcnn_ohem.runner import cli, train_eval

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes_bg")
    write_coco_folder(root, "train", 6, 64, 64, seed=3, background_images=3)
    return root


def test_background_scenes_have_no_annotations(folder):
    document = json.loads((folder / "annotations" / "instances_train2017.json").read_text())
    assert [image["id"] for image in document["images"]] == list(range(1, 10))
    annotated = {ann["image_id"] for ann in document["annotations"]}
    assert annotated == set(range(1, 7))  # scenes 7..9 are background-only
    assert all(image["distractors"] >= 1 for image in document["images"][6:])


def test_load_coco_adds_up_to_n_images_without_the_classes_deterministically(folder):
    plain = CocoDataset()
    plain.load_coco(folder, "train")
    assert len(plain.image_info) == 6
    for n, expected in ((2, [7, 8]), (10, [7, 8, 9])):
        first, second = CocoDataset(), CocoDataset()
        first.load_coco(folder, "train", empty_images=n)
        second.load_coco(folder, "train", empty_images=n)
        ids = [info["id"] for info in first.image_info]
        assert ids == [info["id"] for info in second.image_info]
        assert ids[6:] == expected
        first.prepare()
        for image_id in first.image_ids[6:]:
            masks, class_ids = first.load_mask(image_id)
            assert masks.shape == (64, 64, 0) and class_ids.shape == (0,)


def test_images_without_the_selected_classes_count_as_empty(folder):
    document = json.loads((folder / "annotations" / "instances_train2017.json").read_text())
    with_circles = {a["image_id"] for a in document["annotations"] if CLASS_NAMES[a["category_id"] - 1] == "circle"}
    dataset = CocoDataset()
    dataset.load_coco(folder, "train", class_names=["circle"], empty_images=100)
    ids = [info["id"] for info in dataset.image_info]
    assert ids[: len(with_circles)] == sorted(with_circles)
    assert sorted(ids) == list(range(1, 10))  # every other image is added as background


@pytest.mark.parametrize("value", [-1, 1.5, True])
def test_bad_empty_images(folder, value):
    with pytest.raises(ValueError, match=r"empty_images must be an integer >= 0"):
        CocoDataset().load_coco(folder, "train", empty_images=value)


def test_ensure_coco_folder_regenerates_for_another_background_count(tmp_path):
    path = ensure_coco_folder(tmp_path, "train", 2, 64, seed=0)
    assert len(json.loads(path.read_text())["images"]) == 2
    path = ensure_coco_folder(tmp_path, "train", 2, 64, seed=0, background_images=2)
    assert len(json.loads(path.read_text())["images"]) == 4
    path = ensure_coco_folder(tmp_path, "train", 2, 64, seed=0)
    assert len(json.loads(path.read_text())["images"]) == 2


def test_cli_flags_reach_the_config():
    parser = cli.build_parser("x", "x", dataset="data")
    args = parser.parse_args(["train", "--ohem", "--ohem-nms", "0.7", "--ohem-max-neg-per-pos", "3",
                              "--ohem-min-negatives", "32", "--empty-images", "5", "--image-size", "64",
                              "--backbone", "tiny"])
    config = train_eval.make_config(args, num_classes=4, mode="training")
    assert (config.OHEM_RPN_NMS_THRESHOLD, config.OHEM_RPN_MAX_NEGATIVES_PER_POSITIVE,
            config.OHEM_RPN_MIN_NEGATIVES) == (0.7, 3.0, 32)
    assert config.TRAIN_BACKGROUND_IMAGES is True
    default = train_eval.make_config(parser.parse_args(["train", "--ohem"]), num_classes=4, mode="training")
    assert (default.OHEM_RPN_NMS_THRESHOLD, default.OHEM_RPN_MAX_NEGATIVES_PER_POSITIVE,
            default.OHEM_RPN_MIN_NEGATIVES, default.TRAIN_BACKGROUND_IMAGES) == (None, None, 0, False)
    with pytest.raises(ValueError, match="OHEM_RPN_NMS_THRESHOLD must be"):
        train_eval.make_config(parser.parse_args(["train", "--ohem", "--ohem-nms", "0"]), 4, "training")
    assert np.isclose(config.OHEM_RPN_NMS_THRESHOLD, 0.7)


def test_step_recorder_keeps_the_statistics_per_step():
    from mrcnn_ohem.runner.callbacks import StepRecorder

    recorder = StepRecorder(2, show=False)
    recorder.on_train_begin()
    recorder.on_epoch_begin(0)
    # Keras logs running means: steps of 4 and 8 kept negatives log 4, then 6.
    for batch, mean in enumerate((4.0, 6.0)):
        recorder.on_train_batch_begin(batch)
        recorder.on_train_batch_end(batch, {"loss": 1.0, "ohem_rpn_kept_negatives": mean})
    recorder.on_train_end()
    assert [row["ohem_rpn_kept_negatives"] for row in recorder.steps] == [4.0, 8.0]
