"""``python -m benchmarks.sweep``: see `benchmarks.sweep`."""

import sys

from benchmarks.sweep.run import main

sys.exit(main())
