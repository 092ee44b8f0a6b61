"""Network heads: the region proposal network and the FPN box/class and mask heads.

Layer names and kernel shapes are Matterport's (``rpn_model`` with ``rpn_conv_shared``,
``rpn_class_raw``, ``rpn_bbox_pred``; ``mrcnn_class_conv1`` ... ``mrcnn_bbox_fc``;
``mrcnn_mask_conv1`` ... ``mrcnn_mask``), including the ``TimeDistributed`` wrappers, so
Matterport weight files load by name.

Under ``Config.MIXED_PRECISION`` the shared RPN convolution and the hidden layers of the heads
compute in float16 or bfloat16 (:func:`~.precision.compute_scope`); the RoI pooling and the
prediction layers that produce logits, deltas and masks, and everything after them, stay float32
(see :mod:`.precision`).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import tensorflow as tf

from mrcnn_ohem._compat import import_tf_keras

from .backbone import BatchNorm, _bn_flag
from .layers import PyramidROIAlign
from .precision import compute_scope

keras = import_tf_keras()
KL = keras.layers
KM = keras.models

#: Filters of the shared RPN convolution: Matterport's, which its weight files need
#: (``Config.RPN_SHARED_FILTERS`` changes it per model).
RPN_SHARED_FILTERS = 512


############################################################
#  Region proposal network
############################################################

def rpn_graph(feature_map: Any, anchors_per_location: int, anchor_stride: int,
              filters: int = RPN_SHARED_FILTERS) -> list:
    """RPN on one feature map.

    Args:
        feature_map: [batch, height, width, depth] Keras tensor.
        anchors_per_location: anchors per feature-map cell (number of ratios).
        anchor_stride: 1 for anchors at every cell, 2 for every other cell.
        filters: width of the shared 3x3 convolution (``Config.RPN_SHARED_FILTERS``).

    Returns:
        rpn_class_logits [batch, H * W * anchors_per_location, 2] BG/FG logits,
        rpn_probs [batch, H * W * anchors_per_location, 2] softmax of the logits,
        rpn_bbox [batch, H * W * anchors_per_location, (dy, dx, log(dh), log(dw))].
    """
    with compute_scope():
        shared = KL.Conv2D(filters, (3, 3), padding="same", activation="relu",
                           strides=anchor_stride, name="rpn_conv_shared")(feature_map)
    x = KL.Conv2D(2 * anchors_per_location, (1, 1), padding="valid", activation="linear",
                  name="rpn_class_raw")(shared)
    rpn_class_logits = KL.Lambda(lambda t: tf.reshape(t, [tf.shape(t)[0], -1, 2]))(x)
    rpn_probs = KL.Activation("softmax", name="rpn_class_xxx")(rpn_class_logits)
    x = KL.Conv2D(4 * anchors_per_location, (1, 1), padding="valid", activation="linear",
                  name="rpn_bbox_pred")(shared)
    rpn_bbox = KL.Lambda(lambda t: tf.reshape(t, [tf.shape(t)[0], -1, 4]))(x)
    return [rpn_class_logits, rpn_probs, rpn_bbox]


def build_rpn_model(anchor_stride: int, anchors_per_location: int, depth: int,
                    filters: int = RPN_SHARED_FILTERS) -> Any:
    """The RPN as a Keras model named ``rpn_model``, shared across pyramid levels.

    Args:
        anchor_stride: see :func:`rpn_graph`.
        anchors_per_location: see :func:`rpn_graph`.
        depth: channels of the feature maps (``TOP_DOWN_PYRAMID_SIZE``).
        filters: see :func:`rpn_graph`.

    Returns:
        Keras model mapping [batch, H, W, depth] to the three outputs of :func:`rpn_graph`.
    """
    input_feature_map = KL.Input(shape=[None, None, depth], name="input_rpn_feature_map")
    outputs = rpn_graph(input_feature_map, anchors_per_location, anchor_stride, filters)
    return KM.Model([input_feature_map], outputs, name="rpn_model")


############################################################
#  Feature pyramid network heads
############################################################

def fpn_classifier_graph(rois: Any, feature_maps: Sequence[Any], image_meta: Any,
                         pool_size: int, num_classes: int, train_bn: bool | None = True,
                         fc_layers_size: int = 1024) -> tuple:
    """Classifier and box-regression head.

    Args:
        rois: [batch, num_rois, (y1, x1, y2, x2)] normalised proposals.
        feature_maps: [P2, P3, P4, P5], each [batch, height, width, channels].
        image_meta: [batch, meta length].
        pool_size: side of the ROIAlign output (7 in Matterport).
        num_classes: classes including background.
        train_bn: train the head's batch-norm layers.
        fc_layers_size: width of the two "fully connected" layers (1x1 convolutions).

    Returns:
        mrcnn_class_logits [batch, num_rois, num_classes], mrcnn_probs [batch, num_rois,
        num_classes], mrcnn_bbox [batch, num_rois, num_classes, (dy, dx, log(dh), log(dw))].
    """
    training = _bn_flag(train_bn)
    x = PyramidROIAlign([pool_size, pool_size],
                        name="roi_align_classifier")([rois, image_meta] + list(feature_maps))
    with compute_scope():
        x = KL.TimeDistributed(KL.Conv2D(fc_layers_size, (pool_size, pool_size), padding="valid"),
                               name="mrcnn_class_conv1")(x)
        x = KL.TimeDistributed(BatchNorm(), name="mrcnn_class_bn1")(x, training=training)
        x = KL.Activation("relu")(x)
        x = KL.TimeDistributed(KL.Conv2D(fc_layers_size, (1, 1)), name="mrcnn_class_conv2")(x)
        x = KL.TimeDistributed(BatchNorm(), name="mrcnn_class_bn2")(x, training=training)
        x = KL.Activation("relu")(x)
        shared = KL.Lambda(lambda t: tf.squeeze(tf.squeeze(t, 3), 2), name="pool_squeeze")(x)

    mrcnn_class_logits = KL.TimeDistributed(KL.Dense(num_classes),
                                            name="mrcnn_class_logits")(shared)
    mrcnn_probs = KL.TimeDistributed(KL.Activation("softmax"),
                                     name="mrcnn_class")(mrcnn_class_logits)
    x = KL.TimeDistributed(KL.Dense(num_classes * 4, activation="linear"),
                           name="mrcnn_bbox_fc")(shared)
    mrcnn_bbox = KL.Reshape((-1, num_classes, 4), name="mrcnn_bbox")(x)
    return mrcnn_class_logits, mrcnn_probs, mrcnn_bbox


def build_fpn_mask_graph(rois: Any, feature_maps: Sequence[Any], image_meta: Any,
                         pool_size: int, num_classes: int, train_bn: bool | None = True,
                         filters: int = 256) -> Any:
    """Mask head: four 3x3 convolutions, a 2x up-convolution, per-class sigmoid masks.

    Args:
        rois: [batch, num_rois, (y1, x1, y2, x2)] normalised boxes.
        feature_maps: [P2, P3, P4, P5].
        image_meta: [batch, meta length].
        pool_size: side of the ROIAlign output (14 in Matterport).
        num_classes: classes including background.
        train_bn: train the head's batch-norm layers.
        filters: width of the head's convolutions (``Config.MASK_HEAD_FILTERS``; Matterport's
            weight files need 256).

    Returns:
        [batch, num_rois, 2 * pool_size, 2 * pool_size, num_classes] mask probabilities.
    """
    training = _bn_flag(train_bn)
    x = PyramidROIAlign([pool_size, pool_size],
                        name="roi_align_mask")([rois, image_meta] + list(feature_maps))
    with compute_scope():
        for i in range(1, 5):
            x = KL.TimeDistributed(KL.Conv2D(filters, (3, 3), padding="same"),
                                   name=f"mrcnn_mask_conv{i}")(x)
            x = KL.TimeDistributed(BatchNorm(), name=f"mrcnn_mask_bn{i}")(x, training=training)
            x = KL.Activation("relu")(x)
        x = KL.TimeDistributed(
            KL.Conv2DTranspose(filters, (2, 2), strides=2, activation="relu"),
            name="mrcnn_mask_deconv")(x)
    return KL.TimeDistributed(KL.Conv2D(num_classes, (1, 1), strides=1, activation="sigmoid"),
                              name="mrcnn_mask")(x)
