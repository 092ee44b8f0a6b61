"""Backbones: ResNet-50/101 with Matterport's layer names, two small CNNs for CPU runs, and the FPN.

Every backbone returns ``[C1, C2, C3, C4, C5]``, the last feature map of each stage; C2..C5
have strides 4, 8, 16 and 32; :func:`fpn_graph` turns C2..C5 into the pyramid P2..P6. The
ResNet layer names (``conv1``, ``bn_conv1``, ``res2a_branch2a``, ``bn2a_branch2a``,
``res2a_branch1``, ... ``res5c_branch2c``) and kernel shapes are Matterport's, which took them
from the original Caffe ResNet, so a Matterport weight file (for example ``mask_rcnn_coco.h5``)
loads by name.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from mrcnn_ohem._compat import import_tf_keras

from .config import BACKBONES  # noqa: F401  (the accepted names, declared once)
from .precision import compute_scope

keras = import_tf_keras()
KL = keras.layers

#: Number of identity blocks after the first block of stage 4, per architecture.
STAGE4_IDENTITY_BLOCKS = {"resnet50": 5, "resnet101": 22}


class BatchNorm(KL.BatchNormalization):
    """Batch normalisation whose mode is chosen when the graph is built (Matterport's).

    The builders pass ``training=config.TRAIN_BN``: ``False`` freezes the statistics (the
    default, as batches of one or two images give poor estimates), ``None`` follows the
    training phase and ``True`` forces training mode even at inference. As everywhere in
    TensorFlow 2, a layer set non-trainable runs in inference mode.
    """

    def call(self, inputs, training=None):
        """Normalise ``inputs`` with batch statistics or the moving ones, as ``training`` says.

        Args:
            inputs: [batch, height, width, channels] feature map.
            training: True (batch statistics, moving ones updated), False (moving statistics)
                or None (follow the Keras learning phase).

        Returns:
            A tensor of the shape of ``inputs``, in the layer's compute dtype.
        """
        return super().call(inputs, training=training)


def _bn_flag(train_bn: bool | None) -> bool | None:
    """The ``training`` argument of :class:`BatchNorm` for ``Config.TRAIN_BN`` (unchanged)."""
    return train_bn


def _block(input_tensor, kernel_size: int, filters: Sequence[int], stage: int, block: str,
           strides: int, shortcut_conv: bool, use_bias: bool, train_bn: bool):
    """One bottleneck block: 1x1 -> kxk -> 1x1 convolutions plus a shortcut."""
    conv = f"res{stage}{block}_branch"
    bn = f"bn{stage}{block}_branch"
    training = _bn_flag(train_bn)
    f1, f2, f3 = filters
    x = KL.Conv2D(f1, (1, 1), strides=strides, name=conv + "2a", use_bias=use_bias)(input_tensor)
    x = BatchNorm(name=bn + "2a")(x, training=training)
    x = KL.Activation("relu")(x)
    x = KL.Conv2D(f2, (kernel_size, kernel_size), padding="same", name=conv + "2b",
                  use_bias=use_bias)(x)
    x = BatchNorm(name=bn + "2b")(x, training=training)
    x = KL.Activation("relu")(x)
    x = KL.Conv2D(f3, (1, 1), name=conv + "2c", use_bias=use_bias)(x)
    x = BatchNorm(name=bn + "2c")(x, training=training)
    shortcut = input_tensor
    if shortcut_conv:
        shortcut = KL.Conv2D(f3, (1, 1), strides=strides, name=conv + "1",
                             use_bias=use_bias)(input_tensor)
        shortcut = BatchNorm(name=bn + "1")(shortcut, training=training)
    x = KL.Add()([x, shortcut])
    return KL.Activation("relu", name=f"res{stage}{block}_out")(x)


def identity_block(input_tensor: Any, kernel_size: int, filters: Sequence[int], stage: int,
                   block: str, use_bias: bool = True, train_bn: bool | None = True) -> Any:
    """Bottleneck block whose shortcut is the input itself (Matterport's ``identity_block``).

    Args:
        input_tensor: [batch, height, width, filters[2]] Keras tensor (the shortcut is added
            unchanged, so its depth must equal the block's output depth).
        kernel_size: size of the middle convolution's square kernel (3 in ResNet).
        filters: ``(f1, f2, f3)`` channels of the 1x1, kxk and 1x1 convolutions.
        stage: stage number (2..5), in the layer names ``res{stage}{block}_branch2a``...
        block: block letter (``"b"``, ``"c"``, ...), in the layer names.
        use_bias: whether the convolutions have a bias.
        train_bn: ``training`` flag of the batch-norm layers (``Config.TRAIN_BN``).

    Returns:
        [batch, height, width, f3] Keras tensor (output layer ``res{stage}{block}_out``).
    """
    return _block(input_tensor, kernel_size, filters, stage, block, 1, False, use_bias, train_bn)


def conv_block(input_tensor: Any, kernel_size: int, filters: Sequence[int], stage: int,
               block: str, strides: tuple[int, int] = (2, 2), use_bias: bool = True,
               train_bn: bool | None = True) -> Any:
    """Bottleneck block with a strided 1x1 convolution on the shortcut (``res*_branch1``).

    Args:
        input_tensor: [batch, height, width, channels] Keras tensor.
        kernel_size: size of the middle convolution's square kernel (3 in ResNet).
        filters: ``(f1, f2, f3)`` channels of the 1x1, kxk and 1x1 convolutions.
        stage: stage number (2..5), in the layer names ``res{stage}{block}_branch2a``...
        block: block letter (``"a"`` in ResNet), in the layer names.
        strides: strides of the first 1x1 convolution and of the shortcut's.
        use_bias: whether the convolutions have a bias.
        train_bn: ``training`` flag of the batch-norm layers (``Config.TRAIN_BN``).

    Returns:
        [batch, height / strides[0], width / strides[1], f3] Keras tensor (output layer
        ``res{stage}{block}_out``).
    """
    return _block(input_tensor, kernel_size, filters, stage, block, strides, True, use_bias,
                  train_bn)


def resnet_graph(input_image: Any, architecture: str, stage5: bool = False,
                 train_bn: bool | None = True) -> list:
    """ResNet-50 or ResNet-101 with Matterport's layer names.

    Args:
        input_image: [batch, height, width, 3] Keras tensor.
        architecture: ``"resnet50"`` or ``"resnet101"`` (``"tiny"`` is routed to
            :func:`tiny_graph`).
        stage5: build stage 5 (C5); Mask R-CNN always does.
        train_bn: ``training`` flag of the batch-norm layers (Config.TRAIN_BN).

    Returns:
        [C1, C2, C3, C4, C5] Keras tensors; C5 is None when ``stage5`` is False.

    Raises:
        ValueError: unknown ``architecture``.
    """
    if architecture in SMALL_BACKBONES:
        return SMALL_BACKBONES[architecture](input_image, stage5=stage5, train_bn=train_bn)
    if architecture not in STAGE4_IDENTITY_BLOCKS:
        raise ValueError(
            f"architecture must be one of {BACKBONES} or a callable Config.BACKBONE; "
            f"received {architecture!r}")
    x = KL.ZeroPadding2D((3, 3))(input_image)
    x = KL.Conv2D(64, (7, 7), strides=(2, 2), name="conv1", use_bias=True)(x)
    x = BatchNorm(name="bn_conv1")(x, training=_bn_flag(train_bn))
    x = KL.Activation("relu")(x)
    c1 = x = KL.MaxPooling2D((3, 3), strides=(2, 2), padding="same")(x)

    def stage(x, number: int, filters: Sequence[int], blocks: int, strides):
        x = conv_block(x, 3, filters, number, "a", strides=strides, train_bn=train_bn)
        for i in range(blocks):
            x = identity_block(x, 3, filters, number, chr(ord("b") + i), train_bn=train_bn)
        return x

    c2 = x = stage(x, 2, [64, 64, 256], 2, (1, 1))
    c3 = x = stage(x, 3, [128, 128, 512], 3, (2, 2))
    c4 = x = stage(x, 4, [256, 256, 1024], STAGE4_IDENTITY_BLOCKS[architecture], (2, 2))
    c5 = stage(x, 5, [512, 512, 2048], 2, (2, 2)) if stage5 else None
    return [c1, c2, c3, c4, c5]


def tiny_graph(input_image: Any, stage5: bool = True, train_bn: bool | None = True,
               filters: Sequence[int] = (8, 16, 24, 32, 48)) -> list:
    """A five-stage 3x3-convolution network for CPU tests and demos (~26k parameters).

    Stage ``k`` is one stride-2 convolution, batch norm and ReLU, so C2..C5 have strides 4..32
    like ResNet's. Layers are named ``conv1``/``bn_conv1`` and ``res{k}a_tiny``/``bn{k}a_tiny``
    so the ``3+``/``4+``/``5+`` training presets select stages as they do for ResNet.

    Args:
        input_image: [batch, height, width, 3] Keras tensor.
        stage5: build stage 5 (C5); Mask R-CNN always does.
        train_bn: ``training`` flag of the batch-norm layers (``Config.TRAIN_BN``).
        filters: channels of stages 1..5.

    Returns:
        [C1, C2, C3, C4, C5] Keras tensors, C{k} [batch, height / 2^k, width / 2^k, filters[k-1]]
        (rounded up); C5 is None when ``stage5`` is False.
    """
    training = _bn_flag(train_bn)
    x = KL.Conv2D(filters[0], (3, 3), strides=2, padding="same", name="conv1")(input_image)
    x = BatchNorm(name="bn_conv1")(x, training=training)
    outputs = [KL.Activation("relu")(x)]
    for number, width in zip(range(2, 6), filters[1:]):
        if number == 5 and not stage5:
            outputs.append(None)
            break
        x = KL.Conv2D(width, (3, 3), strides=2, padding="same",
                      name=f"res{number}a_tiny")(outputs[-1])
        x = BatchNorm(name=f"bn{number}a_tiny")(x, training=training)
        outputs.append(KL.Activation("relu", name=f"res{number}a_out")(x))
    return outputs


def compact_graph(input_image: Any, stage5: bool = True, train_bn: bool | None = False,
                  widths: Sequence[int] = (32, 48, 64, 96, 128)) -> list:
    """A small plain CNN for CPU runs: per stage a stride-2 and a stride-1 3x3 convolution.

    Stronger than ``"tiny"`` (one convolution per stage) at a cost that is still small next to
    the mask head. Layers are named ``res{stage}{a,b}_compact`` / ``bn{stage}{a,b}_compact`` so
    the ``3+``/``4+``/``5+`` presets select stages as for ResNet.

    Args:
        input_image: [batch, height, width, 3] Keras tensor.
        stage5: build C5 (else it is None).
        train_bn: ``Config.TRAIN_BN`` (passed as BatchNorm's ``training``).
        widths: channels of stages 1..5.

    Returns:
        [C1, C2, C3, C4, C5] Keras tensors.
    """
    training = _bn_flag(train_bn)
    x = input_image
    outputs = []
    for stage, width in zip(range(1, 6), widths):
        if stage == 5 and not stage5:
            outputs.append(None)
            break
        for part, stride in (("a", 2), ("b", 1)):
            first = stage == 1 and part == "a"
            x = KL.Conv2D(width, (3, 3), strides=stride, padding="same",
                          name="conv1" if first else f"res{stage}{part}_compact")(x)
            x = BatchNorm(name="bn_conv1" if first else f"bn{stage}{part}_compact")(
                x, training=training)
            x = KL.Activation("relu")(x)
        outputs.append(x)
    return outputs


#: The small CPU backbones by ``Config.BACKBONE`` name.
SMALL_BACKBONES = {"tiny": tiny_graph, "compact": compact_graph}


def build_backbone(input_image: Any, backbone: str | Callable[..., Any],
                   train_bn: bool | None) -> list:
    """C1..C5 for ``Config.BACKBONE``, a name or a callable (Matterport's contract).

    Inside :meth:`MaskRCNN.build <mrcnn_ohem.maskrcnn.model.MaskRCNN.build>` its layers compute in
    ``Config.MIXED_PRECISION`` (:func:`~.precision.compute_scope`), a callable's as well.

    Args:
        input_image: [batch, height, width, 3] Keras tensor.
        backbone: a name from :data:`BACKBONES` (``"resnet50"``, ``"resnet101"``, ``"tiny"``,
            ``"compact"``), or a callable taking ``(input_image, stage5=True, train_bn=...)``
            and returning [C1, C2, C3, C4, C5].
        train_bn: ``training`` flag of the batch-norm layers (``Config.TRAIN_BN``).

    Returns:
        [C1, C2, C3, C4, C5] Keras tensors; C2..C5 are [batch, height / 2^k, width / 2^k,
        depth_k] (strides 4, 8, 16, 32); C1 has stride 4 in ResNet, 2 in ``"tiny"`` and
        ``"compact"``.

    Raises:
        ValueError: ``backbone`` is an unknown name.
    """
    with compute_scope():
        if callable(backbone):
            return backbone(input_image, stage5=True, train_bn=train_bn)
        return resnet_graph(input_image, backbone, stage5=True, train_bn=train_bn)


def fpn_graph(features: Sequence[Any], pyramid_size: int) -> tuple[list, list]:
    """Feature pyramid: the top-down pathway with lateral 1x1 convolutions over C2..C5.

    Args:
        features: [C2, C3, C4, C5] Keras tensors, each [batch, h_i, w_i, depth_i], every level
            half the resolution of the one before.
        pyramid_size: channels of every pyramid level (``Config.TOP_DOWN_PYRAMID_SIZE``).

    Returns:
        ([P2, P3, P4, P5, P6] for the RPN, [P2, P3, P4, P5] for the heads), each
        [batch, h_i, w_i, pyramid_size]; P6 subsamples P5 by 2. Inside a model build they are
        in ``Config.MIXED_PRECISION``'s compute dtype (:func:`~.precision.compute_scope`).
    """
    with compute_scope():
        return _fpn_layers(features, pyramid_size)


def _fpn_layers(features: Sequence[Any], pyramid_size: int) -> tuple[list, list]:
    c2, c3, c4, c5 = features
    p5 = KL.Conv2D(pyramid_size, (1, 1), name="fpn_c5p5")(c5)
    p4 = KL.Add(name="fpn_p4add")([KL.UpSampling2D(size=(2, 2), name="fpn_p5upsampled")(p5),
                                   KL.Conv2D(pyramid_size, (1, 1), name="fpn_c4p4")(c4)])
    p3 = KL.Add(name="fpn_p3add")([KL.UpSampling2D(size=(2, 2), name="fpn_p4upsampled")(p4),
                                   KL.Conv2D(pyramid_size, (1, 1), name="fpn_c3p3")(c3)])
    p2 = KL.Add(name="fpn_p2add")([KL.UpSampling2D(size=(2, 2), name="fpn_p3upsampled")(p3),
                                   KL.Conv2D(pyramid_size, (1, 1), name="fpn_c2p2")(c2)])
    p2, p3, p4, p5 = (KL.Conv2D(pyramid_size, (3, 3), padding="SAME", name=f"fpn_p{i}")(p)
                      for i, p in zip(range(2, 6), (p2, p3, p4, p5)))
    p6 = KL.MaxPooling2D(pool_size=(1, 1), strides=2, name="fpn_p6")(p5)
    return [p2, p3, p4, p5, p6], [p2, p3, p4, p5]
