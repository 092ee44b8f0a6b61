"""COCO-format instance segmentation for the bundled Mask R-CNN.

:class:`CocoDataset` reads the official COCO layout (nothing is ever downloaded)::

    <dataset_dir>/annotations/instances_<subset><year>.json
    <dataset_dir>/<subset><year>/<file_name of each image>

(``minival`` and ``valminusminival`` read their images from ``val<year>/``, as Matterport's
``samples/coco`` does.) Categories can be restricted by COCO category id or by name; only images
that contain at least one selected category are loaded, in ascending COCO image id order, so
``limit`` always picks the same images. Non-contiguous COCO category ids (1..90 with gaps) become
contiguous class ids 1..N in ascending category-id order once ``prepare()`` has run;
:meth:`CocoDataset.get_coco_category_id` and :meth:`CocoDataset.get_class_id` map both ways.

Damaged records do not abort a long run: ``load_coco`` checks each image file's header (Pillow
reads the size without decoding) and every annotation of the images it loads, in one pass
(:func:`check_annotation`, :func:`~.errors.check_image_file`). What it leaves out gets one logged
warning (the first 20, then a count) and a :class:`~.errors.SkippedRecord` in ``dataset.skipped``;
``strict=True`` also decodes every image and raises one ``ValueError`` instead. The returned
``COCO`` holds what was loaded, so COCOeval scores what training sees. Cost on coco_mini (159
images, 1363 annotations, warm cache, 2026-12-06): 0.11 s to load instead of 0.014 s unchecked,
0.77 s with ``strict``.

A file that fails only when decoded (a truncated body) is found when read:
:meth:`CocoDataset.load_image` emits a :class:`CorruptImageWarning` naming the file, records it in
``skipped_images`` and ``skipped`` and returns the next readable image of the dataset instead;
:meth:`CocoDataset.load_mask` follows the same substitution, so image and masks stay consistent
for any data generator that calls ``load_image`` before ``load_mask`` (Matterport's
``load_image_gt`` does). Evaluation uses the strict :meth:`CocoDataset.read_image` and leaves
unreadable images out of the score. Set ``skip_corrupt = False`` to raise
:class:`CorruptImageError` instead.

The COCO evaluation helpers live in :mod:`mrcnn_ohem.datasets.coco_eval` and are re-exported
here (``build_coco_results``, ``evaluate_coco``). The dataset API follows Matterport's
``samples/coco/coco.py`` (``load_coco``, ``annToRLE``, ``annToMask``, negative ids for crowds).
"""
from __future__ import annotations

import contextlib
import difflib
import io
import json
import logging
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import skimage.color
import skimage.io
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from mrcnn_ohem.datasets.errors import (
    CorruptImageError,
    CorruptImageWarning,
    SkippedRecord,
    bbox_problem,
    check_image_file,
    count_skips,
    format_skips,
    polygon_problem,
)
from mrcnn_ohem.maskrcnn import utils

logger = logging.getLogger(__name__)

SOURCE = "coco"
#: Subsets whose images live in another subset's folder (Matterport's 2014 minival split).
IMAGE_FOLDER_ALIASES = {"minival": "val", "valminusminival": "val"}
COCO_LAYOUT = (
    "A COCO dataset folder is laid out as <dataset_dir>/annotations/instances_<subset><year>.json "
    "plus the images in <dataset_dir>/<subset><year>/ (e.g. annotations/instances_val2017.json and "
    "val2017/000000000139.jpg). Nothing is downloaded; fetch COCO from https://cocodataset.org or "
    "write a synthetic folder with mrcnn_ohem.datasets.shapes.write_coco_folder."
)
#: The 80 COCO category ids in ascending order: row ``1 + i`` of the class heads of an 81-class
#: Matterport ``mask_rcnn_coco.h5`` is category ``COCO_CATEGORY_IDS[i]`` (row 0 is the background).
COCO_CATEGORY_IDS = (
    *range(1, 12), *range(13, 26), 27, 28, *range(31, 45), *range(46, 66), 67, 70, *range(72, 83),
    *range(84, 91),
)
_REQUIRED = {
    "images": ("id", "file_name", "height", "width"),
    "annotations": ("id", "image_id", "category_id"),
    "categories": ("id", "name"),
}


############################################################
#  Files and annotations
############################################################


def annotation_path(dataset_dir: str | Path, subset: str, year: str = "2017") -> Path:
    """``<dataset_dir>/annotations/instances_<subset><year>.json``.

    Args:
        dataset_dir: COCO root folder.
        subset: ``"train"``, ``"val"``, ``"minival"``, ... as in the annotation file name.
        year: ``"2017"``, ``"2014"``, ...
    """
    return Path(dataset_dir) / "annotations" / f"instances_{subset}{year}.json"


def image_folder(dataset_dir: str | Path, subset: str, year: str = "2017") -> Path:
    """``<dataset_dir>/<subset><year>`` (``val<year>`` for ``minival``/``valminusminival``).

    Args:
        dataset_dir: COCO root folder.
        subset: ``"train"``, ``"val"``, ``"minival"``, ...
        year: ``"2017"``, ``"2014"``, ...
    """
    return Path(dataset_dir) / f"{IMAGE_FOLDER_ALIASES.get(subset, subset)}{year}"


def load_coco_json(path: str | Path) -> COCO:
    """Read and check a COCO instances file; return an indexed ``pycocotools`` ``COCO``.

    Args:
        path: the ``instances_*.json`` file.

    Raises:
        FileNotFoundError: ``path`` does not exist (the message shows the COCO layout).
        ValueError: the file is not JSON, or not a COCO instances document (the message names
            the missing keys or fields).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Expected the COCO annotation file {path}, which does not exist. {COCO_LAYOUT}")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid JSON ({err}); expected a COCO instances file.") from err
    if not isinstance(document, dict):
        raise ValueError(
            f"{path} is not a COCO instances file: expected a JSON object with keys "
            f"{sorted(_REQUIRED)}; received a JSON {type(document).__name__}."
        )
    missing = [key for key in _REQUIRED if not isinstance(document.get(key), list)]
    if missing:
        raise ValueError(
            f"{path} is not a COCO instances file: missing list(s) {missing}; a COCO instances "
            f"file is a JSON object with lists {sorted(_REQUIRED)}."
        )
    for key, fields in _REQUIRED.items():
        for record in document[key]:
            absent = [f for f in fields if not isinstance(record, dict) or f not in record]
            if absent:
                raise ValueError(
                    f"{path} is not a COCO instances file: an entry of '{key}' lacks {absent} "
                    f"(each needs {list(fields)}); received {str(record)[:120]}."
                )
    coco = COCO()
    coco.dataset = document
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints "creating index..."
        coco.createIndex()
    return coco


def ann_to_rle(ann: dict, height: int, width: int) -> dict:
    """Convert an annotation's segmentation (polygons, uncompressed or compressed RLE) to RLE.

    Args:
        ann: COCO annotation with a ``segmentation`` entry.
        height, width: size of the image the annotation belongs to.

    Returns:
        A compressed RLE dict (``size``, ``counts``) that ``pycocotools.mask.decode`` accepts.
    """
    segm = ann.get("segmentation")
    if isinstance(segm, list):
        if not segm:
            raise ValueError(f"annotation {ann.get('id')} has an empty polygon list as segmentation.")
        # An object may be split into several polygons: merge them into one mask.
        return mask_utils.merge(mask_utils.frPyObjects(segm, height, width))
    if isinstance(segm, dict) and "counts" in segm and "size" in segm:
        if isinstance(segm["counts"], list):  # uncompressed RLE
            return mask_utils.frPyObjects(segm, *segm["size"])
        return segm  # compressed RLE
    raise ValueError(
        f"annotation {ann.get('id')} has no usable 'segmentation': expected a list of polygons or "
        f"an RLE dict with 'counts' and 'size'; received {str(segm)[:80]}."
    )


def ann_to_mask(ann: dict, height: int, width: int) -> np.ndarray:
    """Decode an annotation to a binary mask.

    Args:
        ann: COCO annotation with a ``segmentation`` entry (polygons or RLE).
        height, width: size of the image the annotation belongs to.

    Returns:
        [mask_height, mask_width] uint8 in {0, 1}; normally (height, width), but an RLE carries
        its own ``size``.
    """
    return mask_utils.decode(ann_to_rle(ann, height, width))


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as RGB (grey is expanded, alpha dropped).

    Args:
        path: the image file (any format scikit-image reads).

    Returns:
        [height, width, 3] uint8.

    Raises:
        CorruptImageError: the file is missing or cannot be decoded.
    """
    try:
        image = skimage.io.imread(path)
    except Exception as err:  # decoders raise OSError, ValueError, SyntaxError, ...
        raise CorruptImageError(f"cannot read image file {path}: {err}") from err
    if image.ndim == 2:
        image = skimage.color.gray2rgb(image)
    elif image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise CorruptImageError(f"image file {path} has unsupported shape {image.shape}.")
    return np.ascontiguousarray(image[..., :3])


############################################################
#  Checks of damaged records
############################################################


def check_annotation(ann: dict, height: int, width: int, category_ids: Sequence[int]) -> tuple[dict | None, str]:
    """Check one annotation of a ``height`` x ``width`` image; drop polygons of fewer than 3 points.

    Args:
        ann: a COCO annotation (not modified).
        height, width: the image's size as the JSON gives it.
        category_ids: the category ids the file lists.

    Returns:
        ``(ann, "")`` when sound; ``(copy holding the kept polygons, "polygon k ... dropped")``;
        or ``(None, reasons)`` to skip it: an unknown category, a malformed, degenerate or outside
        bbox, no polygon left, a non-crowd RLE of another size, no decodable or a zero-area mask.
    """
    problems = []
    if ann.get("category_id") not in category_ids:
        problems.append(f"category_id {ann.get('category_id')!r} is not among the categories {sorted(category_ids)}")
    if "bbox" in ann and (bad_box := bbox_problem(ann["bbox"], height, width)):
        problems.append(bad_box)
    segm = ann.get("segmentation")
    dropped = []
    if isinstance(segm, list):
        kept = []
        for k, polygon in enumerate(segm):
            if bad_polygon := polygon_problem(polygon):
                dropped.append(f"polygon {k} {bad_polygon}")
            else:
                kept.append(polygon)
        if not kept:
            problems += dropped or ["segmentation is an empty list of polygons"]
            return None, "; ".join(problems)
        if dropped:
            ann = dict(ann, segmentation=kept)
    try:
        rle = ann_to_rle(ann, height, width)
        area = int(mask_utils.area(rle))
    except (TypeError, ValueError, KeyError, IndexError) as err:
        problems.append(f"segmentation cannot be decoded ({err})")
    else:
        if not ann.get("iscrowd") and list(rle["size"]) != [height, width]:
            problems.append(f"RLE size {list(rle['size'])} differs from the image's [{height}, {width}]")
        elif area == 0:
            problems.append("mask is empty (zero area)")
    if problems:
        return None, "; ".join(dropped + problems)
    return ann, "; ".join(f"{text}; dropped, the annotation is kept" for text in dropped)


############################################################
#  Dataset
############################################################


class CocoDataset(utils.Dataset):
    """A COCO-format dataset (source name ``"coco"``).

    Args:
        class_map: accepted for Matterport compatibility and unused, as upstream.

    Attributes:
        skip_corrupt: when True (default), an unreadable image is replaced by the next readable one
            with a :class:`CorruptImageWarning`; when False, :class:`CorruptImageError` is raised.
        skipped_images: ``{image_id: path}`` of images found unreadable so far.
        skipped: every :class:`~.errors.SkippedRecord` so far: those ``load_coco`` found, then
            the images found unreadable when read.
    """

    def __init__(self, class_map: Any = None):
        super().__init__(class_map)
        self.skip_corrupt = True
        self.skipped_images: dict[int, str] = {}
        self.skipped: list[SkippedRecord] = []
        self._substitutes: dict[int, int] = {}

    def load_coco(
        self,
        dataset_dir: str | Path,
        subset: str,
        year: str = "2017",
        class_ids: Iterable[int] | None = None,
        class_names: Iterable[str] | None = None,
        limit: int | None = None,
        return_coco: bool = False,
        empty_images: int = 0,
        strict: bool = False,
        progress: bool = False,
    ) -> COCO | None:
        """Add the images and categories of one COCO subset.

        Args:
            dataset_dir: COCO root folder (see the module docstring for the layout).
            subset: ``"train"``, ``"val"``, ``"minival"``, ... as in the annotation file name.
            year: ``"2017"``, ``"2014"``, ... (a string; an int is accepted).
            class_ids: COCO category ids to keep (default: all categories).
            class_names: category names to keep, e.g. ``["person", "dog"]``; combined with
                ``class_ids`` when both are given.
            limit: keep only the first ``limit`` images in ascending COCO image id order.
            return_coco: return the ``pycocotools`` ``COCO`` object (needed for evaluation).
            empty_images: also add up to this many images of the subset that contain none of
                the selected categories (the lowest COCO image ids among them, so always the
                same ones; ``limit`` does not count them). They load with no instances: train on
                them with ``Config.TRAIN_BACKGROUND_IMAGES = True`` (the data generator skips
                them otherwise). Objects of unselected categories in them count as background.
            strict: raise one ``ValueError`` listing every damaged record (see the module
                docstring) instead of skipping them; also decodes every image, to find truncated
                files before training.
            progress: show a progress bar while the images and annotations are checked.

        Returns:
            The ``COCO`` object when ``return_coco`` is True, else None. Its annotations are the
            ones loaded: skipped annotations are removed and dropped polygons are gone.

        Raises:
            FileNotFoundError: the folder, the annotation file or the image folder is missing.
            ValueError: not a COCO file, unknown class id or name, bad ``limit``, no image of
                the subset contains a selected category, every such image was skipped, or
                ``strict`` and a damaged record (the message lists the first 20 and a count).
        """
        dataset_dir = Path(dataset_dir)
        year = str(year)
        if not dataset_dir.is_dir():
            raise FileNotFoundError(f"dataset_dir {dataset_dir} is not a folder. {COCO_LAYOUT}")
        ann_file = annotation_path(dataset_dir, subset, year)
        images_dir = image_folder(dataset_dir, subset, year)
        if not ann_file.is_file():
            present = sorted(p.name for p in (dataset_dir / "annotations").glob("instances_*.json"))
            raise FileNotFoundError(
                f"Expected the annotation file {ann_file} for subset={subset!r}, year={year!r}; it "
                f"does not exist (found: {present or 'no instances_*.json'}). {COCO_LAYOUT}"
            )
        if not images_dir.is_dir():
            raise FileNotFoundError(f"Expected the image folder {images_dir}; it does not exist. {COCO_LAYOUT}")
        if limit is not None and (not isinstance(limit, (int, np.integer)) or limit < 1):
            raise ValueError(f"limit must be a positive integer or None; received {limit!r}.")
        if isinstance(empty_images, bool) or not isinstance(empty_images, (int, np.integer)) or empty_images < 0:
            raise ValueError(f"empty_images must be an integer >= 0; received {empty_images!r}.")
        coco = load_coco_json(ann_file)
        cat_ids = _select_categories(coco, class_ids, class_names, ann_file)
        with_objects = {i for c in cat_ids for i in coco.getImgIds(catIds=[c])}
        image_ids = sorted(i for i in with_objects if i in coco.imgs)
        if limit is not None:
            image_ids = image_ids[: int(limit)]
        if not image_ids:
            names = [coco.cats[c]["name"] for c in cat_ids]
            raise ValueError(
                f"subset {subset}{year} in {ann_file} has zero images containing the selected "
                f"categories {names}; choose other classes or another subset."
            )
        empty_ids = [i for i in sorted(coco.imgs) if i not in with_objects][: int(empty_images)]
        kept, records, edits = _check_images(coco, image_ids + empty_ids, images_dir, set(cat_ids),
                                             with_objects, decode=bool(strict), progress=progress)
        records += [  # annotations of an image that 'images' does not list
            SkippedRecord("annotation", i, ann.get("id"), None, f"image_id {i!r} is not listed in 'images'")
            for i in sorted(with_objects - set(coco.imgs), key=lambda i: (str(type(i)), i))
            for ann in coco.imgToAnns[i]]
        if records:
            summary = f"{len(records)} damaged record(s) in {ann_file} ({count_skips(records)})"
            if strict:
                raise ValueError(f"{summary}; strict mode stops here (load without strict / --strict "
                                 f"to skip them with a warning):\n{format_skips(records)}")
            logger.warning("%s, skipped:\n%s", summary, format_skips(records))
        if not kept:
            raise ValueError(f"every selected image of {subset}{year} in {ann_file} was skipped (see the "
                             f"warnings above); nothing is left to load.")
        _apply_edits(coco, edits)
        self.skipped.extend(records)
        for cat_id in cat_ids:
            self.add_class(SOURCE, cat_id, coco.cats[cat_id]["name"])
        for image_id, loaded in kept:
            record = coco.imgs[image_id]
            self.add_image(
                SOURCE,
                image_id=image_id,
                path=str(images_dir / record["file_name"]),
                width=int(record["width"]),
                height=int(record["height"]),
                coco_url=record.get("coco_url"),
                annotations=loaded,
            )
        return coco if return_coco else None

    # ---- images -------------------------------------------------------------------------

    def read_image(self, image_id: int) -> np.ndarray:
        """Read image ``image_id`` strictly: no substitute for an unreadable file.

        Args:
            image_id: internal image id (an index of ``image_info``).

        Returns:
            [height, width, 3] uint8 RGB.

        Raises:
            CorruptImageError: the file is missing or cannot be decoded.
        """
        return read_image(self.image_info[image_id]["path"])

    def load_image(self, image_id: int) -> np.ndarray:
        """The image, or the next readable one if its file is unreadable (see the module docstring).

        Images of another source are read by :meth:`Dataset.load_image`.

        Args:
            image_id: internal image id (an index of ``image_info``).

        Returns:
            [height, width, 3] uint8 RGB.

        Raises:
            CorruptImageError: the file is unreadable and ``skip_corrupt`` is False, or no
                readable image is left in the dataset.
        """
        if self.image_info[image_id]["source"] != SOURCE:
            return super().load_image(image_id)
        candidate = self._substitutes.get(image_id, image_id)
        count = len(self.image_info)
        for step in range(count):
            current = (candidate + step) % count
            if current in self.skipped_images or self.image_info[current]["source"] != SOURCE:
                continue
            try:
                image = self.read_image(current)
            except CorruptImageError as err:
                if not self.skip_corrupt:
                    raise
                self.skipped_images[current] = self.image_info[current]["path"]
                self.skipped.append(SkippedRecord(
                    "image", self.image_info[current]["id"], None, self.image_info[current]["path"],
                    f"unreadable when loaded for training: {err.__cause__ or err}"))
                warnings.warn(
                    f"Skipping unreadable image {self.image_info[current]['path']} "
                    f"(COCO id {self.image_info[current]['id']}): {err.__cause__ or err}",
                    CorruptImageWarning,
                    stacklevel=2,
                )
                continue
            if current != image_id:
                self._substitutes[image_id] = current
            return image
        raise CorruptImageError(f"no readable image left among the {count} images of the dataset.")

    # ---- masks --------------------------------------------------------------------------

    def load_mask(self, image_id: int) -> tuple[np.ndarray, np.ndarray]:
        """Instance masks of an image.

        Annotations whose mask decodes empty are dropped; crowd annotations get negative class
        ids (Matterport's convention: the model ignores them as positives and negatives).

        Args:
            image_id: internal image id; when :meth:`load_image` substituted another image for
                it, that image's masks are returned.

        Returns:
            masks: [height, width, instances] bool.
            class_ids: [instances] int32; negative for crowd regions. An image without any
                non-empty mask returns masks [height, width, 0] and class_ids [0] (the base
                class returns [0, 0, 0] with an "override load_mask" warning, which would be
                misleading here and loses the image size).
        """
        if self.image_info[image_id]["source"] != SOURCE:
            return super().load_mask(image_id)
        info = self.image_info[self._substitutes.get(image_id, image_id)]
        height, width = info["height"], info["width"]
        masks, class_ids = [], []
        for ann in info["annotations"]:
            class_id = self.map_source_class_id(f"{SOURCE}.{ann['category_id']}")
            mask = ann_to_mask(ann, height, width)
            if not mask.any():  # e.g. sub-pixel objects
                continue
            if ann.get("iscrowd"):
                class_id = -class_id
                if mask.shape != (height, width):  # crowd RLEs occasionally carry another size
                    mask = np.ones((height, width), dtype=bool)
            masks.append(mask.astype(bool))
            class_ids.append(class_id)
        if not class_ids:
            return np.zeros((height, width, 0), dtype=bool), np.zeros([0], dtype=np.int32)
        return np.stack(masks, axis=-1), np.array(class_ids, dtype=np.int32)

    def annToRLE(self, ann: dict, height: int, width: int) -> dict:  # noqa: N802 (Matterport name)
        """Matterport-compatible alias of :func:`ann_to_rle`.

        Args:
            ann: COCO annotation with a ``segmentation`` entry.
            height, width: size of the image the annotation belongs to.

        Returns:
            A compressed RLE dict (``size``, ``counts``).
        """
        return ann_to_rle(ann, height, width)

    def annToMask(self, ann: dict, height: int, width: int) -> np.ndarray:  # noqa: N802
        """Matterport-compatible alias of :func:`ann_to_mask`.

        Args:
            ann: COCO annotation with a ``segmentation`` entry.
            height, width: size of the image the annotation belongs to.

        Returns:
            [mask_height, mask_width] uint8 in {0, 1} (see :func:`ann_to_mask`).
        """
        return ann_to_mask(ann, height, width)

    # ---- ids ----------------------------------------------------------------------------

    def image_reference(self, image_id: int) -> str:
        """The image's coco.org URL when known, else its file path.

        Args:
            image_id: internal image id (an index of ``image_info``).
        """
        info = self.image_info[image_id]
        if info["source"] != SOURCE:
            return super().image_reference(image_id)
        return info.get("coco_url") or info["path"]

    def _require_prepared(self) -> None:
        if not hasattr(self, "class_from_source_map"):
            raise RuntimeError("call dataset.prepare() before mapping class ids.")

    def get_coco_category_id(self, class_id: int) -> int:
        """COCO category id of a contiguous class id (needs ``prepare()``).

        Args:
            class_id: contiguous class id >= 1 of a COCO class; a negative (crowd) id maps as its
                absolute value.

        Raises:
            RuntimeError: ``prepare()`` has not run.
            ValueError: ``class_id`` is not a COCO class of this dataset.
        """
        self._require_prepared()
        index = abs(int(class_id))
        if not 1 <= index < len(self.class_info) or self.class_info[index]["source"] != SOURCE:
            valid = [i for i, c in enumerate(self.class_info) if c["source"] == SOURCE]
            raise ValueError(f"class_id must be a COCO class of this dataset {valid}; received {class_id!r}.")
        return int(self.class_info[index]["id"])

    def get_class_id(self, category_id: int) -> int:
        """Contiguous class id of a COCO category (needs ``prepare()``).

        Args:
            category_id: a COCO category id this dataset loaded (e.g. 18 for "dog").

        Raises:
            RuntimeError: ``prepare()`` has not run.
            ValueError: the category was not loaded.
        """
        self._require_prepared()
        key = f"{SOURCE}.{int(category_id)}"
        if key not in self.class_from_source_map:
            valid = [c["id"] for c in self.class_info if c["source"] == SOURCE]
            raise ValueError(
                f"category_id must be one of the loaded COCO categories {valid}; received {category_id!r}.")
        return int(self.class_from_source_map[key])


def _select_categories(
    coco: COCO,
    class_ids: Iterable[int | str] | None,
    class_names: Iterable[str] | None,
    ann_file: Path,
) -> list[int]:
    """Sorted COCO category ids chosen by id and/or by name (all when both are None)."""
    all_ids = sorted(coco.cats)
    if not all_ids:
        raise ValueError(f"{ann_file} lists no categories.")
    if class_ids is None and class_names is None:
        return all_ids
    chosen: set[int] = set()
    for value in [] if class_ids is None else list(class_ids):
        try:
            cat_id = int(value)
        except (TypeError, ValueError):
            raise ValueError(f"class_ids must hold integers; received {value!r}.") from None
        if cat_id not in coco.cats:
            raise ValueError(f"unknown category id {cat_id} in {ann_file}; valid ids: {all_ids}.")
        chosen.add(cat_id)
    if isinstance(class_names, str):
        class_names = [class_names]
    by_name = {coco.cats[c]["name"]: c for c in all_ids}
    for name in [] if class_names is None else list(class_names):
        if name not in by_name:
            close = difflib.get_close_matches(str(name), list(by_name), n=3)
            hint = f" Did you mean {close}?" if close else ""
            raise ValueError(
                f"unknown class name {name!r} in {ann_file}.{hint} Valid names: {', '.join(by_name)}."
            )
        chosen.add(by_name[name])
    if not chosen:
        raise ValueError("class_ids and class_names are empty; pass None to load all categories.")
    return sorted(chosen)


def _check_images(
    coco: COCO, image_ids: Sequence[int], images_dir: Path, cat_ids: set[int], with_objects: set[int],
    decode: bool, progress: bool,
) -> tuple[list[tuple[int, list[dict]]], list[SkippedRecord], dict[int, dict | None]]:
    """Check the files of ``image_ids`` and their annotations of ``cat_ids`` or of unknown categories.

    Returns:
        ``kept``: ``[(COCO image id, annotations to load)]`` in ``image_ids`` order (an image of
        ``with_objects`` left without annotations is skipped); ``records``: what was skipped;
        ``edits``: ``{id(annotation): replacement, or None to remove it}`` for :func:`_apply_edits`.
    """
    from tqdm.auto import tqdm

    kept, records, edits = [], [], {}
    for image_id in tqdm(image_ids, desc="check images", unit="img", disable=not progress):
        info = coco.imgs[image_id]
        path = str(images_dir / info["file_name"])
        problem = check_image_file(path, info["height"], info["width"], decode=decode)
        if problem:
            records.append(SkippedRecord("image", image_id, None, path, problem))
            continue
        annotations = []
        for ann in coco.imgToAnns[image_id]:
            if ann.get("category_id") in cat_ids or ann.get("category_id") not in coco.cats:
                loaded, problem = check_annotation(ann, int(info["height"]), int(info["width"]), list(coco.cats))
                if problem:
                    kind = "annotation" if loaded is None else "polygon"
                    records.append(SkippedRecord(kind, image_id, ann.get("id"), path, problem))
                    edits[id(ann)] = loaded
                if loaded is not None:
                    annotations.append(loaded)
        if not annotations and image_id in with_objects:
            records.append(SkippedRecord("image", image_id, None, path, "no usable annotation left"))
            continue
        kept.append((image_id, annotations))
    return kept, records, edits


def _apply_edits(coco: COCO, edits: dict[int, dict | None]) -> None:
    """Replace or remove (None) the annotations ``edits`` names in ``coco`` and re-index it."""
    if not edits:
        return
    annotations = [edits.get(id(ann), ann) for ann in coco.dataset["annotations"]]
    coco.dataset["annotations"] = [ann for ann in annotations if ann is not None]
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()


def split_class_tokens(tokens: Sequence[str | int]) -> tuple[list[int], list[str]]:
    """Split command-line ``--classes`` tokens into category ids (all digits) and names.

    Args:
        tokens: the tokens (ints or strings; surrounding blanks are stripped, empty ones dropped).

    Returns:
        (class_ids, class_names) for :meth:`CocoDataset.load_coco`.
    """
    ids, names = [], []
    for token in tokens:
        text = str(token).strip()
        if text.isdigit():
            ids.append(int(text))
        elif text:
            names.append(text)
    return ids, names


__all__ = [
    "COCO_LAYOUT", "CocoDataset", "CorruptImageError", "CorruptImageWarning", "SkippedRecord", "ann_to_mask",
    "ann_to_rle", "annotation_path", "check_annotation", "check_image_file", "count_skips", "image_folder",
    "load_coco_json", "read_image", "split_class_tokens",
]
