"""``python -m benchmarks.report RUN_DIR``: rebuild report.md, report.html and charts/ of a run."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from benchmarks import analysis
from benchmarks.report.build import RESULTS_FILE, write_report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.report",
        description="Write report.md, report.html and charts/ for one benchmark run.",
    )
    parser.add_argument("run_dir", help="directory containing results.json")
    arguments = parser.parse_args(argv)
    try:
        paths = write_report(arguments.run_dir)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except analysis.ResultsValidationError as error:
        print(f"error: {arguments.run_dir}/{RESULTS_FILE} is not valid: {error}", file=sys.stderr)
        return 1
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
