"""Scoring one trained run: COCOeval AP/AR, false-positive proposals on distractors, and the
recall and score calibration of the detections.

Detections and proposals come from :func:`mrcnn_ohem.datasets.coco_eval.detect_dataset` (the
one detect-and-pad loop, shared with ``evaluate_coco``); AP comes from ``score_results`` and
AR@100/AR@1000 from ``proposal_recall``. Distractor boxes are regenerated from the scene
description (:mod:`mrcnn_ohem.datasets.shapes`), which the COCO folder does not store.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def distractor_false_positives(proposals: np.ndarray, gt_boxes: np.ndarray, distractor_boxes: np.ndarray,
                               top: int = 100, iou: float = 0.5) -> int:
    """Proposals that cover a distractor and no ground-truth object.

    Args:
        proposals: [num_proposals, (y1, x1, y2, x2)] pixels, best first.
        gt_boxes: [num_gt, (y1, x1, y2, x2)] pixels.
        distractor_boxes: [num_distractors, (y1, x1, y2, x2)] pixels.
        top: look at the first ``top`` proposals only.
        iou: the IoU threshold for "covers".

    Returns:
        How many of the first ``top`` proposals have IoU >= ``iou`` with some distractor box
        and IoU < ``iou`` with every ground-truth box.
    """
    from mrcnn_ohem.core.boxes import compute_overlaps

    proposals = np.asarray(proposals, dtype=np.float32).reshape(-1, 4)[:top]
    distractor_boxes = np.asarray(distractor_boxes, dtype=np.float32).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, dtype=np.float32).reshape(-1, 4)
    if len(proposals) == 0 or len(distractor_boxes) == 0:
        return 0
    on_distractor = compute_overlaps(proposals, distractor_boxes).max(axis=1) >= iou
    if len(gt_boxes):
        on_distractor &= compute_overlaps(proposals, gt_boxes).max(axis=1) < iou
    return int(on_distractor.sum())


def _xywh_to_yxyx(boxes: np.ndarray) -> np.ndarray:
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([boxes[:, 1], boxes[:, 0], boxes[:, 1] + boxes[:, 3], boxes[:, 0] + boxes[:, 2]], axis=1)


def detection_quality(ground_truth: dict[int, list[tuple[int, list[float]]]], detections: list[dict],
                      iou: float = 0.5, min_score: float = 0.5, bins: int = 10) -> dict[str, float]:
    """Recall of the confident detections, and how well the scores match their precision.

    Each image's detections are matched greedily, highest score first, to an unmatched ground-truth
    box of the same category at IoU >= ``iou`` (COCO's rule at one threshold): a match is a true
    positive. Calibration: the detections are put into ``bins`` equal score bins over [0, 1]; the
    expected calibration error is the detection-weighted mean over bins of |fraction true
    positive - mean score| (0: a score of s means the detection is right with probability s).

    Args:
        ground_truth: ``{image_id: [(category_id, [x, y, w, h]), ...]}`` in pixels.
        detections: COCO results, ``{"image_id", "category_id", "bbox": [x, y, w, h], "score"}``.
        iou: the IoU a true positive needs.
        min_score: the score from which a detection counts for ``recall``.
        bins: score bins of the calibration error.

    Returns:
        ``{"det_recall50": fraction of ground-truth objects found by a detection with score >=
        min_score, "calibration_error": the expected calibration error, "mean_score_tp",
        "mean_score_fp": mean scores of true and false positives (NaN when there are none),
        "detections": count}``.
    """
    from mrcnn_ohem.core.boxes import compute_overlaps

    scores, correct = [], []
    found = total = 0
    by_image: dict[int, list[dict]] = {}
    for d in detections:
        by_image.setdefault(int(d["image_id"]), []).append(d)
    for image_id, objects in ground_truth.items():
        total += len(objects)
        candidates = sorted(by_image.get(image_id, []), key=lambda d: -float(d["score"]))
        used = np.zeros(len(objects), bool)
        gt_boxes = _xywh_to_yxyx([box for _, box in objects]) if objects else np.zeros((0, 4))
        gt_classes = np.array([category for category, _ in objects], dtype=np.int64)
        for d in candidates:
            hit = False
            if len(objects):
                overlaps = compute_overlaps(_xywh_to_yxyx(d["bbox"]), gt_boxes)[0]
                overlaps[(gt_classes != int(d["category_id"])) | used] = -1.0
                best = int(np.argmax(overlaps))
                hit = bool(overlaps[best] >= iou)
                if hit:
                    used[best] = True
                    found += float(d["score"]) >= min_score
            scores.append(float(d["score"]))
            correct.append(hit)
    scores_arr, correct_arr = np.asarray(scores, dtype=np.float64), np.asarray(correct, dtype=bool)
    error = 0.0
    if len(scores_arr):
        index = np.minimum((scores_arr * bins).astype(int), bins - 1)
        for b in range(bins):
            in_bin = index == b
            if in_bin.any():
                error += in_bin.mean() * abs(correct_arr[in_bin].mean() - scores_arr[in_bin].mean())
    return {"det_recall50": found / total if total else float("nan"),
            "calibration_error": error if len(scores_arr) else float("nan"),
            "mean_score_tp": float(scores_arr[correct_arr].mean()) if correct_arr.any() else float("nan"),
            "mean_score_fp": float(scores_arr[~correct_arr].mean()) if (~correct_arr).any() else float("nan"),
            "detections": len(scores_arr)}


def scene_boxes(scene: Any) -> tuple[np.ndarray, np.ndarray]:
    """Target and distractor boxes of a :class:`~mrcnn_ohem.datasets.shapes.SceneSpec`.

    Returns:
        targets: [num_targets, (y1, x1, y2, x2)] int32 pixels.
        distractors: [num_distractors, (y1, x1, y2, x2)] int32 pixels.
    """
    from mrcnn_ohem.datasets.shapes import shape_mask
    from mrcnn_ohem.maskrcnn.utils import extract_bboxes

    def boxes(specs) -> np.ndarray:
        if not specs:
            return np.zeros((0, 4), np.int32)
        return extract_bboxes(np.stack([shape_mask(s, scene.height, scene.width) for s in specs], axis=-1))

    return boxes(scene.targets), boxes(scene.distractors)


def validation_scene(budget: Any, coco_id: int) -> Any:
    """The scene of validation image ``coco_id`` (``write_coco_folder`` numbers index ``i`` as ``i + 1``)."""
    from mrcnn_ohem.datasets.shapes import generate_scene

    size = budget.image_size
    return generate_scene(budget.val_seed, coco_id - 1, size, size, budget.max_targets, budget.max_distractors)


def evaluate_run(model: Any, dataset: Any, coco: Any, budget: Any, distractors: bool) -> dict[str, float]:
    """Detect on every evaluation image and compute the run's metrics.

    Args:
        model: inference-mode ``MaskRCNN`` (``POST_NMS_ROIS_INFERENCE`` 1000 for AR@1000).
        dataset, coco: the evaluation ``CocoDataset`` and its ``COCO``.
        budget: the run's :class:`~benchmarks.quality.variants.Budget` (to regenerate scenes).
        distractors: count false positives on distractors (synthetic shapes only).

    Returns:
        ``{"bbox_AP", "bbox_AP50", "segm_AP", "segm_AP50", "AR100", "AR1000", "fp_distractors",
        "fp_detections_distractors", "proposals_per_image", "eval_images", "det_recall50",
        "calibration_error", "mean_score_tp", "mean_score_fp"}`` (the last four from
        :func:`detection_quality`).
    """
    from mrcnn_ohem.datasets.coco_eval import (
        build_coco_results,
        detect_dataset,
        proposal_recall,
        proposal_results,
        score_results,
    )

    detections, props100, props1000, coco_ids = [], [], [], []
    fp_proposals, fp_detections, num_proposals = [], [], []
    for image_id, out in detect_dataset(model, dataset, dataset.image_ids):
        if out is None:
            continue
        coco_id = int(dataset.image_info[image_id]["id"])
        coco_ids.append(coco_id)
        detections += build_coco_results(dataset, [coco_id], out["rois"], out["class_ids"], out["scores"],
                                         out["masks"])
        props100 += proposal_results(coco_id, out["proposals"], 100)
        props1000 += proposal_results(coco_id, out["proposals"], 1000)
        num_proposals.append(len(out["proposals"]))
        if distractors:
            gt, boxes = scene_boxes(validation_scene(budget, coco_id))
            fp_proposals.append(distractor_false_positives(out["proposals"], gt, boxes, 100))
            confident = out["rois"][out["scores"] >= 0.5]
            fp_detections.append(distractor_false_positives(confident, gt, boxes, len(confident)))
    category_ids = [int(c["id"]) for c in dataset.class_info if c["source"] == "coco"]
    scores = score_results(coco, coco_ids, category_ids, detections, props100)
    recall = proposal_recall(coco, coco_ids, props1000)
    ground_truth = {i: [(int(a["category_id"]), a["bbox"]) for a in coco.loadAnns(coco.getAnnIds(imgIds=[i]))
                        if int(a["category_id"]) in category_ids and not a.get("iscrowd", 0)] for i in coco_ids}
    quality = detection_quality(ground_truth, detections)
    return {
        "bbox_AP": scores["bbox"]["AP"], "bbox_AP50": scores["bbox"]["AP50"],
        "segm_AP": scores["segm"]["AP"], "segm_AP50": scores["segm"]["AP50"],
        "AR100": scores["rpn"]["AR@100"], "AR1000": recall[1000],
        "fp_distractors": float(np.mean(fp_proposals)) if fp_proposals else None,
        "fp_detections_distractors": float(np.mean(fp_detections)) if fp_detections else None,
        "proposals_per_image": float(np.mean(num_proposals)) if num_proposals else 0.0,
        "eval_images": len(coco_ids),
        "det_recall50": quality["det_recall50"], "calibration_error": quality["calibration_error"],
        "mean_score_tp": quality["mean_score_tp"], "mean_score_fp": quality["mean_score_fp"],
    }
