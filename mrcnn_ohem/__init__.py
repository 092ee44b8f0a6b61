"""Online Hard Example Mining (OHEM) for Matterport-style Mask R-CNN on TensorFlow 2.16+.

One import and a config subclass::

    import mrcnn.model as modellib
    import mrcnn_ohem

    class MyConfig(mrcnn_ohem.OHEMConfigMixin, MyOldConfig):
        pass

    config = MyConfig()
    mrcnn_ohem.patch(config, module=modellib)      # before MaskRCNN(...) is constructed
    model = modellib.MaskRCNN("training", config, model_dir="logs")

Nothing is patched at import.
"""
from mrcnn_ohem.config import OHEMConfig, OHEMConfigMixin, OHEMSettings, ohem_settings
from mrcnn_ohem.losses import (
    TopKCrossEntropy,
    make_rpn_class_loss_graph,
    ohem_rpn_class_loss,
    topk_cross_entropy,
)
from mrcnn_ohem.patch import PatchHandle, patch
from mrcnn_ohem.targets import build_rpn_targets

__version__ = "0.1.0"

__all__ = [
    "OHEMConfig",
    "OHEMConfigMixin",
    "OHEMSettings",
    "PatchHandle",
    "TopKCrossEntropy",
    "build_rpn_targets",
    "make_rpn_class_loss_graph",
    "ohem_rpn_class_loss",
    "ohem_settings",
    "patch",
    "topk_cross_entropy",
]
