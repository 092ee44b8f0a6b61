"""Tests for mrcnn_ohem._compat: the supported TensorFlow range, the tf-keras import, the stderr
filter and quiet_tensorflow (in fresh interpreters)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import tensorflow as tf

from mrcnn_ohem import _compat


@pytest.mark.parametrize("version,expected", [
    ("2.16.1", (2, 16)),
    ("2.21.0", (2, 21)),
    ("2.17.0rc1", (2, 17)),
    ("2.18rc0", (2, 18)),  # the digits of the minor part only
    ("3.0.0", (3, 0)),
])
def test_version_tuple(version, expected):
    assert _compat._version_tuple(version) == expected


@pytest.mark.parametrize("version", ["2.15.1", "2.22.0", "1.15.5", "3.0.0"])
def test_check_tensorflow_rejects_unsupported_versions(monkeypatch, version):
    monkeypatch.setattr(tf, "__version__", version)
    with pytest.raises(ImportError, match=rf"needs TensorFlow >=2\.16,<2\.22; found {version}\. "
                                          r"Install a supported release.*tf-keras"):
        _compat.check_tensorflow()
    with pytest.raises(ImportError, match="found " + version):
        _compat.import_tf_keras()  # checked before anything is imported


@pytest.mark.parametrize("version", ["2.16.0", "2.21.9"])
def test_check_tensorflow_accepts_the_range_ends(monkeypatch, version):
    monkeypatch.setattr(tf, "__version__", version)
    _compat.check_tensorflow()


def test_import_tf_keras_is_keras_2():
    keras = _compat.import_tf_keras()
    assert keras.__name__ == "tf_keras"
    assert keras.__version__.startswith("2.")
    assert keras is _compat.import_tf_keras()

REPO = Path(__file__).resolve().parents[1]
NOISE = (b"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
         b"I0000 00:00:1796156317.867348   10399 cudart_stub.cc:31] Could not find cuda drivers on your "
         b"machine, GPU will not be used.\n"
         b"E0000 00:00:1796156402.118994   11067 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA "
         b"error: Failed call to cuInit: UNKNOWN ERROR (303)\n")
REAL = b"E0000 00:00:1796156402.118994   11067 real_op.cc:1] something real broke\n"


def test_filter_drops_known_noise_and_passes_everything_else(capfd):
    with _compat.filter_stderr_fd():
        os.write(2, NOISE + REAL)
        print("a Python line", file=sys.stderr)
        os.write(2, b"no newline at the end")
    os.write(2, b"\nafter the block: " + NOISE.splitlines(keepends=True)[1])  # outside: untouched
    err = capfd.readouterr().err
    assert "cudart_stub" in err.split("after the block:")[1]
    inside = err.split("after the block:")[0]
    assert "InitializeLog" not in inside and "cudart_stub" not in inside and "cuInit" not in inside
    assert "something real broke" in inside and "a Python line" in inside and "no newline at the end" in inside


def _import_tensorflow(env_update: dict[str, str], *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "MRCNN_OHEM_QUIET_TF")}
    env.update(env_update, PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]))
    code = ("import mrcnn_ohem; mrcnn_ohem.quiet_tensorflow(); import tensorflow as tf; "
            "print(int(tf.reduce_sum(tf.ones([2, 3]))))")
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, capture_output=True, text=True,
                          timeout=600, check=True)
    assert done.stdout.strip() == "6"
    return done.stderr


def test_quiet_tensorflow_leaves_no_start_up_lines_unless_asked():
    assert _import_tensorflow({}) == ""
    quiet_again = _import_tensorflow({"TF_CPP_MIN_LOG_LEVEL": "2", "MRCNN_OHEM_QUIET_TF": "2"})  # ours
    assert quiet_again == ""


@pytest.mark.parametrize("level", ["0", "3"])
def test_quiet_tensorflow_keeps_the_users_own_level(monkeypatch, level):
    from mrcnn_ohem import _compat

    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", level)
    monkeypatch.delenv(_compat._QUIET_MARK, raising=False)
    _compat.quiet_tensorflow(verbose=False)
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == level and _compat._QUIET_MARK not in os.environ


# --- Keras 2 or Keras 3 ---------------------------------------------------------------------------

@pytest.mark.parametrize("value,legacy", [(None, False), ("0", False), ("false", False), ("1", True),
                                          ("true", True), ("True", True)])
def test_tf_keras_is_keras3_unless_tf_use_legacy_keras_is_on(monkeypatch, value, legacy):
    if value is None:
        monkeypatch.delenv("TF_USE_LEGACY_KERAS", raising=False)
    else:
        monkeypatch.setenv("TF_USE_LEGACY_KERAS", value)
    assert _compat.legacy_keras_requested() is legacy
    assert _compat.tf_keras_is_keras3("2.21.0") is not legacy
    assert _compat.tf_keras_is_keras3("2.16.1") is not legacy
    assert _compat.tf_keras_is_keras3("2.15.1") is False  # tf.keras was Keras 2 before 2.16
    assert _compat.tf_keras_is_keras3() is _compat.tf_keras_is_keras3(tf.__version__)


def _fork(**names) -> ModuleType:
    module = ModuleType("fork.model")
    for name, value in names.items():
        setattr(module, name, value)
    return module


def test_keras_flavour_reads_the_module_s_own_keras_objects():
    import keras  # Keras 3, installed with TensorFlow 2.16+
    import tf_keras

    assert keras.__version__.startswith("3.")
    assert _compat.keras_flavour(_fork(keras=tf_keras, KL=tf_keras.layers, KM=tf_keras.models)) == "tf_keras"
    assert _compat.keras_flavour(_fork(KL=keras.layers)) == "keras3"
    assert _compat.keras_flavour(_fork(KE=keras.layers.Layer)) == "keras3"  # a class works too
    assert _compat.keras_flavour(_fork(keras=tf_keras, KL=keras.layers)) == "keras3"  # any Keras 3 name
    assert _compat.keras_flavour(_fork(np=np, KL=None)) is None
    names = _compat.keras_names(_fork(KL=keras.layers, KM=tf_keras.models))
    assert names["KL"][0] == "keras3" and names["KL"][1].startswith("keras.src.")
    assert names["KM"][0] == "tf_keras" and names["KM"][1].startswith("tf_keras.")


def test_check_keras2_names_the_keras_3_objects_and_the_fix():
    import keras
    import tf_keras

    _compat.check_keras2(_fork(KL=tf_keras.layers))  # Keras 2: nothing to say
    _compat.check_keras2(_fork())
    with pytest.raises(ValueError, match=r"module must be built against Keras 2 \(tf_keras\); received "
                                         r"fork\.model built against Keras 3 \(KL from keras\.src\..*\)\. "
                                         r".*NotImplementedError.*TF_USE_LEGACY_KERAS=1"):
        _compat.check_keras2(_fork(KL=keras.layers))


def _fork_child(legacy: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "TF_USE_LEGACY_KERAS"}
    if legacy is not None:
        env["TF_USE_LEGACY_KERAS"] = legacy
    env.update(PYTHONPATH=os.pathsep.join([str(FORK.parent), str(REPO)]), TF_CPP_MIN_LOG_LEVEL="3")
    code = "import mrcnn.model as m; from mrcnn_ohem import _compat; print(_compat.keras_flavour(m))"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


FORK = REPO.parent / "shared" / "forks" / "mask_rcnn_tf2_14" / "mrcnn"


@pytest.mark.slow  # two TensorFlow start-ups and the fork's import: 4 to 20 s
@pytest.mark.skipif(not (FORK / "model.py").is_file(), reason=f"the shared Matterport TF2 fork is not at {FORK}")
def test_keras_flavour_of_the_shared_fork_follows_tf_use_legacy_keras():
    """The fork does 'import tensorflow.keras as keras': Keras 3 unless TF_USE_LEGACY_KERAS=1."""
    assert _fork_child(None) == "keras3"
    assert _fork_child("1") == "tf_keras"


def test_op_determinism_is_on_inside_the_block_and_as_before_after():
    from tensorflow.python.framework import config as tf_config

    assert not tf_config.is_op_determinism_enabled()
    with pytest.raises(RuntimeError, match="inside"), _compat.op_determinism():
        assert tf_config.is_op_determinism_enabled()
        raise RuntimeError("inside")
    assert not tf_config.is_op_determinism_enabled()
    tf.config.experimental.enable_op_determinism()  # a caller that had it on keeps it on
    try:
        with _compat.op_determinism():
            assert tf_config.is_op_determinism_enabled()
        assert tf_config.is_op_determinism_enabled()
    finally:
        tf_config.disable_op_determinism()


@pytest.mark.parametrize("ours", [True, False])
def test_op_determinism_drops_its_tf_data_line_when_quiet_tensorflow_set_the_level(monkeypatch, capfd, ours):
    line = (b"E0000 00:00:1796585078.614625   28469 node_def_util.cc:682] NodeDef mentions attribute "
            b"use_unbounded_threadpool which is not in the op definition: Op<name=MapDataset; ...>\n")
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    if ours:
        monkeypatch.setenv(_compat._QUIET_MARK, "2")
    else:  # the user's own level: every line stays
        monkeypatch.delenv(_compat._QUIET_MARK, raising=False)
    with _compat.op_determinism():
        os.write(2, line + b"something real\n")
    err = capfd.readouterr().err
    assert "something real" in err and ("use_unbounded_threadpool" in err) is not ours
