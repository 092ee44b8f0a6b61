"""What a patch of the bundled model module reaches, through the paths users take.

Matterport's generator looks ``build_rpn_targets`` and ``load_image_gt`` up on the model module
when it runs, so ``mrcnn_ohem.patch(config, module=modellib)`` must reach
``modellib.data_generator``, a ``modellib.DataGenerator`` the user builds and ``MaskRCNN.train``.
A training ``MaskRCNN`` binds its targets when it is built, with its losses: a model built inside
a ``with patch(...)`` block trains on OHEM targets after the block, and a model built before a
patch trains on Matterport's with a warning. Seeded generators give the same batches whatever
order they are read in, with and without the patch.
"""
from __future__ import annotations

import logging

import numpy as np
import pytest
from helpers import TinyModelConfig, random_shapes

import mrcnn_ohem
from mrcnn_ohem.core.matching import match_anchors
from mrcnn_ohem.maskrcnn import model as modellib

#: Anchors of a TinyModelConfig image (64 px, five levels, three ratios): 768 + 192 + 48 + 12 + 3.
ANCHORS = 1023


class OHEMWide(mrcnn_ohem.OHEMConfigMixin, TinyModelConfig):
    """Keeps 100 anchors an image: more than Matterport's random targets hold (at most
    RPN_TRAIN_ANCHORS_PER_IMAGE = 32 labelled), fewer than OHEM's (every negative)."""

    NAME = "ohemwide"
    OHEM_RPN_TOP_K = 100
    STEPS_PER_EPOCH = 1
    VALIDATION_STEPS = 1


@pytest.fixture(scope="module")
def dataset():
    return random_shapes(4, seed=3)


def _labelled(rpn_match: np.ndarray) -> np.ndarray:
    """[batch] anchors labelled positive or negative, from rpn_match [batch, anchors, 1]."""
    return (rpn_match != 0).sum(axis=(1, 2))


def _all_negatives(dataset, config, inputs) -> np.ndarray:
    """[batch] negatives by Matterport's labelling rules, before any sampling."""
    anchors = modellib.DataGenerator(dataset, config, shuffle=False).anchors
    counts = []
    for class_ids, boxes in zip(inputs[4], inputs[5]):
        real = class_ids != 0
        counts.append(int((match_anchors(anchors, class_ids[real], boxes[real]).rpn_match == -1).sum()))
    return np.array(counts)


@pytest.mark.parametrize("build", ["data_generator", "DataGenerator"])
def test_patch_reaches_the_generators_users_build(dataset, build):
    config = OHEMWide()

    def first_batch():
        if build == "data_generator":
            return next(modellib.data_generator(dataset, config, shuffle=False, batch_size=2))[0]
        return modellib.DataGenerator(dataset, config, shuffle=False)[0][0]

    np.random.seed(0)
    plain = first_batch()
    assert (_labelled(plain[2]) <= config.RPN_TRAIN_ANCHORS_PER_IMAGE).all()
    with mrcnn_ohem.patch(config, module=modellib):
        patched = first_batch()
        generator = modellib.DataGenerator(dataset, config)
        assert generator.build_rpn_targets is modellib.build_rpn_targets
    # Every negative of Matterport's labelling is kept for OHEM to rank.
    np.testing.assert_array_equal((patched[2] == -1).sum(axis=(1, 2)), _all_negatives(dataset, config, patched))
    assert (_labelled(patched[2]) > 10 * config.RPN_TRAIN_ANCHORS_PER_IMAGE).all()
    np.testing.assert_array_equal(patched[0], plain[0])  # the same images
    # A generator built inside the block follows the module once the patch is gone.
    assert (_labelled(generator[0][0][2]) <= config.RPN_TRAIN_ANCHORS_PER_IMAGE).all()


def test_a_generator_built_before_the_patch_follows_it(dataset):
    config = OHEMWide()
    generator = modellib.DataGenerator(dataset, config, shuffle=False)
    with mrcnn_ohem.patch(config, module=modellib):
        inputs = generator[0][0]
    assert (_labelled(inputs[2]) > 10 * config.RPN_TRAIN_ANCHORS_PER_IMAGE).all()


def test_functions_handed_to_a_generator_win_over_the_module(dataset):
    config = OHEMWide()
    plain = modellib.build_rpn_targets
    generator = modellib.DataGenerator(dataset, config, shuffle=False, build_rpn_targets=plain)
    with mrcnn_ohem.patch(config, module=modellib):
        assert generator.build_rpn_targets is plain
        inputs = generator[0][0]
    assert (_labelled(inputs[2]) <= config.RPN_TRAIN_ANCHORS_PER_IMAGE).all()


@pytest.mark.parametrize("patched", [False, True], ids=["plain", "ohem"])
def test_seeded_generators_give_the_same_batches_in_any_order(dataset, patched):
    """Same seed, batches read in opposite orders and across an epoch: equal inputs and targets.

    Matterport's draws (RPN subsampling, the negative pool, random RoIs) come from the global
    NumPy generator; reading the batches in another order, as loader threads do, would change
    them.
    """
    class Pooled(OHEMWide):
        OHEM_RPN_NEGATIVE_POOL = 50  # a random pool: one more seeded draw

    config = Pooled()
    handle = mrcnn_ohem.patch(config, module=modellib) if patched else None
    try:
        def read(order):
            generator = modellib.DataGenerator(dataset, config, seed=11, random_rois=8)
            batches = {}
            np.random.seed(0)  # the same global stream, reached in another order
            for epoch in range(2):
                for idx in order:
                    batches[epoch, idx] = generator[idx][0]
                generator.on_epoch_end()
            return batches

        forward, backward = read([0, 1]), read([1, 0])
        different = modellib.DataGenerator(dataset, config, seed=12, random_rois=8)[0][0]
    finally:
        if handle is not None:
            handle.restore()
    for key, inputs in forward.items():
        for a, b in zip(inputs, backward[key]):
            np.testing.assert_array_equal(a, b)
    # The draws are random all the same: another seed, or the next epoch, draws other anchors.
    assert not np.array_equal(forward[0, 0][2], different[2]) or not np.array_equal(forward[0, 0][7], different[7])
    assert not np.array_equal(forward[0, 0][7], forward[1, 0][7]) or not np.array_equal(
        forward[0, 0][0], forward[1, 0][0])


def test_seeded_flips_of_data_generator_repeat(dataset):
    config = OHEMWide()

    def batches(seed):
        stream = modellib.data_generator(dataset, config, shuffle=False, batch_size=4, augment=True, seed=seed)
        np.random.seed(seed + 100)
        return [next(stream)[0][0] for _ in range(3)]

    first, again, other = batches(1), batches(1), batches(2)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert any(not np.array_equal(a, b) for a, b in zip(first, other))


def _kept_negatives(history) -> float:
    return float(history.history["ohem_rpn_kept_negatives"][-1])


@pytest.mark.slow
def test_model_built_in_a_with_block_trains_on_ohem_targets_after_it(tmp_path, dataset, caplog):
    """Loss and targets are bound together, when the model is built.

    The 100 kept anchors an image need OHEM's targets: Matterport's label at most 32, so the
    OHEM loss on them would keep 32 or fewer (defect 4 of the circulated snippet).
    """
    config = OHEMWide()
    with mrcnn_ohem.patch(config, module=modellib):
        model = modellib.MaskRCNN("training", config, str(tmp_path))
    assert modellib.build_rpn_targets.__module__ == "mrcnn_ohem.maskrcnn.targets"  # restored
    with caplog.at_level(logging.WARNING, logger="mrcnn_ohem"):
        history = model.train(dataset, None, 0.001, epochs=1, layers="heads", verbose=0, seed=0)
    assert _kept_negatives(history) > config.RPN_TRAIN_ANCHORS_PER_IMAGE
    assert "changed after this model was built" in caplog.text  # the module was restored since


@pytest.mark.slow
def test_model_built_before_a_patch_keeps_matterport_and_warns(tmp_path, dataset, caplog):
    config = OHEMWide()
    model = modellib.MaskRCNN("training", config, str(tmp_path))
    with mrcnn_ohem.patch(config, module=modellib), caplog.at_level(logging.WARNING, logger="mrcnn_ohem"):
        history = model.train(dataset, None, 0.001, epochs=1, layers="heads", verbose=0, seed=0)
    assert "train(): build_rpn_targets on mrcnn_ohem.maskrcnn.model changed after this model was built" in caplog.text
    assert "ohem_rpn_kept_negatives" not in history.history  # the plain loss, as built
