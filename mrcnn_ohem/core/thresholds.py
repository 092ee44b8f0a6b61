"""Matterport's IoU thresholds, named once, each with the comparison Matterport makes.

Anchors (RPN targets, ``build_rpn_targets``):

- positive: best IoU with a GT box ``>= RPN_POSITIVE_IOU`` (0.7);
- negative: best IoU ``< RPN_NEGATIVE_IOU`` (0.3), and IoU with every crowd box ``< CROWD_IOU``.

RoIs (head targets):

- ``DetectionTargetLayer`` (the graph, and RoI OHEM's pool): positive when the best IoU
  ``>= ROI_POSITIVE_IOU`` (0.5), negative when ``< ROI_POSITIVE_IOU`` and IoU with every crowd box
  ``< CROWD_IOU``;
- ``build_detection_targets`` (NumPy, random RoIs for debugging): positive when ``> ROI_POSITIVE_IOU``,
  negative when ``< ROI_POSITIVE_IOU``; a RoI at exactly 0.5 is neither, as in Matterport.

Values and comparisons follow ``mrcnn/model.py`` of Matterport Mask R-CNN.
"""
from __future__ import annotations

__all__ = ["RPN_POSITIVE_IOU", "RPN_NEGATIVE_IOU", "ROI_POSITIVE_IOU", "CROWD_IOU"]

#: An anchor whose best IoU with a GT box is at least this is positive.
RPN_POSITIVE_IOU = 0.7
#: An anchor whose best IoU is below this (and that overlaps no crowd) is negative.
RPN_NEGATIVE_IOU = 0.3
#: A RoI whose best IoU with a GT box is at least this is positive (``>`` in the NumPy sampler).
ROI_POSITIVE_IOU = 0.5
#: An anchor or RoI overlapping a crowd box at least this much is never negative.
CROWD_IOU = 0.001
