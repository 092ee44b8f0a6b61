"""mrcnn_ohem._compat: the supported TensorFlow range and the tf-keras import."""
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
