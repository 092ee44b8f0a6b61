"""Keras-level surgery for RoI OHEM and selection statistics on a Matterport-style model.

- :func:`make_detection_target_layer` synthesises a subclass of the module's own
  ``DetectionTargetLayer`` that samples a pool of ``OHEM_ROI_POOL`` RoIs per image
  (:func:`mrcnn_ohem.roi.ohem_roi_targets`). Matterport's builder constructs
  ``DetectionTargetLayer(config, name="proposal_targets")`` by module-global name, so the
  subclass reaches the bundled model and forks alike; its base ``__init__`` is handed a copy of
  the config whose ``TRAIN_ROIS_PER_IMAGE`` is the pool size, so whatever a fork's layer derives
  from it (output shapes, padding) is pool-sized too. The heads downstream take any number of
  RoIs; the box and mask losses read positives only, and the pool holds exactly the positives
  Matterport would sample.
- :func:`make_mask_head_trim` wraps Matterport's ``build_fpn_mask_graph`` and
  ``mrcnn_mask_loss_graph`` so that the mask head and its loss see only the pool's first
  ``TRAIN_ROIS_PER_IMAGE`` rows, which hold every positive: the mask loss is unchanged and the
  mask head costs what it costs without OHEM. The pool's RoIs are recognised by identity: the
  synthesised layer class remembers the RoI tensors it returned (no private Keras attribute is
  read).
- :func:`add_selection_metrics` reports the RPN miner's statistics on a fork trained by stock
  Keras ``fit``.
"""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from mrcnn_ohem.binding import SELECTION_METRICS, roi_target_arguments
from mrcnn_ohem.core import auxiliary
from mrcnn_ohem.roi import ohem_roi_targets

__all__ = ["make_detection_target_layer", "make_mask_head_trim", "add_selection_metrics"]


def make_detection_target_layer(config: Any, base: type) -> type:
    """A subclass of a Matterport-style ``DetectionTargetLayer`` that samples OHEM RoI pools.

    Constructed as Matterport's builder does, ``Layer(config, name="proposal_targets")``, it
    returns ``[rois, target_class_ids, target_bbox, target_mask]`` with ``OHEM_ROI_POOL`` rows
    per image (:func:`~mrcnn_ohem.roi.ohem_roi_targets`). Every setting is read from ``config``
    now; the base class's ``__init__`` receives a copy of the construction-time config whose
    ``TRAIN_ROIS_PER_IMAGE`` is the pool size, so a fork that derives shapes from it agrees.

    Args:
        config: a config with ``OHEM_ROI*`` settings and Matterport's RoI attributes.
        base: the module's own ``DetectionTargetLayer`` class (a Keras layer).

    Returns:
        The subclass, named like ``base``, with the bound arguments as ``ohem_arguments`` and the
        RoI tensors its layers returned (their first output) as ``ohem_pool_rois``.
    """
    arguments = roi_target_arguments(config)
    pool = arguments["pool_size"]
    mask_shape = arguments["mask_shape"]

    def __init__(self, config=None, *args, **kwargs):
        if config is not None:
            config = copy.copy(config)
            config.TRAIN_ROIS_PER_IMAGE = pool
        base.__init__(self, config, *args, **kwargs)

    def call(self, inputs):
        proposals, gt_class_ids, gt_boxes, gt_masks = inputs[:4]
        signature = (tf.TensorSpec([pool, 4], tf.float32), tf.TensorSpec([pool], tf.int32),
                     tf.TensorSpec([pool, 4], tf.float32), tf.TensorSpec([pool, *mask_shape], tf.float32))
        outputs = tf.map_fn(
            lambda image: ohem_roi_targets(*image, **arguments),
            (tf.cast(proposals, tf.float32), tf.cast(gt_class_ids, tf.int32), tf.cast(gt_boxes, tf.float32),
             gt_masks),
            fn_output_signature=signature,
            parallel_iterations=1)  # shuffles draw per image: see maskrcnn.layers.map_images(draws=)
        return [tf.stop_gradient(o) for o in outputs]

    def compute_output_shape(self, input_shape):
        return [(None, pool, 4), (None, pool), (None, pool, 4), (None, pool, *mask_shape)]

    def compute_mask(self, inputs, mask=None):
        return [None, None, None, None]

    pool_rois: list[Any] = []  # every RoI tensor this class returned, for make_mask_head_trim

    def __call__(self, *args, **kwargs):
        outputs = base.__call__(self, *args, **kwargs)
        pool_rois.append(outputs[0])
        return outputs

    namespace = {
        "__init__": __init__, "__call__": __call__, "call": call, "compute_output_shape": compute_output_shape,
        "compute_mask": compute_mask, "ohem_arguments": arguments, "ohem_pool_rois": pool_rois,
        "__module__": __name__,
        "__doc__": f"{base.__name__} with OHEM RoI pools of {pool} per image (mrcnn_ohem); "
                   "see mrcnn_ohem.roi.ohem_roi_targets.",
    }
    return type(base.__name__, (base,), namespace)


def make_mask_head_trim(target_layer: type, rows: int, lambda_layer: type, build_mask_graph: Callable,
                        mask_loss_graph: Callable) -> tuple[Callable, Callable]:
    """Wrap Matterport's mask head and mask loss so that they see the first ``rows`` pool rows.

    The OHEM pool (:func:`~mrcnn_ohem.roi.ohem_roi_targets`) puts its positives first, at most
    ``int(TRAIN_ROIS_PER_IMAGE * ROI_POSITIVE_RATIO)`` of them, and the mask loss reads positives
    only; so with ``rows = TRAIN_ROIS_PER_IMAGE`` the mask loss is exactly the one on the whole
    pool, while the mask head's convolutions run on as many RoIs as without OHEM.

    Args:
        target_layer: the patched ``DetectionTargetLayer`` class; only RoIs that one of its layers
            returned (``target_layer.ohem_pool_rois``) are trimmed, so the inference graph's
            detections are not.
        rows: pool rows the mask head keeps per image.
        lambda_layer: the module's Keras ``Lambda`` class (``KL.Lambda``).
        build_mask_graph: the module's ``build_fpn_mask_graph(rois, feature_maps, image_meta,
            pool_size, num_classes, ...)``.
        mask_loss_graph: the module's ``mrcnn_mask_loss_graph(target_masks, target_class_ids,
            pred_masks)``.

    Returns:
        (build_fpn_mask_graph, mrcnn_mask_loss_graph) with the originals' signatures.
    """
    def build_fpn_mask_graph(rois, *args, **kwargs):
        """Matterport's mask head; on an OHEM RoI pool, on its first rows only (mrcnn_ohem)."""
        if any(rois is pool for pool in target_layer.ohem_pool_rois):
            rois = lambda_layer(lambda t: t[:, :rows], name="ohem_mask_rois")(rois)
        return build_mask_graph(rois, *args, **kwargs)

    def mrcnn_mask_loss_graph(target_masks, target_class_ids, pred_masks):
        """Matterport's mask loss on the rows the mask head saw (mrcnn_ohem).

        target_masks: [batch, pool, height, width]. target_class_ids: [batch, pool].
        pred_masks: [batch, rois <= pool, height, width, classes].
        """
        count = tf.shape(pred_masks)[1]
        return mask_loss_graph(target_masks[:, :count], target_class_ids[:, :count], pred_masks)

    return build_fpn_mask_graph, mrcnn_mask_loss_graph


def add_selection_metrics(keras_model: Any, layer_name: str = "rpn_class_loss") -> list[str]:
    """Report :data:`SELECTION_METRICS` on a fork's tf-keras training model trained by ``fit``.

    For Matterport-style models whose ``train_step`` is Keras' own (the bundled model needs no
    call: it listens by itself). The loss layer's function is applied once more to the loss
    layer's own inputs, while listening, and each statistic is added with
    ``keras_model.add_metric(..., aggregation="mean")``, so it appears in the logs, History and
    TensorBoard like the losses. This repeats the selection once per step (about the cost of the
    OHEM loss itself). Call it after ``patch()`` and model construction, before ``compile``.

    Args:
        keras_model: the functional training model (``MaskRCNN(...).keras_model``).
        layer_name: the ``Lambda`` layer that computes the RPN class loss.

    Returns:
        The metric names added.

    Raises:
        ValueError: the model has no such layer, or its loss reports nothing (not patched with
            OHEM).
    """
    try:
        layer = keras_model.get_layer(layer_name)
    except ValueError as err:
        raise ValueError(f"layer_name must name the RPN class loss layer of keras_model; received "
                         f"{layer_name!r}") from err
    function = getattr(layer, "function", None) or layer.call

    def selection_stats(inputs):
        with auxiliary.recording() as recorded:
            function(inputs)
        missing = [name for name in SELECTION_METRICS if name not in recorded.values]
        if missing:
            raise ValueError(f"the {layer_name!r} layer must compute the OHEM loss of a patched module "
                             f"(call mrcnn_ohem.patch before building the model); received no {missing}")
        return tf.stack([recorded.values[name] for name in SELECTION_METRICS])  # [3]

    lambda_layer = type(layer)  # keras.layers.Lambda of the fork's Keras
    stats = lambda_layer(selection_stats, name="ohem_rpn_selection_stats")(layer.input)
    for i, name in enumerate(SELECTION_METRICS):
        keras_model.add_metric(stats[i], name=name, aggregation="mean")
    return list(SELECTION_METRICS)
