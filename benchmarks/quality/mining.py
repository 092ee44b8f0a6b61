"""What the miner keeps: kept negative anchors on distractors, near objects, or on the background.

During training, a :func:`miner_probe` callback looks at a fixed probe batch of training images
a few times: it computes the RPN objectness logits of the current weights, labels the anchors
with the run's own ``build_rpn_targets`` (Matterport's random 256 for ``baseline``/``snippet``,
the full negative pool for OHEM), applies the run's selection rule (:func:`kept_mask`) and sorts
the kept negatives by where they lie (:func:`negative_categories`):

- ``distractor``: IoU >= 0.3 with a distractor's box (a look-alike the detector should reject);
- ``near_object``: otherwise IoU >= 0.1 with a labelled object (a badly placed box on a target);
- ``background``: everything else (texture).

``pool_distractor`` is the same fraction over every anchor Matterport's rules label negative
(IoU < 0.3 with every object), before any sampling: what random sampling keeps on average. A
miner that seeks the look-alikes keeps more than that.

The selection rule is :mod:`mrcnn_ohem.core.selection` applied as the loss applies it: per
image or pooled, top-k with an optional positive cap. Options that change the loss further
(NMS de-duplication, negative ratio, focal weighting) are probed with the plain top-k rule of
their settings, which the report says.
"""
from __future__ import annotations

import math
import weakref
from typing import Any

import numpy as np

from benchmarks.quality.metrics import scene_boxes

CATEGORIES = ("distractor", "near_object", "background")
DISTRACTOR_IOU = 0.3
NEAR_OBJECT_IOU = 0.1


def negative_categories(anchors: np.ndarray, gt_boxes: np.ndarray, distractor_boxes: np.ndarray) -> np.ndarray:
    """Index into :data:`CATEGORIES` for every anchor.

    Args:
        anchors: [num_anchors, (y1, x1, y2, x2)] pixels.
        gt_boxes: [num_gt, (y1, x1, y2, x2)] pixels.
        distractor_boxes: [num_distractors, (y1, x1, y2, x2)] pixels.

    Returns:
        [num_anchors] int: 0 distractor, 1 near object, 2 background (distractor wins ties).
    """
    from mrcnn_ohem.core.boxes import compute_overlaps

    category = np.full(len(anchors), 2, dtype=np.int64)
    if len(gt_boxes):
        category[compute_overlaps(anchors, np.asarray(gt_boxes, np.float32)).max(axis=1) >= NEAR_OBJECT_IOU] = 1
    if len(distractor_boxes):
        on = compute_overlaps(anchors, np.asarray(distractor_boxes, np.float32)).max(axis=1) >= DISTRACTOR_IOU
        category[on] = 0
    return category


def selection_rule(config: Any, snippet: bool = False) -> dict[str, Any]:
    """How a run's RPN loss picks anchors: ``{"kind": "all"}`` or ``{"kind": "hardest", ...}``.

    ``hardest`` carries ``budget`` and ``max_positives`` (None: positives and negatives ranked
    together) per image, ``pooled`` (one ranking over the batch) and ``per_batch`` (a pooled
    budget is multiplied by the batch size: OHEM pooled keeps ``TOP_K * batch``, the snippet ``k``).
    """
    k = int(config.RPN_TRAIN_ANCHORS_PER_IMAGE)
    if snippet:
        return {"kind": "hardest", "budget": k, "pooled": True, "per_batch": False, "max_positives": None}
    if not getattr(config, "OHEM_RPN", False):
        return {"kind": "all"}
    import mrcnn_ohem

    settings = mrcnn_ohem.ohem_settings(config)
    if not settings.enabled:
        return {"kind": "all"}
    fraction = settings.positive_fraction
    max_pos = None if fraction is None else int(math.floor(fraction * settings.top_k))
    return {"kind": "hardest", "budget": settings.top_k, "pooled": not settings.per_image, "per_batch": True,
            "max_positives": max_pos}


def kept_mask(match: np.ndarray, losses: np.ndarray, rule: dict[str, Any]) -> np.ndarray:
    """Which anchors the RPN loss trains on.

    Args:
        match: [batch, num_anchors] int, 1 / -1 / 0.
        losses: [batch, num_anchors] float, per-anchor cross-entropy.
        rule: from :func:`selection_rule`.

    Returns:
        [batch, num_anchors] bool.
    """
    import tensorflow as tf

    from mrcnn_ohem.core import selection

    match = np.asarray(match)
    if rule["kind"] == "all":
        return match != 0
    batch = match.shape[0]
    rows = match.reshape(1, -1) if rule["pooled"] else match
    scores = tf.constant(np.asarray(losses, np.float32).reshape(rows.shape))
    times = batch if rule["pooled"] and rule["per_batch"] else 1
    budget = int(rule["budget"]) * times
    if rule["max_positives"] is None:
        indices, keep = selection.hardest(scores, tf.constant(rows != 0), budget)
    else:
        indices, keep = selection.hardest_with_positive_cap(
            scores, tf.constant(rows == 1), tf.constant(rows == -1), budget, int(rule["max_positives"]) * times)
    kept = np.zeros(rows.shape, dtype=bool)
    indices, keep = indices.numpy(), keep.numpy()
    for r in range(rows.shape[0]):
        kept[r, indices[r][keep[r]]] = True
    return kept.reshape(match.shape)


def kept_fractions(match: np.ndarray, kept: np.ndarray, categories: np.ndarray,
                   pool: np.ndarray | None = None) -> dict[str, float]:
    """Where the kept negatives lie, and the same over the pool of every negative.

    Args:
        match: [batch, num_anchors] int.
        kept: [batch, num_anchors] bool.
        categories: [batch, num_anchors] int from :func:`negative_categories`.
        pool: [batch, num_anchors] bool, every anchor labelled negative before sampling
            (default: the negatives of ``match``).

    Returns:
        ``{"kept_negatives", "kept_positives", "distractor", "near_object", "background",
        "pool_distractor"}``: counts per image, then fractions of the kept negatives.
    """
    negatives = match == -1
    kept_neg = kept & negatives
    n = max(int(kept_neg.sum()), 1)
    out = {"kept_negatives": float(kept_neg.sum()) / len(match),
           "kept_positives": float((kept & (match == 1)).sum()) / len(match)}
    for i, name in enumerate(CATEGORIES):
        out[name] = float((kept_neg & (categories == i)).sum()) / n
    pool = negatives if pool is None else pool
    out["pool_distractor"] = float((pool & (categories == 0)).sum()) / max(int(pool.sum()), 1)
    return out


def rpn_losses(logits: np.ndarray, match: np.ndarray) -> np.ndarray:
    """[batch, num_anchors] softmax cross-entropy of the objectness logits (label 1 = positive)."""
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_prob = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    labels = (np.asarray(match) == 1).astype(np.int64)
    return -np.take_along_axis(log_prob, labels[..., None], axis=-1)[..., 0]


def probe_batch(dataset: Any, config: Any, module: Any, count: int = 4) -> dict[str, np.ndarray]:
    """A fixed batch of training images with distractors, molded, with their anchor categories.

    Returns:
        ``{"images": [n, H, W, 3] molded, "anchors": [A, 4] pixels, "gt": [(shape, class_ids, boxes)],
        "categories": [n, A], "pool": [n, A] bool (IoU < 0.3 with every object)}``.
    """
    from mrcnn_ohem.maskrcnn.anchors import compute_backbone_shapes, generate_pyramid_anchors

    anchors = generate_pyramid_anchors(config.RPN_ANCHOR_SCALES, config.RPN_ANCHOR_RATIOS,
                                       compute_backbone_shapes(config, config.IMAGE_SHAPE),
                                       config.BACKBONE_STRIDES, config.RPN_ANCHOR_STRIDE)
    from mrcnn_ohem.core.boxes import compute_overlaps

    images, gts, categories, pool = [], [], [], []
    for image_id in dataset.image_ids:
        scene = dataset.image_info[image_id].get("scene")
        if scene is None or not scene.distractors:
            continue
        image, _, class_ids, boxes, _ = module.load_image_gt(dataset, config, image_id)
        scale = image.shape[0] / scene.height
        gt, distractors = (b * scale for b in scene_boxes(scene))
        images.append(module.mold_image(image.astype(np.float32), config))
        gts.append((image.shape, class_ids, boxes))
        categories.append(negative_categories(anchors, gt, distractors))
        pool.append(compute_overlaps(anchors, np.asarray(boxes, np.float32)).max(axis=1) < 0.3)
        if len(images) == count:
            break
    return {"images": np.stack(images), "anchors": anchors, "gt": gts, "categories": np.stack(categories),
            "pool": np.stack(pool)}


#: The RPN-logits model of each training model probed so far (built and traced once).
_LOGITS_MODELS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def miner_probe(probe: dict[str, np.ndarray], config: Any, module: Any, rule: dict[str, Any],
                steps: list[int]) -> Any:
    """A tf-keras callback recording :func:`kept_fractions` at the given (1-based) steps in ``.records``."""
    from mrcnn_ohem._compat import import_tf_keras

    keras = import_tf_keras()

    class MinerProbe(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.records: list[dict[str, float]] = []
            self._step = 0
            self._logits_model = None

        def on_train_batch_end(self, batch, logs=None):
            self._step += 1
            if self._step in steps:
                self.records.append({"step": self._step, **self.measure()})

        def measure(self) -> dict[str, float]:
            if self._logits_model is None:  # one per training model, which later runs may reuse
                if self.model not in _LOGITS_MODELS:
                    _LOGITS_MODELS[self.model] = keras.Model(self.model.inputs[0],
                                                             self.model.get_layer("rpn_class_logits").output)
                self._logits_model = _LOGITS_MODELS[self.model]
            logits = self._logits_model.predict(probe["images"], verbose=0)
            match = np.stack([module.build_rpn_targets(shape, probe["anchors"], ids, boxes, config)[0]
                              for shape, ids, boxes in probe["gt"]])
            kept = kept_mask(match, rpn_losses(logits, match), rule)
            return kept_fractions(match, kept, probe["categories"], probe["pool"])

    return MinerProbe()
