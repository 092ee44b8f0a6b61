"""What the command lines decide, in one place below :mod:`.cli` and :mod:`.train_eval`.

Constants only (no argparse, no TensorFlow): the layer presets a run may train, the CPU-sized
backbones and their settings, which options shape a trained model (and so are recorded in
``run.json`` and read back by ``evaluate`` and ``predict``), and which OHEM options need which
switch.
"""
from __future__ import annotations

__all__ = ["LAYER_CHOICES", "CPU_BACKBONES", "CPU_MASK_HEAD_FILTERS", "CPU_SETTINGS", "RUN_OPTIONS",
           "RPN_KNOBS", "ROI_KNOBS", "MIXED_PRECISION_CHOICES"]

LAYER_CHOICES = ("heads", "3+", "4+", "5+", "all")
#: The small backbones that get CPU-sized heads (:data:`CPU_SETTINGS`).
CPU_BACKBONES = ("tiny", "compact")
#: Mask-head width of the CPU backbones. Matterport's 256 filters (kept for the ResNets, whose
#: weight files expect them) are most of a CPU step; 64 makes a 128-px step ~1.7x faster.
CPU_MASK_HEAD_FILTERS = 64
#: Settings for the CPU-sized backbones (small heads, fewer RoIs); ResNets use Matterport's.
CPU_SETTINGS = {
    "TOP_DOWN_PYRAMID_SIZE": 64,
    "FPN_CLASSIF_FC_LAYERS_SIZE": 128,
    "TRAIN_ROIS_PER_IMAGE": 32,
    "POST_NMS_ROIS_TRAINING": 300,
    "POST_NMS_ROIS_INFERENCE": 200,
    "PRE_NMS_LIMIT": 1000,
    "MAX_GT_INSTANCES": 20,
    "DETECTION_MAX_INSTANCES": 20,
    "MINI_MASK_SHAPE": (28, 28),
}
#: Options that shape the model a run trains (``--classes`` aside, which shapes the data too):
#: ``train`` records their values in ``run.json``; ``evaluate`` and ``predict`` take them from there
#: and refuse a flag that contradicts them. dest -> flag.
RUN_OPTIONS = {
    "image_size": "--image-size",
    "backbone": "--backbone",
    "anchor_base": "--anchor-base",
    "mask_head_filters": "--mask-head-filters",
    "train_bn": "--train-bn",
    "mixed_precision": "--mixed-precision",
}
#: OHEM options of the RPN: each implies ``--ohem`` (refused with ``--no-ohem``). dest -> flag.
RPN_KNOBS = {
    "ohem_top_k": "--ohem-top-k",
    "ohem_positive_fraction": "--ohem-positive-fraction",
    "ohem_negative_pool": "--ohem-negative-pool",
    "ohem_pooled": "--ohem-pooled",
    "ohem_nms": "--ohem-nms",
    "ohem_max_neg_per_pos": "--ohem-max-neg-per-pos",
    "ohem_min_negatives": "--ohem-min-negatives",
}
#: OHEM options of the RoI head: each implies ``--ohem-roi`` (refused with ``--no-ohem-roi``).
ROI_KNOBS = {"ohem_roi_pool": "--ohem-roi-pool", "ohem_roi_top_k": "--ohem-roi-top-k",
             "ohem_roi_ranking": "--ohem-roi-ranking", "ohem_roi_nms": "--ohem-roi-nms"}
#: ``--mixed-precision`` values -> ``Config.MIXED_PRECISION``.
MIXED_PRECISION_CHOICES = {"float16": "mixed_float16", "bfloat16": "mixed_bfloat16"}
