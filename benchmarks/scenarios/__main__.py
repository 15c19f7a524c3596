"""``python -m benchmarks.scenarios``: see `benchmarks.scenarios.run`."""

import sys

from benchmarks.scenarios.run import main

sys.exit(main())
