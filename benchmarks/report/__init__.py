"""Turn one run's results.json into a report a student can read and an instructor can project.

``write_report(run_dir)`` writes ``report.md`` (charts as PNG files in ``charts/``) and a
self-contained ``report.html`` (charts embedded as SVG data, inline CSS, no scripts and no
external links, so it opens straight from the file system or a USB stick). Both are rendered
from one `Document` (`build_report`) by the reporting kit, so they always say the same thing.

- `verdict`: the sentences: `headline`, `capacity_definition`, `where_the_time_goes`;
- `tables`: the summary, the ratios, every load level, the cache's hits;
- `context`: what the run varied, the caveats, machine, knobs and prices (the sweep's report
  reuses `settings_blocks` and `vcpus`);
- `build`: the chart list, the whole document, and the files.

Usage::

    python -m benchmarks.report RUN_DIR
"""

from benchmarks.report.build import (
    CHARTS,
    RESULTS_FILE,
    build_report,
    render_html,
    render_markdown,
    summary_markdown,
    write_report,
)
from benchmarks.report.verdict import headline, where_the_time_goes

__all__ = [
    "CHARTS",
    "RESULTS_FILE",
    "build_report",
    "headline",
    "render_html",
    "render_markdown",
    "summary_markdown",
    "where_the_time_goes",
    "write_report",
]
