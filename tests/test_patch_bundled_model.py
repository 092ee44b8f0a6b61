"""mrcnn_ohem.patch on the bundled Mask R-CNN: the built model trains on the OHEM loss and the
generator yields the full negative pool; restore() brings Matterport's behaviour back."""
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


class OHEMTiny(mrcnn_ohem.OHEMConfigMixin, TinyModelConfig):
    NAME = "ohemtiny"
    OHEM_RPN_TOP_K = 8  # well below the ~1000 candidates per image, so selection matters


@pytest.fixture(scope="module")
def dataset():
    return random_shapes(4, seed=3)


def batch_and_outputs(model, dataset, config):
    """One batch of a generator the user builds (it reads the model module's targets, patched or
    not, when it runs), and the model's outputs on it."""
    inputs, _ = DataGenerator(dataset, config, shuffle=False, seed=0)[0]
    keras_model = model.keras_model
    outputs = dict(zip(keras_model.output_names, keras_model(inputs, training=False)))
    return inputs, outputs


@pytest.mark.slow
def test_patched_model_loss_equals_ohem_reference_trains_on_it_and_restore(tmp_path, dataset):
    """One patched model (a build and its traced step are most of the time): its loss on a batch
    equals the NumPy OHEM reference, then train() trains on that loss; after restore(), a newly
    built model and the generator are Matterport's."""
    config = OHEMTiny()
    plain_targets = modellib.build_rpn_targets
    with mrcnn_ohem.patch(config, module=modellib) as handle:
        assert modellib.build_rpn_targets is not plain_targets
        keras.utils.set_random_seed(1)
        model = modellib.MaskRCNN("training", config, str(tmp_path))
        inputs, outputs = batch_and_outputs(model, dataset, config)
        rpn_match = inputs[2]  # input_rpn_match: [batch, anchors, 1]
        logits = outputs["rpn_class_logits"].numpy()
        negatives = (rpn_match == -1).sum(axis=(1, 2))
        # The generator used the OHEM targets: every negative anchor stays a candidate.
        anchors = rpn_match.shape[1]
        assert (negatives > 0.8 * anchors).all(), negatives
        expected = reference.ohem_rpn_loss(rpn_match, logits, 8)
        assert outputs["rpn_class_loss"].numpy() == pytest.approx(expected, rel=1e-4)
        assert expected != pytest.approx(reference.matterport_rpn_loss(rpn_match, logits), rel=1e-3)
        # No validation set: nothing here reads it (the same training losses either way), and
        # test_patch_mining checks a patched model's validation metrics.
        history = model.train(dataset, None, 0.01, 3, "all", verbose=0, seed=1)
    assert not handle.active
    assert modellib.build_rpn_targets is plain_targets

    losses = history.history["rpn_class_loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0], losses
    # The loss trained on was OHEM's: each step kept exactly OHEM_RPN_TOP_K = 8 anchors an image
    # (Matterport's loss keeps all 32 labelled ones), chosen from OHEM's targets (every negative).
    kept = np.add(history.history["ohem_rpn_kept_positives"], history.history["ohem_rpn_kept_negatives"])
    np.testing.assert_allclose(kept, 8.0)
    assert np.all(np.asarray(history.history["ohem_rpn_threshold"]) > 0)

    # After restore, a newly built model and the generator are Matterport's again.
    model = modellib.MaskRCNN("training", config, str(tmp_path))
    inputs, outputs = batch_and_outputs(model, dataset, config)
    rpn_match = inputs[2]
    assert ((rpn_match != 0).sum(axis=(1, 2)) == config.RPN_TRAIN_ANCHORS_PER_IMAGE).all()
    expected = reference.matterport_rpn_loss(rpn_match, outputs["rpn_class_logits"].numpy())
    assert outputs["rpn_class_loss"].numpy() == pytest.approx(expected, rel=1e-4)
