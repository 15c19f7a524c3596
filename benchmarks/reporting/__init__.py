"""The reporting kit: one document model, rendered to Markdown, a self-contained HTML page and PNGs.

Every report of the lab (``make bench``, ``make bench-sweep``, ``make chaos``) is a `Document`: a
title and a list of blocks (`Heading`, `Paragraph`, `Bullets`, `Table`, `Chart`). The same blocks
become both formats, so the Markdown and the HTML always say the same thing.

- `document`: the blocks, `ChartSpec` (how to draw one chart and how to read it) and `Document`;
- `markdown`: `render(document, chart_dir)`, charts referenced as ``chart_dir/<key>.png``;
- `html_page`: `render(document)`, one page with inline CSS and the charts embedded as SVG;
- `charts`: the house style of every matplotlib chart (colours, sizes, an Agg canvas) and
  `figure_to_png_bytes` / `figure_to_svg` / `figure_to_base64_png`, `write_pngs`;
- `output`: `write_document(directory, document, stem)`, the one way a report reaches disk
  (``<stem>.md``, ``<stem>.html``, ``charts/<key>.png``);
- `text`: how numbers and lists read in a report (`rps`, `ms`, `usd`, `ratio`, `join`, ...);
- `progress`: `Progress(tag)`, the one printer of ``[tag HH:MM:SS] message`` lines.

Submodules are imported one by one (``from benchmarks.reporting import text``): matplotlib is
only loaded by those that draw.
"""
