"""Tests for mrcnn_ohem.datasets.coco on real COCO 2017 images (coco_mini) and tiny folders."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import skimage.io
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mrcnn_ohem.datasets.coco import (
    CocoDataset,
    CorruptImageError,
    CorruptImageWarning,
    ann_to_mask,
    ann_to_rle,
    load_coco_json,
    split_class_tokens,
)

COCO_MINI = Path(__file__).resolve().parents[2] / "shared" / "data" / "coco_mini"
# pycocotools 2.0.x calls np.array(copy=False) on NumPy 2; harmless, silenced here only.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def coco_root() -> Path:
    if not (COCO_MINI / "annotations" / "instances_train2017.json").is_file():
        pytest.fail(
            f"coco_mini is missing: expected real COCO 2017 files under {COCO_MINI} "
            "(annotations/instances_{train,val}2017.json, train2017/, val2017/)."
        )
    return COCO_MINI


@pytest.fixture(scope="module")
def train(coco_root):
    dataset = CocoDataset()
    coco = dataset.load_coco(coco_root, "train", return_coco=True)
    dataset.prepare()
    return dataset, coco


def _write_folder(root: Path, images: list[dict], annotations: list[dict], categories: list[dict],
                  subset: str = "val", year: str = "2017") -> Path:
    """A hand-made COCO folder; images are drawn as flat grey PNGs of the declared size."""
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    (root / f"{subset}{year}").mkdir(parents=True, exist_ok=True)
    for record in images:
        pixels = np.full((record["height"], record["width"], 3), 10 * record["id"], dtype=np.uint8)
        skimage.io.imsave(root / f"{subset}{year}" / record["file_name"], pixels, check_contrast=False)
    document = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations" / f"instances_{subset}{year}.json").write_text(json.dumps(document))
    return root


def _square(ann_id: int, image_id: int, category_id: int, y: int, x: int, size: int) -> dict:
    polygon = [x, y, x + size, y, x + size, y + size, x, y + size]
    return {"id": ann_id, "image_id": image_id, "category_id": category_id, "iscrowd": 0,
            "segmentation": [polygon], "area": size * size, "bbox": [x, y, size, size]}


# ---- loading and subsets ---------------------------------------------------------------------


def test_loads_all_images_and_categories(train):
    dataset, coco = train
    assert dataset.num_images == 80
    assert dataset.num_classes == 81  # BG + 80 categories
    assert dataset.class_names[1] == "person"
    assert [dataset.image_info[i]["id"] for i in dataset.image_ids] == sorted(coco.imgs)
    first = dataset.image_info[0]
    assert Path(first["path"]) == COCO_MINI / "train2017" / coco.imgs[first["id"]]["file_name"]


def test_category_id_gaps_map_both_ways(train):
    dataset, coco = train
    # COCO skips id 12: "stop sign" has COCO id 13 and contiguous class id 12.
    assert dataset.get_class_id(13) == 12
    assert dataset.get_coco_category_id(12) == 13
    assert dataset.get_coco_category_id(80) == 90  # toothbrush
    for class_id in range(1, dataset.num_classes):
        assert dataset.get_class_id(dataset.get_coco_category_id(class_id)) == class_id
        assert coco.cats[dataset.get_coco_category_id(class_id)]["name"] == dataset.class_names[class_id]
    assert dataset.get_coco_category_id(-12) == 13  # crowd ids map like their class


def test_category_mapping_errors(train, coco_root):
    dataset, _ = train
    with pytest.raises(ValueError, match=r"category_id must be one of .*received 12"):
        dataset.get_class_id(12)
    with pytest.raises(ValueError, match=r"class_id must be .*received 81"):
        dataset.get_coco_category_id(81)
    unprepared = CocoDataset()
    unprepared.load_coco(coco_root, "val", limit=1)
    with pytest.raises(RuntimeError, match=r"prepare\(\)"):
        unprepared.get_class_id(1)


def test_class_name_subset_keeps_only_images_and_annotations_of_those_classes(coco_root):
    dataset = CocoDataset()
    dataset.load_coco(coco_root, "val", class_names=["dog", "cat"])
    dataset.prepare()
    reference = COCO(str(coco_root / "annotations" / "instances_val2017.json"))
    expected = sorted(set(reference.getImgIds(catIds=[17])) | set(reference.getImgIds(catIds=[18])))
    assert [info["id"] for info in dataset.image_info] == expected
    assert dataset.class_names == ["BG", "cat", "dog"]
    for image_id in dataset.image_ids:
        _, class_ids = dataset.load_mask(image_id)
        assert len(class_ids) > 0
        assert set(np.abs(class_ids)) <= {1, 2}
        assert all(a["category_id"] in (17, 18) for a in dataset.image_info[image_id]["annotations"])


def test_class_ids_and_names_combine(coco_root):
    by_id = CocoDataset()
    by_id.load_coco(coco_root, "val", class_ids=[18, 17])
    by_name = CocoDataset()
    by_name.load_coco(coco_root, "val", class_names=["cat", "dog"])
    mixed = CocoDataset()
    mixed.load_coco(coco_root, "val", class_ids=[17], class_names=["dog"])
    ids = [[i["id"] for i in d.image_info] for d in (by_id, by_name, mixed)]
    assert ids[0] == ids[1] == ids[2]
    assert split_class_tokens(["dog", "17", " cat ", 3]) == ([17, 3], ["dog", "cat"])


def test_limit_is_deterministic_prefix(coco_root, train):
    full, _ = train
    first = CocoDataset()
    first.load_coco(coco_root, "train", limit=7)
    again = CocoDataset()
    again.load_coco(coco_root, "train", limit=7)
    ids = [i["id"] for i in first.image_info]
    assert ids == [i["id"] for i in again.image_info]
    assert ids == [full.image_info[i]["id"] for i in range(7)]
    many = CocoDataset()
    many.load_coco(coco_root, "train", limit=10_000)
    assert len(many.image_info) == 80


# ---- masks -----------------------------------------------------------------------------------


def test_masks_equal_pycocotools_annToMask(train, coco_root):
    dataset, _ = train
    coco = COCO(str(coco_root / "annotations" / "instances_train2017.json"))  # independent reader
    checked = 0
    for image_id in dataset.image_ids:
        info = dataset.image_info[image_id]
        masks, class_ids = dataset.load_mask(image_id)
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[info["id"]], iscrowd=None))
        assert masks.shape == (info["height"], info["width"], len(anns))
        assert masks.dtype == bool and class_ids.dtype == np.int32
        for k, ann in enumerate(anns):
            np.testing.assert_array_equal(masks[..., k], coco.annToMask(ann).astype(bool))
            expected = dataset.get_class_id(ann["category_id"]) * (-1 if ann["iscrowd"] else 1)
            assert class_ids[k] == expected
            checked += 1
    assert checked == 739  # every annotation of the train split (README: 731 polygons + 8 crowd RLE)


def test_crowd_annotations_get_negative_ids(train):
    dataset, coco = train
    crowd = [a for a in coco.dataset["annotations"] if a["iscrowd"]]
    assert len(crowd) == 8
    negatives = 0
    for image_id in dataset.image_ids:
        _, class_ids = dataset.load_mask(image_id)
        negatives += int((class_ids < 0).sum())
    assert negatives == len(crowd)
    sample = crowd[0]
    image_id = next(i for i in dataset.image_ids if dataset.image_info[i]["id"] == sample["image_id"])
    _, class_ids = dataset.load_mask(image_id)
    assert -dataset.get_class_id(sample["category_id"]) in class_ids


def test_uncompressed_and_compressed_rle_decode_alike(train):
    _, coco = train
    crowd = next(a for a in coco.dataset["annotations"] if a["iscrowd"])
    assert isinstance(crowd["segmentation"]["counts"], list)  # coco_mini stores uncompressed RLE
    image = coco.imgs[crowd["image_id"]]
    h, w = image["height"], image["width"]
    reference = coco.annToMask(crowd)
    compressed = mask_utils.frPyObjects(crowd["segmentation"], h, w)
    as_text = dict(crowd, segmentation={"size": compressed["size"], "counts": compressed["counts"].decode()})
    np.testing.assert_array_equal(ann_to_mask(crowd, h, w), reference)
    np.testing.assert_array_equal(ann_to_mask(as_text, h, w), reference)
    assert ann_to_rle(as_text, h, w)["counts"] == as_text["segmentation"]["counts"]
    polygon = next(a for a in coco.dataset["annotations"] if not a["iscrowd"])
    img = coco.imgs[polygon["image_id"]]
    np.testing.assert_array_equal(ann_to_mask(polygon, img["height"], img["width"]), coco.annToMask(polygon))
    with pytest.raises(ValueError, match=r"no usable 'segmentation'"):
        ann_to_rle({"id": 5, "segmentation": None}, h, w)


def test_image_with_only_empty_masks_returns_empty_instances(tmp_path):
    images = [{"id": 1, "file_name": "a.png", "height": 20, "width": 30},
              {"id": 2, "file_name": "b.png", "height": 20, "width": 30}]
    degenerate = dict(_square(1, 1, 1, 5, 5, 0), segmentation=[[5, 5, 5, 5, 5, 5]])
    annotations = [degenerate, _square(2, 2, 1, 2, 3, 6)]
    root = _write_folder(tmp_path, images, annotations, [{"id": 1, "name": "box"}])
    dataset = CocoDataset()
    dataset.load_coco(root, "val")
    dataset.prepare()
    masks, class_ids = dataset.load_mask(0)
    assert masks.shape == (20, 30, 0) and masks.dtype == bool
    assert class_ids.shape == (0,) and class_ids.dtype == np.int32
    masks, class_ids = dataset.load_mask(1)
    assert masks.shape == (20, 30, 1) and int(masks.sum()) == 36 and class_ids.tolist() == [1]


def test_image_reference_and_images(train):
    dataset, coco = train
    info = dataset.image_info[3]
    assert dataset.image_reference(3) == coco.imgs[info["id"]]["coco_url"]
    image = dataset.load_image(3)
    assert image.shape == (info["height"], info["width"], 3) and image.dtype == np.uint8


# ---- bad input -------------------------------------------------------------------------------


def test_missing_paths_name_the_expected_file_and_layout(tmp_path, coco_root):
    with pytest.raises(FileNotFoundError, match=r"is not a folder.*annotations/instances_<subset><year>\.json"):
        CocoDataset().load_coco(tmp_path / "nowhere", "train")
    with pytest.raises(FileNotFoundError, match=r"instances_test2017\.json.*found: \['instances_train2017"):
        CocoDataset().load_coco(coco_root, "test")
    images = [{"id": 1, "file_name": "a.png", "height": 8, "width": 8}]
    root = _write_folder(tmp_path / "d", images, [_square(1, 1, 1, 1, 1, 4)], [{"id": 1, "name": "box"}])
    (root / "val2017" / "a.png").unlink()
    (root / "val2017").rmdir()
    with pytest.raises(FileNotFoundError, match=r"image folder .*val2017"):
        CocoDataset().load_coco(root, "val")


def test_unknown_class_name_lists_valid_names(coco_root):
    with pytest.raises(ValueError,
                       match=r"unknown class name 'dgo'.*Did you mean \['dog'\].*Valid names: person, bicycle"):
        CocoDataset().load_coco(coco_root, "val", class_names=["dgo"])
    with pytest.raises(ValueError, match=r"unknown category id 12 .*valid ids: \[1, 2, 3"):
        CocoDataset().load_coco(coco_root, "val", class_ids=[12])
    with pytest.raises(ValueError, match=r"class_ids must hold integers; received 'x'"):
        CocoDataset().load_coco(coco_root, "val", class_ids=["x"])


def test_subset_with_zero_images_is_an_error(coco_root):
    # val lists "hot dog" as a category but has no image of it (see coco_mini/README.txt).
    with pytest.raises(ValueError, match=r"val2017 .* zero images containing the selected categories \['hot dog'\]"):
        CocoDataset().load_coco(coco_root, "val", class_names=["hot dog"])


@pytest.mark.parametrize("limit", [0, -3, 2.5, "5"])
def test_bad_limit(coco_root, limit):
    with pytest.raises(ValueError, match=r"limit must be a positive integer or None; received"):
        CocoDataset().load_coco(coco_root, "val", limit=limit)


@pytest.mark.parametrize(
    "content, message",
    [
        ("{not json", r"is not valid JSON"),
        ("[1, 2]", r"not a COCO instances file: expected a JSON object .* received a JSON list"),
        ('{"images": [], "annotations": []}', r"missing list\(s\) \['categories'\]"),
        ('{"images": [{"id": 1}], "annotations": [], "categories": []}',
         r"entry of 'images' lacks \['file_name', 'height', 'width'\]"),
    ],
)
def test_json_that_is_not_coco(tmp_path, content, message):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "val2017").mkdir()
    (tmp_path / "annotations" / "instances_val2017.json").write_text(content)
    with pytest.raises(ValueError, match=message):
        CocoDataset().load_coco(tmp_path, "val")
    with pytest.raises(ValueError, match=message):
        load_coco_json(tmp_path / "annotations" / "instances_val2017.json")


def test_corrupt_image_is_skipped_with_a_warning_naming_the_file(tmp_path):
    images = [{"id": i, "file_name": f"{i}.png", "height": 12, "width": 16} for i in (1, 2, 3)]
    annotations = [_square(i, i, 1, 1, i, 3 + i) for i in (1, 2, 3)]
    root = _write_folder(tmp_path, images, annotations, [{"id": 1, "name": "box"}])
    broken = root / "val2017" / "2.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    dataset = CocoDataset()
    dataset.load_coco(root, "val")
    dataset.prepare()
    with pytest.warns(CorruptImageWarning, match=r"Skipping unreadable image .*2\.png"):
        image = dataset.load_image(1)
    # Image 2 (index 1) is replaced by image 3 (index 2); its masks follow the substitution.
    np.testing.assert_array_equal(image, dataset.load_image(2))
    masks, _ = dataset.load_mask(1)
    np.testing.assert_array_equal(masks, dataset.load_mask(2)[0])
    assert dataset.skipped_images == {1: str(broken)}
    with pytest.raises(CorruptImageError, match=r"cannot read image file .*2\.png"):
        dataset.read_image(1)
    strict = CocoDataset()
    strict.load_coco(root, "val")
    strict.prepare()
    strict.skip_corrupt = False
    with pytest.raises(CorruptImageError, match=r"2\.png"):
        strict.load_image(1)
