"""Mixed precision of the bundled Mask R-CNN: which layers compute in float16 or bfloat16.

``Config.MIXED_PRECISION`` (None, ``"mixed_float16"`` or ``"mixed_bfloat16"``) is read once,
when :meth:`MaskRCNN.build <mrcnn_ohem.maskrcnn.model.MaskRCNN.build>` runs. Keras layers take
their dtype policy from the global policy *when they are constructed*, so the builder sets it
for the duration of the build and puts the previous one back afterwards:

- :func:`build_scope` wraps the whole build. It sets the global policy to ``float32`` and
  records the model's compute policy. Every layer the builder does not mark otherwise is
  float32: the proposal, RoI-pooling, detection-target and detection layers (NMS, box decoding,
  ``crop_and_resize``), every ``Lambda`` (image meta, box normalisation, the five loss layers,
  and any layer a patch adds, such as the OHEM loss), and the model's outputs.
- :func:`compute_scope` marks the convolutions and dense layers that compute in the low
  precision: the backbone, the FPN, the RPN's shared 3x3 convolution and the hidden layers of
  the classifier and mask heads (with their BatchNorm and ReLU). Their variables stay float32
  (Keras' mixed policies keep variables in float32 and cast them when the layer runs).

The prediction layers (``rpn_class_raw``, ``rpn_bbox_pred``, ``mrcnn_class_logits``,
``mrcnn_bbox_fc``, ``mrcnn_mask``) stay float32: they are 1x1 convolutions or dense layers to a
few channels (under 1% of a ResNet-101 step's multiply-adds at 1024 px), and in float32 the
logits, box deltas and mask probabilities keep float32's precision, which box decoding, NMS and
the losses need (bfloat16 has 8 significant bits: a delta of 0.1 would move by up to 0.0004 of
the box size at every decoding step).

Loss scaling for float16 goes through ``LossScaleOptimizer``
(see :meth:`~mrcnn_ohem.maskrcnn.training.MaskRCNNTrainingModel.compile_sgd`).
"""
from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from mrcnn_ohem._compat import import_tf_keras

from .config import MIXED_PRECISION_POLICIES

keras = import_tf_keras()
logger = logging.getLogger(__name__)

__all__ = ["MIXED_PRECISION_POLICIES", "build_scope", "compute_scope", "current_compute_policy",
           "needs_loss_scaling"]

#: The compute policy recorded by the innermost :func:`build_scope` (None outside a build).
_compute_policy: list[str] = []


def current_compute_policy() -> str | None:
    """The policy :func:`compute_scope` applies: that of the build in progress, or None."""
    return _compute_policy[-1] if _compute_policy else None


@contextlib.contextmanager
def _global_policy(name: str) -> Iterator[None]:
    """Set Keras' global dtype policy to ``name`` for the block; restore the previous one."""
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(name)
    try:
        yield
    finally:
        keras.mixed_precision.set_global_policy(previous)


@contextlib.contextmanager
def build_scope(mixed_precision: str | None) -> Iterator[None]:
    """The policies of one model build: float32 by default, ``mixed_precision`` in
    :func:`compute_scope` blocks. The global policy is restored when the block ends, also on error.

    Args:
        mixed_precision: ``Config.MIXED_PRECISION``: None (float32 everywhere),
            ``"mixed_float16"`` or ``"mixed_bfloat16"``.

    Raises:
        ValueError: ``mixed_precision`` is none of those.
    """
    if mixed_precision is not None and mixed_precision not in MIXED_PRECISION_POLICIES:
        raise ValueError(f"MIXED_PRECISION must be None or one of {list(MIXED_PRECISION_POLICIES)}; "
                         f"received {mixed_precision!r}")
    outside = keras.mixed_precision.global_policy().name
    if mixed_precision is None and outside != "float32":
        logger.warning("Keras' global dtype policy is %r, but Config.MIXED_PRECISION is None: the model is "
                       "built in float32. Set MIXED_PRECISION to build a mixed-precision model.", outside)
    _compute_policy.append(mixed_precision or "float32")
    try:
        with _global_policy("float32"):
            yield
    finally:
        _compute_policy.pop()


@contextlib.contextmanager
def compute_scope() -> Iterator[None]:
    """Layers constructed in this block compute in the build's policy (see :func:`build_scope`).

    Outside a build it changes nothing, so a user who calls a graph function such as
    ``resnet_graph`` under a global policy of their own keeps it.
    """
    policy = current_compute_policy()
    if policy is None:
        yield
        return
    with _global_policy(policy):
        yield


def needs_loss_scaling(keras_model) -> bool:
    """Whether any layer of ``keras_model`` (nested models included) computes in float16.

    float16 gradients underflow below 6e-8 and overflow above 65504, so such a model trains
    through a ``LossScaleOptimizer``; bfloat16 has float32's range and needs none.

    Args:
        keras_model: a built Keras model (its ``submodules`` are searched).
    """
    return any(getattr(module, "compute_dtype", None) == "float16" for module in keras_model.submodules)
