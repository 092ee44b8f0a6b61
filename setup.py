"""Packaging for mrcnn-ohem (import name ``mrcnn_ohem``)."""
import re
from pathlib import Path

from setuptools import find_packages, setup

HERE = Path(__file__).parent


def read_version() -> str:
    """The version written in mrcnn_ohem/_version.py, parsed without importing the package."""
    text = (HERE / "mrcnn_ohem" / "_version.py").read_text(encoding="utf-8")
    match = re.search(r'^__version__ = "([^"]+)"$', text, re.MULTILINE)
    if match is None:
        raise RuntimeError('mrcnn_ohem/_version.py must hold a line __version__ = "X.Y.Z"')
    return match.group(1)


TEST_REQUIRES = [
    "pytest>=7",
    "pytest-xdist>=3.5",  # make test runs the suite on 2 processes
    "ruff==0.17.6",
    "matplotlib>=3.7",
    "nbclient>=0.9",
    "nbformat>=5.9",
    "ipykernel>=6.25",
]
# make docs: pdoc renders the API reference from the docstrings (pinned in constraints.txt).
DOCS_REQUIRES = [
    "pdoc>=16",
]
NOTEBOOK_REQUIRES = [
    "matplotlib>=3.7",
    "jupyter",
]

setup(
    name="mrcnn-ohem",
    version=read_version(),
    description="Online Hard Example Mining for Matterport-style Mask R-CNN on TensorFlow 2.16+",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    # LICENSE ends with the notice crediting Matterport's Mask R-CNN (MIT), whose API the bundled
    # model follows; it goes into the wheel's .dist-info.
    license_files=["LICENSE"],
    python_requires=">=3.10,<3.13",
    packages=find_packages(include=["mrcnn_ohem", "mrcnn_ohem.*"]),
    install_requires=[
        "tensorflow>=2.16,<2.22",
        "tf-keras>=2.16,<2.22",
        "numpy>=1.26",
        "scikit-image>=0.22",
        "pillow>=9.1",  # image headers and drawing (also a scikit-image dependency)
        "pycocotools>=2.0.7",
        "h5py>=3.10",
        "tqdm>=4.60",
        "tensorboard>=2.16,<2.22",
    ],
    extras_require={
        "test": TEST_REQUIRES,
        "notebooks": NOTEBOOK_REQUIRES,
        "demo": ["matplotlib>=3.7"],
        "docs": DOCS_REQUIRES,
    },
    entry_points={
        "console_scripts": [
            "mrcnn-ohem-coco = mrcnn_ohem.runner.commands:coco_main",
            "mrcnn-ohem-shapes = mrcnn_ohem.runner.commands:shapes_main",
            "mrcnn-ohem-diagnose = mrcnn_ohem.diagnosis:main",
        ],
    },
    classifiers=[
        # CI tests Python 3.11 only (with TensorFlow 2.21 and 2.16); 3.10 and 3.12 stay
        # installable (TensorFlow supports them) but are not claimed.
        "License :: OSI Approved :: MIT License",
        "Programming Language :: Python :: 3.11",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
