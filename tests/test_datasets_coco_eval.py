"""Tests for mrcnn_ohem.datasets.coco_eval: COCO records, COCOeval scoring, proposal mapping."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest

from mrcnn_ohem.datasets.coco import CocoDataset
from mrcnn_ohem.datasets.coco_eval import (
    _proposals_to_image,
    build_coco_results,
    format_table,
    proposal_results,
    score_results,
)
from mrcnn_ohem.datasets.shapes import write_coco_folder

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

COCO_MINI = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_mini"


@pytest.fixture(scope="module")
def shapes_coco(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    write_coco_folder(root, "val", 6, 64, 64, seed=4)
    dataset = CocoDataset()
    coco = dataset.load_coco(root, "val", return_coco=True)
    dataset.prepare()
    return dataset, coco


def _ground_truth_as_detections(dataset):
    """Per image: (coco id, rois, class ids, scores, masks) equal to the ground truth."""
    out = []
    for i in dataset.image_ids:
        masks, class_ids = dataset.load_mask(i)
        rows = [np.nonzero(masks[..., k].any(axis=1))[0] for k in range(masks.shape[-1])]
        cols = [np.nonzero(masks[..., k].any(axis=0))[0] for k in range(masks.shape[-1])]
        rois = np.array([[r[0], c[0], r[-1] + 1, c[-1] + 1] for r, c in zip(rows, cols)], dtype=np.float32)
        out.append((dataset.image_info[i]["id"], rois, class_ids, np.ones(len(class_ids)), masks))
    return out


def test_build_coco_results_records_are_json_and_use_coco_ids(shapes_coco):
    dataset, _ = shapes_coco
    masks = np.zeros((64, 64, 2), dtype=bool)
    masks[2:10, 3:7, 0] = True
    masks[20:30, 20:40, 1] = True
    rois = np.array([[2, 3, 10, 7], [20, 20, 30, 40]], dtype=np.float32)
    records = build_coco_results(dataset, [5], rois, np.array([1, 3]), np.array([0.9, 0.4]), masks)
    json.dumps(records)  # serialisable
    assert [r["category_id"] for r in records] == [1, 3]
    assert records[0]["bbox"] == [3.0, 2.0, 4.0, 8.0]  # [x, y, w, h]
    assert records[1]["score"] == pytest.approx(0.4)
    assert build_coco_results(dataset, 5, None, None, None, None) == []
    assert "segmentation" not in build_coco_results(dataset, 5, rois, np.array([1, 3]), np.ones(2), None)[0]
    with pytest.raises(ValueError, match=r"image_ids must name the one image .* received 2 ids"):
        build_coco_results(dataset, [1, 2], rois, np.array([1, 3]), np.ones(2), masks)


def test_perfect_detections_score_one(shapes_coco):
    dataset, coco = shapes_coco
    detections, proposals, ids = [], [], []
    for coco_id, rois, class_ids, scores, masks in _ground_truth_as_detections(dataset):
        ids.append(coco_id)
        detections += build_coco_results(dataset, [coco_id], rois, class_ids, scores, masks)
        proposals += proposal_results(coco_id, rois)
    metrics = score_results(coco, ids, [1, 2, 3], detections, proposals)
    for kind in ("bbox", "segm"):
        assert metrics[kind] == pytest.approx({"AP": 1.0, "AP50": 1.0, "AP75": 1.0})
    assert metrics["rpn"]["AR@100"] == pytest.approx(1.0)


def test_no_detections_score_zero_not_crash(shapes_coco):
    dataset, coco = shapes_coco
    ids = [info["id"] for info in dataset.image_info]
    metrics = score_results(coco, ids, [1, 2, 3], [], [])
    assert metrics["bbox"]["AP"] == 0.0 and metrics["segm"]["AP50"] == 0.0
    assert metrics["rpn"]["AR@100"] == 0.0


def test_shifted_boxes_lose_ap75_before_ap50(shapes_coco):
    dataset, coco = shapes_coco
    detections, ids = [], []
    for coco_id, rois, class_ids, scores, _ in _ground_truth_as_detections(dataset):
        ids.append(coco_id)
        height = rois[:, 2] - rois[:, 0]
        shifted = rois + np.stack([0.2 * height, 0 * height, 0.2 * height, 0 * height], axis=1)
        detections += build_coco_results(dataset, [coco_id], shifted, class_ids, scores, None)
    metrics = score_results(coco, ids, [1, 2, 3], detections, None, eval_types=("bbox",))
    # IoU of a box shifted by 20% of its height: 0.8 / 1.2 = 0.667 -> matches at .50, not at .75.
    assert metrics["bbox"]["AP50"] == pytest.approx(1.0)
    assert metrics["bbox"]["AP75"] == pytest.approx(0.0)
    assert set(metrics) == {"bbox"}


def test_scoring_leaves_ground_truth_untouched_and_respects_categories():
    from pycocotools.coco import COCO

    coco = COCO(str(COCO_MINI / "annotations" / "instances_val2017.json"))
    before = copy.deepcopy(coco.dataset["annotations"])
    dataset = CocoDataset()
    dataset.load_coco(COCO_MINI, "val", class_names=["dog"])
    dataset.prepare()
    ids = [info["id"] for info in dataset.image_info]
    detections = []
    for i in dataset.image_ids:
        for ann in dataset.image_info[i]["annotations"]:
            if not ann["iscrowd"]:
                x, y, w, h = ann["bbox"]
                detections.append({"image_id": ann["image_id"], "category_id": 18, "bbox": [x, y, w, h],
                                   "score": 1.0, "segmentation": _rle(dataset, ann)})
    metrics = score_results(coco, ids, [18], detections)
    # Dogs only: the people, cars... in those images do not count against the detector.
    assert metrics["bbox"]["AP"] == pytest.approx(1.0)
    assert metrics["segm"]["AP"] == pytest.approx(1.0)
    assert coco.dataset["annotations"] == before


def _rle(dataset, ann):
    info = next(i for i in dataset.image_info if i["id"] == ann["image_id"])
    rle = dataset.annToRLE(ann, info["height"], info["width"])
    counts = rle["counts"]
    return {"size": rle["size"], "counts": counts.decode() if isinstance(counts, bytes) else counts}


def test_score_results_argument_errors(shapes_coco):
    _, coco = shapes_coco
    with pytest.raises(ValueError, match=r"eval_types must be among \('bbox', 'segm'\); received \['keypoints'\]"):
        score_results(coco, [1], [1], [], eval_types=("keypoints",))
    with pytest.raises(ValueError, match=r"image_ids is empty"):
        score_results(coco, [], [1], [])
    with pytest.raises(ValueError, match=r"segm evaluation needs a 'segmentation'"):
        score_results(coco, [1], [1], [{"image_id": 1, "category_id": 1, "bbox": [0, 0, 4, 4], "score": 1.0}])


def test_proposals_map_back_through_the_molding_window():
    # A 50x100 image molded into 128x128: scale 1.28, window (32, 0, 96, 128).
    # Pixel box (10, 20, 30, 60) -> molded (44.8, 25.6, 70.4, 76.8) -> normalised with
    # norm_boxes' convention ((y2, x2) - 1, divided by 127).
    molded = np.array([44.8, 25.6, 70.4, 76.8])
    normalised = (molded - np.array([0, 0, 1, 1])) / 127.0
    rois = np.stack([normalised, np.zeros(4)])  # the zero row is padding
    boxes = _proposals_to_image(rois, (128, 128, 3), (32, 0, 96, 128), (50, 100, 3))
    np.testing.assert_allclose(boxes, [[10, 20, 30, 60]], atol=1e-6)
    records = proposal_results(7, np.repeat(boxes, 3, axis=0), max_proposals=2)
    assert [r["score"] for r in records] == [1.0, 0.5]
    assert records[0]["bbox"] == pytest.approx([20, 10, 40, 20])


def test_format_table_lists_runs_side_by_side():
    runs = {"baseline": {"bbox": {"AP": 0.1, "AP50": 0.2, "AP75": 0.05}, "rpn": {"AR@100": 0.3},
                         "seconds_per_step": 1.5},
            "ohem": {"bbox": {"AP": 0.15, "AP50": 0.25, "AP75": 0.07}, "rpn": {"AR@100": 0.35},
                     "seconds_per_step": 1.6}}
    table = format_table(runs, extra=["seconds_per_step"])
    lines = table.splitlines()
    assert "baseline" in lines[0] and "ohem" in lines[0]
    assert any(line.startswith("bbox AP50") and "0.2000" in line and "0.2500" in line for line in lines)
    assert any(line.startswith("seconds_per_step") and "1.6000" in line for line in lines)
    assert not any(line.startswith("segm") for line in lines)
