"""Tests for mrcnn_ohem.datasets.coco on real COCO 2017 images (coco_mini) and tiny folders."""
from __future__ import annotations

import json
import re
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
    check_annotation,
    check_image_file,
    load_coco_json,
    split_class_tokens,
)
from mrcnn_ohem.datasets.errors import count_skips

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


def test_image_without_instances_returns_empty_masks_of_its_size(tmp_path):
    images = [{"id": 1, "file_name": "a.png", "height": 20, "width": 30},
              {"id": 2, "file_name": "b.png", "height": 20, "width": 30}]
    root = _write_folder(tmp_path, images, [_square(2, 2, 1, 2, 3, 6)], [{"id": 1, "name": "box"}])
    dataset = CocoDataset()
    dataset.load_coco(root, "val", empty_images=1)
    dataset.prepare()
    assert [info["id"] for info in dataset.image_info] == [2, 1]
    masks, class_ids = dataset.load_mask(1)  # COCO image 1: no annotation at all
    assert masks.shape == (20, 30, 0) and masks.dtype == bool
    assert class_ids.shape == (0,) and class_ids.dtype == np.int32
    masks, class_ids = dataset.load_mask(0)
    assert masks.shape == (20, 30, 1) and int(masks.sum()) == 36 and class_ids.tolist() == [1]  # 6 x 6


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
    images = [{"id": i, "file_name": f"{i}.jpg", "height": 40, "width": 60} for i in (1, 2, 3)]
    annotations = [_square(i, i, 1, 1, i, 3 + i) for i in (1, 2, 3)]
    root = _write_folder(tmp_path, images, annotations, [{"id": 1, "name": "box"}])
    broken = root / "val2017" / "2.jpg"
    _write_truncated_jpeg(broken, 40, 60)  # header intact, pixels cut: found only when decoded
    dataset = CocoDataset()
    dataset.load_coco(root, "val")
    dataset.prepare()
    assert dataset.skipped == []
    with pytest.warns(CorruptImageWarning, match=r"Skipping unreadable image .*2\.jpg"):
        image = dataset.load_image(1)
    # Image 2 (index 1) is replaced by image 3 (index 2); its masks follow the substitution.
    np.testing.assert_array_equal(image, dataset.load_image(2))
    masks, _ = dataset.load_mask(1)
    np.testing.assert_array_equal(masks, dataset.load_mask(2)[0])
    assert dataset.skipped_images == {1: str(broken)}
    dataset.load_image(1)  # found once, recorded once
    assert [(r.kind, r.image_id, r.file) for r in dataset.skipped] == [("image", 2, str(broken))]
    assert "image file is truncated" in dataset.skipped[0].reason
    with pytest.raises(CorruptImageError, match=r"cannot read image file .*2\.jpg"):
        dataset.read_image(1)
    strict = CocoDataset()
    strict.load_coco(root, "val")
    strict.prepare()
    strict.skip_corrupt = False
    with pytest.raises(CorruptImageError, match=r"2\.jpg"):
        strict.load_image(1)


# ---- damaged annotation files (issue 27, item 6) ---------------------------------------------

H, W = 40, 60  # every image of the damaged folder, as rows x columns


def _write_truncated_jpeg(path: Path, height: int, width: int) -> None:
    """A noise JPEG cut to 2/3 of its bytes: Pillow reads its size, decoding it fails."""
    pixels = np.random.default_rng(7).integers(0, 256, (height, width, 3), dtype=np.uint8)
    skimage.io.imsave(path, pixels, check_contrast=False)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's uncompressed RLE of a binary mask: run lengths in column-major order, zeros first."""
    flat = mask.flatten(order="F").astype(np.int8)
    edges = np.flatnonzero(np.diff(flat)) + 1
    runs = np.diff(np.concatenate([[0], edges, [flat.size]])).tolist()
    if flat[0]:
        runs = [0, *runs]
    return {"size": list(mask.shape), "counts": runs}


def _crowd_mask() -> np.ndarray:
    mask = np.zeros((H, W), dtype=np.uint8)
    mask[20:30, 30:40] = 1  # 100 pixels
    return mask


def _damaged_folder(root: Path) -> Path:
    """A COCO folder with each kind of damage of issue 27 (see the comment of each record)."""
    files = root / "val2017"
    files.mkdir(parents=True)
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    skimage.io.imsave(files / "good.png", rgb, check_contrast=False)
    skimage.io.imsave(files / "gray.jpg", rgb[..., 0], check_contrast=False)  # [H, W]: grayscale
    rgba = np.concatenate([rgb, np.full((H, W, 1), 128, dtype=np.uint8)], axis=-1)
    skimage.io.imsave(files / "rgba.png", rgba, check_contrast=False)
    skimage.io.imsave(files / "mismatch.png", rgb, check_contrast=False)  # the JSON says 44 rows
    _write_truncated_jpeg(files / "truncated.jpg", H, W)
    skimage.io.imsave(files / "only_bad.png", rgb, check_contrast=False)
    names = ["good.png", "gray.jpg", "rgba.png", "mismatch.png", "missing.png", "truncated.jpg", "only_bad.png"]
    images = [{"id": i, "file_name": name, "height": H, "width": W} for i, name in enumerate(names, start=1)]
    images[3]["height"] = 44

    def two_points(ann_id, image_id):  # 4 numbers, as some labelling tools export a line
        return {"id": ann_id, "image_id": image_id, "category_id": 1, "iscrowd": 0,
                "segmentation": [[10, 10, 20, 20]], "area": 0, "bbox": [10, 10, 10, 10]}

    annotations = [
        _square(1, 1, 1, 2, 3, 6),  # good: 36 pixels
        two_points(2, 1),
        dict(_square(3, 1, 2, 20, 30, 8), segmentation=[_square(0, 0, 0, 20, 30, 8)["segmentation"][0],
                                                         [1, 1, 5, 5]]),  # kept without its 2nd polygon
        _square(4, 1, 99, 5, 5, 4),  # unknown category
        _square(5, 2, 2, 5, 5, 10),  # good: 100 pixels
        dict(_square(6, 2, 1, 5, 5, 0), segmentation=[[5, 5, 15, 5, 25, 5]], bbox=[5, 5, 20, 0]),  # zero area
        dict(_square(7, 2, 1, 3, 3, 6), bbox=[3, 3, 0, 6]),  # zero-width box around a good polygon
        _square(8, 2, 1, 100, 100, 10),  # box (and polygon) outside the 60 x 40 image
        _square(9, 3, 1, 10, 10, 12),  # good: 144 pixels
        {"id": 14, "image_id": 3, "category_id": 2, "iscrowd": 1, "area": 100, "bbox": [30, 20, 10, 10],
         "segmentation": _uncompressed_rle(_crowd_mask())},  # crowd RLE, as coco_mini stores them
        _square(10, 4, 1, 2, 2, 5),
        _square(11, 5, 1, 2, 2, 5),
        _square(12, 6, 1, 2, 2, 5),
        two_points(13, 7),
        _square(15, 99, 1, 2, 2, 5),  # image 99 is not in 'images'
    ]
    (root / "annotations").mkdir()
    document = {"images": images, "annotations": annotations,
                "categories": [{"id": 1, "name": "box"}, {"id": 2, "name": "disc"}]}
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(document))
    return root


#: (kind, COCO image id, annotation id) -> what the reason must say, for the damaged folder.
EXPECTED_SKIPS = {
    ("annotation", 1, 2): r"polygon 0 has 2 points \(4 coordinates\); a polygon needs at least 3",
    ("polygon", 1, 3): r"polygon 1 has 2 points .*dropped",
    ("annotation", 1, 4): r"category_id 99 is not among the categories \[1, 2\]",
    ("annotation", 2, 6): r"mask is empty \(zero area\)",
    ("annotation", 2, 7): r"bbox \[3, 3, 0, 6\] has zero width or height",
    ("annotation", 2, 8): r"bbox \[100, 100, 10, 10\] lies outside the 60x40 image",
    ("image", 4, None): r"file is 60x40 \(width x height\); the JSON says 60x44",
    ("image", 5, None): r"file does not exist",
    ("annotation", 7, 13): r"polygon 0 has 2 points",
    ("image", 7, None): r"no usable annotation left",
    ("annotation", 99, 15): r"image_id 99 is not listed in 'images'",
}


def _keys(records) -> list[tuple]:
    return [(r.kind, r.image_id, r.annotation_id) for r in records]


def test_damaged_records_are_skipped_once_each_with_coco_ids_and_reasons(tmp_path, caplog):
    root = _damaged_folder(tmp_path)
    dataset = CocoDataset()
    with caplog.at_level("WARNING", logger="mrcnn_ohem.datasets.coco"):
        dataset.load_coco(root, "val")
    dataset.prepare()
    assert sorted(_keys(dataset.skipped), key=str) == sorted(EXPECTED_SKIPS, key=str)
    for record in dataset.skipped:
        assert re.search(EXPECTED_SKIPS[record.kind, record.image_id, record.annotation_id], record.reason), record
        file = dict(enumerate(["good.png", "gray.jpg", "rgba.png", "mismatch.png", "missing.png",
                               "truncated.jpg", "only_bad.png"], start=1)).get(record.image_id)
        assert record.file == (None if file is None else str(root / "val2017" / file))
        assert caplog.text.count(str(record)) == 1, record  # logged once
    assert "11 damaged record(s)" in caplog.text
    assert count_skips(dataset.skipped) == {"image": 3, "annotation": 7, "polygon": 1}
    # The truncated JPEG has a readable header: it stays until training reads it (see below).
    assert [info["id"] for info in dataset.image_info] == [1, 2, 3, 6]
    assert [a["id"] for a in dataset.image_info[0]["annotations"]] == [1, 3]
    assert [a["id"] for a in dataset.image_info[1]["annotations"]] == [5]


def test_images_left_after_the_skips_load_with_masks_of_their_size(tmp_path):
    root = _damaged_folder(tmp_path)
    dataset = CocoDataset()
    dataset.load_coco(root, "val")
    dataset.prepare()
    reference = COCO(str(root / "annotations" / "instances_val2017.json"))  # the file as written
    square_3 = dict(reference.anns[3], segmentation=reference.anns[3]["segmentation"][:1])
    expected = {  # COCO image id -> [(reference mask, class id, pixels)]
        1: [(reference.annToMask(reference.anns[1]), 1, 36), (reference.annToMask(square_3), 2, 64)],
        2: [(reference.annToMask(reference.anns[5]), 2, 100)],
        3: [(reference.annToMask(reference.anns[9]), 1, 144), (_crowd_mask(), -2, 100)],
    }
    for image_id, coco_id in enumerate([1, 2, 3]):
        image = dataset.load_image(image_id)
        assert image.shape == (H, W, 3) and image.dtype == np.uint8
        masks, class_ids = dataset.load_mask(image_id)
        assert masks.shape == (H, W, len(expected[coco_id])) and masks.dtype == bool
        assert class_ids.tolist() == [c for _, c, _ in expected[coco_id]]
        for k, (mask, _, pixels) in enumerate(expected[coco_id]):
            assert int(mask.sum()) == pixels
            np.testing.assert_array_equal(masks[..., k], mask.astype(bool))
    gray = dataset.load_image(1)
    np.testing.assert_array_equal(gray[..., 0], gray[..., 2])  # grey expanded to 3 equal channels
    with pytest.warns(CorruptImageWarning, match=r"truncated\.jpg"):
        image = dataset.load_image(3)  # the truncated JPEG: replaced by the next readable image
    np.testing.assert_array_equal(image, dataset.load_image(0))
    assert dataset.load_mask(3)[0].shape == (H, W, 2)
    assert _keys(dataset.skipped)[-1] == ("image", 6, None)
    assert count_skips(dataset.skipped)["image"] == 4


def test_damaged_folder_feeds_the_data_generator_for_a_whole_epoch(tmp_path):
    from helpers import TinyConfig

    from mrcnn_ohem.maskrcnn.data import DataGenerator

    dataset = CocoDataset()
    dataset.load_coco(_damaged_folder(tmp_path), "val")
    dataset.prepare()
    generator = DataGenerator(dataset, TinyConfig(), shuffle=False, batch_size=1, seed=0)
    with pytest.warns(CorruptImageWarning, match=r"truncated\.jpg"):
        batches = [generator[i] for i in range(len(generator))]
    assert len(batches) == 4
    for inputs, _ in batches:
        assert inputs[0].shape == (1, 64, 64, 3)
        assert int((inputs[4] != 0).sum()) >= 1  # gt_class_ids: every image kept has an instance


def test_returned_coco_holds_only_what_training_sees(tmp_path):
    dataset = CocoDataset()
    coco = dataset.load_coco(_damaged_folder(tmp_path), "val", return_coco=True)
    for info in dataset.image_info:
        anns = coco.loadAnns(coco.getAnnIds(imgIds=[info["id"]], iscrowd=None))
        assert [a["id"] for a in anns] == [a["id"] for a in info["annotations"]]
        for ann in anns:  # COCOeval decodes the ground truth this way: no 2-point polygon left
            assert coco.annToMask(ann).any()
    assert not {2, 4, 6, 7, 8} & set(coco.anns)
    assert len(coco.anns[3]["segmentation"]) == 1


def test_strict_raises_one_error_naming_every_problem_and_loads_nothing(tmp_path):
    root = _damaged_folder(tmp_path)
    dataset = CocoDataset()
    with pytest.raises(ValueError, match=r"12 damaged record\(s\) in .*instances_val2017\.json") as info:
        dataset.load_coco(root, "val", strict=True)
    message = str(info.value)
    for kind, image_id, ann_id in EXPECTED_SKIPS:
        name = f"{kind} (COCO image id {image_id}" + ("" if ann_id is None else f", annotation id {ann_id}")
        assert name in message
    assert re.search(r"image \(COCO image id 6, file .*truncated\.jpg\): cannot be decoded", message)
    assert dataset.image_info == [] and dataset.skipped == []


def test_many_skips_are_logged_as_the_first_20_and_a_count(tmp_path, caplog):
    images = [{"id": 1, "file_name": "a.png", "height": 20, "width": 30}]
    bad = [dict(_square(i, 1, 1, 2, 2, 4), segmentation=[[1, 1, 5, 5]]) for i in range(2, 27)]
    root = _write_folder(tmp_path, images, [_square(1, 1, 1, 2, 2, 4), *bad], [{"id": 1, "name": "box"}])
    dataset = CocoDataset()
    with caplog.at_level("WARNING", logger="mrcnn_ohem.datasets.coco"):
        dataset.load_coco(root, "val")
    assert len(dataset.skipped) == 25
    assert caplog.text.count("polygon 0 has 2 points") == 20
    assert "... and 5 more" in caplog.text
    with pytest.raises(ValueError, match=r"(?s)25 damaged record.*annotation id 21,.*\.\.\. and 5 more"):
        CocoDataset().load_coco(root, "val", strict=True)


@pytest.mark.parametrize("subset, images, annotations", [("train", 80, 739), ("val", 79, 624)])
def test_coco_mini_loads_every_image_and_annotation_without_a_skip(coco_root, subset, images, annotations):
    dataset = CocoDataset()
    dataset.load_coco(coco_root, subset, strict=True)  # strict also decodes every image
    dataset.prepare()
    assert dataset.skipped == []
    assert dataset.num_images == images
    assert sum(len(info["annotations"]) for info in dataset.image_info) == annotations


@pytest.mark.parametrize("change, reason", [
    ({"segmentation": [[1, 1, 9, 1, 9, 9, 4]]}, r"polygon 0 has an odd number of coordinates \(7\)"),
    ({"segmentation": [[1, 1, 9, float("nan"), 9, 9]]}, r"polygon 0 holds coordinates that are not finite"),
    ({"segmentation": [[1, 1, 9, "1", 9, 9]]}, r"polygon 0 holds coordinates that are not finite"),
    ({"segmentation": [5]}, r"polygon 0 is a int, not a list of coordinates"),
    ({"segmentation": []}, r"segmentation is an empty list of polygons"),
    ({"segmentation": None}, r"cannot be decoded .*no usable 'segmentation'"),
    ({"segmentation": {"size": [10, 20], "counts": [5, 10, 185]}}, r"RLE size \[10, 20\] differs .*\[20, 30\]"),
    ({"bbox": [1, 1, 8]}, r"bbox must be 4 finite numbers .*received \[1, 1, 8\]"),
    ({"bbox": [-20, 1, 10, 8]}, r"bbox \[-20, 1, 10, 8\] lies outside the 30x20 image"),
])
def test_check_annotation_names_each_problem(change, reason):
    ann = dict(_square(1, 1, 1, 1, 1, 8), **change)  # a 20 x 30 image
    loaded, problems = check_annotation(ann, 20, 30, [1])
    assert loaded is None and re.search(reason, problems), problems


def test_check_annotation_keeps_sound_and_crowd_annotations_unchanged():
    ann = _square(1, 1, 1, 1, 1, 8)
    assert check_annotation(ann, 20, 30, [1]) == (ann, "")
    mask = np.zeros((20, 30), dtype=np.uint8)
    mask[2:5, 3:9] = 1
    crowd = {"id": 2, "category_id": 1, "iscrowd": 1, "bbox": [3, 2, 6, 3], "segmentation": _uncompressed_rle(mask)}
    assert check_annotation(crowd, 20, 30, [1]) == (crowd, "")
    assert mask_utils.area(mask_utils.frPyObjects(crowd["segmentation"], 20, 30)) == 18  # the RLE helper is right


def test_check_image_file_reads_the_header_and_the_json_size(tmp_path):
    path = tmp_path / "a.png"
    skimage.io.imsave(path, np.zeros((20, 30, 3), dtype=np.uint8), check_contrast=False)
    assert check_image_file(path, 20, 30) is None
    assert check_image_file(path, 20.0, 30) is None  # integral floats, as some exporters write
    assert check_image_file(path, 30, 20) == "file is 30x20 (width x height); the JSON says 20x30"
    assert re.match(r"the JSON's width and height must be positive integers; received 30 x 0", check_image_file(
        path, 0, 30))
    path.write_bytes(b"not an image")
    assert check_image_file(path, 20, 30).startswith("cannot be read (cannot identify image file")
