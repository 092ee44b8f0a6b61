"""Child process of ``tests/test_fork.py``: runs the public Matterport TF2 fork in ``../shared/forks``.

The fork turns eager execution off when ``mrcnn.model`` is imported and needs
``TF_USE_LEGACY_KERAS=1`` before TensorFlow is imported, so it never runs inside the pytest
process. The test starts this script once, with the fork's parent folder on ``PYTHONPATH``, for
one or more modes, run in the order given in one graph (TensorFlow and the fork start once)::

    python tests/fork_child.py forward <settings.json> <out_dir> [patch <settings.json> <out_dir>]

``forward`` comes first: the weights it saves are named as in a fresh graph. (tf-keras' graph-mode
``clear_session`` between the modes leaves ``set_weights`` a placeholder of the old graph.)

``settings.json`` holds ``"config"`` (Config attribute -> value, shared with the bundled model
in the test) and the mode's own entries. The script writes arrays to ``<out_dir>/fork.npz`` and
facts to ``<out_dir>/fork.json``; the test makes every comparison.

What the fork needs on this stack (TensorFlow 2.21, tf-keras, NumPy 2.4, scikit-image 0.26):
``TF_USE_LEGACY_KERAS=1`` and ``distutils`` (setuptools' shim provides it). ``np.bool``, which
the fork's ``utils`` uses, exists again since NumPy 2.0 (an alias of ``np.bool_``), so no
workaround is applied; assigning ``np.bool = bool`` would even break ``numpy.ma``.
"""
from __future__ import annotations

import json
import os
import sys

if os.environ.get("TF_USE_LEGACY_KERAS") != "1":  # the fork's Keras 2 code needs tf-keras
    raise SystemExit("fork_child.py: set TF_USE_LEGACY_KERAS=1 in the environment")

import numpy as np  # noqa: E402


def fork_config(base: type, values: dict) -> object:
    """An instance of a subclass of ``base`` (the fork's ``Config``) with ``values`` set."""
    attributes = {name: tuple(v) if isinstance(v, list) else v for name, v in values.items()}
    return type("ForkTestConfig", (base,), attributes)()


def randomize_weights(keras_model, seed: int) -> None:
    """Give every weight of ``keras_model`` a value drawn from NumPy with ``seed``.

    Kernels Glorot-uniform, biases and BatchNorm betas and means uniform in [-0.1, 0.1],
    BatchNorm gammas and variances uniform in [0.9, 1.1]: every value is exercised, and the
    values do not depend on TensorFlow's initializers or graph seeds.
    """
    rng = np.random.default_rng(seed)
    values = []
    for weight in keras_model.weights:
        shape = tuple(int(d) for d in weight.shape)
        name = weight.name.split("/")[-1].split(":")[0]
        if name in ("kernel", "depthwise_kernel"):
            receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
            fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            values.append(rng.uniform(-limit, limit, shape))
        elif name in ("gamma", "moving_variance"):
            values.append(rng.uniform(0.9, 1.1, shape))
        else:  # bias, beta, moving_mean
            values.append(rng.uniform(-0.1, 0.1, shape))
    keras_model.set_weights([v.astype(np.float32) for v in values])


def save_weights(keras_model, path: str) -> None:
    """``keras_model.save_weights(path)`` (tf-keras' own HDF5 writer), the values read in one session run.

    In graph mode the writer fetches each layer's weights with a ``Session.run`` of its own, and
    every new set of fetches prunes the whole graph again: 131 runs, about 7 of the child's 19 CPU
    seconds. Here every weight is fetched in one run and the writer's reads are answered from it,
    variable by variable; a read of anything else goes to the session as before. The file is the
    same (names, attributes, values).
    """
    from tf_keras.src import backend  # the module the HDF5 writer reads values through

    fetch = backend.batch_get_value
    weights = keras_model.weights
    values = dict(zip((id(w) for w in weights), fetch(weights)))

    def batch_get_value(tensors):
        if all(id(t) in values for t in tensors):
            return [values[id(t)] for t in tensors]
        return fetch(tensors)

    backend.batch_get_value = batch_get_value
    try:
        keras_model.save_weights(path)
    finally:
        backend.batch_get_value = fetch


def run_forward(settings: dict, out_dir: str) -> None:
    """Fork inference model with random weights: save them as ``fork.h5``, then run it.

    Writes ``fork.npz``: the molded images, metas and windows of ``mold_inputs``, the anchors,
    the seven outputs of the inference model on them, and ``detect()``'s results per image.
    """
    from mrcnn import model as modellib
    from mrcnn.config import Config

    config = fork_config(Config, settings["config"])
    model = modellib.MaskRCNN("inference", config, model_dir=out_dir)
    randomize_weights(model.keras_model, settings["seed"])
    save_weights(model.keras_model, os.path.join(out_dir, "fork.h5"))

    images = [np.load(path) for path in settings["images"]]
    molded, metas, windows = model.mold_inputs(images)
    anchors = model.get_anchors(molded[0].shape)
    batch_anchors = np.broadcast_to(anchors, (len(images),) + anchors.shape)
    names = ("detections", "mrcnn_class", "mrcnn_bbox", "mrcnn_mask", "rpn_rois", "rpn_class", "rpn_bbox")
    outputs = model.keras_model.predict([molded, metas, batch_anchors], verbose=0)
    arrays = {"molded": molded, "metas": metas, "windows": windows, "anchors": anchors,
              **dict(zip(names, outputs))}
    for i, result in enumerate(model.detect(images)):
        arrays.update({f"detect{i}_{key}": value for key, value in result.items()})
    np.savez(os.path.join(out_dir, "fork.npz"), **arrays)
    write_json(out_dir, {"layers_with_weights": sorted(
        layer.name for layer in model.keras_model.layers if layer.weights)})


def rectangles_dataset(base: type, specs: list, size: int):
    """A ``base`` (the fork's ``utils.Dataset``) subclass instance of filled rectangles.

    Args:
        specs: per image, a list of ``[class_id, y1, x1, y2, x2]`` (pixels, y2/x2 exclusive).
        size: side of the square images.
    """

    class Rectangles(base):
        def load_image(self, image_id):
            image = np.full((size, size, 3), 40, np.uint8)
            for k, (class_id, y1, x1, y2, x2) in enumerate(specs[image_id]):
                image[y1:y2, x1:x2] = (200, 60 + 60 * class_id, 30 + 50 * k)
            return image

        def load_mask(self, image_id):
            rects = specs[image_id]
            masks = np.zeros((size, size, len(rects)), bool)
            for k, (_, y1, x1, y2, x2) in enumerate(rects):
                masks[y1:y2, x1:x2, k] = True
            return masks, np.array([r[0] for r in rects], np.int32)

    dataset = Rectangles()
    for class_id in range(1, 1 + max(r[0] for image in specs for r in image)):
        dataset.add_class("rectangles", class_id, f"class{class_id}")
    for i in range(len(specs)):
        dataset.add_image("rectangles", image_id=i, path=None)
    dataset.prepare()
    return dataset


def run_patch(settings: dict, out_dir: str) -> None:
    """``mrcnn_ohem.patch(config, module=<fork's mrcnn.model>)``, then the fork's own code path.

    Takes the first batch of the fork's own ``DataGenerator`` (which calls the module's
    ``load_image_gt`` and ``build_rpn_targets``), builds the fork's training model (whose
    ``rpn_class_loss`` Lambda calls the module's ``rpn_class_loss_graph``), evaluates its
    ``rpn_class_logits`` and ``rpn_class_loss`` outputs on that batch, then restores.

    Writes ``fork.npz`` (the batch's ``rpn_match``, ``gt_class_ids``, ``gt_boxes``, the pixel
    anchors, ``rpn_class_logits`` and ``rpn_class_loss``) and ``fork.json`` (which module
    names were replaced, and whether ``restore()`` put back the very same objects).
    """
    import tensorflow as tf
    from mrcnn import model as modellib
    from mrcnn import utils
    from mrcnn.config import Config

    import mrcnn_ohem

    names = ("rpn_class_loss_graph", "build_rpn_targets")
    originals = {name: getattr(modellib, name) for name in names}
    config_class = type("ForkOHEMConfig", (mrcnn_ohem.OHEMConfigMixin, Config),
                        {name: tuple(v) if isinstance(v, list) else v
                         for name, v in settings["config"].items()})
    config = config_class()
    handle = mrcnn_ohem.patch(config, module=modellib)
    replaced = {name: getattr(modellib, name) is not originals[name] for name in names}

    dataset = rectangles_dataset(utils.Dataset, settings["rectangles"], int(config.IMAGE_SHAPE[0]))
    generator = modellib.DataGenerator(dataset, config, shuffle=False)
    inputs, _ = generator[0]
    model = modellib.MaskRCNN("training", config, model_dir=out_dir)
    randomize_weights(model.keras_model, settings["seed"])
    keras_model = model.keras_model
    fetch = tf.compat.v1.keras.backend.function(
        keras_model.inputs, [keras_model.get_layer("rpn_class_logits").output,
                             keras_model.get_layer("rpn_class_loss").output])
    logits, loss = fetch(inputs)
    handle.restore()
    restored = {name: getattr(modellib, name) is originals[name] for name in names}
    np.savez(os.path.join(out_dir, "fork.npz"), rpn_match=inputs[2], gt_class_ids=inputs[4],
             gt_boxes=inputs[5], anchors=generator.anchors, rpn_class_logits=logits,
             rpn_class_loss=np.asarray(loss))
    write_json(out_dir, {"replaced": replaced, "restored": restored,
                         "handle_active_after_restore": handle.active})


def write_json(out_dir: str, facts: dict) -> None:
    with open(os.path.join(out_dir, "fork.json"), "w") as f:
        json.dump(facts, f)


def main(argv: list[str]) -> int:
    if not argv or len(argv) % 3:
        raise SystemExit("usage: fork_child.py MODE SETTINGS OUT_DIR [MODE SETTINGS OUT_DIR ...]")
    for start in range(0, len(argv), 3):
        mode, settings_path, out_dir = argv[start:start + 3]
        with open(settings_path) as f:
            settings = json.load(f)
        {"forward": run_forward, "patch": run_patch}[mode](settings, out_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
