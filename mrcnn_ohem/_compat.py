"""The one place for version quirks: the tf-keras import and the supported TensorFlow range.

TensorFlow 2.16+ maps ``tf.keras`` to Keras 3, but Matterport-style graphs (``KL.Lambda``
closures over module-level loss functions, ``add_loss`` on symbolic tensors, ``h5`` weight
files loaded by layer name) need Keras 2. Keras 2 lives on as the ``tf_keras`` package; we
import it explicitly so the code works whether or not ``TF_USE_LEGACY_KERAS`` is set.
"""
from __future__ import annotations

import re

import tensorflow as tf

#: The TensorFlow releases this package is tested against (inclusive lower, exclusive upper).
SUPPORTED_TF = ((2, 16), (2, 22))


def _version_tuple(version: str) -> tuple[int, int]:
    """(major, minor) of a version string; the minor is its leading digits ("18rc0" -> 18)."""
    major, minor = version.split(".")[:2]
    return int(major), int(re.match(r"\d*", minor).group() or 0)


def check_tensorflow() -> None:
    """Raise ImportError with a clear message when the installed TensorFlow cannot work."""
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
