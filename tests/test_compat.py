"""Tests for mrcnn_ohem._compat: the supported TensorFlow range, the tf-keras import, the stderr
filter and quiet_tensorflow (in fresh interpreters)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

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
