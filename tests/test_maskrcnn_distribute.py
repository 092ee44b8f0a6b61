"""Tests for mrcnn_ohem.maskrcnn.distribute: TF_CONFIG, sharding, chief-only writing, 2 workers."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
from conftest import TinyConfig

import mrcnn_ohem
from mrcnn_ohem._compat import import_tf_keras
from mrcnn_ohem.maskrcnn import distribute
from mrcnn_ohem.maskrcnn import model as modellib
from mrcnn_ohem.maskrcnn.data import DataGenerator
from mrcnn_ohem.maskrcnn.utils import Dataset
from mrcnn_ohem.maskrcnn.weights import read_h5_weights

keras = import_tf_keras()
REPO = Path(__file__).resolve().parents[1]
LEARNING_RATE = 0.5
RPN_LAYERS = r"rpn\_.*"


class TransposedPair(Dataset):
    """Two 64x64 images, the second the transpose of the first.

    The anchor grid of a square image is symmetric under transposition (ratios 0.5 and 2 swap),
    so both images get the same number of positive anchors: the batch-of-2 RPN losses (means
    over the batch's anchors) then equal the mean of the two per-image losses, which is what
    two replicas averaging their gradients compute.
    """

    def load(self, count: int = 2) -> None:
        self.add_class("shapes", 1, "rectangle")
        self.add_class("shapes", 2, "disc")
        for i in range(count):
            self.add_image("shapes", image_id=i, path=None)

    def load_mask(self, image_id):
        yy, xx = np.mgrid[:64, :64]
        rectangle = (yy >= 10) & (yy < 22) & (xx >= 8) & (xx < 32)
        disc = (yy - 44) ** 2 + (xx - 42) ** 2 <= 64
        masks = np.stack([rectangle, disc], -1)
        if image_id % 2:
            masks = masks.transpose(1, 0, 2)
        return masks, np.array([1, 2], np.int32)

    def load_image(self, image_id):
        masks, _ = self.load_mask(image_id)
        image = np.full((64, 64, 3), 30, np.uint8)
        image[masks[:, :, 0]] = (220, 80, 40)
        image[masks[:, :, 1]] = (40, 200, 90)
        image[:, :, 2] += np.arange(64, dtype=np.uint8)[None, :]  # breaks the symmetry of the pixels
        return image


class StepConfig(mrcnn_ohem.OHEMConfigMixin, TinyConfig):
    """The tiny model, OHEM on, plain SGD (no momentum, no clipping), one step per epoch."""

    NAME = "mwms"
    IMAGES_PER_GPU = 2
    LEARNING_MOMENTUM = 0.0
    GRADIENT_CLIP_NORM = 0
    STEPS_PER_EPOCH = 1


class WorkerConfig(StepConfig):
    IMAGES_PER_GPU = 1  # per replica: two workers x one image = the reference batch of two


def pair() -> TransposedPair:
    dataset = TransposedPair()
    dataset.load()
    dataset.prepare()
    return dataset


def rpn_weights(model) -> dict[str, np.ndarray]:
    rpn = model.keras_model.get_layer("rpn_model")
    return {w.name: w.numpy() for w in rpn.weights}


# ---------------------------------------------------------------------- TF_CONFIG and helpers

def test_tf_config_task_count_counts_chief_and_workers():
    assert distribute.tf_config_task_count({}) == 0
    one = {"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}}
    assert distribute.tf_config_task_count({"TF_CONFIG": json.dumps(one)}) == 1
    three = {"cluster": {"chief": ["a:1"], "worker": ["b:1", "c:1"], "ps": ["d:1"]},
             "task": {"type": "chief", "index": 0}}
    assert distribute.tf_config_task_count({"TF_CONFIG": json.dumps(three)}) == 3
    assert distribute.strategy_from_tf_config({"TF_CONFIG": json.dumps(one)}) is None


def test_tf_config_that_is_not_json_is_rejected():
    with pytest.raises(ValueError, match="TF_CONFIG: expected JSON"):
        distribute.tf_config_task_count({"TF_CONFIG": "worker=a:1"})


def test_without_strategy_or_with_mirrored_this_process_is_chief_and_single_worker():
    assert distribute.is_chief(None)
    assert not distribute.is_multi_worker(None)
    mirrored = tf.distribute.MirroredStrategy(["/cpu:0"])
    assert distribute.is_chief(mirrored)
    assert not distribute.is_multi_worker(mirrored)


def test_data_generator_shards_are_disjoint_and_cover_the_dataset(shapes_dataset, tiny_config):
    shards = [DataGenerator(shapes_dataset, tiny_config, shuffle=True, seed=3, shard_index=i,
                            num_shards=3).image_ids for i in range(3)]
    assert sorted(np.concatenate(shards).tolist()) == sorted(shapes_dataset.image_ids.tolist())
    assert [len(s) for s in shards] == [2, 1, 1]
    assert sorted(shards[0].tolist()) == [0, 3]


def test_data_generator_rejects_bad_and_empty_shards(shapes_dataset, tiny_config):
    with pytest.raises(ValueError, match="shard_index: expected 0 <= shard_index < num_shards=2"):
        DataGenerator(shapes_dataset, tiny_config, shard_index=2, num_shards=2)
    with pytest.raises(ValueError, match="expected at least 5 images, one per shard"):
        DataGenerator(shapes_dataset, tiny_config, shard_index=4, num_shards=5)


def test_sequence_dataset_yields_the_generator_batches_in_order(tiny_config):
    dataset = pair()
    generator = DataGenerator(dataset, tiny_config, shuffle=False, batch_size=1)
    signature = distribute.input_signature(tiny_config)
    data = distribute.sequence_dataset(generator, signature, workers=2)
    elements = list(data.take(3).as_numpy_iterator())  # wraps around after the 2 images
    for element, idx in zip(elements, (0, 1, 0)):
        (inputs,) = element
        expected, _ = generator[idx]
        assert len(inputs) == len(signature) == 7
        for k, (got, want, spec) in enumerate(zip(inputs, expected, signature)):
            assert got.dtype == spec.dtype.as_numpy_dtype
            assert spec.shape.is_compatible_with(got.shape)
            if k not in (2, 3):  # the plain RPN targets sample anchors at random
                np.testing.assert_array_equal(got, want)


# ---------------------------------------------------------------------- two workers

def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def worker_main(logs: str, init: str, out: str) -> None:
    """One worker of the two-worker test (run in a subprocess with TF_CONFIG set)."""
    tf.config.threading.set_intra_op_parallelism_threads(1)
    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    config = WorkerConfig()
    mrcnn_ohem.patch(config, module=modellib)
    model = modellib.MaskRCNN("training", config, logs)  # the strategy comes from TF_CONFIG
    assert isinstance(model.strategy, tf.distribute.MultiWorkerMirroredStrategy)
    assert model.is_chief == (task == 0)
    model.load_weights(init, by_name=True)
    model.train(pair(), None, LEARNING_RATE, 1, RPN_LAYERS, verbose=0, seed=0)
    np.savez(os.path.join(out, f"after_step_{task}.npz"), **rpn_weights(model))
    # Resume the way `--model last` does (find_last, load_weights) once the chief has written
    # its checkpoint: every worker finds the chief's file and the epoch it ends.
    marker = os.path.join(out, "chief_done")
    if model.is_chief:
        Path(marker).touch()
    deadline = time.monotonic() + 60
    while not os.path.exists(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    trained = rpn_weights(model)
    model.load_weights(init, by_name=True)
    last = model.find_last()
    model.load_weights(last, by_name=True)
    assert model.epoch == 1 and model.log_dir == os.path.dirname(last), (model.epoch, last)
    for name, value in rpn_weights(model).items():
        np.testing.assert_array_equal(value, trained[name])
    print("RESUMED", task, os.path.basename(last), model.epoch, flush=True)


@pytest.mark.slow
def test_two_workers_take_the_single_process_step_and_only_the_chief_writes(tmp_path):
    # Single process, batch of both images: the reference step.
    keras.utils.set_random_seed(0)
    dataset = pair()
    init = str(tmp_path / "init.h5")
    with mrcnn_ohem.patch(StepConfig(), module=modellib):
        probe = DataGenerator(dataset, StepConfig(), shuffle=False,
                              build_rpn_targets=modellib.build_rpn_targets)[0][0]
        positives = (probe[2] == 1).sum(axis=(1, 2))
        assert positives[0] == positives[1] <= StepConfig.RPN_TRAIN_ANCHORS_PER_IMAGE // 2
        model = modellib.MaskRCNN("training", StepConfig(), str(tmp_path / "reference"))
        model.keras_model.save_weights(init)
        before = rpn_weights(model)
        model.train(dataset, None, LEARNING_RATE, 1, RPN_LAYERS, verbose=0, seed=0)
        expected = rpn_weights(model)

    # Two worker processes on this machine, one image each.
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    logs, out = tmp_path / "logs", tmp_path / "out"
    out.mkdir()
    code = (f"import sys; sys.path.insert(0, {str(REPO / 'tests')!r}); "
            f"import test_maskrcnn_distribute as t; "
            f"t.worker_main({str(logs)!r}, {init!r}, {str(out)!r})")
    procs = []
    for index in range(2):
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONPATH": str(REPO),
               "TF_CONFIG": json.dumps({"cluster": cluster,
                                        "task": {"type": "worker", "index": index}})}
        procs.append(subprocess.Popen([sys.executable, "-c", code], cwd=REPO, env=env,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    outputs = []
    try:
        for proc in procs:
            outputs.append(proc.communicate(timeout=300))
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    for proc, (stdout, stderr) in zip(procs, outputs):
        assert proc.returncode == 0, stderr[-4000:]
        assert "RESUMED" in stdout and "_0001.h5 1" in stdout, stdout + stderr[-2000:]

    # Both workers hold the reference weights after one step (gradients averaged).
    for task in range(2):
        got = np.load(out / f"after_step_{task}.npz")
        for name, value in expected.items():
            assert np.abs(value - before[name]).max() > 1e-4  # the step moved the weights
            np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=2e-6, err_msg=name)

    # Only the chief wrote: one run folder, its checkpoint and TensorBoard logs.
    runs = [p for p in logs.iterdir()]
    assert len(runs) == 1, runs
    names = sorted(p.name for p in runs[0].iterdir())
    assert names == ["mask_rcnn_mwms_0001.h5", "train"], names
    stored = read_h5_weights(str(runs[0] / "mask_rcnn_mwms_0001.h5"))["rpn_model"]
    for (name, value), saved in zip(expected.items(), stored):
        np.testing.assert_allclose(saved, value, rtol=1e-4, atol=2e-6, err_msg=name)
