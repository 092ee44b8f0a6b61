"""Online Hard Example Mining (OHEM) for Matterport-style Mask R-CNN on TensorFlow 2.16+.

One import and a config subclass::

    import mrcnn.model as modellib
    import mrcnn_ohem

    class MyConfig(mrcnn_ohem.OHEMConfigMixin, MyOldConfig):
        pass

    config = MyConfig()
    mrcnn_ohem.patch(config, module=modellib)      # before MaskRCNN(...) is constructed
    model = modellib.MaskRCNN("training", config, model_dir="logs")

Nothing is patched at import, and importing ``mrcnn_ohem`` loads neither the bundled Mask R-CNN
nor the datasets.
"""
import importlib
from typing import Any

from ._version import __version__  # noqa: F401  (setup.py parses _version.py)

#: public name -> the submodule that defines it. Loaded on first access (PEP 562), so that
#: ``import mrcnn_ohem`` is cheap and importing the neutral layer (``mrcnn_ohem.core``) or the
#: bundled model never imports the OHEM code, nor the OHEM code the bundled model.
_EXPORTS = {
    "OHEMConfig": "config",
    "diagnose": "diagnosis",
    "quiet_tensorflow": "_compat",
    "OHEMConfigMixin": "config",
    "OHEMSettings": "config",
    "ohem_settings": "config",
    "ROISettings": "config",
    "RPNLossSettings": "config",
    "ohem_roi_settings": "config",
    "rpn_loss_settings": "config",
    "TopKCrossEntropy": "losses",
    "focal_rpn_class_loss": "losses",
    "ohem_rpn_class_loss": "losses",
    "topk_cross_entropy": "losses",
    "ohem_rpn_targets": "targets",
    "ohem_mrcnn_class_loss": "roi",
    "ohem_roi_targets": "roi",
    "PatchHandle": "patching",
    "add_selection_metrics": "surgery",
    "build_rpn_targets": "binding",
    "make_build_rpn_targets": "binding",
    "make_rpn_class_loss_graph": "binding",
    "make_mrcnn_class_loss_graph": "binding",
    "make_detection_target_layer": "surgery",
    "patch": "patching",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
