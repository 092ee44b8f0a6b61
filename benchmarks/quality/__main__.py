"""``python -m benchmarks.quality``: see :mod:`benchmarks.quality.cli`."""
import sys

from benchmarks.quality.cli import main

sys.exit(main())
