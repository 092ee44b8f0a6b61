"""mrcnn_ohem.patch with OHEM_ROI and the focal RPN loss on the bundled Mask R-CNN: the built
model trains on RoI pools with the OHEM class loss (and the focal RPN loss), restore() brings
Matterport's model back, and short seeded runs on a fixed batch lower the patched losses."""
from __future__ import annotations

import numpy as np
import pytest
import reference
from helpers import TinyModelConfig, random_shapes

import mrcnn_ohem
from mrcnn_ohem._compat import import_tf_keras
from mrcnn_ohem.maskrcnn import model as modellib
from mrcnn_ohem.maskrcnn.data import DataGenerator

keras = import_tf_keras()


class RoiTiny(mrcnn_ohem.OHEMConfigMixin, TinyModelConfig):
    NAME = "roitiny"
    OHEM_RPN = False
    OHEM_ROI = True
    OHEM_ROI_POOL = 40  # TRAIN_ROIS_PER_IMAGE is 16
    OHEM_ROI_TOP_K = 8


class RoiInference(RoiTiny):
    GPU_COUNT = 1
    IMAGES_PER_GPU = 1
    DETECTION_MAX_INSTANCES = 24  # more than TRAIN_ROIS_PER_IMAGE, so a trim would show


class FocalTiny(mrcnn_ohem.OHEMConfigMixin, TinyModelConfig):
    NAME = "focaltiny"
    OHEM_RPN_LOSS = "focal"


@pytest.fixture(scope="module")
def dataset():
    return random_shapes(4, seed=5)


def fixed_batch(dataset, config):
    np.random.seed(0)
    inputs, _ = DataGenerator(dataset, config, shuffle=False)[0]
    return inputs


def probe(model, names):
    """Run the training graph once, returning the named layers' outputs from the same forward."""
    keras_model = model.keras_model
    tensors = [keras_model.get_layer(n).output for n in names]
    return keras.Model(keras_model.inputs, tensors)


def train_on_fixed_batch(model, inputs, steps, learning_rate):
    model.set_trainable(modellib.LAYER_PRESETS["all"], verbose=0)
    model.compile(learning_rate, 0.9)
    history = []
    for _ in range(steps):
        history.append(model.keras_model.train_on_batch(inputs, return_dict=True))
    return history


def assert_lowered(history, name, window=5):
    values = np.array([step[name] for step in history])
    print(name, np.round(values, 4).tolist())
    assert np.all(np.isfinite(values)), values
    first, last = values[:window].mean(), values[-window:].mean()
    assert last < 0.8 * first, values


@pytest.mark.slow
def test_patched_model_trains_on_roi_pools_lowers_the_ohem_class_loss_and_restore(tmp_path, dataset):
    """One patched RoiTiny model (a build and its traced step are most of the time): what the heads
    see and the OHEM class loss on a batch, then a short seeded run on that batch lowers the loss;
    after restore(), a newly built model samples Matterport's TRAIN_ROIS_PER_IMAGE."""
    config = RoiTiny()
    plain = (modellib.DetectionTargetLayer, modellib.mrcnn_class_loss_graph, modellib.rpn_class_loss_graph)
    with mrcnn_ohem.patch(config, module=modellib) as handle:
        assert set(handle.originals) == {"DetectionTargetLayer", "mrcnn_class_loss_graph",
                                         "build_fpn_mask_graph", "mrcnn_mask_loss_graph"}
        keras.utils.set_random_seed(0)
        model = modellib.MaskRCNN("training", config, str(tmp_path))
        inputs = fixed_batch(dataset, config)
        targets, logits, loss, bbox_loss, mask_loss, masks = probe(model, [
            "proposal_targets", "mrcnn_class_logits", "mrcnn_class_loss", "mrcnn_bbox_loss",
            "mrcnn_mask_loss", "mrcnn_mask"])(inputs)
        rois, class_ids = targets[0].numpy(), targets[1].numpy()
        # The class head sees the pool of 40, the mask head its first TRAIN_ROIS_PER_IMAGE rows.
        assert rois.shape == (2, 40, 4) and masks.shape[1] == 16
        assert ((class_ids > 0).sum(axis=1) <= int(16 * 0.33)).all()
        active = inputs[1][:, 12:]  # image_meta's active_class_ids
        expected = reference.ohem_mrcnn_class_loss(class_ids, logits.numpy(), active, 8)
        # float32 cross-entropy of near-saturated logits (values about 10) is good to ~1e-6 absolute;
        # the pool's random RoIs sometimes give such a batch (a loss of 4e-5 was seen).
        assert loss.numpy() == pytest.approx(expected, rel=1e-4, abs=2e-6)
        assert np.isfinite(bbox_loss.numpy()) and np.isfinite(mask_loss.numpy())
    assert not handle.active
    history = train_on_fixed_batch(model, inputs, steps=24, learning_rate=0.01)
    assert_lowered(history, "mrcnn_class_loss")
    assert (modellib.DetectionTargetLayer, modellib.mrcnn_class_loss_graph, modellib.rpn_class_loss_graph) == plain
    model = modellib.MaskRCNN("training", config, str(tmp_path))
    assert probe(model, ["proposal_targets"])(fixed_batch(dataset, config))[0][0].shape == (2, 16, 4)


class RoiGivenRois(RoiTiny):
    """RoIs from the data generator (Matterport's random RoIs, most of them near a GT box), so
    the pool holds positives whatever the random RPN proposes."""
    USE_RPN_ROIS = False


@pytest.mark.slow
def test_mask_head_sees_the_pool_rows_that_hold_every_positive(tmp_path, dataset):
    config = RoiGivenRois()
    with mrcnn_ohem.patch(config, module=modellib):
        keras.utils.set_random_seed(0)
        model = modellib.MaskRCNN("training", config, str(tmp_path))
        np.random.seed(0)
        inputs, _ = DataGenerator(dataset, config, shuffle=False, random_rois=config.POST_NMS_ROIS_TRAINING)[0]
        targets, mask_loss, masks = probe(model, ["proposal_targets", "mrcnn_mask_loss", "mrcnn_mask"])(inputs)
        # Inference builds its mask head on the detections, untrimmed.
        inference = modellib.MaskRCNN("inference", RoiInference(), str(tmp_path))
    class_ids, target_masks, masks = targets[1].numpy(), targets[3].numpy(), masks.numpy()
    assert masks.shape[1] == 16 and class_ids.shape[1] == 40
    positives = class_ids > 0
    # Every positive lies in the rows the mask head saw (at most int(16 * 0.33) = 5, listed first).
    assert positives.sum() >= 2 and not positives[:, 16:].any()
    # Matterport's mask loss over the whole pool's targets, in NumPy; the rows past 16 hold no
    # positive, so the trimmed head's missing predictions there are never read.
    padded = np.zeros((masks.shape[0], 40, *masks.shape[2:]), np.float32)
    padded[:, :16] = masks
    expected = reference.matterport_mask_loss(target_masks, class_ids, padded)
    assert mask_loss.numpy() == pytest.approx(expected, rel=1e-4) and expected > 0
    assert inference.keras_model.get_layer("mrcnn_mask").output.shape[1] == RoiInference.DETECTION_MAX_INSTANCES


@pytest.mark.slow
def test_short_run_lowers_the_focal_rpn_loss(tmp_path, dataset):
    # (The OHEM class loss's short run is in test_patched_model_trains_on_roi_pools_...)
    config = FocalTiny()
    with mrcnn_ohem.patch(config, module=modellib):
        keras.utils.set_random_seed(0)
        model = modellib.MaskRCNN("training", config, str(tmp_path))
        inputs = fixed_batch(dataset, config)
    history = train_on_fixed_batch(model, inputs, steps=24, learning_rate=0.01)
    assert_lowered(history, "rpn_class_loss")


class RoiPaper(RoiGivenRois):
    """The OHEM paper's setting: rank by class + box loss, NMS 0.7 among the RoIs, both losses."""
    OHEM_ROI_RANKING = "class+box"
    OHEM_ROI_NMS_THRESHOLD = 0.7
    # Random weights give confident wrong logits, so negatives are the hardest RoIs; a budget of
    # 20 of the 40 lets a few positives in (and the box loss something to read).
    OHEM_ROI_TOP_K = 20


@pytest.mark.slow
def test_paper_setting_trains_class_and_box_loss_on_the_kept_rois(tmp_path, dataset):
    config = RoiPaper()
    with mrcnn_ohem.patch(config, module=modellib) as handle:
        assert "select_training_rois" in handle.originals and modellib.select_training_rois is not None
        keras.utils.set_random_seed(0)
        model = modellib.MaskRCNN("training", config, str(tmp_path))
        np.random.seed(0)
        inputs, _ = DataGenerator(dataset, config, shuffle=False, random_rois=config.POST_NMS_ROIS_TRAINING)[0]
    assert modellib.select_training_rois is None  # restored
    targets, kept_ids, logits, pred_bbox, class_loss, bbox_loss = probe(model, [
        "proposal_targets", "ohem_roi_selection", "mrcnn_class_logits", "mrcnn_bbox", "mrcnn_class_loss",
        "mrcnn_bbox_loss"])(inputs)
    rois, class_ids, target_bbox = targets[0].numpy(), targets[1].numpy(), targets[2].numpy()
    active = inputs[1][:, 12:]
    expected, positives, negatives = reference.select_hard_rois(
        class_ids, target_bbox, rois, logits.numpy(), pred_bbox.numpy(), active, 20, nms_threshold=0.7)
    np.testing.assert_array_equal(kept_ids.numpy(), expected)
    kept = (expected >= 0).sum(axis=1)
    assert sum(positives) >= 1 and (kept <= 20).all() and (kept < (class_ids >= 0).sum(axis=1)).all()
    # Both losses read the kept ids: the class loss averages the kept RoIs, the box loss their positives.
    assert class_loss.numpy() == pytest.approx(
        reference.ohem_mrcnn_class_loss(expected, logits.numpy(), active, 20), rel=1e-4, abs=2e-6)
    assert bbox_loss.numpy() == pytest.approx(
        reference.matterport_bbox_loss(target_bbox, expected, pred_bbox.numpy()), rel=1e-4, abs=1e-6)
    assert bbox_loss.numpy() != pytest.approx(reference.matterport_bbox_loss(target_bbox, class_ids, pred_bbox.numpy()))
    # train(): the kept counts reach the Keras logs.
    history = train_on_fixed_batch(model, inputs, steps=2, learning_rate=0.001)
    assert 0 < history[-1]["ohem_roi_kept_positives"] + history[-1]["ohem_roi_kept_negatives"] <= 20


def test_paper_setting_refuses_a_module_without_the_selection_hook():
    import types

    fork = types.ModuleType("fork_model")
    for name in ("rpn_class_loss_graph", "build_rpn_targets", "mrcnn_class_loss_graph", "DetectionTargetLayer"):
        setattr(fork, name, getattr(modellib, name))
    fork.KL = keras.layers
    with pytest.raises(ValueError, match="OHEM_ROI_RANKING = 'class\\+box' and OHEM_ROI_NMS_THRESHOLD need"):
        mrcnn_ohem.patch(RoiPaper(), module=fork)
    assert fork.mrcnn_class_loss_graph is modellib.mrcnn_class_loss_graph  # nothing changed
