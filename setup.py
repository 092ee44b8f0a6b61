"""Packaging for mrcnn-ohem (import name ``mrcnn_ohem``)."""
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent

TEST_REQUIRES = [
    "pytest>=7",
    "pytest-xdist>=3.5",  # make test runs the suite on 2 processes
    "ruff==0.17.6",
    "hypothesis>=6",
    "matplotlib>=3.7",
    "nbclient>=0.9",
    "nbformat>=5.9",
    "ipykernel>=6.25",
]
NOTEBOOK_REQUIRES = [
    "matplotlib>=3.7",
    "jupyter",
]

setup(
    name="mrcnn-ohem",
    version="0.1.0",
    description="Online Hard Example Mining for Matterport-style Mask R-CNN on TensorFlow 2.16+",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["mrcnn_ohem", "mrcnn_ohem.*"]),
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "tf-keras>=2.16,<2.22",
        "numpy>=1.26",
        "scikit-image>=0.22",
        "pycocotools>=2.0.7",
        "h5py>=3.10",
        "tqdm>=4.60",
        "tensorboard>=2.16,<2.22",
    ],
    extras_require={
        "test": TEST_REQUIRES,
        "notebooks": NOTEBOOK_REQUIRES,
        "demo": ["matplotlib>=3.7"],
    },
    classifiers=[
        # CI tests Python 3.11 only (with TensorFlow 2.21 and 2.16); 3.10 and 3.12 stay
        # installable (TensorFlow supports them) but are not claimed.
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
