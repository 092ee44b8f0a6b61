"""Training on several machines: ``tf.distribute.MultiWorkerMirroredStrategy`` from ``TF_CONFIG``.

Everything distributed here is TensorFlow's own machinery; this module only decides when to use
it and wires the data generator into it:

- :func:`strategy_from_tf_config` builds one ``MultiWorkerMirroredStrategy`` per process when the
  ``TF_CONFIG`` environment variable names more than one task (``chief`` + ``worker``), as
  TensorFlow's multi-worker recipe sets it on every host.
- :func:`sharded_dataset` is handed to tf-keras as a ``DatasetCreator``: tf.distribute calls it
  once per worker with an ``InputContext``, and the worker's ``DataGenerator`` reads only the
  image ids of its input pipeline (``image_ids[pipeline::num_pipelines]``), ``IMAGES_PER_GPU``
  per replica. Each replica computes its own losses (OHEM ranks that replica's images), and the
  training step divides by ``num_replicas_in_sync`` so the all-reduced gradients are a mean.
- :func:`is_chief` is ``strategy.extended.should_checkpoint``: only the chief writes the run
  folder (checkpoints, TensorBoard logs, ``history.json``); the others write into a temporary
  folder that ``MaskRCNN.train`` deletes.
"""
from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
import tensorflow as tf

from mrcnn_ohem._compat import import_tf_keras

keras = import_tf_keras()
logger = logging.getLogger(__name__)

__all__ = ["tf_config_task_count", "strategy_from_tf_config", "is_multi_worker", "is_chief",
           "input_signature", "sequence_dataset", "sharded_dataset"]

_STRATEGY: Any = None


def tf_config_task_count(environ: Mapping[str, str] | None = None) -> int:
    """Number of training tasks (``chief`` + ``worker``) that ``TF_CONFIG`` names; 0 without it.

    Args:
        environ: the environment to read ``TF_CONFIG`` from (``os.environ`` when None).

    Raises:
        ValueError: ``TF_CONFIG`` is set but is not a JSON object with a ``cluster`` dict.
    """
    raw = (os.environ if environ is None else environ).get("TF_CONFIG", "").strip()
    if not raw:
        return 0
    try:
        cluster = json.loads(raw).get("cluster", {})
        if not isinstance(cluster, dict):
            raise TypeError
    except (ValueError, TypeError, AttributeError) as err:
        raise ValueError(f"TF_CONFIG: expected JSON like {{\"cluster\": {{\"worker\": [...]}}, "
                         f"\"task\": {{\"type\": \"worker\", \"index\": 0}}}}, received {raw!r}"
                         ) from err
    return sum(len(cluster.get(kind) or []) for kind in ("chief", "worker"))


def strategy_from_tf_config(environ: Mapping[str, str] | None = None) -> Any:
    """The process's ``MultiWorkerMirroredStrategy`` if ``TF_CONFIG`` names > 1 task, else None.

    TensorFlow allows one such strategy per process (its collectives are configured once, at
    start-up, before other TensorFlow work), so it is created on the first call and reused.

    Args:
        environ: the environment to read ``TF_CONFIG`` from (``os.environ`` when None).

    Raises:
        ValueError: ``TF_CONFIG`` is set but malformed (see :func:`tf_config_task_count`).
    """
    global _STRATEGY
    if tf_config_task_count(environ) <= 1:
        return None
    if _STRATEGY is None:
        _STRATEGY = tf.distribute.MultiWorkerMirroredStrategy()
        resolver = _STRATEGY.cluster_resolver
        logger.info("MultiWorkerMirroredStrategy: task %s:%s of %d, %d replica(s) in sync",
                    resolver.task_type, resolver.task_id, tf_config_task_count(environ),
                    _STRATEGY.num_replicas_in_sync)
    return _STRATEGY


def is_multi_worker(strategy: Any) -> bool:
    """True for a ``MultiWorkerMirroredStrategy`` whose cluster has more than one task.

    Args:
        strategy: a ``tf.distribute.Strategy``, or None (False).
    """
    if not isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        return False
    spec = strategy.cluster_resolver.cluster_spec().as_dict()
    return sum(len(spec.get(kind) or []) for kind in ("chief", "worker")) > 1


def is_chief(strategy: Any) -> bool:
    """Whether this process writes checkpoints and logs (always, without a strategy).

    Args:
        strategy: a ``tf.distribute.Strategy``, or None (True).
    """
    return strategy is None or bool(strategy.extended.should_checkpoint)


def input_signature(config: Any) -> tuple[tf.TensorSpec, ...]:
    """``tf.TensorSpec`` of the seven training inputs ``DataGenerator`` yields for ``config``.

    Args:
        config: the model config (``IMAGE_SHAPE``, ``IMAGE_META_SIZE``,
            ``RPN_TRAIN_ANCHORS_PER_IMAGE``, ``MAX_GT_INSTANCES``, ``USE_MINI_MASK``,
            ``MINI_MASK_SHAPE``).

    Returns:
        Specs of images [batch, height, width, channels] float32, image_meta [batch,
        IMAGE_META_SIZE] float64, rpn_match [batch, anchors, 1] int32, rpn_bbox [batch,
        RPN_TRAIN_ANCHORS_PER_IMAGE, 4] float32, gt_class_ids [batch, MAX_GT_INSTANCES] int32,
        gt_boxes [batch, MAX_GT_INSTANCES, 4] int32, gt_masks [batch, height, width,
        MAX_GT_INSTANCES] bool (height and width are ``MINI_MASK_SHAPE`` with
        ``USE_MINI_MASK``); batch and anchors are left unknown (None).
    """
    h, w, c = (int(v) for v in config.IMAGE_SHAPE)
    mask_hw = tuple(config.MINI_MASK_SHAPE if config.USE_MINI_MASK else (h, w))
    max_gt = int(config.MAX_GT_INSTANCES)
    return (
        tf.TensorSpec([None, h, w, c], tf.float32),
        tf.TensorSpec([None, int(config.IMAGE_META_SIZE)], tf.float64),
        tf.TensorSpec([None, None, 1], tf.int32),
        tf.TensorSpec([None, int(config.RPN_TRAIN_ANCHORS_PER_IMAGE), 4], tf.float32),
        tf.TensorSpec([None, max_gt], tf.int32),
        tf.TensorSpec([None, max_gt, 4], tf.int32),
        tf.TensorSpec([None, *mask_hw, max_gt], tf.bool),
    )


def sequence_dataset(sequence: Any, signature: tuple[tf.TensorSpec, ...], workers: int = 1,
                     max_queue_size: int = 10) -> tf.data.Dataset:
    """An endless ``tf.data.Dataset`` of ``(inputs,)`` from a Keras ``Sequence``.

    Batches are built by tf-keras' ``OrderedEnqueuer`` in ``workers`` threads, in order, with
    ``sequence.on_epoch_end()`` between passes (what ``fit`` does with a ``Sequence``).

    Args:
        sequence: a Keras ``Sequence`` whose items are ``(inputs, outputs)``, such as
            ``DataGenerator``; ``outputs`` are dropped.
        signature: the specs of the first ``len(signature)`` arrays of ``inputs`` (see
            :func:`input_signature`); later inputs are dropped.
        workers: threads that build batches (at least 1).
        max_queue_size: batches built ahead at most.
    """
    def batches() -> Iterator[tuple[tuple[np.ndarray, ...]]]:
        enqueuer = keras.utils.OrderedEnqueuer(sequence, use_multiprocessing=False)
        enqueuer.start(workers=max(1, int(workers)), max_queue_size=max_queue_size)
        try:
            for inputs, _ in enqueuer.get():
                yield (tuple(inputs[:len(signature)]),)
        finally:
            enqueuer.stop()

    return tf.data.Dataset.from_generator(batches, output_signature=(signature,))


def sharded_dataset(make_generator: Callable[..., Any], config: Any, workers: int = 1) -> Any:
    """A tf-keras ``DatasetCreator``: each worker builds the ``DataGenerator`` of its shard.

    Args:
        make_generator: ``(batch_size=, shard_index=, num_shards=) -> DataGenerator``.
        config: the model config (``IMAGES_PER_GPU`` images per replica).
        workers: data-loading threads per worker.
    """
    signature = input_signature(config)

    def dataset_fn(context: tf.distribute.InputContext) -> tf.data.Dataset:
        per_replica = context.get_per_replica_batch_size(
            int(config.IMAGES_PER_GPU) * context.num_replicas_in_sync)
        generator = make_generator(batch_size=per_replica, shard_index=context.input_pipeline_id,
                                   num_shards=context.num_input_pipelines)
        logger.info("input pipeline %d of %d: %d images, %d per replica",
                    context.input_pipeline_id, context.num_input_pipelines,
                    len(generator.image_ids), per_replica)
        return sequence_dataset(generator, signature, workers).prefetch(1)

    return keras.utils.experimental.DatasetCreator(dataset_fn)
