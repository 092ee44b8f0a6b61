"""Budgets and the variant registry of the quality benchmark.

A run's ``Config`` comes from :func:`mrcnn_ohem.runner.train_eval.make_config` (the one place a
run config is built), given the options of :func:`mrcnn_ohem.runner.cli.build_parser`. The
benchmark then subclasses it with what its metrics need (1000 proposals for AR@1000, every
anchor before NMS) and with the variant's ``OHEM_*`` attributes.

Variants whose config attributes this checkout does not define yet (the NMS, negative-ratio,
RoI-head and focal-loss options of issues 11 and 12) are reported as skipped, with the missing
attribute named, instead of failing.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
DEFAULT_COCO_MINI = REPO.parent / "shared" / "data" / "coco_mini"
COCO_CLASSES = ("person", "car")
#: Matterport's RPN_TRAIN_ANCHORS_PER_IMAGE, kept at its default (also the snippet's k).
RPN_ANCHORS = 256
#: Steps left out of the seconds-per-step median (graph tracing, generator warm-up).
WARMUP_STEPS = 5
#: Matterport's class-specific head layers, left out when fine-tuning to other classes.
CLASS_HEADS = ("mrcnn_class_logits", "mrcnn_bbox_fc", "mrcnn_bbox", "mrcnn_mask")


@dataclass(frozen=True)
class Budget:
    """Everything a run depends on besides its variant and seed."""

    image_size: int = 128
    backbone: str = "tiny"
    train_images: int = 400
    val_images: int = 60
    steps: int = 600
    batch_size: int = 2
    learning_rate: float = 0.02
    train_rois: int = 32
    roi_pool: int = 0  # RoIs per image the RoI-OHEM variants mine from (0: the runner's default)
    mask_head_filters: int = 32
    rpn_filters: int = 512  # RPN_SHARED_FILTERS (Matterport's 512)
    proposals: int = 1000  # POST_NMS_ROIS_INFERENCE: 1000 for AR@1000
    anchor_fraction: float = 1 / 16  # smallest anchor 8 px at 128 px (Matterport's shapes sample)
    val_seed: int = 10_000
    max_targets: int = 3
    max_distractors: int = 3
    probes: int = 6  # times the miner is probed during training (0: never)
    layers: str = "all"


FULL = Budget()
# The RoI-OHEM variants' class heads run on the whole pool: 64 RoIs, not the runner's 300, keeps a
# quick step at a fraction of a second. Two steps and one miner probe: the run checks that every
# variant trains, is evaluated and is probed; its numbers mean nothing at any CI-sized budget.
QUICK = Budget(image_size=64, train_images=8, val_images=2, steps=2, batch_size=2, probes=1, roi_pool=64)
#: Budgets by name, for ``--budget NAME``.
NAMED = {"full": FULL, "quick": QUICK}
COCO_FULL = Budget(image_size=192, train_images=80, val_images=79, steps=300, probes=0)
COCO_QUICK = replace(COCO_FULL, image_size=128, train_images=10, val_images=4, steps=6)
#: ``--dataset DIR --weights ...``: a fine-tune from Matterport's COCO weights at full size.
REAL = Budget(image_size=1024, backbone="resnet50", train_images=0, val_images=500, steps=2000,
              batch_size=1, learning_rate=0.001, train_rois=200, mask_head_filters=256,
              anchor_fraction=32 / 1024, probes=0, layers="heads")


@dataclass(frozen=True)
class Variant:
    """One way of training the RPN (and RoI heads), as config attributes on top of the run config.

    Attributes:
        name: short name used in tables and file names.
        help: one line for the report.
        ohem: built on ``OHEMConfig`` and installed with ``mrcnn_ohem.patch``.
        settings: ``OHEM_*`` attributes the variant sets.
        issue: the issue that adds the attributes, named when they are missing.
        snippet: the circulated snippet's loss on Matterport's random targets.
    """

    name: str
    help: str
    ohem: bool = False
    settings: dict[str, Any] = field(default_factory=dict)
    issue: str = ""
    snippet: bool = False

    def missing(self) -> list[str]:
        """``OHEM_*`` attributes this variant needs that ``OHEMConfigMixin`` does not define."""
        if not self.settings:
            return []
        from mrcnn_ohem.config import OHEMConfigMixin

        return [name for name in self.settings if not hasattr(OHEMConfigMixin, name)]

    def skip_reason(self) -> str | None:
        """Why this checkout cannot run the variant, or None."""
        missing = self.missing()
        if missing:
            return (f"skipped: `OHEMConfigMixin` has no {', '.join(missing)} in this checkout "
                    f"({self.issue or 'not landed yet'})")
        return None


VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("baseline", "Matterport random 256 anchors/image, plain loss"),
    Variant("ohem", "OHEM per image over the full negative pool (default OHEMConfig)", ohem=True),
    Variant("ohem_nms07", "OHEM per image, hardest anchors de-duplicated by NMS at IoU 0.7",
            ohem=True, settings={"OHEM_RPN_NMS_THRESHOLD": 0.7}, issue="issue 11"),
    Variant("ohem_neg3", "OHEM, at most 3 negatives per positive, at least 64 negatives",
            ohem=True, settings={"OHEM_RPN_MAX_NEGATIVES_PER_POSITIVE": 3, "OHEM_RPN_MIN_NEGATIVES": 64},
            issue="issue 11"),
    Variant("ohem_pos50", "OHEM with OHEM_RPN_POSITIVE_FRACTION=0.5", ohem=True,
            settings={"OHEM_RPN_POSITIVE_FRACTION": 0.5}),
    Variant("ohem_pooled", "OHEM pooled over the batch (OHEM_RPN_PER_IMAGE=False)", ohem=True,
            settings={"OHEM_RPN_PER_IMAGE": False}),
    Variant("roi_ohem", "OHEM on the RoI heads only (Matterport RPN)", ohem=True,
            settings={"OHEM_RPN": False, "OHEM_ROI": True}, issue="issue 12"),
    Variant("roi_ohem_paper", "RoI OHEM as the OHEM paper: ranked by class + box loss, NMS 0.7 among the "
            "RoIs, both losses on the kept ones (Matterport RPN)", ohem=True,
            settings={"OHEM_RPN": False, "OHEM_ROI": True, "OHEM_ROI_RANKING": "class+box",
                      "OHEM_ROI_NMS_THRESHOLD": 0.7}, issue="issue 28"),
    Variant("rpn_roi_ohem", "OHEM on the RPN and the RoI heads", ohem=True,
            settings={"OHEM_ROI": True}, issue="issue 12"),
    Variant("focal_rpn", "focal loss on the RPN objectness over every anchor (OHEM_RPN_LOSS='focal')",
            ohem=True, settings={"OHEM_RPN_LOSS": "focal"}, issue="issue 12"),
    Variant("snippet", "random 256 targets/image + circulated snippet loss (top 256 of the batch's candidates)",
            snippet=True),
)}


def split_available(names: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """(variants this checkout can run, {skipped variant: reason})."""
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise ValueError(f"variants must be among {list(VARIANTS)}; received {unknown}.")
    skipped = {n: VARIANTS[n].skip_reason() for n in names if VARIANTS[n].skip_reason()}
    return [n for n in names if n not in skipped], skipped


def run_options(variant: str, budget: Budget, dataset: str = ".", mode: str = "train") -> Any:
    """The ``argparse.Namespace`` of :func:`mrcnn_ohem.runner.cli.build_parser` for a run."""
    from mrcnn_ohem.runner import cli

    parser = cli.build_parser("benchmarks.quality", "quality", prefix="quality", image_size=budget.image_size,
                              backbone=budget.backbone, dataset=dataset, anchor_fraction=budget.anchor_fraction)
    return parser.parse_args([
        "train" if mode == "train" else "evaluate", "--name", f"quality_{variant}",
        "--ohem" if VARIANTS[variant].ohem else "--no-ohem",
        "--batch-size", str(budget.batch_size), "--steps-per-epoch", str(budget.steps),
        "--learning-rate", str(budget.learning_rate), "--train-rois", str(budget.train_rois),
        "--mask-head-filters", str(budget.mask_head_filters),
    ])  # make_config scores with DETECTION_MIN_CONFIDENCE 0 (COCO scoring) when no option sets it


def make_config(variant: str, budget: Budget, num_classes: int, mode: str) -> Any:
    """The run's ``Config``: ``train_eval.make_config`` plus the benchmark's and the variant's attributes.

    Args:
        variant: a key of :data:`VARIANTS`.
        budget: the run budget.
        num_classes: classes including the background.
        mode: ``"training"`` or ``"inference"``.

    Raises:
        ValueError: unknown variant, or a variant this checkout cannot run.
    """
    from mrcnn_ohem.maskrcnn.anchors import compute_backbone_shapes
    from mrcnn_ohem.runner.train_eval import make_config as run_config

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {list(VARIANTS)}; received {variant!r}.")
    reason = VARIANTS[variant].skip_reason()
    if reason:
        raise ValueError(f"variant {variant!r} is {reason}.")
    base = run_config(run_options(variant, budget), num_classes, mode)
    shapes = compute_backbone_shapes(base, base.IMAGE_SHAPE)
    settings = {
        "RPN_TRAIN_ANCHORS_PER_IMAGE": RPN_ANCHORS,
        # Every anchor on small images (at most Matterport's 6000), so AR@1000 sees them all.
        "PRE_NMS_LIMIT": min(6000, int(sum(h * w for h, w in shapes) * len(base.RPN_ANCHOR_RATIOS))),
        "POST_NMS_ROIS_INFERENCE": budget.proposals,  # AR@1000 needs 1000 proposals
        "RPN_SHARED_FILTERS": budget.rpn_filters,
        **VARIANTS[variant].settings,
    }
    if settings.get("OHEM_ROI") and budget.roi_pool:
        settings["OHEM_ROI_POOL"] = budget.roi_pool
    return type("QualityConfig", (type(base),), settings)()
