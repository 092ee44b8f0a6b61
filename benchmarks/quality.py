"""Does OHEM pay? Train the bundled Mask R-CNN with and without OHEM and score each run.

Five variants train under the same budget, seeds and data:

- ``baseline``: Matterport's ``build_rpn_targets`` (256 random anchors per image), no patch;
- ``ohem``: ``mrcnn_ohem.patch`` with the default ``OHEMConfig`` (every negative is a candidate,
  the hardest ``RPN_TRAIN_ANCHORS_PER_IMAGE`` per image are kept);
- ``ohem_pooled``: ``OHEM_RPN_PER_IMAGE = False`` (one top-k over the batch);
- ``ohem_pos50``: ``OHEM_RPN_POSITIVE_FRACTION = 0.5``;
- ``snippet``: Matterport's random targets and the circulated top-k loss
  (:func:`mrcnn_ohem.snippet.circulated_rpn_class_loss` with k = ``RPN_TRAIN_ANCHORS_PER_IMAGE``).

Every run is its own subprocess (fresh TensorFlow state, no shared caches, fair timing), seeded
through Python, NumPy and TensorFlow (``keras.utils.set_random_seed``), the data generator's
shuffling and the training set's generator seed. Runs are interleaved (seed 0 of every variant,
then seed 1, ...) so a drift in machine load spreads over the variants.

Training data: :class:`mrcnn_ohem.datasets.shapes.ShapesDataset` (targets plus look-alike
distractors), generator seed = run seed. Evaluation: one fixed validation set written once with
:func:`~mrcnn_ohem.datasets.shapes.write_coco_folder` and read back with
:class:`~mrcnn_ohem.datasets.coco.CocoDataset`; detections and proposals come from
:func:`~mrcnn_ohem.datasets.coco_eval.detect_with_proposals` and are scored by COCOeval
(:func:`~mrcnn_ohem.datasets.coco_eval.score_results`). Metrics per run:

- bbox AP, AP50, segm AP (COCOeval, detections at any confidence);
- RPN proposal recall AR@100 and AR@1000 (class-agnostic, IoU .50:.95);
- false-positive proposals on distractors: per image, how many of the first 100 proposals have
  IoU >= 0.5 with a distractor's box and < 0.5 with every ground-truth box;
- seconds per training step: median over the steps after the first ``WARMUP_STEPS``.

``--coco-mini`` repeats baseline vs ``ohem`` on real COCO images (train2017 -> val2017).

Run from the repo root: ``python -m benchmarks.quality [--quick] [--seeds 3] [--write]``.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]
PLOT = Path(__file__).with_name("quality.png")
DEFAULT_COCO_MINI = REPO.parent / "shared" / "data" / "coco_mini"
VARIANTS = ("baseline", "ohem", "ohem_pooled", "ohem_pos50", "snippet")
VARIANT_HELP = {
    "baseline": "Matterport random 256 anchors/image, plain loss",
    "ohem": "OHEM per image over the full negative pool (default OHEMConfig)",
    "ohem_pooled": "OHEM pooled over the batch (OHEM_RPN_PER_IMAGE=False)",
    "ohem_pos50": "OHEM with OHEM_RPN_POSITIVE_FRACTION=0.5",
    "snippet": "random 256 targets/image + circulated snippet loss (top 256 of the batch's candidates)",
}
#: Matterport's RPN_TRAIN_ANCHORS_PER_IMAGE, kept at its default (also the snippet's k).
RPN_ANCHORS = 256
#: Steps left out of the seconds-per-step median (graph tracing, generator warm-up).
WARMUP_STEPS = 5
#: (key, label, higher is better) in table order.
METRICS = (
    ("bbox_AP", "bbox AP", True),
    ("bbox_AP50", "bbox AP50", True),
    ("segm_AP", "segm AP", True),
    ("AR100", "AR@100", True),
    ("AR1000", "AR@1000", True),
    ("fp_distractors", "FP proposals on distractors / image (top 100)", False),
    ("seconds_per_step", "s / step", False),
)


@dataclass(frozen=True)
class Budget:
    """Everything a run depends on besides its variant and seed."""

    image_size: int = 128
    train_images: int = 400
    val_images: int = 60
    steps: int = 600
    batch_size: int = 2
    learning_rate: float = 0.02
    train_rois: int = 32
    mask_head_filters: int = 32
    train_bn: bool = True
    val_seed: int = 10_000
    max_targets: int = 3
    max_distractors: int = 3


FULL = Budget()
QUICK = Budget(train_images=20, val_images=6, steps=10)
COCO_FULL = Budget(image_size=192, train_images=80, val_images=79, steps=300)
COCO_QUICK = replace(COCO_FULL, image_size=128, train_images=10, val_images=4, steps=6)
COCO_CLASSES = ("person", "car")


############################################################
#  Metrics that COCOeval does not give
############################################################


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


def proposal_recall(coco: Any, image_ids: Sequence[int], records: list[dict],
                    max_dets: Sequence[int] = (10, 100, 1000)) -> dict[int, float]:
    """Class-agnostic COCO average recall (IoU .50:.95) of proposals at several budgets.

    ``coco_eval.score_results`` gives AR@100 only; this runs the same COCOeval (``useCats = 0``)
    with three ``maxDets`` so AR@1000 is available too.

    Args:
        coco: ground truth ``COCO``.
        image_ids: COCO image ids that were evaluated.
        records: :func:`~mrcnn_ohem.datasets.coco_eval.proposal_results` records.
        max_dets: exactly three budgets, ascending.

    Returns:
        ``{budget: AR}``.
    """
    import contextlib
    import io

    from pycocotools.cocoeval import COCOeval

    from mrcnn_ohem.datasets.coco_eval import _load_results, restrict_coco

    if len(max_dets) != 3:
        raise ValueError(f"max_dets must hold exactly 3 budgets; received {list(max_dets)}.")
    category_ids = sorted(coco.cats)
    gt = restrict_coco(coco, image_ids, category_ids)
    evaluator = COCOeval(gt, _load_results(gt, records), "bbox")
    evaluator.params.imgIds = [int(i) for i in image_ids]
    evaluator.params.useCats = 0
    evaluator.params.maxDets = [int(m) for m in max_dets]
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    return {int(m): float(evaluator.stats[6 + i]) for i, m in enumerate(max_dets)}


############################################################
#  Aggregation and reporting
############################################################


def summarize(values: Sequence[float | None]) -> dict[str, float]:
    """Mean, sample standard deviation, min and max over seeds, ignoring None/NaN.

    Returns:
        ``{"n", "mean", "std", "min", "max"}``; ``std`` is 0 for one value, NaN fields for none.
    """
    clean = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if clean.size == 0:
        return {"n": 0, "mean": math.nan, "std": math.nan, "min": math.nan, "max": math.nan}
    return {"n": int(clean.size), "mean": float(clean.mean()),
            "std": float(clean.std(ddof=1)) if clean.size > 1 else 0.0,
            "min": float(clean.min()), "max": float(clean.max())}


def format_cell(stats: dict[str, float], digits: int = 3) -> str:
    """``mean ± std`` (``-`` when there is no value)."""
    if stats["n"] == 0:
        return "-"
    if stats["n"] == 1:
        return f"{stats['mean']:.{digits}f}"
    return f"{stats['mean']:.{digits}f} ± {stats['std']:.{digits}f}"


def aggregate(runs: Sequence[dict], variants: Sequence[str], metrics: Sequence[tuple] = METRICS
              ) -> dict[str, dict[str, dict[str, float]]]:
    """``{variant: {metric: summarize(values over that variant's finished runs)}}``."""
    table = {}
    for variant in variants:
        finished = [r for r in runs if r["variant"] == variant and r.get("status") == "ok"]
        table[variant] = {key: summarize([r["metrics"].get(key) for r in finished]) for key, _, _ in metrics}
    return table


def markdown_table(table: dict[str, dict[str, dict[str, float]]], metrics: Sequence[tuple] = METRICS,
                   runs: Sequence[dict] = ()) -> str:
    """One row per variant, one column per metric, cells ``mean ± std``; a ``runs`` column
    counts finished/started runs when ``runs`` is given."""
    header = ["variant", *(label for _, label, _ in metrics)]
    if runs:
        header.append("runs ok")
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for variant, stats in table.items():
        cells = [variant]
        for key, _, _ in metrics:
            cells.append(format_cell(stats[key], 3 if key != "fp_distractors" else 2))
        if runs:
            mine = [r for r in runs if r["variant"] == variant]
            cells.append(f"{sum(r.get('status') == 'ok' for r in mine)}/{len(mine)}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def relative_change(table: dict, variant: str, key: str, reference: str = "baseline") -> float:
    """``mean(variant) - mean(reference)`` for a metric (NaN when either is missing)."""
    return table[variant][key]["mean"] - table[reference][key]["mean"]


def plot(table: dict[str, dict[str, dict[str, float]]], path: Path, title: str) -> None:
    """Bars with std error bars for AP50, AR@100, FP on distractors and s/step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("bbox_AP50", "bbox AP50"), ("AR100", "AR@100"),
              ("fp_distractors", "FP proposals on\ndistractors / image"), ("seconds_per_step", "s / step"))
    variants = list(table)
    colors = ["#777777", "#1f77b4", "#2ca02c", "#9467bd", "#d62728"][: len(variants)]
    fig, axes = plt.subplots(1, len(panels), figsize=(11, 2.9), dpi=80)
    for ax, (key, label) in zip(axes, panels):
        means = [table[v][key]["mean"] for v in variants]
        stds = [table[v][key]["std"] for v in variants]
        ax.bar(range(len(variants)), np.nan_to_num(means), yerr=np.nan_to_num(stds), color=colors, capsize=3)
        ax.set_xticks(range(len(variants)))
        ax.set_xticklabels(variants, rotation=35, ha="right", fontsize=8)
        ax.set_title(label, fontsize=9)
        ax.tick_params(axis="y", labelsize=8)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


############################################################
#  One run (executed in a subprocess)
############################################################


def make_config(variant: str, budget: Budget, num_classes: int, mode: str) -> Any:
    """The run's ``Config``: Matterport's shapes-sample sizes on the tiny backbone.

    Args:
        variant: one of :data:`VARIANTS` (``ohem*`` get an ``OHEMConfig``).
        budget: the run budget.
        num_classes: classes including the background.
        mode: ``"training"`` or ``"inference"``.
    """
    import mrcnn_ohem
    from mrcnn_ohem.maskrcnn.anchors import compute_backbone_shapes
    from mrcnn_ohem.maskrcnn.config import Config

    size = int(budget.image_size)
    base = max(8, round(8 * size / 128))  # Matterport's shapes sample: (8, ..., 128) at 128 px
    settings: dict[str, Any] = {
        "NAME": f"quality_{variant}", "NUM_CLASSES": int(num_classes), "BACKBONE": "tiny",
        "IMAGE_MIN_DIM": size, "IMAGE_MAX_DIM": size, "RPN_ANCHOR_SCALES": tuple(base * 2**i for i in range(5)),
        "GPU_COUNT": 1, "IMAGES_PER_GPU": int(budget.batch_size) if mode == "training" else 1,
        "STEPS_PER_EPOCH": int(budget.steps), "LEARNING_RATE": float(budget.learning_rate),
        "RPN_TRAIN_ANCHORS_PER_IMAGE": RPN_ANCHORS,
        "TRAIN_ROIS_PER_IMAGE": int(budget.train_rois), "TRAIN_BN": bool(budget.train_bn),
        "TOP_DOWN_PYRAMID_SIZE": 64, "FPN_CLASSIF_FC_LAYERS_SIZE": 128, "MINI_MASK_SHAPE": (28, 28),
        "MAX_GT_INSTANCES": 20, "DETECTION_MAX_INSTANCES": 20, "POST_NMS_ROIS_TRAINING": 300,
        "POST_NMS_ROIS_INFERENCE": 1000,  # AR@1000 needs 1000 proposals
        "DETECTION_MIN_CONFIDENCE": 0.0,  # COCO scoring wants every detection
    }
    overrides = {"ohem": {}, "ohem_pooled": {"OHEM_RPN_PER_IMAGE": False},
                 "ohem_pos50": {"OHEM_RPN_POSITIVE_FRACTION": 0.5}}
    bases: tuple[type, ...] = (Config,)
    if variant in overrides:
        bases = (mrcnn_ohem.OHEMConfig,)
        settings.update(OHEM_RPN=True, **overrides[variant])
    elif variant not in ("baseline", "snippet"):
        raise ValueError(f"variant must be one of {VARIANTS}; received {variant!r}.")
    probe = type("Probe", (Config,), dict(settings, PRE_NMS_LIMIT=1))()
    shapes = compute_backbone_shapes(probe, probe.IMAGE_SHAPE)
    settings["PRE_NMS_LIMIT"] = int(sum(h * w for h, w in shapes) * len(probe.RPN_ANCHOR_RATIOS))  # every anchor
    return type("QualityConfig", bases, settings)()


def _step_timer():
    """A Keras callback storing the wall time of every training step in ``.seconds``."""
    from mrcnn_ohem._compat import import_tf_keras

    keras = import_tf_keras()

    class StepTimer(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []
            self.losses: list[float] = []
            self._tick = 0.0

        def on_train_batch_begin(self, batch, logs=None):
            self._tick = time.perf_counter()

        def on_train_batch_end(self, batch, logs=None):
            self.seconds.append(time.perf_counter() - self._tick)
            self.losses.append(float((logs or {}).get("loss", math.nan)))
            if len(self.seconds) % 50 == 0:
                print(f"step {len(self.seconds)}: loss {self.losses[-1]:.3f}, "
                      f"{self.seconds[-1]:.3f} s", flush=True)

    return StepTimer()


class _Installed:
    """Context manager installing the run's RPN loss/targets on the model module.

    OHEM variants go through ``mrcnn_ohem.patch`` (kept for the whole training: the data
    generator calls ``build_rpn_targets`` at step time). The snippet replaces
    ``rpn_class_loss_graph`` only while the graph is built (the loss is looked up at build
    time), via :meth:`built`.
    """

    def __init__(self, variant: str, config: Any, module: Any):
        self.variant, self.config, self.module = variant, config, module
        self.handle = None

    def __enter__(self):
        import mrcnn_ohem

        if self.variant.startswith("ohem"):
            self.handle = mrcnn_ohem.patch(self.config, module=self.module)
        elif self.variant == "snippet":
            from samples.snippet import circulated_rpn_class_loss

            k = int(self.config.RPN_TRAIN_ANCHORS_PER_IMAGE)
            self._original = self.module.rpn_class_loss_graph

            def snippet_rpn_class_loss_graph(rpn_match, rpn_class_logits):
                return circulated_rpn_class_loss(rpn_match, rpn_class_logits, k)

            self.module.rpn_class_loss_graph = snippet_rpn_class_loss_graph
        return self

    def built(self) -> None:
        """The graph exists: put the snippet's module attribute back."""
        if self.variant == "snippet" and hasattr(self, "_original"):
            self.module.rpn_class_loss_graph = self._original
            del self._original

    def __exit__(self, *exc):
        self.built()
        if self.handle is not None:
            self.handle.restore()
        return False


def _load_eval_set(spec: dict) -> tuple[Any, Any]:
    """(CocoDataset, COCO) of the run's evaluation folder."""
    from mrcnn_ohem.datasets.coco import CocoDataset

    dataset = CocoDataset()
    if spec["dataset"] == "shapes":
        coco = dataset.load_coco(spec["val_dir"], "val", return_coco=True)
    else:
        coco = dataset.load_coco(spec["coco_dir"], "val", class_names=list(COCO_CLASSES),
                                 limit=spec["budget"]["val_images"], return_coco=True)
    dataset.prepare()
    return dataset, coco


def _distractor_boxes(budget: Budget, coco_id: int) -> np.ndarray:
    """[num_distractors, (y1, x1, y2, x2)] of validation image ``coco_id`` (write_coco_folder
    numbers image ``index`` as id ``index + 1``)."""
    from mrcnn_ohem.datasets import shapes
    from mrcnn_ohem.maskrcnn.utils import extract_bboxes

    size = budget.image_size
    scene = shapes.generate_scene(budget.val_seed, coco_id - 1, size, size, budget.max_targets,
                                  budget.max_distractors)
    if not scene.distractors:
        return np.zeros((0, 4), np.int32)
    return extract_bboxes(np.stack([shapes.shape_mask(d, size, size) for d in scene.distractors], axis=-1))


def evaluate_run(model: Any, dataset: Any, coco: Any, budget: Budget, distractors: bool) -> dict[str, float]:
    """Detect on every evaluation image and compute the run's metrics (see the module docstring)."""
    from mrcnn_ohem.datasets.coco_eval import build_coco_results, detect_with_proposals, proposal_results, score_results
    from mrcnn_ohem.maskrcnn.utils import extract_bboxes

    ids = list(dataset.image_ids)
    batch = int(model.config.BATCH_SIZE)
    detections, props100, props1000, coco_ids = [], [], [], []
    fp_proposals, fp_detections, num_proposals = [], [], []
    for start in range(0, len(ids), batch):
        chunk = ids[start : start + batch]
        images = [dataset.read_image(i) for i in chunk]
        outputs = detect_with_proposals(model, images + [images[-1]] * (batch - len(images)))
        for image_id, out in zip(chunk, outputs):
            coco_id = int(dataset.image_info[image_id]["id"])
            coco_ids.append(coco_id)
            detections += build_coco_results(dataset, [coco_id], out["rois"], out["class_ids"],
                                             out["scores"], out["masks"])
            props100 += proposal_results(coco_id, out["proposals"], 100)
            props1000 += proposal_results(coco_id, out["proposals"], 1000)
            num_proposals.append(len(out["proposals"]))
            if distractors:
                masks, _ = dataset.load_mask(image_id)
                gt = extract_bboxes(masks) if masks.shape[-1] else np.zeros((0, 4))
                boxes = _distractor_boxes(budget, coco_id)
                fp_proposals.append(distractor_false_positives(out["proposals"], gt, boxes, 100))
                confident = out["rois"][out["scores"] >= 0.5]
                fp_detections.append(distractor_false_positives(confident, gt, boxes, len(confident)))
    category_ids = [int(c["id"]) for c in dataset.class_info if c["source"] == "coco"]
    scores = score_results(coco, coco_ids, category_ids, detections, props100)
    recall = proposal_recall(coco, coco_ids, props1000)
    return {
        "bbox_AP": scores["bbox"]["AP"], "bbox_AP50": scores["bbox"]["AP50"],
        "segm_AP": scores["segm"]["AP"], "segm_AP50": scores["segm"]["AP50"],
        "AR100": scores["rpn"]["AR@100"], "AR1000": recall[1000],
        "fp_distractors": float(np.mean(fp_proposals)) if fp_proposals else None,
        "fp_detections_distractors": float(np.mean(fp_detections)) if fp_detections else None,
        "proposals_per_image": float(np.mean(num_proposals)),
        "eval_images": len(coco_ids),
    }


def run_worker(spec: dict) -> dict:
    """Train and evaluate one (variant, seed); the body of a benchmark subprocess.

    Args:
        spec: ``{"variant", "seed", "budget", "dataset" ("shapes" or "coco"), "val_dir",
            "coco_dir", "model_dir"}``.

    Returns:
        ``{"variant", "seed", "dataset", "status" ("ok" or "crashed"), "error", "steps_done",
        "metrics", "seconds"}``.
    """
    from mrcnn_ohem._compat import import_tf_keras
    from mrcnn_ohem.maskrcnn import heads
    from mrcnn_ohem.maskrcnn import model as modellib

    keras = import_tf_keras()
    started = time.perf_counter()
    variant, seed = spec["variant"], int(spec["seed"])
    budget = Budget(**spec["budget"])
    keras.utils.set_random_seed(seed)  # Python random, NumPy, TensorFlow
    # Matterport's 256-wide mask head is ~95% of a CPU step at this size; every variant gets the
    # same narrower head (a module constant of heads.py, read when the graph is built).
    heads.MASK_HEAD_FILTERS = int(budget.mask_head_filters)
    if spec["dataset"] == "shapes":
        from mrcnn_ohem.datasets.shapes import ShapesDataset

        train_set = ShapesDataset()
        train_set.load_shapes(budget.train_images, budget.image_size, budget.image_size, seed=seed,
                              max_targets=budget.max_targets, max_distractors=budget.max_distractors)
    else:
        from mrcnn_ohem.datasets.coco import CocoDataset

        train_set = CocoDataset()
        train_set.load_coco(spec["coco_dir"], "train", class_names=list(COCO_CLASSES),
                            limit=budget.train_images)
    train_set.prepare()
    config = make_config(variant, budget, train_set.num_classes, "training")
    timer = _step_timer()
    result = {"variant": variant, "seed": seed, "dataset": spec["dataset"], "status": "ok", "error": None}
    load_before = os.getloadavg()[0]
    try:
        with _Installed(variant, config, modellib) as installed:
            model = modellib.MaskRCNN("training", config, model_dir=spec["model_dir"])
            installed.built()
            model.train(train_set, None, learning_rate=config.LEARNING_RATE, epochs=1, layers="all",
                        custom_callbacks=[timer], verbose=0, seed=seed)
    except Exception as err:  # noqa: BLE001 - a crashing variant is a result, not a harness bug
        result.update(status="crashed", error=f"{type(err).__name__}: {str(err).splitlines()[0][:300]}")
    result["steps_done"] = len(timer.seconds)
    steady = timer.seconds[WARMUP_STEPS:] or timer.seconds
    metrics: dict[str, Any] = {"seconds_per_step": float(np.median(steady)) if steady else math.nan,
                               "first_loss": timer.losses[0] if timer.losses else math.nan,
                               "last_loss": float(np.mean(timer.losses[-20:])) if timer.losses else math.nan}
    result["train_seconds"] = time.perf_counter() - started
    result["load_average"] = [load_before, os.getloadavg()[0]]  # other processes skew s/step
    if result["status"] == "ok":
        checkpoint = model.find_last()
        eval_set, coco = _load_eval_set(spec)
        inference = modellib.MaskRCNN("inference", make_config(variant, budget, eval_set.num_classes, "inference"),
                                      model_dir=spec["model_dir"])
        inference.load_weights(checkpoint, by_name=True)
        metrics.update(evaluate_run(inference, eval_set, coco, budget, spec["dataset"] == "shapes"))
    result["metrics"] = metrics
    result["seconds"] = time.perf_counter() - started
    return result


def paired_step_times(spec: dict, rounds: int = 40, num_batches: int = 8) -> dict:
    """Graph-only step time of every variant, measured side by side in one process.

    Each variant gets its own training model and pre-built batches (made by its own targets);
    then ``rounds`` rounds run one ``train_on_batch`` per variant, in an order that rotates each
    round, so load from other processes hits every variant alike.

    Returns:
        ``{"variant": "timing", "status", "milliseconds": {variant: median ms}, "negatives":
        {variant: negatives labelled in the first batch}}``.
    """
    from mrcnn_ohem._compat import import_tf_keras
    from mrcnn_ohem.datasets.shapes import ShapesDataset
    from mrcnn_ohem.maskrcnn import heads
    from mrcnn_ohem.maskrcnn import model as modellib

    import_tf_keras().utils.set_random_seed(0)
    budget, variants = Budget(**spec["budget"]), list(spec["variants"])
    heads.MASK_HEAD_FILTERS = int(budget.mask_head_filters)
    dataset = ShapesDataset()
    dataset.load_shapes(num_batches * budget.batch_size, budget.image_size, budget.image_size, seed=0)
    dataset.prepare()
    models, batches = {}, {}
    for variant in variants:
        config = make_config(variant, budget, dataset.num_classes, "training")
        with _Installed(variant, config, modellib) as installed:
            model = modellib.MaskRCNN("training", config, model_dir=spec["model_dir"])
            installed.built()
            generator = modellib.DataGenerator(dataset, config, shuffle=False, seed=0)
            batches[variant] = [generator[i][0] for i in range(num_batches)]
        model.set_trainable(".*", verbose=0)
        model.compile(config.LEARNING_RATE, config.LEARNING_MOMENTUM)
        for inputs in batches[variant][:WARMUP_STEPS]:
            model.keras_model.train_on_batch(inputs)
        models[variant] = model
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(rounds):
        for variant in variants[r % len(variants):] + variants[: r % len(variants)]:
            inputs = batches[variant][r % num_batches]
            tick = time.perf_counter()
            models[variant].keras_model.train_on_batch(inputs)
            seconds[variant].append(time.perf_counter() - tick)
    return {"variant": "timing", "seed": 0, "dataset": "timing", "status": "ok", "error": None, "metrics": {},
            "milliseconds": {v: 1000 * float(np.median(t)) for v, t in seconds.items()},
            "negatives": {v: int((batches[v][0][2] == -1).sum()) for v in variants}, "rounds": rounds}


def timing_table(timing: dict) -> str:
    """Markdown rows of :func:`paired_step_times`: median ms and change vs the baseline."""
    ms = timing["milliseconds"]
    base = ms.get("baseline")
    lines = ["| variant | median step (ms) | vs baseline | negatives labelled in a batch |", "|" + " --- |" * 4]
    for variant, value in ms.items():
        change = f"{100 * (value / base - 1):+.1f}%" if base else "-"
        lines.append(f"| {variant} | {value:.1f} | {change} | {timing['negatives'][variant]} |")
    return "\n".join(lines)


############################################################
#  Orchestration
############################################################


def spawn(spec: dict, log_path: Path, timeout: float) -> dict:
    """Run :func:`run_worker` in a fresh ``python -m benchmarks.quality --worker`` process."""
    result_path = Path(spec["model_dir"]) / "result.json"
    command = [sys.executable, "-m", "benchmarks.quality", "--worker", json.dumps(spec)]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONHASHSEED=str(spec["seed"]))
    started = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        try:
            code = subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    if code == 0 and result_path.is_file():
        return json.loads(result_path.read_text())
    return {"variant": spec["variant"], "seed": spec["seed"], "dataset": spec["dataset"], "status": "failed",
            "error": f"worker exit {code}, see {log_path}", "metrics": {},
            "seconds": time.perf_counter() - started}


def run_suite(name: str, variants: Sequence[str], seeds: Sequence[int], budget: Budget, out: Path,
              timeout: float, extra: dict) -> list[dict]:
    """All (seed, variant) runs of one dataset, seed-major so load drift hits every variant."""
    runs = []
    for seed in seeds:
        for variant in variants:
            model_dir = out / f"{name}_{variant}_s{seed}"
            model_dir.mkdir(parents=True, exist_ok=True)
            spec = {"variant": variant, "seed": int(seed), "budget": asdict(budget), "dataset": name,
                    "model_dir": str(model_dir), **extra}
            result = spawn(spec, out / f"{name}_{variant}_s{seed}.log", timeout)
            m = result.get("metrics", {})
            print(f"[{time.strftime('%H:%M:%S')}] {name} {variant:12s} seed {seed}: {result['status']:7s} "
                  f"AP50 {m.get('bbox_AP50', math.nan):.3f} AR@100 {m.get('AR100', math.nan):.3f} "
                  f"FP/img {m.get('fp_distractors') or math.nan:.2f} s/step {m.get('seconds_per_step', math.nan):.3f} "
                  f"({result.get('seconds', math.nan):.0f} s){' ' + result['error'] if result.get('error') else ''}",
                  flush=True)
            runs.append(result)
    return runs


def _budget_line(budget: Budget) -> str:
    return (f"{budget.image_size} px, tiny backbone, {budget.steps} steps x {budget.batch_size} images, "
            f"SGD lr {budget.learning_rate}, {budget.train_rois} RoIs/image, mask head "
            f"{budget.mask_head_filters} filters, {budget.train_images} training "
            f"images, {budget.val_images} evaluation images")


def _load_note(runs: Sequence[dict]) -> str:
    """The 1-minute load average seen at the start/end of training, over the runs (2 cores)."""
    loads = [v for r in runs for v in r.get("load_average", [])]
    if not loads:
        return "machine load not recorded"
    return (f"1-minute load average (this run included) {min(loads):.1f} to {max(loads):.1f} "
            f"on {os.cpu_count()} cores")


def _crash_notes(runs: Sequence[dict]) -> list[str]:
    return [f"- `{r['variant']}` seed {r['seed']} ({r['dataset']}): **{r['status']}** after "
            f"{r.get('steps_done', '?')} steps: `{r['error']}`" for r in runs if r.get("status") != "ok"]


def _verdict(table: dict) -> str:
    """Plain sentences comparing each variant's means with the baseline's."""
    lines = []
    for variant in table:
        if variant == "baseline":
            continue
        d_ap50 = relative_change(table, variant, "bbox_AP50")
        d_ar = relative_change(table, variant, "AR100")
        d_fp = relative_change(table, variant, "fp_distractors")
        base_t = table["baseline"]["seconds_per_step"]["mean"]
        d_t = 100 * relative_change(table, variant, "seconds_per_step") / base_t if base_t else math.nan
        lines.append(f"- `{variant}` vs baseline: AP50 {100 * d_ap50:+.1f} points, AR@100 {100 * d_ar:+.1f} "
                     f"points, FP proposals on distractors {d_fp:+.2f} / image, step time {d_t:+.1f}%.")
    return "\n".join(lines)


def _goal(table: dict) -> str:
    """Whether ``ohem`` met the issue's goal: >= +2 AP50 and >= +5 AR@100 at < 3% extra step time."""
    d_ap50 = 100 * relative_change(table, "ohem", "bbox_AP50")
    d_ar = 100 * relative_change(table, "ohem", "AR100")
    d_t = 100 * relative_change(table, "ohem", "seconds_per_step") / table["baseline"]["seconds_per_step"]["mean"]
    checks = [("AP50 >= +2 points", d_ap50 >= 2), ("AR@100 >= +5 points", d_ar >= 5), ("step time < +3%", d_t < 3)]
    missed = [name for name, ok in checks if not ok]
    if not missed:
        return "Goal of issue 6 for `ohem` (+2 AP50, +5 AR@100, < 3% step time, on the means): **met**."
    return ("Goal of issue 6 for `ohem` (+2 AP50, +5 AR@100, < 3% step time, on the means): **not met** "
            f"({', '.join(missed)} fails).")


def per_run_table(runs: Sequence[dict]) -> str:
    """One markdown row per run: variant, seed, status and the main metrics."""
    keys = ("bbox_AP50", "AR100", "AR1000", "fp_distractors", "seconds_per_step")
    lines = ["| variant | seed | status | AP50 | AR@100 | AR@1000 | FP/img | s/step |", "|" + " --- |" * 8]
    for r in sorted(runs, key=lambda r: (VARIANTS.index(r["variant"]), r["seed"])):
        values = [r.get("metrics", {}).get(k) for k in keys]
        cells = ["-" if v is None or math.isnan(v) else f"{v:.3f}" for v in values]
        lines.append(f"| {r['variant']} | {r['seed']} | {r['status']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(shapes_runs: list[dict], coco_runs: list[dict], budget: Budget, coco_budget: Budget | None,
           variants: Sequence[str], coco_note: str, quick: bool, timing: dict | None = None) -> str:
    """The RESULTS.md section (markdown)."""
    from benchmarks._results import command_line, machine_line

    table = aggregate(shapes_runs, variants)
    seeds = sorted({r["seed"] for r in shapes_runs})
    parts = [
        "## Quality: does OHEM pay? (`benchmarks/quality.py`)",
        "",
        f"Command: `{command_line()}` -- {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        f"Machine: {machine_line()}",
        "",
        ("**Quick smoke run: numbers are not meaningful.**\n" if quick else "")
        + f"Synthetic shapes with look-alike distractors ({_budget_line(budget)}); seeds {seeds}; "
        "cells are mean ± sample std over seeds. AP/AR are COCOeval (IoU .50:.95 unless named), "
        "AR is class-agnostic proposal recall, \"FP proposals on distractors\" counts top-100 "
        "proposals with IoU >= 0.5 on a distractor and < 0.5 on every object (lower is better), "
        f"s/step is the median after {WARMUP_STEPS} warm-up steps; {_load_note(shapes_runs)}. "
        "Every variant uses the same mask head narrowed to the budget's filters (Matterport's 256-wide "
        "head is ~95% of a CPU step at this size). Runs are seeded, but threaded CPU kernels are not "
        "bit-reproducible, so a rerun gives slightly different numbers.",
        "",
        "Variants: " + "; ".join(f"`{v}` = {VARIANT_HELP[v]}" for v in variants) + ".",
        "",
        markdown_table(table, runs=shapes_runs),
        "",
        _verdict(table) if "baseline" in table else "",
        "",
        _goal(table) if {"baseline", "ohem"} <= set(table) else "",
    ]
    det_metrics = (("fp_detections_distractors", "FP detections on distractors / image (score >= 0.5)", False),
                   ("segm_AP50", "segm AP50", True), ("last_loss", "loss, last 20 steps", False))
    det_table = aggregate(shapes_runs, variants, det_metrics)
    parts += ["", "Secondary numbers (same runs):", "", markdown_table(det_table, det_metrics)]
    if timing and timing.get("status") == "ok":
        parts += ["", f"Step time side by side (one process, pre-built batches, graph only, "
                  f"{timing['rounds']} rounds of one step per variant in rotating order; the s/step column "
                  "above also carries whatever else ran on the machine):", "", timing_table(timing)]
    parts += ["", "Per run:", "", per_run_table(shapes_runs)]
    notes = _crash_notes(shapes_runs + coco_runs)
    if notes:
        parts += ["", "Runs that did not finish:", *notes]
    snippet = [r for r in shapes_runs if r["variant"] == "snippet"]
    if snippet and all(r.get("status") == "ok" for r in snippet):
        parts += ["", f"The snippet never crashed here: Matterport's targets give every image "
                  f"{RPN_ANCHORS} candidates, so a batch of {budget.batch_size} has "
                  f"{RPN_ANCHORS * budget.batch_size} >= k = {RPN_ANCHORS}; its top-k keeps the hardest "
                  f"{RPN_ANCHORS} of those randomly chosen anchors. (It crashes when a batch has fewer "
                  "than k candidates, e.g. one image with few negatives.)"]
    parts += ["", "### Real COCO images (`coco_mini`)", ""]
    if coco_runs:
        coco_variants = [v for v in ("baseline", "ohem") if any(r["variant"] == v for r in coco_runs)]
        coco_table = aggregate(coco_runs, coco_variants)
        coco_metrics = tuple(m for m in METRICS if m[0] != "fp_distractors")
        parts += [f"Train on coco_mini train2017, evaluate on val2017, classes "
                  f"{', '.join(COCO_CLASSES)}; {_budget_line(coco_budget)}; seeds "
                  f"{sorted({r['seed'] for r in coco_runs})}. At this budget the numbers are tiny and say "
                  "nothing about OHEM on COCO at scale; they show the pipeline runs on real images.",
                  "", markdown_table(coco_table, coco_metrics, runs=coco_runs)]
    else:
        parts.append(coco_note)
    parts += ["", "Plot: [quality.png](quality.png) (bars = mean, error bars = std over seeds)."]
    return "\n".join(parts)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: a few steps, 1 seed, tiny sets")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per variant (default 3, quick 1)")
    parser.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    parser.add_argument("--steps", type=int, default=None, help="override the training steps per run")
    parser.add_argument("--budget", default=None, metavar="JSON",
                        help='override Budget fields, e.g. \'{"learning_rate": 0.02}\' (calibration)')
    parser.add_argument("--coco-mini", type=Path, default=DEFAULT_COCO_MINI, metavar="PATH",
                        help="real COCO subset folder (default ../shared/data/coco_mini); skipped if missing")
    parser.add_argument("--no-coco", action="store_true", help="skip the coco_mini runs")
    parser.add_argument("--out", type=Path, default=None, help="work folder (default: a temp folder)")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds before a run is killed")
    parser.add_argument("--write", action="store_true", help="write benchmarks/RESULTS.md and quality.png")
    parser.add_argument("--results", type=Path, default=None, help=argparse.SUPPRESS)  # tests: another file
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from mrcnn_ohem._compat import quiet_tensorflow

    quiet_tensorflow()  # before TensorFlow is imported (here and in the worker subprocesses)
    args = build_parser().parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        timing = spec["dataset"] == "timing"
        result = paired_step_times(spec, rounds=spec["rounds"]) if timing else run_worker(spec)
        (Path(spec["model_dir"]) / "result.json").write_text(json.dumps(result, indent=1))
        return 0
    from benchmarks._results import RESULTS, write_section
    from mrcnn_ohem.datasets.shapes import write_coco_folder

    budget = QUICK if args.quick else FULL
    coco_budget = COCO_QUICK if args.quick else COCO_FULL
    if args.steps:
        budget = replace(budget, steps=args.steps)
    if args.budget:
        budget = replace(budget, **json.loads(args.budget))
    seeds = list(range(args.seeds if args.seeds else (1 if args.quick else 3)))
    out = args.out or Path(tempfile.mkdtemp(prefix="mrcnn_ohem_quality_"))
    out.mkdir(parents=True, exist_ok=True)
    print(f"work folder {out}; {len(args.variants)} variants x {len(seeds)} seeds; {_budget_line(budget)}", flush=True)
    started = time.perf_counter()
    val_dir = out / "shapes_coco"
    write_coco_folder(val_dir, "val", budget.val_images, budget.image_size, budget.image_size, budget.val_seed,
                      max_targets=budget.max_targets, max_distractors=budget.max_distractors)
    shapes_runs = run_suite("shapes", args.variants, seeds, budget, out, args.timeout, {"val_dir": str(val_dir)})
    (out / "timing").mkdir(exist_ok=True)
    timing = spawn({"variant": "timing", "seed": 0, "dataset": "timing", "budget": asdict(budget),
                    "variants": list(args.variants), "rounds": 10 if args.quick else 40,
                    "model_dir": str(out / "timing")}, out / "timing.log", args.timeout)
    if timing["status"] == "ok":
        print(timing_table(timing), flush=True)
    coco_runs: list[dict] = []
    coco_dir = args.coco_mini.resolve()
    if args.no_coco:
        coco_note = "Skipped (`--no-coco`)."
    elif not (coco_dir / "annotations" / "instances_train2017.json").is_file():
        coco_note = f"Skipped: no COCO folder at `{args.coco_mini}`."
        print(coco_note, flush=True)
    else:
        coco_note = ""
        coco_runs = run_suite("coco", ["baseline", "ohem"], seeds[:1], coco_budget, out, args.timeout,
                              {"coco_dir": str(coco_dir)})
    everything = {"shapes": shapes_runs, "coco": coco_runs, "timing": timing}
    (out / "runs.json").write_text(json.dumps(everything, indent=1))
    table = aggregate(shapes_runs, args.variants)
    print(markdown_table(table, runs=shapes_runs))
    print(f"total {time.perf_counter() - started:.0f} s; raw results {out / 'runs.json'}")
    if args.write:
        text = report(shapes_runs, coco_runs, budget, coco_budget, args.variants, coco_note, args.quick, timing)
        plot_path = args.results.with_name(PLOT.name) if args.results else PLOT
        plot_path.parent.mkdir(parents=True, exist_ok=True)
        plot(table, plot_path, f"OHEM on the RPN, synthetic shapes, {len(seeds)} seed(s), {budget.steps} steps")
        write_section("quality", text, **({"path": args.results} if args.results else {}))
        print(f"wrote {plot_path} and the 'quality' section of {args.results or RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
