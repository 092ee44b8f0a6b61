"""Training machinery: the loss-summing Keras model, layer presets and callbacks.

Split from :mod:`.model`, which re-exports every name here. The five loss layers are model
outputs; :class:`MaskRCNNTrainingModel` adds them (times ``LOSS_WEIGHTS``) to the L2 weight
decay in its own ``train_step``, so nothing is attached with ``add_loss`` and calling
``train()`` again never adds a loss twice.

Auxiliary metrics: a loss graph may report extra named scalars with
:func:`mrcnn_ohem.core.auxiliary.record` (an OHEM loss installed by ``mrcnn_ohem.patch``
reports what its selection kept). The model builder listens while it builds the graph and
hands the names to :meth:`MaskRCNNTrainingModel.configure_losses`; ``train_step`` and
``test_step`` listen on every forward pass and report each name as a running-mean metric,
beside the losses (Keras logs, History, TensorBoard). They are not added to ``loss``. This
module knows no name in advance, and nothing here is specific to OHEM.

Mixed precision (``Config.MIXED_PRECISION``, see :mod:`.precision`): the losses and their sum
are float32 in every policy. A model with float16 layers trains through a
``LossScaleOptimizer`` wrapped around the SGD: ``train_step`` multiplies the loss by the loss
scale before differentiating and divides the gradients by it before ``apply_gradients``, so
``GRADIENT_CLIP_NORM`` clips the true (unscaled) gradients; a step whose gradients are not
finite is skipped (weights and momentum untouched) and the scale halved.
"""
from __future__ import annotations

import logging
import re
from collections import OrderedDict

import tensorflow as tf

from mrcnn_ohem._compat import import_tf_keras
from mrcnn_ohem.core import auxiliary

from .precision import needs_loss_scaling

keras = import_tf_keras()
KM = keras.models

logger = logging.getLogger(__name__)

__all__ = ["LOSS_NAMES", "WEIGHT_DECAY_NAME", "LAYER_PRESETS", "MaskRCNNTrainingModel",
           "default_strategy", "tensorboard_callback", "resolve_layers"]

#: The five losses, in Matterport's order; layer names, metric names and LOSS_WEIGHTS keys.
LOSS_NAMES = ("rpn_class_loss", "rpn_bbox_loss", "mrcnn_class_loss", "mrcnn_bbox_loss",
              "mrcnn_mask_loss")
#: Name of the reported L2 weight-decay term.
WEIGHT_DECAY_NAME = "weight_decay_loss"
_HEADS = r"(mrcnn\_.*)|(rpn\_.*)|(fpn\_.*)"
#: ``train(layers=...)`` presets -> regular expression over layer names (Matterport's).
LAYER_PRESETS = {
    "heads": _HEADS,
    "3+": r"(res3.*)|(bn3.*)|(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|" + _HEADS,
    "4+": r"(res4.*)|(bn4.*)|(res5.*)|(bn5.*)|" + _HEADS,
    "5+": r"(res5.*)|(bn5.*)|" + _HEADS,
    "all": ".*",
}

class MaskRCNNTrainingModel(KM.Model):
    """Functional Keras model whose ``train_step``/``test_step`` optimise the loss outputs.

    ``loss = sum(LOSS_WEIGHTS[name] * output[name] for the five losses) + weight decay``,
    weight decay being ``WEIGHT_DECAY * sum(w**2) / size(w)`` over trainable weights other
    than BatchNorm gamma/beta (Matterport's formula), recomputed over the weights trainable at
    compile time. Every term is reported as a metric, so ``loss`` equals the sum of the others.
    """

    def configure_losses(self, loss_weights: dict, weight_decay: float,
                         auxiliary_names: tuple[str, ...] | list[str] = ()) -> None:
        """Set the loss weights and create the metric trackers (call inside the strategy scope).

        Args:
            loss_weights: ``LOSS_WEIGHTS`` (missing names weigh 1).
            weight_decay: ``WEIGHT_DECAY``.
            auxiliary_names: names the loss graphs report through
                :func:`mrcnn_ohem.core.auxiliary.record`; each becomes a running-mean metric.
        """
        self.loss_weights_by_name = {n: float(loss_weights.get(n, 1.0)) for n in LOSS_NAMES}
        self.weight_decay = float(weight_decay)
        self._trackers = [keras.metrics.Mean(name=name)
                          for name in ("loss", *LOSS_NAMES, WEIGHT_DECAY_NAME)]
        reserved = {tracker.name for tracker in self._trackers}
        self.auxiliary_names = tuple(n for n in dict.fromkeys(auxiliary_names) if n not in reserved)
        self._auxiliary_trackers = [keras.metrics.Mean(name=name) for name in self.auxiliary_names]

    def compile_sgd(self, learning_rate: float, momentum: float, clipnorm: float | None) -> None:
        """Compile with SGD (momentum, global norm clipping); call inside the strategy scope.

        Compiling again with the same momentum, clipping and trainable weights keeps the traced
        training step and its optimizer, reset to what a new SGD starts from (iteration and
        momentum zero, the new learning rate): the same update, without tracing the whole
        graph again (about 8 s at 64 px on 2 cores). Anything else compiles a new optimizer.

        A model with float16 layers (``Config.MIXED_PRECISION = "mixed_float16"``) gets the SGD
        wrapped in a dynamic ``LossScaleOptimizer`` (initial scale 2**15, doubled after 2000
        finite steps, halved on every step with non-finite gradients); on the re-compile path
        the loss scale keeps its current value (it tracks the model's gradients, not the
        optimizer's settings).

        Args:
            learning_rate: SGD's learning rate (``LEARNING_RATE``, or ``train``'s argument).
            momentum: SGD's momentum (``LEARNING_MOMENTUM``).
            clipnorm: the global gradient norm to clip to (``GRADIENT_CLIP_NORM``); None for no
                clipping.
        """
        key = (float(momentum), clipnorm, tuple(v.ref() for v in self.trainable_variables))
        optimizer = getattr(self, "optimizer", None)
        last_key, last_optimizer = getattr(self, "_last_sgd", (None, None))
        if key == last_key and optimizer is not None and optimizer is last_optimizer:
            optimizer.learning_rate.assign(learning_rate)
            for variable in optimizer.variables:
                variable.assign(tf.zeros(variable.shape, variable.dtype))
            return
        optimizer = keras.optimizers.SGD(learning_rate=learning_rate, momentum=momentum,
                                         global_clipnorm=clipnorm)
        if needs_loss_scaling(self):
            optimizer = keras.mixed_precision.LossScaleOptimizer(optimizer)
        self.compile(optimizer=optimizer)
        # Create the momentum slots now: a first step that creates variables makes tf.function
        # trace the whole training graph twice (about 8 s at 64 px on 2 cores).
        optimizer.build(self.trainable_variables)
        self._last_sgd = (key, optimizer)  # a compile() of the user's own replaces it

    @property
    def metrics(self):
        return list(getattr(self, "_trackers", [])) + list(getattr(self, "_auxiliary_trackers", []))

    def _forward(self, x, training: bool):
        """The model's outputs, and the auxiliary scalars its loss graphs recorded meanwhile."""
        with auxiliary.recording() as recorded:
            outputs = self(x, training=training)
        return outputs, recorded.values

    def _loss_terms(self, outputs) -> dict:
        by_name = dict(zip(self.output_names, outputs))
        terms = OrderedDict((name, tf.reduce_mean(by_name[name]) * self.loss_weights_by_name[name])
                            for name in LOSS_NAMES)
        decayed = [tf.reduce_sum(tf.square(w)) / tf.cast(tf.size(w), tf.float32)
                   for w in self.trainable_weights
                   if "gamma" not in w.name and "beta" not in w.name]
        terms[WEIGHT_DECAY_NAME] = self.weight_decay * (tf.add_n(decayed) if decayed
                                                        else tf.constant(0.0))
        return terms

    def _report(self, total, terms, recorded=None) -> dict:
        values = [total, *terms.values()]
        for tracker, value in zip(self._trackers, values):
            tracker.update_state(value)
        for tracker in getattr(self, "_auxiliary_trackers", []):
            if recorded and tracker.name in recorded:
                tracker.update_state(tf.stop_gradient(tf.cast(recorded[tracker.name], tf.float32)))
        return {tracker.name: tracker.result() for tracker in self.metrics}

    def train_step(self, data):
        """One SGD step on the weighted sum of the loss outputs plus weight decay.

        Args:
            data: the batch as ``fit`` passes it: the model inputs, optionally with targets and
                sample weights, which are ignored (the targets are inputs). For the bundled
                training model the inputs are those of
                :class:`~mrcnn_ohem.maskrcnn.data.DataGenerator`: images
                [batch, height, width, channels] float32, image_meta [batch, IMAGE_META_SIZE],
                rpn_match [batch, num_anchors, 1], rpn_bbox
                [batch, RPN_TRAIN_ANCHORS_PER_IMAGE, 4], gt_class_ids [batch, MAX_GT_INSTANCES],
                gt_boxes [batch, MAX_GT_INSTANCES, 4], gt_masks [batch, height, width,
                MAX_GT_INSTANCES].

        Returns:
            Metric name -> running mean, a scalar float32 tensor each: ``loss``, the five
            losses, ``weight_decay_loss`` and the auxiliary names.
        """
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        variables = self.trainable_variables
        with tf.GradientTape() as tape:
            outputs, recorded = self._forward(x, training=True)
            terms = self._loss_terms(outputs)
            total = tf.add_n(list(terms.values()))
            # Gradients are summed over replicas; dividing makes the step use their mean.
            scaled = total / tf.cast(self.distribute_strategy.num_replicas_in_sync, tf.float32)
            loss_scaled = isinstance(self.optimizer, keras.mixed_precision.LossScaleOptimizer)
            if loss_scaled:  # float16: keep small gradients above float16's underflow
                scaled = self.optimizer.get_scaled_loss(scaled)
        grads = tape.gradient(scaled, variables)
        if loss_scaled:  # unscaled before apply_gradients, which clips them and skips inf/NaN steps
            grads = self.optimizer.get_unscaled_gradients(grads)
        self.optimizer.apply_gradients(
            [(g, v) for g, v in zip(grads, variables) if g is not None])
        return self._report(total, terms, recorded)

    def test_step(self, data):
        """The losses of one batch in inference mode, without a weight update.

        Args:
            data: the batch, as for :meth:`train_step`.

        Returns:
            Metric name -> running mean, a scalar float32 tensor each, as :meth:`train_step`.
        """
        x, _, _ = keras.utils.unpack_x_y_sample_weight(data)
        outputs, recorded = self._forward(x, training=False)
        terms = self._loss_terms(outputs)
        return self._report(tf.add_n(list(terms.values())), terms, recorded)


def tensorboard_callback(log_dir: str) -> list:
    """Matterport's TensorBoard callback (tensorboard is an install requirement), as a list.

    Args:
        log_dir: the folder the event files are written to (the run folder).
    """
    return [keras.callbacks.TensorBoard(log_dir=log_dir, histogram_freq=0, write_graph=False,
                                        write_images=False)]


def resolve_layers(layers: str) -> str:
    """The regular expression of ``train(layers=...)``: a preset of :data:`LAYER_PRESETS`, or ``layers``.

    Args:
        layers: a preset name (``"heads"``, ``"3+"``, ``"4+"``, ``"5+"``, ``"all"``) or a regular
            expression over layer names.

    Raises:
        ValueError: ``layers`` is neither a preset nor a valid regular expression.
    """
    if layers in LAYER_PRESETS:
        return LAYER_PRESETS[layers]
    try:
        re.compile(layers)
    except (re.error, TypeError) as err:
        raise ValueError(f"layers: expected one of {list(LAYER_PRESETS)} or a regular "
                         f"expression over layer names, received {layers!r}") from err
    return layers


def default_strategy(gpu_count: int) -> tf.distribute.Strategy | None:
    """``MirroredStrategy`` over the first ``gpu_count`` GPUs (``Config.GPU_COUNT``), or None
    for a single device.

    Args:
        gpu_count: how many GPUs to train on; 1 (or less) means a single device.

    Raises:
        ValueError: fewer than ``gpu_count`` GPUs are visible.
    """
    count = int(gpu_count)
    if count <= 1:
        return None
    gpus = tf.config.list_logical_devices("GPU")
    if len(gpus) < count:
        raise ValueError(
            f"config.GPU_COUNT: expected at most the {len(gpus)} visible GPU(s), received "
            f"{count}; lower GPU_COUNT or pass strategy=tf.distribute.MirroredStrategy(...)")
    return tf.distribute.MirroredStrategy([d.name for d in gpus[:count]])
