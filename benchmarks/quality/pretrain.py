"""The checkpoint every fine-tune starts from: the plain (baseline) model trained on the shapes.

Run from the repo root::

    python -m benchmarks.quality.pretrain            # train (or find) it; prints its key and AP50
    python -m benchmarks.quality.pretrain --check    # only say whether it is there for this code
    python -m benchmarks.quality.pretrain --ship     # also copy it into benchmarks/checkpoints/

The fine-tuning regime of :mod:`benchmarks.quality` (issue 28) asks what OHEM changes in a
detector that already works. This command makes that detector once, with Matterport's plain
loss (the ``baseline`` variant), at the quality benchmark's image size and budget otherwise
(:data:`PRETRAIN`), seeded: :data:`WEIGHTS_SEED` draws the initial weights, the data order and
the graph's RoI sampling, and :data:`TRAIN_SEED` the training images (a set of their own,
apart from the validation seed and from the fine-tunes' seeds 0, 1, ...). The learning rate
drops tenfold for the last :data:`LOW_LR_FRACTION` of the steps. (Measured on the way there,
2026-12-06: bbox AP50 0.26 on 100 validation images after 1000 steps at lr 0.02.)

Run it from a checkout nobody edits while it trains: tf.function's autograph reads a layer's
source from disk when it first converts it, so a file changed mid-run can mix two versions.

The checkpoint is keyed by everything it depends on (:func:`checkpoint_key`): the budget, every
upper-case attribute of the run's ``Config``, the generator's parameters, both seeds, the
package, TensorFlow and tf-keras versions, and the code of the modules that build, feed and
train the model (docstrings and comments left out, so that an edit of prose keeps the key). It
is looked for first in ``benchmarks/checkpoints/`` (the copy shipped in the repo) and then in
the cache folder ``.cache/checkpoints/`` (gitignored), and written to the cache when trained.
A key that matches no file means the code or the settings changed since the file was made:
the caller rebuilds it (``python -m benchmarks.quality.pretrain``) instead of fine-tuning from
weights that another model made.
"""
from __future__ import annotations

import argparse
import ast
import hashlib
import inspect
import json
import logging
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.quality.variants import FULL, REPO, Budget

logger = logging.getLogger("pretrain")

#: The pretraining budget: the benchmark's 128 px shapes, tiny backbone, 2 images a step, lr
#: 0.02, with more images and steps than a from-scratch benchmark run (600 steps, 400 images).
PRETRAIN = replace(FULL, steps=6000, train_images=4000, val_images=300, probes=0)
#: Seeds the initial weights, the data order and TensorFlow's random ops.
WEIGHTS_SEED = 0
#: The training images' generator seed (the validation seed is ``Budget.val_seed``, 10 000).
TRAIN_SEED = 20_000
#: The last fraction of the steps runs at a tenth of the learning rate.
LOW_LR_FRACTION = 0.25
#: Steps between two evaluations of the learning curve.
EVAL_EVERY = 1500
#: Validation images of each point of the learning curve (the final score uses all of them).
CURVE_IMAGES = 100
#: The bbox AP50 the checkpoint must reach on ``PRETRAIN.val_images`` validation images.
TARGET_AP50 = 0.6
SHIPPED_DIR = REPO / "benchmarks" / "checkpoints"
CACHE_DIR = REPO / ".cache" / "checkpoints"
#: Modules whose code shapes the weights: the model graph, the data and targets, the training loop.
#: (The run config's code is not listed: every value it produces is hashed instead.)
CODE_FILES = tuple(
    [f"mrcnn_ohem/maskrcnn/{m}.py" for m in ("anchors", "backbone", "config", "data", "dataset", "heads",
                                              "layers", "losses", "model", "targets", "training", "utils")]
    + [f"mrcnn_ohem/core/{m}.py" for m in ("boxes", "matching", "selection")]
    + ["mrcnn_ohem/datasets/shapes.py"])
#: Calls whose text arguments are messages, not computation (left out of the code digest).
MESSAGE_CALLS = frozenset({"debug", "info", "warning", "error", "exception", "warn", "log", "print"})


############################################################
#  The key
############################################################


def code_digest(source: str) -> str:
    """SHA-256 of Python source without its prose: docstrings, comments, message texts and types.

    The text of ``raise`` statements and of logging, warning and print calls is replaced by a
    placeholder, so that rewording an error keeps the digest while any change to what the code
    computes changes it. Type hints compute nothing either: ``from __future__`` imports are left
    out, function annotations dropped, and a variable annotation (which may declare a
    ``NamedTuple`` or dataclass field) becomes a placeholder, so the field still counts.

    Args:
        source: the text of a module or of a top-level function.

    Returns:
        64 hex digits.
    """
    tree = ast.parse(source)
    tree.body = [node for node in tree.body if not (isinstance(node, ast.ImportFrom) and node.module == "__future__")]
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            node.returns = None
            arguments = node.args
            for argument in [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs,
                             *(a for a in (arguments.vararg, arguments.kwarg) if a is not None)]:
                argument.annotation = None
        elif isinstance(node, ast.AnnAssign):
            node.annotation = ast.Constant("<annotation>")
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
        messages = []
        if isinstance(node, ast.Raise) and node.exc is not None:
            messages = [node.exc]
        elif isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            messages = node.args + [k.value for k in node.keywords] if name in MESSAGE_CALLS else []
        for message in messages:
            for part in ast.walk(message):
                if isinstance(part, ast.Constant) and isinstance(part.value, str):
                    part.value = "<message>"
                elif isinstance(part, ast.JoinedStr):
                    part.values = []
    return hashlib.sha256(ast.dump(tree, include_attributes=False).encode()).hexdigest()


def config_values(config: Any) -> dict[str, Any]:
    """Every upper-case attribute of a ``Config``, as JSON-ready values (arrays as lists)."""
    def plain(value: Any) -> Any:
        if isinstance(value, (np.ndarray, np.generic, tuple, list)):
            return np.asarray(value).tolist()
        return value if isinstance(value, (int, float, str, bool, type(None))) else repr(value)

    return {name: plain(getattr(config, name)) for name in sorted(dir(config)) if name.isupper()}


def key_inputs(budget: Budget = PRETRAIN, weights_seed: int = WEIGHTS_SEED, train_seed: int = TRAIN_SEED
               ) -> dict[str, Any]:
    """What :func:`checkpoint_key` hashes: settings, seeds, versions and code digests."""
    import tensorflow as tf

    import mrcnn_ohem
    from benchmarks.quality.variants import make_config
    from mrcnn_ohem._compat import import_tf_keras
    from mrcnn_ohem.datasets.shapes import CLASS_NAMES

    config = make_config("baseline", budget, len(CLASS_NAMES) + 1, "training")
    return {
        "budget": asdict(budget), "config": config_values(config),
        "generator": {"seed": train_seed, "count": budget.train_images, "size": budget.image_size,
                      "max_targets": budget.max_targets, "max_distractors": budget.max_distractors},
        "weights_seed": weights_seed, "low_lr_fraction": LOW_LR_FRACTION,
        "versions": {"mrcnn_ohem": mrcnn_ohem.__version__, "tensorflow": tf.__version__,
                     "tf_keras": import_tf_keras().__version__},
        "code": {**{path: code_digest((REPO / path).read_text(encoding="utf-8")) for path in CODE_FILES},
                 "pretrain.train_checkpoint": code_digest(inspect.getsource(train_checkpoint))},
    }


def checkpoint_key(budget: Budget = PRETRAIN, weights_seed: int = WEIGHTS_SEED, train_seed: int = TRAIN_SEED) -> str:
    """12 hex digits naming the checkpoint made with these settings by this code."""
    text = json.dumps(key_inputs(budget, weights_seed, train_seed), sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def checkpoint_name(key: str) -> str:
    """``shapes_<key>.h5``."""
    return f"shapes_{key}.h5"


def find_checkpoint(key: str | None = None) -> Path | None:
    """The shipped or cached checkpoint of ``key`` (default: this code's key), or None."""
    key = key or checkpoint_key()
    for folder in (SHIPPED_DIR, CACHE_DIR):
        path = folder / checkpoint_name(key)
        if path.is_file():
            return path
    return None


def find_earlier_checkpoint(inputs: dict[str, Any] | None = None) -> tuple[Path, str] | None:
    """A shipped or cached checkpoint made with this code's settings but earlier model code.

    Its recorded inputs (the ``.json`` beside it) equal this code's in everything but the code
    digests and the package version: the same budget, config values, seeds, generator and
    TensorFlow / tf-keras, so its weights fit this model by name, while the code that trained them
    may have computed something else. The demo starts from it, saying so; the benchmark does not.

    Returns:
        (the ``.h5`` path, its key), the newest such file first, or None.
    """
    inputs = inputs or key_inputs()

    def comparable(record: dict[str, Any]) -> dict[str, Any]:
        versions = {k: v for k, v in record.get("versions", {}).items() if k != "mrcnn_ohem"}
        # A setting added since, at None (its default, e.g. MIXED_PRECISION), changes nothing.
        config = {k: v for k, v in record.get("config", {}).items() if v is not None}
        rest = {k: v for k, v in record.items() if k not in ("code", "versions", "config")}
        return {**rest, "config": config, "versions": versions}

    wanted = json.loads(json.dumps(comparable(inputs), sort_keys=True, default=str))
    found = []
    for folder in (SHIPPED_DIR, CACHE_DIR):
        for record_path in folder.glob("shapes_*.json"):
            record = json.loads(record_path.read_text())
            weights = record_path.with_suffix(".h5")
            if weights.is_file() and comparable(record.get("inputs", {})) == wanted:
                found.append((weights.stat().st_mtime, weights, record.get("key", weights.stem[7:])))
    return (max(found)[1], max(found)[2]) if found else None


def rebuild_command() -> str:
    """The command that makes the checkpoint for this code."""
    return "python -m benchmarks.quality.pretrain"


############################################################
#  Training
############################################################


def evaluate_checkpoint(path: str | Path, budget: Budget, val_dir: Path, images: int | None = None,
                        model: Any = None) -> tuple[dict[str, float], Any]:
    """Score weights on the first ``images`` validation images (all by default).

    Returns:
        (the :func:`~benchmarks.quality.metrics.evaluate_run` metrics, the inference model, to
        hand back in for the next call).
    """
    from benchmarks.quality.metrics import evaluate_run
    from benchmarks.quality.variants import make_config
    from mrcnn_ohem.datasets.coco import CocoDataset
    from mrcnn_ohem.maskrcnn import model as modellib

    dataset = CocoDataset()
    coco = dataset.load_coco(str(val_dir), "val", return_coco=True, limit=images)
    dataset.prepare()
    if model is None:
        config = make_config("baseline", budget, dataset.num_classes, "inference")
        model = modellib.MaskRCNN("inference", config, model_dir=str(Path(path).parent))
    model.load_weights(str(path), by_name=True)
    return evaluate_run(model, dataset, coco, budget, distractors=True), model


def train_checkpoint(budget: Budget, weights_seed: int, train_seed: int, out: Path, val_dir: Path,
                     eval_every: int, curve_images: int) -> dict[str, Any]:
    """Train the baseline from random weights; evaluate every ``eval_every`` steps.

    Args:
        budget: steps, images, size and learning rate (``budget.steps`` a multiple of ``eval_every``).
        weights_seed: ``keras.utils.set_random_seed`` and the data order.
        train_seed: the training images' generator seed.
        out: run folder (Matterport's checkpoints, one per ``eval_every`` steps).
        val_dir: the validation COCO folder.
        eval_every: steps per epoch (one checkpoint and one point of the curve each).
        curve_images: validation images per point of the curve.

    Returns:
        ``{"checkpoint", "curve": [{"step", "bbox_AP50", "AR100", ...}], "seconds_per_step",
        "train_seconds"}``.
    """
    from benchmarks.quality.runs import step_recorder
    from benchmarks.quality.variants import make_config
    from mrcnn_ohem._compat import import_tf_keras
    from mrcnn_ohem.datasets.shapes import ShapesDataset
    from mrcnn_ohem.maskrcnn import model as modellib

    keras = import_tf_keras()
    keras.backend.clear_session()
    keras.utils.set_random_seed(weights_seed)
    dataset = ShapesDataset()
    dataset.load_shapes(budget.train_images, budget.image_size, budget.image_size, seed=train_seed,
                        max_targets=budget.max_targets, max_distractors=budget.max_distractors)
    dataset.prepare()
    config = make_config("baseline", replace(budget, steps=eval_every), dataset.num_classes, "training")
    model = modellib.MaskRCNN("training", config, model_dir=str(out))
    epochs = budget.steps // eval_every
    high = epochs - max(1, round(epochs * LOW_LR_FRACTION))
    curve: list[dict[str, Any]] = []
    scorer = {"model": None}

    class Curve(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            path = Path(model.checkpoint_path.format(epoch=epoch + 1))
            metrics, scorer["model"] = evaluate_checkpoint(path, budget, val_dir, curve_images, scorer["model"])
            curve.append({"step": (epoch + 1) * eval_every, **metrics})
            logger.info("step %d: AP50 %.3f, AR@100 %.3f on %d validation images", (epoch + 1) * eval_every,
                        metrics["bbox_AP50"], metrics["AR100"], metrics["eval_images"])

    recorder = step_recorder(budget.steps)
    started = time.perf_counter()
    # Two phases; the second shuffles with another seed so that it does not repeat the first's order.
    for until, rate, seed in ((high, budget.learning_rate, weights_seed),
                              (epochs, budget.learning_rate / 10, weights_seed + 1)):
        if until > model.epoch:
            model.train(dataset, None, learning_rate=rate, epochs=until, layers=budget.layers,
                        custom_callbacks=[recorder, Curve()], verbose=0, seed=seed)
    seconds = [row["seconds"] for row in recorder.steps[5:]]
    return {"checkpoint": model.find_last(), "curve": curve, "seconds_per_step": float(np.median(seconds)),
            "train_seconds": time.perf_counter() - started}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.quality.pretrain",
                                     description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--check", action="store_true", help="print the key and the file, train nothing")
    parser.add_argument("--ship", action="store_true", help="copy the checkpoint into benchmarks/checkpoints/")
    parser.add_argument("--force", action="store_true", help="train even when the checkpoint exists")
    parser.add_argument("--out", type=Path, default=REPO / ".cache" / "pretrain", help="work folder")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Find or train the checkpoint; print its key, path and scores."""
    from mrcnn_ohem._compat import quiet_tensorflow

    quiet_tensorflow()
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    logging.getLogger("mrcnn_ohem").setLevel(logging.WARNING)
    key = checkpoint_key()
    found = find_checkpoint(key)
    print(f"checkpoint key {key}: {found or 'not built for this code and these settings'}", flush=True)
    if args.check:
        return 0 if found else 1
    if found is None or args.force:
        found = build(key, args.out)
    if args.ship and found.parent != SHIPPED_DIR:
        SHIPPED_DIR.mkdir(parents=True, exist_ok=True)
        shutil.copy2(found, SHIPPED_DIR / found.name)
        shutil.copy2(found.with_suffix(".json"), SHIPPED_DIR / found.with_suffix(".json").name)
        print(f"shipped {SHIPPED_DIR / found.name}")
    return 0


def build(key: str, out: Path) -> Path:
    """Train, score on every validation image, and write ``<cache>/shapes_<key>.h5`` and ``.json``."""
    from mrcnn_ohem.datasets.shapes import write_coco_folder

    budget = PRETRAIN
    out.mkdir(parents=True, exist_ok=True)
    val_dir = out / f"val_{budget.image_size}_{budget.val_images}"
    write_coco_folder(val_dir, "val", budget.val_images, budget.image_size, budget.image_size, budget.val_seed,
                      max_targets=budget.max_targets, max_distractors=budget.max_distractors)
    started = time.perf_counter()
    result = train_checkpoint(budget, WEIGHTS_SEED, TRAIN_SEED, out / key, val_dir, EVAL_EVERY, CURVE_IMAGES)
    final, _ = evaluate_checkpoint(result["checkpoint"], budget, val_dir)
    CACHE_DIR.mkdir(parents=True, exist_ok=True)
    path = CACHE_DIR / checkpoint_name(key)
    shutil.copy2(result["checkpoint"], path)
    record = {"key": key, "command": rebuild_command(), "made": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
              "seconds": time.perf_counter() - started, **{k: v for k, v in result.items() if k != "checkpoint"},
              "final": final, "inputs": key_inputs()}
    path.with_suffix(".json").write_text(json.dumps(record, indent=1, default=str))
    print(f"checkpoint {path}: bbox AP50 {final['bbox_AP50']:.3f}, AR@100 {final['AR100']:.3f} on "
          f"{final['eval_images']} validation images; {record['seconds'] / 60:.1f} min, "
          f"{result['seconds_per_step']:.3f} s/step", flush=True)
    if final["bbox_AP50"] < TARGET_AP50:
        logger.warning("AP50 %.3f is below the target %.2f", final["bbox_AP50"], TARGET_AP50)
    return path


if __name__ == "__main__":
    sys.exit(main())
