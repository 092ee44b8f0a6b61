"""COCO evaluation of a bundled Mask R-CNN: bbox and segm AP, and RPN proposal recall.

All numbers come from ``pycocotools.cocoeval.COCOeval``:

* ``bbox`` and ``segm``: AP (IoU .50:.95), AP50, AP75 over the categories the dataset loaded
  (``params.catIds`` is set to them, so a class subset is not penalised for classes it never
  trained on) and over the evaluated images only.
* ``rpn``: AR@100, the recall of the first 100 RPN proposals per image (the ``ROI`` output of the
  inference graph, which ProposalLayer returns sorted by objectness after NMS) averaged over IoU
  .50:.95, class-agnostic (``params.useCats = 0``, ``maxDets = [1, 10, 100]``, ``stats[8]``).
  Proposals are given rank-based scores (1, 1 - 1/N, ...) because the graph does not export their
  objectness; only their order matters to COCOeval. Crowd regions are ignored as COCOeval does.

COCOeval reports -1 for a metric with no ground truth (e.g. no small objects); we keep that
convention. Ground truth is copied before COCOeval runs, because COCOeval rewrites annotation
``segmentation`` entries in place. (The evaluation recipe follows Matterport's
``samples/coco/coco.py``; the proposal recall and the scoring split are ours.)
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging
import time
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from mrcnn_ohem.datasets.errors import CorruptImageError

logger = logging.getLogger(__name__)

#: Metric names in output order, per evaluation kind.
METRICS = {"bbox": ("AP", "AP50", "AP75"), "segm": ("AP", "AP50", "AP75"), "rpn": ("AR@100",)}
EVAL_TYPES = ("bbox", "segm")


############################################################
#  Detections to COCO results
############################################################


def build_coco_results(
    dataset: Any,
    image_ids: int | Sequence[int],
    rois: np.ndarray | None,
    class_ids: np.ndarray | None,
    scores: np.ndarray | None,
    masks: np.ndarray | None,
    source: str = "coco",
) -> list[dict]:
    """Turn one image's detections into COCO result records (JSON-serialisable).

    Args:
        dataset: a prepared ``Dataset`` whose classes come from ``source``.
        image_ids: the COCO image id of the image (Matterport passes a one-element list).
        rois: [num_detections, (y1, x1, y2, x2)] boxes in image pixels.
        class_ids: [num_detections] int contiguous class ids.
        scores: [num_detections] float confidences.
        masks: [height, width, num_detections] binary masks, or None for boxes only.
        source: the class source the COCO category ids come from.

    Returns:
        One dict per detection with ``image_id``, ``category_id``, ``bbox`` ``[x, y, w, h]``,
        ``score`` and, when masks are given, ``segmentation`` as compressed RLE (str counts).
    """
    if isinstance(image_ids, (int, np.integer)):
        image_id = int(image_ids)
    else:
        image_ids = list(image_ids)
        if len(image_ids) != 1:
            raise ValueError(
                f"image_ids must name the one image the detections belong to; received {len(image_ids)} ids."
            )
        image_id = int(image_ids[0])
    if rois is None or len(rois) == 0:
        return []
    rois = np.asarray(rois, dtype=np.float64)
    results = []
    for i in range(rois.shape[0]):
        y1, x1, y2, x2 = rois[i]
        record = {
            "image_id": image_id,
            "category_id": int(dataset.get_source_class_id(int(class_ids[i]), source)),
            "bbox": [round(float(x1), 2), round(float(y1), 2), round(float(x2 - x1), 2), round(float(y2 - y1), 2)],
            "score": float(scores[i]),
        }
        if masks is not None:
            rle = mask_utils.encode(np.asfortranarray(masks[..., i].astype(np.uint8)))
            record["segmentation"] = {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}
        results.append(record)
    return results


def proposal_results(image_id: int, boxes: np.ndarray, max_proposals: int = 100) -> list[dict]:
    """Class-agnostic COCO records for RPN proposals, scored by rank.

    Args:
        image_id: COCO image id.
        boxes: [num_proposals, (y1, x1, y2, x2)] in image pixels, best first.
        max_proposals: keep the first this many.
    """
    boxes = np.asarray(boxes, dtype=np.float64)[:max_proposals]
    n = len(boxes)
    return [
        {
            "image_id": int(image_id),
            "category_id": 1,
            "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
            "score": 1.0 - k / max(n, 1),
        }
        for k, (y1, x1, y2, x2) in enumerate(boxes)
    ]


############################################################
#  Scoring
############################################################


def restrict_coco(coco: COCO, image_ids: Sequence[int], category_ids: Sequence[int]) -> COCO:
    """A deep-copied ``COCO`` holding only the given images, categories and their annotations.

    Args:
        coco: the ground truth to copy from (not modified).
        image_ids: COCO image ids to keep; each must be in ``coco``.
        category_ids: COCO category ids to keep; each must be in ``coco``. Annotations of the
            kept images in these categories are kept, crowd annotations included.
    """
    image_ids = [int(i) for i in image_ids]
    category_ids = [int(c) for c in category_ids]
    anns = coco.loadAnns(coco.getAnnIds(imgIds=image_ids, catIds=category_ids, iscrowd=None))
    subset = COCO()
    subset.dataset = copy.deepcopy({
        "images": [coco.imgs[i] for i in image_ids],
        "categories": [coco.cats[c] for c in category_ids],
        "annotations": anns,
    })
    with contextlib.redirect_stdout(io.StringIO()):
        subset.createIndex()
    return subset


def _load_results(gt: COCO, records: list[dict]) -> COCO:
    """``gt.loadRes`` that also accepts an empty list (an untrained model may detect nothing)."""
    with contextlib.redirect_stdout(io.StringIO()):
        if records:
            return gt.loadRes(copy.deepcopy(records))
        empty = COCO()
        empty.dataset = {"images": list(gt.dataset["images"]), "categories": list(gt.dataset["categories"]),
                         "annotations": []}
        empty.createIndex()
        return empty


def _run_cocoeval(gt: COCO, dt: COCO, iou_type: str, image_ids: list[int], category_ids: list[int] | None,
                  max_dets: Sequence[int] = (1, 10, 100)):
    """COCOeval stats; ``category_ids`` None: class-agnostic with ``max_dets`` proposal budgets."""
    evaluator = COCOeval(gt, dt, iou_type)
    evaluator.params.imgIds = image_ids
    if category_ids is None:
        evaluator.params.useCats = 0
        evaluator.params.maxDets = [int(m) for m in max_dets]
    else:
        evaluator.params.catIds = category_ids
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    logger.debug("COCOeval %s%s:\n%s", iou_type, "" if category_ids else " (class-agnostic)", buffer.getvalue())
    return evaluator.stats


def score_results(
    coco: COCO,
    image_ids: Sequence[int],
    category_ids: Sequence[int],
    detections: list[dict],
    proposals: list[dict] | None = None,
    eval_types: Sequence[str] = EVAL_TYPES,
) -> dict[str, dict[str, float]]:
    """Score COCO result records with COCOeval.

    Args:
        coco: ground truth (not modified).
        image_ids: COCO image ids that were evaluated.
        category_ids: COCO category ids that count.
        detections: records from :func:`build_coco_results` (``segmentation`` needed for segm).
        proposals: records from :func:`proposal_results`, or None to skip ``rpn``.
        eval_types: any of ``"bbox"``, ``"segm"``.

    Returns:
        ``{"bbox": {"AP", "AP50", "AP75"}, "segm": {...}, "rpn": {"AR@100"}}`` (requested parts).
    """
    unknown = [t for t in eval_types if t not in EVAL_TYPES]
    if unknown:
        raise ValueError(f"eval_types must be among {EVAL_TYPES}; received {list(eval_types)}.")
    image_ids = [int(i) for i in image_ids]
    category_ids = [int(c) for c in category_ids]
    if not image_ids:
        raise ValueError("image_ids is empty: there is nothing to evaluate.")
    gt = restrict_coco(coco, image_ids, category_ids)
    metrics: dict[str, dict[str, float]] = {}
    for iou_type in eval_types:
        records = detections
        if iou_type == "bbox":
            records = [{k: v for k, v in r.items() if k != "segmentation"} for r in detections]
        else:
            records = [{k: v for k, v in r.items() if k != "bbox"} for r in detections]
            if any("segmentation" not in r for r in records):
                raise ValueError("segm evaluation needs a 'segmentation' in every detection record.")
        stats = _run_cocoeval(gt, _load_results(gt, records), iou_type, image_ids, category_ids)
        metrics[iou_type] = {"AP": float(stats[0]), "AP50": float(stats[1]), "AP75": float(stats[2])}
    if proposals is not None:
        stats = _run_cocoeval(gt, _load_results(gt, proposals), "bbox", image_ids, None)
        metrics["rpn"] = {"AR@100": float(stats[8])}
    return metrics


def proposal_recall(coco: COCO, image_ids: Sequence[int], records: list[dict],
                    max_dets: Sequence[int] = (10, 100, 1000)) -> dict[int, float]:
    """Class-agnostic average recall (IoU .50:.95) of proposals at three budgets.

    :func:`score_results` gives AR@100 only; this runs the same class-agnostic COCOeval with
    the given ``maxDets`` (e.g. AR@1000 needs records from ``proposal_results(..., 1000)``).

    Args:
        coco: ground truth (not modified); every category counts.
        image_ids: COCO image ids that were evaluated.
        records: :func:`proposal_results` records.
        max_dets: exactly three budgets, ascending.

    Returns:
        ``{budget: AR}``.
    """
    if len(max_dets) != 3:
        raise ValueError(f"max_dets must hold exactly 3 budgets; received {list(max_dets)}.")
    image_ids = [int(i) for i in image_ids]
    gt = restrict_coco(coco, image_ids, sorted(coco.cats))
    stats = _run_cocoeval(gt, _load_results(gt, records), "bbox", image_ids, None, max_dets)
    return {int(m): float(stats[6 + i]) for i, m in enumerate(max_dets)}


############################################################
#  Running a model
############################################################


def _proposals_to_image(rois: np.ndarray, molded_shape: Sequence[int], window: Sequence[int],
                        image_shape: Sequence[int]) -> np.ndarray:
    """Map normalised proposals of a molded image back to original image pixels.

    Args:
        rois: [num_rois, (y1, x1, y2, x2)] normalised to the molded image, zero rows = padding.
        molded_shape: (height, width, ...) of the molded image.
        window: (y1, x1, y2, x2) pixels of the molded image that hold the real image.
        image_shape: (height, width, ...) of the original image.

    Returns:
        [num_real_rois, (y1, x1, y2, x2)] float pixels clipped to the image, in input order.
    """
    rois = np.asarray(rois, dtype=np.float64)
    rois = rois[np.any(rois != 0, axis=1)]
    h, w = molded_shape[:2]
    # Inverse of utils.norm_boxes: (y2, x2) are stored inclusive in normalised coordinates.
    boxes = rois * np.array([h - 1, w - 1, h - 1, w - 1], dtype=np.float64) + np.array([0, 0, 1, 1])
    wy1, wx1, wy2, wx2 = (float(v) for v in window)
    scale_y = image_shape[0] / max(wy2 - wy1, 1e-6)
    scale_x = image_shape[1] / max(wx2 - wx1, 1e-6)
    boxes = (boxes - np.array([wy1, wx1, wy1, wx1])) * np.array([scale_y, scale_x, scale_y, scale_x])
    boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, image_shape[0])
    boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, image_shape[1])
    return boxes


def detect_with_proposals(model: Any, images: list[np.ndarray]) -> list[dict]:
    """Run an inference-mode ``MaskRCNN`` once and return detections plus RPN proposals.

    Does what ``MaskRCNN.detect`` does (mold, predict, unmold) but also keeps the ``ROI`` output.

    Args:
        model: ``mrcnn_ohem.maskrcnn.model.MaskRCNN`` in inference mode.
        images: exactly ``model.config.BATCH_SIZE`` images, each [height, width, 3].

    Returns:
        Per image ``{"rois", "class_ids", "scores", "masks", "proposals"}``; ``proposals`` is
        [num_proposals, (y1, x1, y2, x2)] in image pixels, best first.
    """
    if len(images) != model.config.BATCH_SIZE:
        raise ValueError(f"images must hold BATCH_SIZE={model.config.BATCH_SIZE} images; received {len(images)}.")
    molded, metas, windows = model.mold_inputs(images)
    anchors = model.get_anchors(molded[0].shape)
    anchors = np.broadcast_to(anchors, (model.config.BATCH_SIZE,) + anchors.shape)
    outputs = model.keras_model.predict([molded, metas, anchors], verbose=0)
    names = list(model.keras_model.output_names)
    by_name = dict(zip(names, outputs))
    detections = by_name.get("mrcnn_detection", outputs[0])
    mrcnn_mask = by_name.get("mrcnn_mask", outputs[3])
    rpn_rois = by_name.get("ROI", outputs[4])
    results = []
    for i, image in enumerate(images):
        rois, class_ids, scores, masks = model.unmold_detections(
            detections[i], mrcnn_mask[i], image.shape, molded[i].shape, windows[i]
        )
        results.append({
            "rois": rois, "class_ids": class_ids, "scores": scores, "masks": masks,
            "proposals": _proposals_to_image(rpn_rois[i], molded[i].shape, windows[i], image.shape),
        })
    return results


def detect_dataset(model: Any, dataset: Any, image_ids: Sequence[int],
                   progress: bool = False) -> Iterator[tuple[int, dict | None]]:
    """Run :func:`detect_with_proposals` over dataset images, ``BATCH_SIZE`` at a time.

    The last batch is padded by repeating its last image (the padding's outputs are dropped).

    Args:
        model: inference-mode ``MaskRCNN``.
        dataset: a prepared ``Dataset``; ``read_image`` is used when it has one, else
            ``load_image``.
        image_ids: dataset image ids, in the order to yield them.
        progress: show a tqdm progress bar.

    Yields:
        ``(image_id, output)``: ``output`` as :func:`detect_with_proposals` returns it plus
        ``"seconds"`` (the batch's predict time shared among its images), or None for an
        unreadable image (after a warning).
    """
    from tqdm.auto import tqdm

    ids = list(image_ids)
    batch_size = int(model.config.BATCH_SIZE)
    bar = tqdm(total=len(ids), desc="evaluate", unit="img", disable=not progress)
    for start in range(0, len(ids), batch_size):
        batch = []
        for image_id in ids[start : start + batch_size]:
            try:
                image = dataset.read_image(image_id) if hasattr(dataset, "read_image") else dataset.load_image(image_id)
            except CorruptImageError as err:
                warnings.warn(f"Skipping unreadable image {dataset.image_info[image_id]['path']} in evaluation: "
                              f"{err}", stacklevel=2)
                yield image_id, None
                continue
            batch.append((image_id, image))
        bar.update(len(ids[start : start + batch_size]))
        if not batch:
            continue
        images = [image for _, image in batch]
        images += [images[-1]] * (batch_size - len(images))  # pad the last batch
        tick = time.perf_counter()
        outputs = detect_with_proposals(model, images)
        seconds = (time.perf_counter() - tick) / len(batch)
        for (image_id, _), out in zip(batch, outputs):
            yield image_id, dict(out, seconds=seconds)
    bar.close()


def evaluate_coco(
    model: Any,
    dataset: Any,
    coco: COCO,
    eval_types: Sequence[str] = EVAL_TYPES,
    limit: int | None = None,
    image_ids: Sequence[int] | None = None,
    proposals: bool = True,
    progress: bool = True,
) -> dict[str, Any]:
    """Detect on a ``CocoDataset`` and score with COCOeval (see the module docstring).

    Args:
        model: inference-mode ``MaskRCNN``; its ``config.BATCH_SIZE`` images run per call.
        dataset: the prepared ``CocoDataset`` (its loaded categories are the ones scored).
        coco: the ``COCO`` object ``load_coco(..., return_coco=True)`` returned.
        eval_types: any of ``"bbox"``, ``"segm"``.
        limit: evaluate only the first ``limit`` images.
        image_ids: dataset image ids to evaluate (default: all).
        proposals: also score RPN proposals (AR@100).
        progress: show a tqdm progress bar.

    Returns:
        ``{"bbox": {...}, "segm": {...}, "rpn": {"AR@100"}, "num_images", "num_detections",
        "skipped_images", "seconds_per_image"}``.
    """
    ids = list(dataset.image_ids if image_ids is None else image_ids)
    if limit is not None:
        ids = ids[: int(limit)]
    category_ids = [int(c["id"]) for c in dataset.class_info if c["source"] == "coco"]
    detections: list[dict] = []
    proposal_records: list[dict] | None = [] if proposals else None
    evaluated: list[int] = []
    skipped: list[str] = []
    predict_seconds = 0.0
    for image_id, out in detect_dataset(model, dataset, ids, progress=progress):
        if out is None:
            skipped.append(str(dataset.image_info[image_id]["path"]))
            continue
        predict_seconds += out["seconds"]
        coco_id = int(dataset.image_info[image_id]["id"])
        evaluated.append(coco_id)
        detections += build_coco_results(
            dataset, [coco_id], out["rois"], out["class_ids"], out["scores"],
            out["masks"] if "segm" in eval_types else None,
        )
        if proposal_records is not None:
            proposal_records += proposal_results(coco_id, out["proposals"], 100)
    metrics: dict[str, Any] = score_results(coco, evaluated, category_ids, detections, proposal_records, eval_types)
    metrics.update({
        "num_images": len(evaluated),
        "num_detections": len(detections),
        "skipped_images": skipped,
        "seconds_per_image": predict_seconds / max(len(evaluated), 1),
    })
    return metrics


def format_table(runs: dict[str, dict[str, Any]], extra: Sequence[str] = ()) -> str:
    """A plain-text table with one column per run.

    Args:
        runs: ``{run name: metrics}`` as returned by :func:`evaluate_coco` (extra top-level float
            entries such as ``"seconds_per_step"`` may be listed in ``extra``).
        extra: top-level keys to add as rows.
    """
    rows = []
    for kind, names in METRICS.items():
        for name in names:
            if any(kind in m for m in runs.values()):
                rows.append((f"{kind} {name}", [m.get(kind, {}).get(name) for m in runs.values()]))
    for key in extra:
        rows.append((key, [m.get(key) for m in runs.values()]))
    label_width = max([len(r[0]) for r in rows] + [6])
    widths = [max(len(name), 8) for name in runs]
    header = "metric".ljust(label_width) + "".join(f"  {name:>{w}}" for name, w in zip(runs, widths))
    lines = [header, "-" * len(header)]
    for label, values in rows:
        cells = "".join(
            f"  {('-' if v is None else f'{v:.4f}'):>{w}}" for v, w in zip(values, widths)
        )
        lines.append(label.ljust(label_width) + cells)
    return "\n".join(lines)
