"""The one place for version quirks: the tf-keras import, the supported TensorFlow range and
TensorFlow's start-up log lines.

TensorFlow 2.16+ maps ``tf.keras`` to Keras 3, but Matterport-style graphs (``KL.Lambda``
closures over module-level loss functions, ``add_loss`` on symbolic tensors, ``h5`` weight
files loaded by layer name) need Keras 2. Keras 2 lives on as the ``tf_keras`` package; we
import it explicitly so the code works whether or not ``TF_USE_LEGACY_KERAS`` is set.
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import threading
from collections.abc import Iterator, Sequence

#: The TensorFlow releases this package is tested against (inclusive lower, exclusive upper).
SUPPORTED_TF = ((2, 16), (2, 22))


def _version_tuple(version: str) -> tuple[int, int]:
    """(major, minor) of a version string; the minor is its leading digits ("18rc0" -> 18)."""
    major, minor = version.split(".")[:2]
    return int(major), int(re.match(r"\d*", minor).group() or 0)


def check_tensorflow() -> None:
    """Raise ImportError with a clear message when the installed TensorFlow cannot work."""
    import tensorflow as tf

    found = _version_tuple(tf.__version__)
    low, high = SUPPORTED_TF
    if not low <= found < high:
        raise ImportError(
            f"mrcnn_ohem needs TensorFlow >={low[0]}.{low[1]},<{high[0]}.{high[1]}; "
            f"found {tf.__version__}. Install a supported release, for example "
            f"'pip install \"tensorflow>={low[0]}.{low[1]},<{high[0]}.{high[1]}\" tf-keras'."
        )


def import_tf_keras():
    """Return the Keras 2 module (``tf_keras``) matching the installed TensorFlow.

    Raises:
        ImportError: tf-keras is missing, with the command that installs it.
    """
    import tensorflow as tf

    check_tensorflow()
    try:
        import tf_keras
    except ImportError as err:  # pragma: no cover - exercised only on broken installs
        raise ImportError(
            "mrcnn_ohem's Mask R-CNN needs Keras 2 from the 'tf-keras' package "
            f"(TensorFlow {tf.__version__} maps tf.keras to Keras 3). Install it with "
            f"'pip install \"tf-keras~={tf.__version__.rsplit('.', 1)[0]}.0\"'."
        ) from err
    return tf_keras


# --- TensorFlow's C++ log lines ------------------------------------------------------------------

#: Lines TensorFlow's C++ runtime writes while it is imported and probes for devices, which no
#: user can act on. ``TF_CPP_MIN_LOG_LEVEL`` does not stop those written before absl's
#: ``InitializeLog()`` (the first four), nor an ERROR-level ``cuInit`` failure on a machine
#: without a GPU. Matched anywhere in a line; nothing else is ever dropped.
TF_NOISE = (
    r"All log messages before absl::InitializeLog\(\) is called",
    r"cudart_stub\.cc.*Could not find cuda drivers",
    r"cpu_feature_guard\.cc.*(This TensorFlow binary is optimized|rebuild TensorFlow)",
    r"^To enable the following instructions: .* rebuild TensorFlow with the appropriate",
    r"port\.cc.*oneDNN custom operations are on",
    r"cuda_(platform|executor|driver|diagnostics)\.cc.*(cuInit|UNKNOWN ERROR \(303\)|kernel driver does not appear)",
    r"cuda_(dnn|fft|blas)\.cc.*Unable to register cu(DNN|FFT|BLAS) factory",
    r"computation_placer\.cc.*computation placer already registered",
    r"TF-TRT Warning: Could not find TensorRT",
    # An ERROR line per tf.data pipeline once op determinism is on (op_determinism): TensorFlow's
    # deterministic rewrite of ParallelMapDatasetV2 keeps an attribute MapDataset does not define.
    r"node_def_util\.cc.*NodeDef mentions attribute use_unbounded_threadpool",
)
_QUIET_MARK = "MRCNN_OHEM_QUIET_TF"
_NOISE = re.compile("|".join(f"(?:{pattern})" for pattern in TF_NOISE))


@contextlib.contextmanager
def filter_stderr_fd(patterns: Sequence[str] = TF_NOISE) -> Iterator[None]:
    """Drop lines matching ``patterns`` from file descriptor 2 (C/C++ ``stderr``) for a block.

    Everything written to fd 2 in the block, by Python or by C++, goes through a pipe; a thread
    passes every line that matches none of ``patterns`` on to the real ``stderr`` as it arrives,
    and the block ends only after the last line is passed on. Outside the block fd 2 is untouched.
    """
    noise = _NOISE if tuple(patterns) == TF_NOISE else re.compile(
        "|".join(f"(?:{p})" for p in patterns))
    with contextlib.suppress(Exception):
        sys.stderr.flush()
    try:
        saved = os.dup(2)
    except OSError:  # no fd 2 (e.g. some embedded interpreters): nothing to filter
        yield
        return
    read_end, write_end = os.pipe()

    def forward() -> None:
        with os.fdopen(read_end, "rb") as pipe:
            for line in pipe:
                if not noise.search(line.decode("utf-8", "replace")):
                    os.write(saved, line)

    thread = threading.Thread(target=forward, name="stderr-filter", daemon=True)
    thread.start()
    os.dup2(write_end, 2)
    os.close(write_end)
    try:
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)  # closes the pipe's last write end: the thread reads to EOF
        thread.join()
        os.close(saved)


def _level_is_ours() -> bool:
    """Whether ``TF_CPP_MIN_LOG_LEVEL`` is the one :func:`quiet_tensorflow` set, not the user's."""
    mark = os.environ.get(_QUIET_MARK)
    return mark is not None and mark == os.environ.get("TF_CPP_MIN_LOG_LEVEL")


def quiet_tensorflow(verbose: bool | None = None) -> None:
    """Keep TensorFlow's C++ INFO/WARNING lines and start-up noise out of the terminal.

    Call before TensorFlow is imported (first thing in a command line, notebook or benchmark).
    Unless the user asked for the lines, it sets ``TF_CPP_MIN_LOG_LEVEL=2`` (C++ errors still
    print) and imports TensorFlow and probes its devices inside :func:`filter_stderr_fd`, which
    drops only the known start-up lines (:data:`TF_NOISE`).

    Args:
        verbose: True leaves everything as TensorFlow has it. None: True when ``-v`` or
            ``--verbose`` is on the command line (``sys.argv``).

    The user's own ``TF_CPP_MIN_LOG_LEVEL`` is respected: when it is set, nothing is changed.
    """
    if verbose is None:
        verbose = any(arg in ("-v", "--verbose") for arg in sys.argv[1:])
    if verbose or ("TF_CPP_MIN_LOG_LEVEL" in os.environ and not _level_is_ours()):
        return
    # The mark tells our own subprocesses (benchmarks, notebooks) that the level is ours, not
    # the user's, so they filter their start-up lines too.
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = os.environ[_QUIET_MARK] = "2"
    if "tensorflow" in sys.modules:
        return  # already imported: its start-up lines are out
    with filter_stderr_fd():
        import tensorflow as tf

        tf.config.list_physical_devices()  # the device probe (cuInit) prints here, not later


# --- Keras 2 or Keras 3 ---------------------------------------------------------------------------

#: The values of ``TF_USE_LEGACY_KERAS`` that make TensorFlow route ``tf.keras`` to tf_keras (the
#: spellings TensorFlow 2.16+ itself compares against when it is imported).
LEGACY_KERAS_ON = ("1", "true", "True")

#: The names under which a Matterport-style module holds its Keras (``import tensorflow.keras as
#: keras``, ``KL`` for the layers, ``KE`` for the engine of Keras 2.2, ``KM`` for the models).
KERAS_NAMES = ("keras", "KL", "KE", "KM")


def legacy_keras_requested() -> bool:
    """True when ``TF_USE_LEGACY_KERAS`` is set to a value TensorFlow reads as on."""
    return os.environ.get("TF_USE_LEGACY_KERAS") in LEGACY_KERAS_ON


def tf_keras_is_keras3(tf_version: str | None = None) -> bool:
    """Whether ``tf.keras`` is Keras 3 here: TensorFlow >= 2.16 with ``TF_USE_LEGACY_KERAS`` off.

    TensorFlow reads the variable once, when ``tf.keras`` is first resolved; this reads it now.

    Args:
        tf_version: TensorFlow's version string; None imports TensorFlow and takes its own.
    """
    if tf_version is None:
        import tensorflow as tf

        tf_version = tf.__version__
    return _version_tuple(tf_version) >= (2, 16) and not legacy_keras_requested()


def _keras_origin(value: object) -> str | None:
    """The module that defines ``value``'s Keras classes: for a module, where its ``Layer`` (or
    ``Model``, or ``layers.Layer``) is defined; for a class, its ``__module__``."""
    if isinstance(value, type):
        return value.__module__
    probe = getattr(value, "Layer", None) or getattr(value, "Model", None)
    if probe is None:
        probe = getattr(getattr(value, "layers", None), "Layer", None)
    return probe.__module__ if isinstance(probe, type) else None


def _flavour_of(origin: str) -> str | None:
    root = origin.split(".")[0]
    if root == "tf_keras" or origin.startswith("tensorflow.python.keras"):
        return "tf_keras"
    if root != "keras":
        return None
    version = str(getattr(sys.modules.get("keras"), "__version__", ""))
    return "keras3" if version.split(".")[0] == "3" else "tf_keras"  # Keras 2.x's own package


def keras_names(module: object) -> dict[str, tuple[str, str]]:
    """Which Keras each of ``module``'s :data:`KERAS_NAMES` is.

    Args:
        module: a Matterport-style model module (``mrcnn.model`` of a fork), already imported.

    Returns:
        name -> (flavour, origin) for each name the module defines that is Keras: flavour is
        ``"keras3"`` or ``"tf_keras"`` (Keras 2), origin the module its classes come from
        (``"keras.src.layers.layer"``, ``"tf_keras.src.engine.base_layer"``).
    """
    found = {}
    for name in KERAS_NAMES:
        value = getattr(module, name, None)
        origin = _keras_origin(value) if value is not None else None
        flavour = _flavour_of(origin) if origin else None
        if flavour:
            found[name] = (flavour, origin)
    return found


def keras_flavour(module: object) -> str | None:
    """The Keras that ``module`` was built against, read from its ``keras``/``KL``/``KE``/``KM``.

    A fork that does ``import tensorflow.keras as keras`` gets Keras 3 on TensorFlow 2.16+ unless
    ``TF_USE_LEGACY_KERAS=1`` was set before TensorFlow was imported; its ``KL.Lambda`` layers
    then fail with ``NotImplementedError: ... could not automatically infer the shape of the
    Lambda's output``.

    Args:
        module: the imported model module.

    Returns:
        ``"keras3"`` when any of those names is Keras 3, ``"tf_keras"`` when they are all Keras 2
        (tf_keras), None when the module holds none of them.
    """
    flavours = {flavour for flavour, _ in keras_names(module).values()}
    if "keras3" in flavours:
        return "keras3"
    return "tf_keras" if flavours else None


def check_keras2(module: object) -> None:
    """Raise when ``module`` was built against Keras 3, which Matterport's graph cannot run on.

    Args:
        module: the imported model module that ``patch()`` is about to modify.

    Raises:
        ValueError: the module's ``keras``/``KL``/``KE``/``KM`` are Keras 3 objects, naming them.
    """
    keras3 = {name: origin for name, (flavour, origin) in keras_names(module).items() if flavour == "keras3"}
    if not keras3:
        return
    evidence = ", ".join(f"{name} from {origin}" for name, origin in keras3.items())
    raise ValueError(
        f"module must be built against Keras 2 (tf_keras); received {getattr(module, '__name__', module)} "
        f"built against Keras 3 ({evidence}). Its Lambda layers fail with NotImplementedError "
        "('could not automatically infer the shape of the Lambda's output'). Set "
        "TF_USE_LEGACY_KERAS=1 before TensorFlow is first imported (or import tf_keras as keras "
        "in the fork) and start a new Python process.")


# --- short runs ------------------------------------------------------------------------------------

@contextlib.contextmanager
def graph_optimizations_off(off: bool = True) -> Iterator[None]:
    """Turn TensorFlow's graph optimizer (grappler) off inside the block (``off=False``: no-op).

    For short runs (the test suite, the benchmarks' ``--quick``, the demo's ``--smoke``): each
    graph runs a handful of steps, fewer than it takes to win back the seconds the optimizer
    spends on a freshly traced graph (measured: 8 quick runs took 101 s instead of 128 s).
    Grappler rewrites graphs without changing what they compute (up to float rounding). The
    previous setting is restored on exit, so later graphs are optimized as usual.

    Args:
        off: False makes the block a no-op.
    """
    import tensorflow as tf

    if not off:
        yield
        return
    previous = bool(tf.config.optimizer.get_experimental_options().get("disable_meta_optimizer", False))
    tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    try:
        yield
    finally:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": previous})


@contextlib.contextmanager
def op_determinism() -> Iterator[None]:
    """TensorFlow's op determinism on inside the block (``tf.config.experimental.enable_op_determinism``).

    With it, seeded training repeats bit for bit in a new process: without it, CPU kernels that
    add up in an order set by their threads leave the 6th digit of a loss to chance after two
    steps, and longer runs amplify it (the demo: docs/measurements.md). The previous setting is
    restored on exit, so a caller that runs the block inside a larger program (the test suite
    runs the demo's ``main``) leaves the rest as it was. When :func:`quiet_tensorflow` set the log
    level, the block's stderr goes through :func:`filter_stderr_fd`: with determinism on,
    TensorFlow writes an ERROR line of :data:`TF_NOISE` for every tf.data pipeline it rewrites.
    """
    import tensorflow as tf
    from tensorflow.python.framework import config as tf_config  # the switch back has no public name

    quiet = _level_is_ours()
    was_on = tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()
    try:
        with filter_stderr_fd() if quiet else contextlib.nullcontext():
            yield
    finally:
        if not was_on:
            tf_config.disable_op_determinism()
