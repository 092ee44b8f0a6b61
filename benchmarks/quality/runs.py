"""Running the benchmark: one (variant, seed) run, the side-by-side step timing, the schedule.

Every run is seeded through Python, NumPy and TensorFlow (``keras.utils.set_random_seed``; in one
process, TensorFlow once per seed, see :func:`seed_initial_weights`), the
data generator's shuffling (``MaskRCNN.train(seed=)``) and the training set's generator seed.
By default each run is its own subprocess (``python -m benchmarks.quality --worker SPEC``:
fresh TensorFlow state, fair timing); ``in_process`` runs them one after another in this
process (used by ``--quick`` and the demo), where, within one :func:`run_suite`, a variant's
later seeds reuse the graphs its first seed built and traced (:func:`_training_model`,
:func:`_inference_model`). Runs are
interleaved, seed 0 of every variant, then seed 1, ..., so a drift in machine load spreads over
the variants.
"""
from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import random
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.quality import mining
from benchmarks.quality.metrics import evaluate_run
from benchmarks.quality.variants import CLASS_HEADS, COCO_CLASSES, REPO, VARIANTS, WARMUP_STEPS, Budget, make_config
from mrcnn_ohem._compat import graph_optimizations_off  # noqa: F401  (the runs' switch; cli and demo use it)

############################################################
#  Pieces of one run
############################################################


def step_recorder(total_steps: int) -> Any:
    """The runner's :class:`~mrcnn_ohem.runner.callbacks.StepRecorder`, printing a line every 100 steps.

    Each row of ``.steps`` is one step's own values (wall time and every numeric log entry: the
    five losses, and the OHEM selection counts ``ohem_rpn_kept_*`` when the training loop reports
    them), recovered from the running means tf-keras logs. No progress bar: a run's output may be
    a log file.
    """
    from mrcnn_ohem.runner.callbacks import StepRecorder

    class ProgressRecorder(StepRecorder):
        def on_train_batch_end(self, batch, logs=None):
            super().on_train_batch_end(batch, logs)
            if len(self.steps) % 100 == 0:
                row = self.steps[-1]
                print(f"step {len(self.steps)}: loss {row.get('loss', math.nan):.3f}, {row['seconds']:.3f} s",
                      flush=True)

    return ProgressRecorder(total_steps, show=False)


class Installed:
    """Context manager installing the run's RPN loss/targets on the model module.

    OHEM variants go through ``mrcnn_ohem.patch`` (kept for the whole training: the data
    generator calls ``build_rpn_targets`` at step time). The snippet replaces
    ``rpn_class_loss_graph`` only while the graph is built (the loss is looked up at build
    time); call :meth:`built` once the model exists.
    """

    def __init__(self, variant: str, config: Any, module: Any):
        self.variant, self.config, self.module = VARIANTS[variant], config, module
        self.handle = None
        self._original = None

    def __enter__(self) -> Installed:
        import mrcnn_ohem

        if self.variant.ohem:
            self.handle = mrcnn_ohem.patch(self.config, module=self.module)
        elif self.variant.snippet:
            from benchmarks.snippet import circulated_rpn_class_loss

            k = int(self.config.RPN_TRAIN_ANCHORS_PER_IMAGE)
            self._original = self.module.rpn_class_loss_graph

            def snippet_rpn_class_loss_graph(rpn_match, rpn_class_logits):
                return circulated_rpn_class_loss(rpn_match, rpn_class_logits, k)

            self.module.rpn_class_loss_graph = snippet_rpn_class_loss_graph
        return self

    def built(self) -> None:
        """The graph exists: put the snippet's module attribute back."""
        if self._original is not None:
            self.module.rpn_class_loss_graph = self._original
            self._original = None

    def __exit__(self, *exc) -> bool:
        self.built()
        if self.handle is not None:
            self.handle.restore()
        return False


def load_train_set(spec: dict, budget: Budget, seed: int) -> Any:
    """The run's prepared training ``Dataset``: generated shapes, or a COCO-format folder."""
    if spec["dataset"] == "shapes":
        from mrcnn_ohem.datasets.shapes import ShapesDataset

        dataset = ShapesDataset()
        dataset.load_shapes(budget.train_images, budget.image_size, budget.image_size, seed=seed,
                            max_targets=budget.max_targets, max_distractors=budget.max_distractors)
    else:
        dataset = _coco_subset(spec, "train", budget.train_images or None)[0]
    dataset.prepare()
    return dataset


def load_eval_set(spec: dict, budget: Budget) -> tuple[Any, Any]:
    """(CocoDataset, COCO) of the run's evaluation images."""
    if spec["dataset"] == "shapes":
        from mrcnn_ohem.datasets.coco import CocoDataset

        dataset = CocoDataset()
        coco = dataset.load_coco(spec["val_dir"], "val", return_coco=True)
    else:
        dataset, coco = _coco_subset(spec, "val", budget.val_images or None)
    dataset.prepare()
    return dataset, coco


def _coco_subset(spec: dict, subset: str, limit: int | None) -> tuple[Any, Any]:
    from mrcnn_ohem.datasets.coco import CocoDataset
    from mrcnn_ohem.runner.train_eval import class_tokens

    class_ids, class_names = class_tokens(spec.get("classes") or list(COCO_CLASSES))
    dataset = CocoDataset()
    coco = dataset.load_coco(spec["data_dir"], subset, class_ids=class_ids, class_names=class_names,
                             limit=limit, return_coco=True)
    return dataset, coco


def load_start_weights(model: Any, path: str, dataset: Any, coco: Any) -> str:
    """Load Matterport weights for a fine-tune; return how the class heads were handled.

    With class-head surgery (``load_weights(..., class_indices=)``, the fine-tune issue) the heads
    keep the rows of the loaded classes: index ``1 + rank of the COCO category id`` among the
    file's 80 categories, background 0. Without it the class-specific heads are left out.
    """
    import inspect

    if "class_indices" in inspect.signature(model.load_weights).parameters:
        ranks = sorted(int(c) for c in coco.cats)
        indices = [0] + [1 + ranks.index(int(info["id"])) for info in dataset.class_info[1:]]
        model.load_weights(path, by_name=True, class_indices=indices)
        return f"class heads sliced to COCO indices {indices}"
    model.load_weights(path, by_name=True, exclude=list(CLASS_HEADS))
    return "class heads left out (no class-head surgery in this checkout)"


def _probe_steps(budget: Budget) -> list[int]:
    if budget.probes <= 0:
        return []
    return sorted({max(1, round(budget.steps * (i + 1) / budget.probes)) for i in range(budget.probes)})


############################################################
#  One run
############################################################


def run_worker(spec: dict, shared: dict[str, dict] | None = None) -> dict:
    """Train and evaluate one (variant, seed); the body of a benchmark subprocess.

    Args:
        spec: ``{"variant", "seed", "budget", "dataset" ("shapes", "coco" or "real"), "val_dir",
            "data_dir", "classes", "weights", "init", "model_dir"}``; ``init`` is a checkpoint of
            this very model (the fine-tuning regime's start, loaded by layer name).
        shared: runs in one process share their models and each seed's initial weights through
            ``shared["training"]``, ``shared["initial"]`` and ``shared["inference"]`` (see
            :func:`_training_model` and :func:`_inference_model`), so a later run skips building
            and tracing the graphs again. None builds fresh ones.

    Returns:
        ``{"variant", "seed", "dataset", "status" ("ok" or "crashed"), "error", "steps_done",
        "metrics", "history", "mining", "seconds", "load_average"}``.
    """
    from mrcnn_ohem._compat import import_tf_keras
    from mrcnn_ohem.maskrcnn import model as modellib

    keras = import_tf_keras()
    started = time.perf_counter()
    variant, seed, budget = spec["variant"], int(spec["seed"]), Budget(**spec["budget"])
    if shared is None:
        keras.backend.clear_session()
        keras.utils.set_random_seed(seed)  # Python random, NumPy, TensorFlow
    else:
        # Neither clear_session nor tf.random.set_seed: both drop the kernels of the shared
        # graphs, ~3 s more for each run's first step. TensorFlow's seed served to build the
        # seed's initial weights (seed_initial_weights); Python and NumPy are seeded here.
        keras.backend.reset_uids()  # auto-named layers are named as in a fresh session
        random.seed(seed)
        np.random.seed(seed)
    train_set = load_train_set(spec, budget, seed)
    config = make_config(variant, budget, train_set.num_classes, "training")
    recorder = step_recorder(budget.steps)
    result = {"variant": variant, "seed": seed, "dataset": spec["dataset"], "status": "ok", "error": None}
    load_before = os.getloadavg()[0]
    probe = None
    try:
        with Installed(variant, config, modellib) as installed:
            model = _training_model(spec, budget, config, shared)
            installed.built()
            if spec.get("init"):  # the fine-tuning regime: every variant starts from this checkpoint
                model.load_weights(spec["init"], by_name=True)
            if spec.get("weights"):
                result["weights"] = load_start_weights(model, spec["weights"], train_set, _coco_subset(
                    spec, "train", 1)[1])
            callbacks = [recorder]
            steps = _probe_steps(budget) if spec["dataset"] == "shapes" else []
            if steps:
                rule = mining.selection_rule(config, snippet=VARIANTS[variant].snippet)
                probe = mining.miner_probe(mining.probe_batch(train_set, config, modellib), config, modellib,
                                           rule, steps)
                callbacks.append(probe)
            model.train(train_set, None, learning_rate=config.LEARNING_RATE, epochs=1, layers=budget.layers,
                        custom_callbacks=callbacks, verbose=0, seed=seed)
    except Exception as err:  # noqa: BLE001 - a crashing variant is a result, not a harness bug
        result.update(status="crashed", error=f"{type(err).__name__}: {str(err).splitlines()[0][:300]}")
    rows = recorder.steps
    steady = [r["seconds"] for r in rows[WARMUP_STEPS:]] or [r["seconds"] for r in rows]
    losses = [r.get("loss", math.nan) for r in rows]
    metrics: dict[str, Any] = {"seconds_per_step": float(np.median(steady)) if steady else math.nan,
                               "last_loss": float(np.mean(losses[-20:])) if losses else math.nan}
    result.update(steps_done=len(rows), history=rows, mining=probe.records if probe else [],
                  train_seconds=time.perf_counter() - started,
                  load_average=[load_before, os.getloadavg()[0]])  # other processes skew s/step
    if result["status"] == "ok":
        checkpoint = model.find_last()
        eval_set, coco = load_eval_set(spec, budget)
        inference = _inference_model(spec, budget, eval_set.num_classes,
                                     None if shared is None else shared["inference"])
        inference.load_weights(checkpoint, by_name=True)
        metrics.update(evaluate_run(inference, eval_set, coco, budget, spec["dataset"] == "shapes"))
        result["checkpoint"] = checkpoint
    result["metrics"] = metrics
    result["seconds"] = time.perf_counter() - started
    return result


def _training_model(spec: dict, budget: Budget, config: Any, shared: dict[str, dict] | None) -> Any:
    """A training ``MaskRCNN`` holding the run's initial weights, from ``shared`` when one was built.

    A run alone (``shared`` None) builds its model under its seed. Runs in one process share:
    ``shared["training"]`` holds the model each variant's first run built, compiled and traced
    (``MaskRCNN.compile`` keeps that traced step when the trainable layers are unchanged, with SGD
    reset as new); ``shared["initial"]`` holds each seed's initial weights, built once under the
    seed by :func:`seed_initial_weights` before the runs (or here, when missing). Every variant of
    a seed starts from those same weights (when its weights have the same names and shapes). The
    run starts as a fresh model would (same weights, data order and optimizer state) but for one
    thing: the graph's random RoI sampling (``tf.random.shuffle`` in the detection-target layer)
    keeps the op seeds drawn when the variant's first seed traced it, and its random stream goes
    on from the variant's earlier runs (re-seeding TensorFlow would drop the shared kernels). An
    in-process run repeats for the same command, not equal to that seed run alone: bit for bit
    with ``tf.config.experimental.enable_op_determinism()``, otherwise up to the summation order
    of multi-threaded CPU kernels (measured: the 6th digit of a loss after 2 steps, which longer
    runs amplify). The subprocess mode (default of the full benchmark) runs each in a fresh
    process. Call inside
    the variant's :class:`Installed` (the graph takes its loss from the module).
    """
    from mrcnn_ohem.maskrcnn import model as modellib

    if shared is None:
        return modellib.MaskRCNN("training", config, model_dir=spec["model_dir"])
    key = _model_key(spec, budget, config)
    if key not in shared["training"]:
        shared["training"][key] = modellib.MaskRCNN("training", config, model_dir=spec["model_dir"])
    model = shared["training"][key]
    # Built under this variant's first run's patch: take this run's functions (the same config,
    # so the same computation), or train() would warn that the module changed since the build.
    if hasattr(model, "data_functions"):  # the bundled MaskRCNN (not a test's stand-in)
        model.data_functions = {name: getattr(modellib, name) for name in model.data_functions}
    seed_key = _seed_key(spec, budget, model)
    initial = shared["initial"].get(seed_key)
    if initial is None:  # not built by seed_initial_weights (or other weights): build under the seed now
        from mrcnn_ohem._compat import import_tf_keras

        import_tf_keras().utils.set_random_seed(int(spec["seed"]))
        source = modellib.MaskRCNN("training", config, model_dir=spec["model_dir"])
        initial = shared["initial"][seed_key] = _get_layer_weights(source.keras_model)
    _set_layer_weights(model.keras_model, initial)
    model.model_dir = spec["model_dir"]
    model.set_log_dir()  # checkpoints into this run's folder, from epoch 0
    return model


def _shared_key(spec: dict, budget: Budget, num_classes: int, *parts: Any) -> str:
    """Key of a model or weights shared in one process: data, budget, classes, then ``parts``.

    Training models add the variant, a seed's initial weights add the seed and the weights'
    names and shapes, and inference models add nothing (the variants differ in losses only).
    """
    return json.dumps([spec["dataset"], asdict(budget), int(num_classes), *parts], sort_keys=True)


def _model_key(spec: dict, budget: Budget, config: Any) -> str:
    return _shared_key(spec, budget, config.NUM_CLASSES, spec["variant"])


def _seed_key(spec: dict, budget: Budget, model: Any) -> str:
    # Sorted by name: the RoI-OHEM variants create some head layers in another order, with the
    # same names and shapes (their weights are set by name, see _set_layer_weights).
    signature = sorted((w.name, list(w.shape)) for w in layer_weights(model.keras_model))
    return _shared_key(spec, budget, model.config.NUM_CLASSES, int(spec["seed"]), signature)


def layer_weights(keras_model: Any) -> list[Any]:
    """The model's weights without its metric trackers' variables, in ``keras_model.weights`` order.

    ``keras_model.weights`` also lists the ``total``/``count`` of every running-mean metric, and
    an OHEM model tracks three more (the selection statistics) than the baseline. Those are not
    initial weights: keyed on them, every OHEM variant's seed missed the weights the baseline had
    built and built a model of its own (about 5 s each, and a re-seeding of TensorFlow).
    """
    tracked = {v.ref() for metric in keras_model.metrics for v in metric.variables}
    return [w for w in keras_model.weights if w.ref() not in tracked]


def _get_layer_weights(keras_model: Any) -> list[tuple[str, np.ndarray]]:
    """``(name, value)`` of each of :func:`layer_weights`."""
    return [(w.name, w.numpy()) for w in layer_weights(keras_model)]


def _set_layer_weights(keras_model: Any, values: Sequence[tuple[str, np.ndarray]]) -> None:
    """Assign ``values`` from :func:`_get_layer_weights` by weight name (the variants may create
    layers in different orders).

    Raises:
        ValueError: the names differ from the model's.
    """
    by_name = dict(values)
    weights = layer_weights(keras_model)
    names = {w.name for w in weights}
    if names != set(by_name) or len(names) != len(weights) or len(by_name) != len(values):
        raise ValueError(f"values must name each weight of the model once; missing "
                         f"{sorted(names - set(by_name))[:3]}, extra {sorted(set(by_name) - names)[:3]}.")
    for weight in weights:
        weight.assign(by_name[weight.name])


def seed_initial_weights(specs: Sequence[dict], shared: dict[str, dict]) -> None:
    """Build each seed's initial weights into ``shared["initial"]`` before any run traces a graph.

    One model per seed, built after ``keras.utils.set_random_seed(seed)`` for the seed's first
    spec (the variants differ in losses, not in weights); the first spec's model is also kept as
    its variant's training model. Seeding TensorFlow clears its kernel cache, so doing it here,
    before any graph is traced, spares every run the ~3 s of re-instantiating the kernels of the
    graphs it shares with earlier runs.
    """
    from mrcnn_ohem._compat import import_tf_keras
    from mrcnn_ohem.maskrcnn import model as modellib

    keras = import_tf_keras()
    firsts = {int(spec["seed"]): spec for spec in reversed(specs)}
    for spec in sorted(firsts.values(), key=lambda s: s is not specs[0]):  # the first spec's seed first
        keras.backend.reset_uids()  # auto-named layers are named as in a fresh session
        keras.utils.set_random_seed(int(spec["seed"]))
        budget = Budget(**spec["budget"])
        train_set = load_train_set(spec, budget, int(spec["seed"]))
        config = make_config(spec["variant"], budget, train_set.num_classes, "training")
        with Installed(spec["variant"], config, modellib) as installed:
            model = modellib.MaskRCNN("training", config, model_dir=spec["model_dir"])
            installed.built()
        shared["initial"][_seed_key(spec, budget, model)] = _get_layer_weights(model.keras_model)
        if spec is specs[0]:
            shared["training"][_model_key(spec, budget, config)] = model


def _inference_model(spec: dict, budget: Budget, num_classes: int, shared: dict | None) -> Any:
    """An inference ``MaskRCNN`` for the run's budget, from ``shared`` when one was built."""
    from mrcnn_ohem.maskrcnn import model as modellib

    key = _shared_key(spec, budget, num_classes)
    if shared is not None and key in shared:
        return shared[key]
    config = make_config(spec["variant"], budget, num_classes, "inference")
    model = modellib.MaskRCNN("inference", config, model_dir=spec["model_dir"])
    if shared is not None:
        shared[key] = model
    return model


def paired_step_times(spec: dict, rounds: int = 40, num_batches: int = 8) -> dict:
    """Graph-only step time of every variant, measured side by side in one process.

    Each variant gets its own training model and pre-built batches (made by its own targets);
    then ``rounds`` rounds run one ``train_on_batch`` per variant, in an order that rotates each
    round, so load from other processes hits every variant alike.

    Returns:
        ``{"variant": "timing", "status", "milliseconds": {variant: median ms}, "negatives":
        {variant: negatives labelled in the first batch}, "rounds"}``.
    """
    from mrcnn_ohem._compat import import_tf_keras
    from mrcnn_ohem.datasets.shapes import ShapesDataset
    from mrcnn_ohem.maskrcnn import model as modellib

    import_tf_keras().utils.set_random_seed(0)
    budget, variants = Budget(**spec["budget"]), list(spec["variants"])
    dataset = ShapesDataset()
    dataset.load_shapes(num_batches * budget.batch_size, budget.image_size, budget.image_size, seed=0)
    dataset.prepare()
    models, batches = {}, {}
    for variant in variants:
        config = make_config(variant, budget, dataset.num_classes, "training")
        with Installed(variant, config, modellib) as installed:
            model = modellib.MaskRCNN("training", config, model_dir=spec["model_dir"])
            installed.built()
            # Handed the module's (maybe patched) functions, as MaskRCNN.train does.
            generator = modellib.DataGenerator(dataset, config, shuffle=False, seed=0,
                                               load_image_gt=modellib.load_image_gt,
                                               build_rpn_targets=modellib.build_rpn_targets)
            batches[variant] = [generator[i][0] for i in range(num_batches)]
        model.set_trainable(".*", verbose=0)
        model.compile(config.LEARNING_RATE, config.LEARNING_MOMENTUM)
        for inputs in batches[variant][:WARMUP_STEPS]:
            model.keras_model.train_on_batch(inputs)
        models[variant] = model
    seconds: dict[str, list[float]] = {v: [] for v in variants}
    for r in range(rounds):
        for variant in variants[r % len(variants):] + variants[: r % len(variants)]:
            inputs = batches[variant][r % num_batches]
            tick = time.perf_counter()
            models[variant].keras_model.train_on_batch(inputs)
            seconds[variant].append(time.perf_counter() - tick)
    return {"variant": "timing", "seed": 0, "dataset": "timing", "status": "ok", "error": None, "metrics": {},
            "milliseconds": {v: 1000 * float(np.median(t)) for v, t in seconds.items()},
            "negatives": {v: int((batches[v][0][2] == -1).sum()) for v in variants}, "rounds": rounds,
            "load_average": list(os.getloadavg())}


############################################################
#  Orchestration
############################################################


def worker_main(spec: dict, shared: dict[str, dict] | None = None) -> dict:
    """What ``--worker`` runs: a training run or the timing, per ``spec["dataset"]``."""
    if spec["dataset"] == "timing":
        return paired_step_times(spec, rounds=spec["rounds"])
    return run_worker(spec, shared)


class _NotRetracing(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warning, passes everything else."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


@contextlib.contextmanager
def retracing_warnings_off() -> Iterator[None]:
    """Keep TensorFlow's retracing warning out of an in-process suite (restored on exit).

    Every variant run in one process builds and traces a training step of its own, on purpose;
    after five such traces TensorFlow warns that ``train_function`` is retracing, which is true and
    expected here, and reads like a bug in the output of ``--quick``.
    """
    import tensorflow as tf

    logger, quiet = tf.get_logger(), _NotRetracing()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def spawn(spec: dict, log_path: Path, timeout: float) -> dict:
    """Run :func:`worker_main` in a fresh ``python -m benchmarks.quality --worker`` process."""
    result_path = Path(spec["model_dir"]) / "result.json"
    command = [sys.executable, "-m", "benchmarks.quality", "--worker", json.dumps(spec)]
    env = dict(os.environ, PYTHONHASHSEED=str(spec["seed"]))
    started = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        try:
            code = subprocess.run(command, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  timeout=timeout).returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    if code == 0 and result_path.is_file():
        return json.loads(result_path.read_text())
    return {"variant": spec["variant"], "seed": spec["seed"], "dataset": spec["dataset"], "status": "failed",
            "error": f"worker exit {code}, see {log_path}", "metrics": {},
            "seconds": time.perf_counter() - started}


def run_one(spec: dict, log_path: Path, timeout: float, in_process: bool,
            shared: dict[str, dict] | None = None) -> dict:
    """:func:`worker_main` here (``in_process``, sharing models through ``shared``) or in a subprocess."""
    if not in_process:
        return spawn(spec, log_path, timeout)
    result = worker_main(spec, shared)
    (Path(spec["model_dir"]) / "result.json").write_text(json.dumps(result, indent=1))
    return result


def progress_line(name: str, result: dict) -> str:
    """One printed line per finished run."""
    m = result.get("metrics", {})

    def num(key: str) -> float:
        value = m.get(key)
        return math.nan if value is None else value

    error = f" {result['error']}" if result.get("error") else ""
    return (f"[{time.strftime('%H:%M:%S')}] {name} {result['variant']:12s} seed {result['seed']}: "
            f"{result['status']:7s} AP50 {num('bbox_AP50'):.3f} AR@100 {num('AR100'):.3f} "
            f"FP/img {num('fp_distractors'):.2f} s/step {num('seconds_per_step'):.3f} "
            f"({result.get('seconds', math.nan):.0f} s){error}")


def previous_result(spec: dict) -> dict | None:
    """The finished result in ``spec["model_dir"]`` when it was made by the same spec, else None."""
    path = Path(spec["model_dir"]) / "result.json"
    if not path.is_file():
        return None
    result = json.loads(path.read_text())
    return result if result.get("status") == "ok" and _same_spec(result.get("spec"), spec) else None


def _same_spec(a: dict | None, b: dict) -> bool:
    """Specs equal but for the folder of the start checkpoint (its name carries its key)."""
    def comparable(spec: dict) -> dict:
        return {**spec, "init": Path(spec["init"]).name} if spec.get("init") else spec

    return a is not None and comparable(a) == comparable(b)


def run_suite(name: str, variants: Sequence[str], seeds: Sequence[int], budget: Budget, out: Path,
              timeout: float, extra: dict, in_process: bool = False,
              report: Callable[[str], None] = print, resume: bool = False, run: bool = True,
              shared: dict[str, dict] | None = None) -> list[dict]:
    """All (seed, variant) runs of one dataset, seed-major so load drift hits every variant.

    In process, the runs share their models (training models keyed by variant, dataset, budget
    and class count; inference models by dataset, budget and class count) for this call only, so
    no run depends on what an earlier call left behind. With ``resume``, a run whose folder in
    ``out`` already holds a finished result of the same spec is read back instead of run again,
    so a long design can be run in pieces; ``run=False`` (with ``resume``) only reads back, and
    leaves out the runs that are not there. ``shared``: an empty dict of the caller's, which
    then holds those models after the call (``"training"``, ``"inference"``, ``"initial"``; the
    demo draws its figure with the inference model the runs were evaluated with); None keeps
    them inside the call.
    """
    if shared is None:
        shared = {}
    if shared:
        raise ValueError(f"shared must be an empty dict (a call shares nothing with earlier calls); received keys "
                         f"{sorted(shared)}")
    shared.update(training={}, inference={}, initial={})
    specs = []
    for seed in seeds:
        for variant in variants:
            model_dir = out / f"{name}_{variant}_s{seed}"
            model_dir.mkdir(parents=True, exist_ok=True)
            specs.append({"variant": variant, "seed": int(seed), "budget": asdict(budget), "dataset": name,
                          "model_dir": str(model_dir), **extra})
    runs: list[dict] = []
    with retracing_warnings_off() if in_process else contextlib.nullcontext():
        todo = [spec for spec in specs if not (resume and previous_result(spec))]
        if in_process and todo and run:
            seed_initial_weights(todo, shared)
        for spec in specs:
            result = previous_result(spec) if resume else None
            if result is None and not run:
                continue
            if result is None:
                result = run_one(spec, out / f"{name}_{spec['variant']}_s{spec['seed']}.log", timeout, in_process,
                                 shared)
                result["spec"] = spec  # what previous_result compares
                (Path(spec["model_dir"]) / "result.json").write_text(json.dumps(result, indent=1))
            report(progress_line(name, result))
            runs.append(result)
    return runs
