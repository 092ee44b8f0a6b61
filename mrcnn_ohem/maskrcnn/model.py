"""The Mask R-CNN model: ``MaskRCNN(mode, config, model_dir)`` with Matterport's API.

This module is the contract that Matterport user code and :func:`mrcnn_ohem.patch` rely on.
It exposes at module level every name of Matterport's ``mrcnn/model.py`` that code uses --
the loss graphs, ``build_rpn_targets``, ``load_image_gt``, the data generator, the layers and
graph builders -- and the model builder looks the loss functions up *by module-global name
when it builds the graph*, so replacing ``model.rpn_class_loss_graph`` before constructing
``MaskRCNN`` changes the loss the model trains with. The data generators look
``model.build_rpn_targets`` and ``model.load_image_gt`` up when they load each image, as
Matterport's do, so a patch reaches a user's own loop too.

One rule differs from Matterport, on purpose: ``MaskRCNN`` takes ``build_rpn_targets`` and
``load_image_gt`` from this module *when it is constructed*, with its losses, and ``train()``
feeds those to the generators, so a model always trains on the targets of the loss it was
built with: one built inside ``with mrcnn_ohem.patch(...)`` keeps OHEM targets after the block,
one built before a patch keeps Matterport's (``train()`` warns when the module changed since).
Matterport binds the targets at ``train()``, which pairs an OHEM loss with random-256 targets
once the patch is gone.

Training differs from upstream's TF1 code in how the losses are wired, not in what they are:
the five loss layers are model outputs, and a custom ``train_step`` adds them (times
``LOSS_WEIGHTS``) to the L2 weight decay. Nothing is attached with ``add_loss``, so calling
``train()`` again never adds the losses a second time, and the reported ``loss`` is exactly
the sum of the five reported loss terms plus ``weight_decay_loss``. Multi-device training uses
``tf.distribute.MirroredStrategy``: every replica computes the losses on its own images, and
the total is divided by the number of replicas so the summed gradients are a mean. Several
machines use ``tf.distribute.MultiWorkerMirroredStrategy`` (see :mod:`.distribute`).
"""
from __future__ import annotations

import contextlib
import datetime
import functools
import logging
import multiprocessing
import os
import re
import shutil
import tempfile
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from mrcnn_ohem._compat import import_tf_keras
from mrcnn_ohem.core import auxiliary

from . import backbone, checkpoints, distribute, inference, training, utils, weights
from .anchors import compute_backbone_shapes, generate_pyramid_anchors
from .backbone import BatchNorm, build_backbone, conv_block, identity_block, resnet_graph, tiny_graph  # noqa: F401
from .data import (  # noqa: F401
    DataGenerator,
    compose_image_meta,
    data_generator,
    load_image_gt,
    mold_image,
    parse_image_meta,
    unmold_image,
)
from .heads import build_fpn_mask_graph, build_rpn_model, fpn_classifier_graph, rpn_graph  # noqa: F401
from .inference import log  # noqa: F401  (Matterport's modellib.log)
from .layers import (  # noqa: F401
    DetectionLayer,
    DetectionTargetLayer,
    ProposalLayer,
    PyramidROIAlign,
    apply_box_deltas_graph,
    batch_pack_graph,
    clip_boxes_graph,
    denorm_boxes_graph,
    detection_targets_graph,
    log2_graph,
    norm_boxes_graph,
    overlaps_graph,
    parse_image_meta_graph,
    refine_detections_graph,
    trim_zeros_graph,
)
from .losses import (  # noqa: F401
    mrcnn_bbox_loss_graph,
    mrcnn_class_loss_graph,
    mrcnn_mask_loss_graph,
    rpn_bbox_loss_graph,
    rpn_class_loss_graph,
    smooth_l1_loss,
)
from .precision import build_scope
from .targets import build_detection_targets, build_rpn_targets, generate_random_rois  # noqa: F401
from .training import LAYER_PRESETS, LOSS_NAMES, WEIGHT_DECAY_NAME, MaskRCNNTrainingModel, tensorboard_callback  # noqa: F401

keras = import_tf_keras()
KL = keras.layers
KM = keras.models

logger = logging.getLogger(__name__)

#: ``MaskRCNN`` keeps the ``build_rpn_targets`` and ``load_image_gt`` of its construction (read by
#: :meth:`mrcnn_ohem.patching.PatchHandle.restore`, which warns for modules that do not).
BINDS_DATA_FUNCTIONS_AT_BUILD = True

IMAGENET_WEIGHTS_FILE = weights.IMAGENET_WEIGHTS_FILE

#: Hook for choosing the RoIs the class and box losses train on, looked up when the training
#: graph is built: None (Matterport: both losses see the sampled RoIs) until ``mrcnn_ohem.patch``
#: installs the OHEM paper's selection (``OHEM_ROI_RANKING = "class+box"`` or
#: ``OHEM_ROI_NMS_THRESHOLD``). Called as ``select_training_rois(target_class_ids, target_bbox,
#: rois, mrcnn_class_logits, mrcnn_bbox, active_class_ids)``, it returns the class ids the two
#: losses read, [batch, rois] int32.
select_training_rois = None


############################################################
#  MaskRCNN
############################################################

class MaskRCNN:
    """Mask R-CNN with Matterport's interface; the Keras model is ``self.keras_model``.

    Args:
        mode: ``"training"`` or ``"inference"``.
        config: a :class:`~mrcnn_ohem.maskrcnn.config.Config` (subclass) instance.
        model_dir: directory for training logs and checkpoints.
        strategy: optional ``tf.distribute.Strategy`` to build and train under. Without one,
            a training model uses ``MultiWorkerMirroredStrategy`` when ``TF_CONFIG`` names more
            than one task (every worker reads its shard of the data, only the chief writes
            logs and checkpoints; see :mod:`.distribute`), else ``config.GPU_COUNT > 1`` builds
            a ``MirroredStrategy`` over that many GPUs.

    Raises:
        ValueError: unknown ``mode``; image size not a multiple of 64; ``GPU_COUNT`` larger
            than the number of GPUs.
    """

    def __init__(self, mode: str, config: Any, model_dir: str, strategy: Any = None):
        if mode not in ("training", "inference"):
            raise ValueError(f"mode: expected 'training' or 'inference', received {mode!r}")
        self.mode = mode
        self.config = config
        self.model_dir = model_dir
        if strategy is None and mode == "training":
            strategy = distribute.strategy_from_tf_config()
        self.strategy = strategy if strategy is not None else training.default_strategy(config.GPU_COUNT)
        self.set_log_dir()
        #: ``load_image_gt`` and ``build_rpn_targets`` as they were when the losses were bound.
        self.data_functions = {name: globals()[name] for name in ("load_image_gt", "build_rpn_targets")}
        with self._scope():
            self.keras_model = self.build(mode=mode, config=config)

    def _scope(self):
        return self.strategy.scope() if self.strategy is not None else contextlib.nullcontext()

    @property
    def is_chief(self) -> bool:
        """Whether this process writes the run folder (False on non-chief workers)."""
        return distribute.is_chief(self.strategy)

    # ------------------------------------------------------------------ graph

    def build(self, mode: str, config: Any):
        """Build the Keras model of ``mode`` ("training" or "inference") for ``config``: inputs,
        backbone and FPN, anchors, RPN and proposals, then the heads of that mode. Keras' global
        dtype policy is set for ``config.MIXED_PRECISION`` while it runs (see :mod:`.precision`).

        Args:
            mode: ``"training"`` or ``"inference"``.
            config: the model's ``Config``; ``IMAGE_SHAPE`` height and width must be multiples of 64.

        Returns:
            The Keras model (training: a ``MaskRCNNTrainingModel`` whose outputs end with the
            five losses; inference: detections [batch, DETECTION_MAX_INSTANCES, 6], class
            probabilities, box deltas, masks, proposals and the RPN outputs).

        Raises:
            ValueError: ``IMAGE_SHAPE`` not divisible by 64.
        """
        h, w = (int(v) for v in config.IMAGE_SHAPE[:2])
        if h % 64 or w % 64:
            raise ValueError(
                f"config.IMAGE_SHAPE: expected height and width divisible by 64 (2**6, so the "
                f"pyramid levels align), received {h}x{w}; use e.g. 256, 320, 384, 448, 512")
        with build_scope(getattr(config, "MIXED_PRECISION", None)):  # restored on return
            inputs = self._build_inputs(mode, config)
            _, c2, c3, c4, c5 = build_backbone(inputs["input_image"], config.BACKBONE, config.TRAIN_BN)
            rpn_feature_maps, mrcnn_feature_maps = backbone.fpn_graph([c2, c3, c4, c5], config.TOP_DOWN_PYRAMID_SIZE)
            anchors = (self._build_anchor_constant(inputs["input_image"], config) if mode == "training"
                       else inputs["input_anchors"])
            rpn = self._build_rpn(rpn_feature_maps, anchors, mode, config)
            if mode == "inference":
                return self._build_inference_heads(inputs, rpn, mrcnn_feature_maps, config)
            return self._build_training_heads(inputs, rpn, mrcnn_feature_maps, config)

    @staticmethod
    def _build_inputs(mode: str, config: Any) -> dict[str, Any]:
        """The model's ``KL.Input``s by layer name (plus ``gt_boxes``, the normalised GT boxes
        [batch, max_gt, (y1, x1, y2, x2)], in training); inference adds ``input_anchors``."""
        inputs = {
            "input_image": KL.Input(shape=[None, None, int(config.IMAGE_SHAPE[2])], name="input_image"),
            "input_image_meta": KL.Input(shape=[config.IMAGE_META_SIZE], name="input_image_meta"),
        }
        if mode == "inference":
            inputs["input_anchors"] = KL.Input(shape=[None, 4], name="input_anchors")
            return inputs
        inputs["input_rpn_match"] = KL.Input(shape=[None, 1], name="input_rpn_match", dtype=tf.int32)
        inputs["input_rpn_bbox"] = KL.Input(shape=[None, 4], name="input_rpn_bbox", dtype=tf.float32)
        inputs["input_gt_class_ids"] = KL.Input(shape=[None], name="input_gt_class_ids", dtype=tf.int32)
        inputs["input_gt_boxes"] = KL.Input(shape=[None, 4], name="input_gt_boxes", dtype=tf.float32)
        inputs["gt_boxes"] = KL.Lambda(lambda t: norm_boxes_graph(t[0], tf.shape(t[1])[1:3]), name="norm_gt_boxes")(
            [inputs["input_gt_boxes"], inputs["input_image"]])
        mask_hw = config.MINI_MASK_SHAPE if config.USE_MINI_MASK else config.IMAGE_SHAPE[:2]
        inputs["input_gt_masks"] = KL.Input(shape=[int(mask_hw[0]), int(mask_hw[1]), None], name="input_gt_masks",
                                            dtype=tf.bool)
        return inputs

    def _build_anchor_constant(self, input_image: Any, config: Any) -> Any:
        """Training's anchors: [batch, num_anchors, (y1, x1, y2, x2)] normalised, a constant of
        ``config.IMAGE_SHAPE`` broadcast over the batch."""
        anchors_np = self.get_anchors(config.IMAGE_SHAPE).astype(np.float32)
        return KL.Lambda(lambda t: tf.broadcast_to(tf.constant(anchors_np), [tf.shape(t)[0], *anchors_np.shape]),
                         name="anchors")(input_image)

    @staticmethod
    def _build_rpn(rpn_feature_maps: Sequence[Any], anchors: Any, mode: str, config: Any) -> tuple:
        """The shared RPN over P2..P6 and the proposal layer.

        Returns:
            rpn_class_logits [batch, num_anchors, 2], rpn_class [batch, num_anchors, 2]
            (softmax), rpn_bbox [batch, num_anchors, (dy, dx, log(dh), log(dw))] and rpn_rois
            [batch, proposal_count, (y1, x1, y2, x2)] normalised, zero padded.
        """
        rpn = build_rpn_model(config.RPN_ANCHOR_STRIDE, len(config.RPN_ANCHOR_RATIOS), config.TOP_DOWN_PYRAMID_SIZE,
                              config.RPN_SHARED_FILTERS)
        level_outputs = [rpn([p]) for p in rpn_feature_maps]
        rpn_class_logits, rpn_class, rpn_bbox = [
            KL.Concatenate(axis=1, name=name)(list(tensors))
            for tensors, name in zip(zip(*level_outputs), ("rpn_class_logits", "rpn_class", "rpn_bbox"))]
        proposal_count = config.POST_NMS_ROIS_TRAINING if mode == "training" else config.POST_NMS_ROIS_INFERENCE
        rpn_rois = ProposalLayer(proposal_count=proposal_count, nms_threshold=config.RPN_NMS_THRESHOLD,
                                 config=config, name="ROI")([rpn_class, rpn_bbox, anchors])
        return rpn_class_logits, rpn_class, rpn_bbox, rpn_rois

    @staticmethod
    def _build_inference_heads(inputs: dict[str, Any], rpn: tuple, mrcnn_feature_maps: Sequence[Any],
                               config: Any) -> Any:
        """Classifier on the proposals, detections, then the mask head on the detected boxes."""
        _, rpn_class, rpn_bbox, rpn_rois = rpn
        image_meta = inputs["input_image_meta"]
        _, mrcnn_class, mrcnn_bbox = fpn_classifier_graph(
            rpn_rois, mrcnn_feature_maps, image_meta, config.POOL_SIZE, config.NUM_CLASSES,
            fc_layers_size=config.FPN_CLASSIF_FC_LAYERS_SIZE, train_bn=config.TRAIN_BN)
        detections = DetectionLayer(config, name="mrcnn_detection")([rpn_rois, mrcnn_class, mrcnn_bbox, image_meta])
        detection_boxes = KL.Lambda(lambda t: t[..., :4], name="detection_boxes")(detections)
        mrcnn_mask = build_fpn_mask_graph(
            detection_boxes, mrcnn_feature_maps, image_meta, config.MASK_POOL_SIZE, config.NUM_CLASSES,
            train_bn=config.TRAIN_BN, filters=config.MASK_HEAD_FILTERS)
        return KM.Model([inputs["input_image"], image_meta, inputs["input_anchors"]],
                        [detections, mrcnn_class, mrcnn_bbox, mrcnn_mask, rpn_rois, rpn_class, rpn_bbox],
                        name="mask_rcnn")

    def _build_training_heads(self, inputs: dict[str, Any], rpn: tuple, mrcnn_feature_maps: Sequence[Any],
                              config: Any) -> Any:
        """Detection targets from the proposals (or ``input_roi`` when not ``USE_RPN_ROIS``),
        the heads on the sampled RoIs, and the loss layers; returns the training model."""
        rpn_class_logits, rpn_class, rpn_bbox, rpn_rois = rpn
        input_image, image_meta = inputs["input_image"], inputs["input_image_meta"]
        active_class_ids = KL.Lambda(lambda t: parse_image_meta_graph(t)["active_class_ids"],
                                     name="active_class_ids")(image_meta)
        model_inputs = [inputs[name] for name in ("input_image", "input_image_meta", "input_rpn_match",
                                                  "input_rpn_bbox", "input_gt_class_ids", "input_gt_boxes",
                                                  "input_gt_masks")]
        target_rois = rpn_rois
        if not config.USE_RPN_ROIS:
            input_rois = KL.Input(shape=[config.POST_NMS_ROIS_TRAINING, 4], name="input_roi", dtype=tf.int32)
            model_inputs.append(input_rois)
            target_rois = KL.Lambda(lambda t: norm_boxes_graph(t[0], tf.shape(t[1])[1:3]),
                                    name="norm_input_rois")([input_rois, input_image])
        rois, target_class_ids, target_bbox, target_mask = DetectionTargetLayer(config, name="proposal_targets")(
            [target_rois, inputs["input_gt_class_ids"], inputs["gt_boxes"], inputs["input_gt_masks"]])
        mrcnn_class_logits, mrcnn_class, mrcnn_bbox = fpn_classifier_graph(
            rois, mrcnn_feature_maps, image_meta, config.POOL_SIZE, config.NUM_CLASSES,
            fc_layers_size=config.FPN_CLASSIF_FC_LAYERS_SIZE, train_bn=config.TRAIN_BN)
        mrcnn_mask = build_fpn_mask_graph(
            rois, mrcnn_feature_maps, image_meta, config.MASK_POOL_SIZE, config.NUM_CLASSES,
            train_bn=config.TRAIN_BN, filters=config.MASK_HEAD_FILTERS)
        output_rois = KL.Lambda(lambda t: t * 1, name="output_rois")(rois)
        # The class and box losses read loss_class_ids: Matterport's targets, unless a patch
        # installed select_training_rois (the OHEM paper's RoI setting), which marks the RoIs
        # it did not keep as padding (-1) so that both losses train on the kept ones.
        loss_class_ids = target_class_ids
        select = globals()["select_training_rois"]
        if select is not None:
            loss_class_ids = KL.Lambda(lambda t: select(*t), name="ohem_roi_selection")(
                [target_class_ids, target_bbox, rois, mrcnn_class_logits, mrcnn_bbox, active_class_ids])
        # Listening while the loss layers are built tells the training model which auxiliary
        # metrics (e.g. a patched loss's selection statistics) they report.
        with auxiliary.recording() as reported:
            losses = self._build_losses(config, {
                "rpn_class_loss": [inputs["input_rpn_match"], rpn_class_logits],
                "rpn_bbox_loss": [inputs["input_rpn_bbox"], inputs["input_rpn_match"], rpn_bbox],
                "mrcnn_class_loss": [loss_class_ids, mrcnn_class_logits, active_class_ids],
                "mrcnn_bbox_loss": [target_bbox, loss_class_ids, mrcnn_bbox],
                "mrcnn_mask_loss": [target_mask, target_class_ids, mrcnn_mask]})
        outputs = [rpn_class_logits, rpn_class, rpn_bbox, mrcnn_class_logits, mrcnn_class, mrcnn_bbox, mrcnn_mask,
                   rpn_rois, output_rois, *losses]
        model = MaskRCNNTrainingModel(model_inputs, outputs, name="mask_rcnn")
        model.configure_losses(config.LOSS_WEIGHTS, config.WEIGHT_DECAY, reported.names)
        return model

    @staticmethod
    def _build_losses(config: Any, loss_inputs: dict[str, list]) -> list:
        """One ``KL.Lambda`` per loss of :data:`LOSS_NAMES`, named after it, in that order.

        Each loss function is looked up by module-global name (``<loss name>_graph``) now, at
        build time, so a patch applied to this module before construction is what the graph
        trains with. ``rpn_bbox_loss_graph`` takes ``config`` first, as Matterport's does."""
        def loss_layer(name: str, *leading: Any) -> Any:
            fn = globals()[f"{name}_graph"]
            return KL.Lambda(lambda t: fn(*leading, *t), name=name)(loss_inputs[name])

        return [loss_layer(name, *((config,) if name == "rpn_bbox_loss" else ())) for name in LOSS_NAMES]

    def get_anchors(self, image_shape: Sequence[int]) -> np.ndarray:
        """Anchors of an input of ``image_shape``, normalised, cached per shape.

        Args:
            image_shape: [height, width, channels] of the molded input.

        Returns:
            [num_anchors, (y1, x1, y2, x2)] float32 normalised; ``self.anchors`` keeps the
            last ones in pixels (as Matterport, for notebooks).
        """
        key = tuple(int(v) for v in image_shape)
        cache = self.__dict__.setdefault("_anchor_cache", {})
        if key not in cache:
            pixels = generate_pyramid_anchors(
                self.config.RPN_ANCHOR_SCALES, self.config.RPN_ANCHOR_RATIOS,
                compute_backbone_shapes(self.config, key), self.config.BACKBONE_STRIDES,
                self.config.RPN_ANCHOR_STRIDE)
            self.anchors = pixels
            cache[key] = utils.norm_boxes(pixels, key[:2])
        return cache[key]

    # ------------------------------------------------------------------ weights and logs

    def find_last(self) -> str:
        """Path of the last checkpoint of the last run of this config in ``model_dir``.

        Raises:
            FileNotFoundError: no run directory, or no checkpoint in the last one.
        """
        return weights.find_last(self.model_dir, self.config.NAME.lower())

    def load_weights(self, filepath: str, by_name: bool = False,
                     exclude: Sequence[str] | None = None,
                     class_indices: Sequence[int] | None = None) -> None:
        """Load Keras 2 ``.h5`` weights (e.g. Matterport's ``mask_rcnn_coco.h5``).

        Args:
            filepath: the ``.h5`` file.
            by_name: match layers by name (layers missing from the file keep their weights and
                are logged); else the file must hold exactly the model's weighted layers in
                order. ``exclude`` implies ``by_name``.
            exclude: layer names not to load (e.g. the class-specific heads when the number
                of classes differs).
            class_indices: [NUM_CLASSES] row of the file's class-specific heads
                (``mrcnn_class_logits``, ``mrcnn_bbox_fc``, ``mrcnn_mask``) for each class of
                this model, background (usually row 0) first: those rows (kernels and biases;
                the bbox head's 4 deltas per class together) are loaded instead of the whole
                layers. Implies ``by_name``. E.g. ``[0, 1, 17]`` takes BG, person and dog from
                Matterport's 81-class ``mask_rcnn_coco.h5``.

        Raises:
            FileNotFoundError: ``filepath`` does not exist.
            ValueError: shapes differ, or (not by name) the layers differ; the message lists
                the layers. Or ``class_indices`` has the wrong length or an index outside the
                file's rows. Nothing is loaded then.
        """
        weights.load_h5_weights(self.keras_model, filepath, by_name=by_name, exclude=exclude,
                                class_indices=class_indices)
        self.set_log_dir(filepath)

    def get_imagenet_weights(self, path: str | None = None) -> str:
        """Path of Keras' ResNet-50 ImageNet weights for ``load_weights(path, by_name=True)``.

        Never downloads: ``path``, or :data:`IMAGENET_WEIGHTS_FILE` where Keras keeps it
        (``~/.keras/models``, :func:`~.checkpoints.default_imagenet_path`). Both namings of Keras'
        ResNet files load by name (see :func:`~.weights.matterport_backbone_name`).

        Args:
            path: the ``.h5`` file; None looks in Keras' cache folder.

        Raises:
            FileNotFoundError: the file is not there; says which file and where it goes.
        """
        return checkpoints.imagenet_weights_path(path)

    def set_log_dir(self, model_path: str | None = None) -> None:
        """Set ``log_dir``, ``checkpoint_path`` and ``epoch``; resume them from a checkpoint
        path of the form ``.../<name>YYYYmmddTHHMM/mask_rcnn_<name>_<epoch>.h5``.

        Args:
            model_path: a checkpoint to resume from (its run folder and epoch); None starts a
                new run folder named after ``config.NAME`` and the current time, at epoch 0.
        """
        start, self.epoch = weights.parse_checkpoint_path(model_path) if model_path else (None, 0)
        if start is not None:
            logger.info("Re-starting from epoch %d", self.epoch)
        now = start or datetime.datetime.now()
        name = self.config.NAME.lower()
        self.log_dir = os.path.join(self.model_dir, f"{name}{now:%Y%m%dT%H%M}")
        self.checkpoint_path = os.path.join(self.log_dir, f"mask_rcnn_{name}_{{epoch:04d}}.h5")

    # ------------------------------------------------------------------ training

    def set_trainable(self, layer_regex: str, keras_model: Any = None, indent: int = 0,
                      verbose: int = 1) -> None:
        """Make layers whose name fully matches ``layer_regex`` trainable, freeze the others.

        Args:
            layer_regex: a regular expression over layer names (see ``LAYER_PRESETS``).
            keras_model: the model to walk (None: ``self.keras_model``); nested models are
                walked recursively.
            indent: spaces before each printed line (nested models).
            verbose: 0 quiet, > 0 prints each layer with weights and its state.
        """
        if verbose > 0 and keras_model is None:
            log("Selecting layers to train")
        keras_model = keras_model or self.keras_model
        for layer in keras_model.layers:
            if isinstance(layer, KM.Model):
                if verbose > 0:
                    print("In model: ", layer.name)
                self.set_trainable(layer_regex, keras_model=layer, indent=indent + 4,
                                   verbose=verbose)
                continue
            if not layer.weights:
                continue
            trainable = bool(re.fullmatch(layer_regex, layer.name))
            if isinstance(layer, KL.TimeDistributed):
                layer.layer.trainable = trainable
            layer.trainable = trainable
            if trainable and verbose > 0:
                log(f"{' ' * indent}{layer.name:20}   ({layer.__class__.__name__})")

    def compile(self, learning_rate: float, momentum: float) -> None:
        """SGD with momentum and global gradient-norm clipping; losses come from the graph.

        Compiling again with unchanged trainable layers keeps the traced training step, with
        the optimizer reset as a new SGD (see ``MaskRCNNTrainingModel.compile_sgd``).

        Args:
            learning_rate: SGD learning rate.
            momentum: SGD momentum.
        """
        clip = self.config.GRADIENT_CLIP_NORM
        with self._scope():
            self.keras_model.compile_sgd(learning_rate, momentum, clip if clip else None)

    def train(self, train_dataset: Any, val_dataset: Any, learning_rate: float, epochs: int,
              layers: str, augmentation: Any = None, custom_callbacks: Sequence[Any] | None = None,
              no_augmentation_sources: Sequence[str] | None = None, verbose: int = 1,
              seed: int | None = None) -> Any:
        """Train until epoch ``epochs`` (cumulative: earlier ``train()`` calls count).

        Args:
            train_dataset, val_dataset: :class:`~mrcnn_ohem.maskrcnn.utils.Dataset` objects
                (``val_dataset`` may be None: no validation).
            learning_rate: SGD learning rate.
            epochs: total epochs so far after this call.
            layers: a preset of :data:`LAYER_PRESETS` ("heads", "3+", "4+", "5+", "all") or a
                regular expression over layer names.
            augmentation: optional imgaug augmenter, passed to the data generator.
            custom_callbacks: extra Keras callbacks.
            no_augmentation_sources: dataset sources never augmented.
            verbose: Keras progress output (1 = progress bar, 2 = one line per epoch).
            seed: shuffles the training and validation data in a reproducible order (an
                addition to Matterport's signature; None shuffles at random, as upstream).

        Returns:
            The Keras ``History``.

        Raises:
            ValueError: the model is not in training mode, or ``layers`` is neither a preset
                nor a valid regular expression.
        """
        if self.mode != "training":
            raise ValueError(f"train() needs a model built with mode='training', this one "
                             f"has mode={self.mode!r}")
        layers = training.resolve_layers(layers)
        # The targets that belong to the losses: the functions of construction time.
        changed = [name for name, fn in self.data_functions.items() if globals()[name] is not fn]
        if changed:
            logger.warning(
                "train(): %s on %s changed after this model was built; training with the ones "
                "of construction time, which match the losses in its graph. To train with the "
                "new ones (for example after mrcnn_ohem.patch), build the model after the change.",
                " and ".join(changed), __name__)
        pipeline = dict(self.data_functions, seed=seed)
        train_generator = functools.partial(DataGenerator, train_dataset, self.config,
                                            shuffle=True, augmentation=augmentation,
                                            no_augmentation_sources=no_augmentation_sources,
                                            **pipeline)
        val_generator = (functools.partial(DataGenerator, val_dataset, self.config,
                                           shuffle=True, **pipeline)
                         if val_dataset is not None else None)
        workers = max(2, min(4, multiprocessing.cpu_count()))
        if distribute.is_multi_worker(self.strategy):
            # Each worker builds the generator of its shard; tf.distribute feeds its replicas.
            train_generator, val_generator = (
                distribute.sharded_dataset(g, self.config, workers) if g else None
                for g in (train_generator, val_generator))
        else:
            train_generator, val_generator = (g() if g else None
                                              for g in (train_generator, val_generator))
        # Only the chief writes the run folder; other workers write into a temporary one.
        write_dir = self.log_dir if self.is_chief else tempfile.mkdtemp(prefix="mrcnn_worker_")
        os.makedirs(write_dir, exist_ok=True)
        checkpoint_path = os.path.join(write_dir, os.path.basename(self.checkpoint_path))
        callbacks = [
            *tensorboard_callback(write_dir),
            keras.callbacks.ModelCheckpoint(checkpoint_path, verbose=0, save_weights_only=True),
            *(custom_callbacks or []),
        ]
        if verbose > 0:
            log(f"\nStarting at epoch {self.epoch}. LR={learning_rate}\n")
            log(f"Checkpoint Path: {self.checkpoint_path}")
        self.set_trainable(layers, verbose=verbose)
        self.compile(learning_rate, self.config.LEARNING_MOMENTUM)
        try:
            history = self.keras_model.fit(
                train_generator, initial_epoch=self.epoch, epochs=epochs,
                steps_per_epoch=self.config.STEPS_PER_EPOCH, callbacks=callbacks,
                validation_data=val_generator,
                validation_steps=(self.config.VALIDATION_STEPS if val_generator is not None
                                  else None),
                max_queue_size=10, workers=workers, use_multiprocessing=False, verbose=verbose)
        finally:
            if write_dir != self.log_dir:
                shutil.rmtree(write_dir, ignore_errors=True)
        self.epoch = max(self.epoch, epochs)
        return history

    # ------------------------------------------------------------------ inference

    def mold_inputs(self, images: Sequence[np.ndarray]):
        """Resize, pad and normalise images for the network (see :func:`.inference.mold_inputs`).

        Args:
            images: N images [height, width, 3], any sizes.

        Returns:
            molded_images [N, h, w, 3] float32, image_metas [N, meta length],
            windows [N, (y1, x1, y2, x2)] the image inside the padding, in pixels.
        """
        return inference.mold_inputs(images, self.config)

    def unmold_detections(self, detections: np.ndarray, mrcnn_mask: np.ndarray,
                          original_image_shape: Sequence[int], image_shape: Sequence[int],
                          window: Sequence[int]):
        """One image's network output -> boxes [n, 4] int32, class IDs [n], scores [n] and
        full-size masks [H, W, n] bool (see :func:`.inference.unmold_detections`).

        Args:
            detections: [DETECTION_MAX_INSTANCES, (y1, x1, y2, x2, class_id, score)] normalised,
                zero padded.
            mrcnn_mask: [DETECTION_MAX_INSTANCES, mask_h, mask_w, num_classes] probabilities.
            original_image_shape: [H, W, 3] of the image before resizing.
            image_shape: [h, w, 3] of the molded image.
            window: (y1, x1, y2, x2) of the image inside the molded one, in pixels.
        """
        return inference.unmold_detections(detections, mrcnn_mask, original_image_shape, image_shape,
                                           window)

    def detect(self, images: Sequence[np.ndarray], verbose: int = 0) -> list[dict]:
        """Detect instances in ``config.BATCH_SIZE`` images.

        Args:
            images: ``BATCH_SIZE`` images [height, width, 3] that resize to the same shape.
            verbose: > 0 logs the inputs.

        Returns:
            One dict per image: ``rois`` [N, (y1, x1, y2, x2)], ``class_ids`` [N],
            ``scores`` [N], ``masks`` [H, W, N] bool.

        Raises:
            ValueError: not in inference mode; ``len(images) != BATCH_SIZE``; images that
                resize to different shapes.
        """
        if self.mode != "inference":
            raise ValueError(f"detect() needs a model built with mode='inference', this one "
                             f"has mode={self.mode!r}")
        if len(images) != self.config.BATCH_SIZE:
            raise ValueError(
                f"images: expected a list of config.BATCH_SIZE={self.config.BATCH_SIZE} images "
                f"(IMAGES_PER_GPU * GPU_COUNT), received {len(images)}")
        if verbose:
            log(f"Processing {len(images)} images")
            for image in images:
                log("image", image)
        molded, metas, windows = self.mold_inputs(images)
        shapes = {m.shape for m in molded}
        if len(shapes) > 1:
            raise ValueError(f"images: expected every image to resize to the same shape "
                             f"(check IMAGE_RESIZE_MODE), received shapes {sorted(shapes)}")
        results = []
        detections, mrcnn_mask = self._predict(molded, metas, verbose)
        for i, image in enumerate(images):
            rois, class_ids, scores, masks = self.unmold_detections(
                detections[i], mrcnn_mask[i], image.shape, molded[i].shape, windows[i])
            results.append({"rois": rois, "class_ids": class_ids, "scores": scores,
                            "masks": masks})
        return results

    def _predict(self, molded: np.ndarray, metas: np.ndarray, verbose: int):
        anchors = np.broadcast_to(self.get_anchors(molded[0].shape),
                                  (molded.shape[0],) + self.get_anchors(molded[0].shape).shape)
        if verbose:
            log("molded_images", molded)
            log("image_metas", metas)
            log("anchors", anchors)
        outputs = self.keras_model.predict([molded, metas, np.ascontiguousarray(anchors)],
                                           batch_size=molded.shape[0], verbose=0)
        return outputs[0], outputs[3]

    def detect_molded(self, molded_images: np.ndarray, image_metas: np.ndarray,
                      verbose: int = 0) -> list[dict]:
        """:meth:`detect` on images already molded (e.g. from ``load_image_gt``).

        Args:
            molded_images: [BATCH_SIZE, h, w, 3] images as ``load_image_gt`` returns them (not
                yet mean-subtracted: :func:`.inference` molds them).
            image_metas: [BATCH_SIZE, meta length] their image metas.
            verbose: > 0 logs the inputs.

        Returns:
            One dict per image as :meth:`detect` returns, in molded-image coordinates.
        """
        if len(molded_images) != self.config.BATCH_SIZE:
            raise ValueError(
                f"molded_images: expected config.BATCH_SIZE={self.config.BATCH_SIZE} images, "
                f"received {len(molded_images)}")
        molded = np.asarray(molded_images)
        detections, mrcnn_mask = self._predict(molded, np.asarray(image_metas), verbose)
        return [dict(zip(("rois", "class_ids", "scores", "masks"), self.unmold_detections(
            detections[i], mrcnn_mask[i], image.shape, image.shape,
            [0, 0, image.shape[0], image.shape[1]]))) for i, image in enumerate(molded)]

    # ------------------------------------------------------------------ inspection

    def find_trainable_layer(self, layer: Any) -> Any:
        """The layer holding the weights of ``layer`` (unwraps ``TimeDistributed``).

        Args:
            layer: a Keras layer of the model.
        """
        if isinstance(layer, KL.TimeDistributed):
            return self.find_trainable_layer(layer.layer)
        return layer

    def get_trainable_layers(self) -> list:
        """Layers (unwrapped) that have weights."""
        layers = (self.find_trainable_layer(layer) for layer in self.keras_model.layers)
        return [layer for layer in layers if layer.get_weights()]

    def run_graph(self, images: Sequence[np.ndarray], outputs: Sequence[tuple[str, Any]],
                  image_metas: np.ndarray | None = None) -> OrderedDict[str, np.ndarray]:
        """Evaluate named Keras tensors of the inference graph on ``images``.

        Args:
            images: ``BATCH_SIZE`` raw images [height, width, 3], or molded images
                [BATCH_SIZE, h, w, 3] if ``image_metas`` is given.
            outputs: ``(name, keras_tensor)`` pairs, e.g.
                ``[("proposals", model.keras_model.get_layer("ROI").output)]``.
            image_metas: [BATCH_SIZE, meta length] of molded ``images``; None molds them here.

        Returns:
            ``{name: array}`` in the given order, each array [BATCH_SIZE, ...] as the tensor's
            shape (each is also printed with :func:`log`).
        """
        outputs = OrderedDict(outputs)
        probe = KM.Model(self.keras_model.inputs, list(outputs.values()))
        if image_metas is None:
            molded, image_metas, _ = self.mold_inputs(images)
        else:
            molded = np.asarray(images)
        anchors = self.get_anchors(molded[0].shape)
        inputs = [molded, image_metas,
                  np.ascontiguousarray(np.broadcast_to(anchors, (len(molded),) + anchors.shape))]
        values = probe.predict(inputs, batch_size=len(molded), verbose=0)
        values = values if isinstance(values, list) else [values]
        result = OrderedDict(zip(outputs.keys(), values))
        for key, value in result.items():
            log(key, value)
        return result
