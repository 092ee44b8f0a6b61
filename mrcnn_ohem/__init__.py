"""Online Hard Example Mining for Matterport-style Mask R-CNN."""
__version__ = "0.1.0"
