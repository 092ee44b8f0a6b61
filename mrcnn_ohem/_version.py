"""The one place the package version is written.

``mrcnn_ohem.__version__`` imports it and ``setup.py`` parses it (without importing the package),
so the installed distribution, the wheel and the module report the same string.
"""

__version__ = "0.2.0.dev0"
