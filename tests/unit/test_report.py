"""Tests for the results schema, the capacity and cost arithmetic, the charts and the report."""

from __future__ import annotations

import base64
import copy
import html
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from benchmarks import analysis, knobs, plots, report
from benchmarks.reporting import charts

FIXTURE = REPO_ROOT / "tests" / "fixtures" / "results_small.json"
SLO = 50.0


@pytest.fixture
def results() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


def make_level(target, achieved=None, p99=10.0, error_rate=0.0, repetition=0, step=0, **extra):
    """A level dict with only what the SLO rules look at, plus anything passed in ``extra``."""
    level = {
        "repetition": repetition,
        "step": step,
        "target_rps": float(target),
        "achieved_rps": float(target if achieved is None else achieved),
        "p99_ms": p99,
        "error_rate": error_rate,
        "cpu_seconds_per_1k": 1.0,
    }
    level.update(extra)
    return level


# --- Schema ---------------------------------------------------------------------------------


def test_fixture_validates(results):
    analysis.validate_results(results)
    assert analysis.results_validation_errors(results) == []


def test_missing_capacity_fails_validation(results):
    del results["architectures"]["monolith"]["capacity_rps"]
    with pytest.raises(analysis.ResultsValidationError) as raised:
        analysis.validate_results(results)
    assert any("capacity_rps" in error for error in raised.value.errors)


def test_wrong_schema_version_fails_validation(results):
    results["schema_version"] = 2
    errors = analysis.results_validation_errors(results)
    assert len(errors) == 1
    assert errors[0].startswith("$.schema_version")


def test_unknown_target_fails_validation(results):
    results["run"]["target"] = "cloud"
    assert analysis.results_validation_errors(results)


def test_free_form_settings_and_machine_accept_extra_fields(results):
    results["run"]["settings"]["anything_new"] = {"nested": [1, 2]}
    results["run"]["machine"]["kernel"] = "6.8"
    analysis.validate_results(results)


def test_fixture_is_consistent_with_the_analysis(results):
    """The fixture's derived fields are what analysis computes from its own levels."""
    run = results["run"]
    for arch in results["architectures"].values():
        capacities = list(analysis.capacities_by_repetition(arch["levels"], SLO).values())
        assert arch["capacity_spread"] == analysis.summarise_repetitions(capacities)
        assert arch["capacity_rps"] == arch["capacity_spread"]["median"]
        for level in arch["levels"]:
            assert level["within_slo"] == analysis.level_within_slo(level, SLO)
        costs = analysis.cost_per_million(
            arch["capacity_rps"],
            arch["cpu_seconds_per_1k"],
            arch["peak_rss_mb_total"],
            run["cpu_budget"],
            run["prices"],
        )
        assert costs["provisioned"] == pytest.approx(
            arch["cost_per_million_usd"]["provisioned"], abs=1e-6
        )
        assert costs["consumed"] == pytest.approx(
            arch["cost_per_million_usd"]["consumed"], abs=1e-6
        )


# --- SLO and capacity -----------------------------------------------------------------------


def test_capacity_is_highest_target_within_slo():
    levels = [make_level(100), make_level(200, p99=49.0), make_level(300, p99=80.0)]
    assert analysis.capacity_rps(levels, SLO) == 200.0


def test_p99_exactly_at_slo_is_within_and_just_above_is_not():
    assert analysis.level_within_slo(make_level(100, p99=50.0), SLO)
    assert not analysis.level_within_slo(make_level(100, p99=50.01), SLO)


def test_errors_above_one_in_a_thousand_are_beyond_capacity():
    assert analysis.level_within_slo(make_level(100, error_rate=0.001), SLO)
    assert not analysis.level_within_slo(make_level(100, error_rate=0.0011), SLO)
    levels = [make_level(100), make_level(200, error_rate=0.002)]
    assert analysis.capacity_rps(levels, SLO) == 100.0


def test_achieving_less_than_95_percent_of_target_is_beyond_capacity():
    assert analysis.level_within_slo(make_level(200, achieved=190.0), SLO)
    assert not analysis.level_within_slo(make_level(200, achieved=189.9), SLO)
    reasons = analysis.beyond_capacity_reasons(make_level(200, achieved=150.0), SLO)
    assert reasons == ["achieved 75% of target"]


def test_level_without_completed_requests_is_beyond_capacity():
    assert analysis.beyond_capacity_reasons(make_level(100, p99=None), SLO) == [
        "no request completed"
    ]


def test_capacity_is_none_when_no_level_is_within_slo():
    levels = [make_level(100, p99=60.0), make_level(200, achieved=100.0)]
    assert analysis.capacity_rps(levels, SLO) is None
    assert analysis.capacity_rps([], SLO) is None


def test_capacity_takes_highest_passing_target_even_after_a_failed_step():
    levels = [make_level(100), make_level(200, p99=70.0), make_level(300)]
    assert analysis.capacity_rps(levels, SLO) == 300.0


def test_capacities_by_repetition_and_median_at_capacity():
    levels = [
        make_level(100, repetition=0, p99=5.0),
        make_level(200, repetition=0, p99=60.0),
        make_level(100, repetition=1, p99=7.0),
        make_level(200, repetition=1, p99=40.0),
        make_level(100, repetition=2, p99=90.0),
    ]
    assert analysis.capacities_by_repetition(levels, SLO) == {0: 100.0, 1: 200.0, 2: None}
    # Repetition 0 peaks at 100 (p99 5), repetition 1 at 200 (p99 40); repetition 2 has none.
    assert analysis.median_at_capacity(levels, SLO, "p99_ms") == pytest.approx(22.5)


def test_median_cpu_seconds_per_1k_prefers_levels_within_slo():
    within = [make_level(100, cpu_seconds_per_1k=1.0), make_level(200, cpu_seconds_per_1k=3.0)]
    beyond = make_level(300, p99=90.0, cpu_seconds_per_1k=10.0)
    assert analysis.median_cpu_seconds_per_1k([*within, beyond], SLO) == 2.0
    assert analysis.median_cpu_seconds_per_1k([beyond], SLO) == 10.0


def test_loadgen_bound_threshold():
    assert analysis.LOADGEN_BOUND_CPU_PERCENT == 85.0
    assert analysis.is_loadgen_bound(85.0)
    assert not analysis.is_loadgen_bound(84.9)
    assert not analysis.is_loadgen_bound(150.0, loadgen_cores=2)


def test_summarise_repetitions():
    assert analysis.summarise_repetitions([790.0, 830.0]) == {
        "median": 810.0,
        "min": 790.0,
        "max": 830.0,
        "values": [790.0, 830.0],
    }
    with_gap = analysis.summarise_repetitions([None, 600.0, 900.0])
    assert with_gap == {"median": 750.0, "min": 600.0, "max": 900.0, "values": [None, 600.0, 900.0]}
    assert analysis.summarise_repetitions([None, None])["median"] is None


# --- Cost -------------------------------------------------------------------------------------


def test_provisioned_cost_hand_computed():
    # (2 vCPU * $0.02 + 4 GiB * $0.003) per hour = $0.052/h; 500 req/s = 1.8M requests/h.
    cost = analysis.provisioned_cost_per_million(500.0, 2, 4.0, 0.02, 0.003)
    assert cost == pytest.approx(0.052 / 1.8)
    assert cost == pytest.approx(0.0288889, rel=1e-5)


def test_provisioned_cost_without_capacity_is_none():
    assert analysis.provisioned_cost_per_million(None, 1, 1.0, 0.02, 0.003) is None
    assert analysis.provisioned_cost_per_million(0.0, 1, 1.0, 0.02, 0.003) is None


def test_consumed_cost_cpu_only_hand_computed():
    # 2 CPU-s per 1k requests = 2,000 CPU-s per million = 0.5556 CPU-h at $0.036 = $0.02.
    assert analysis.consumed_cost_per_million(2.0, 0.036) == pytest.approx(0.02)


def test_consumed_cost_memory_share_hand_computed():
    # 0.5 GiB held for 2 ms of CPU per request on 1 vCPU: 1,000 GiB-s per million requests
    # = 0.27778 GiB-h at $0.0072 = $0.002, on top of the $0.02 of CPU.
    assert analysis.consumed_cost_per_million(2.0, 0.036, 512.0, 0.0072, 1) == pytest.approx(0.022)
    # On 2 vCPUs the same CPU work occupies the machine's memory for half as long.
    assert analysis.consumed_cost_per_million(2.0, 0.036, 512.0, 0.0072, 2) == pytest.approx(0.021)


def test_consumed_equals_provisioned_when_right_sized_and_fully_busy():
    # 1 vCPU fully busy at 400 req/s uses 2.5 CPU-s per 1k; memory exactly 1 GiB as budgeted.
    provisioned = analysis.provisioned_cost_per_million(400.0, 1, 1.0, 0.021811, 0.002923)
    consumed = analysis.consumed_cost_per_million(2.5, 0.021811, 1024.0, 0.002923, 1)
    assert consumed == pytest.approx(provisioned)


def test_cost_per_million_combines_both():
    costs = analysis.cost_per_million(
        500.0,
        2.0,
        512.0,
        {"sut_vcpus": 2, "sut_memory_gib": 4.0},
        {"vcpu_hour_usd": 0.036, "gib_hour_usd": 0.0072},
    )
    assert costs["provisioned"] == pytest.approx((2 * 0.036 + 4 * 0.0072) / 1.8)
    assert costs["consumed"] == pytest.approx(0.021)


def test_default_prices_are_the_documented_e2_figures():
    prices = analysis.load_prices()
    assert prices["vcpu_hour_usd"] == 0.021811
    assert prices["gib_hour_usd"] == 0.002923
    assert "e2" in prices["source"] and "us-central1" in prices["source"]
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", prices["retrieved"])
    assert "://" not in json.dumps(prices)


def test_load_prices_rejects_a_file_without_source(tmp_path):
    bad = tmp_path / "prices.json"
    bad.write_text(
        json.dumps({"vcpu_hour_usd": 0.03, "gib_hour_usd": 0.004, "retrieved": "2026-01-01"})
    )
    with pytest.raises(analysis.ResultsValidationError, match="source"):
        analysis.load_prices(bad)


def test_split_stages_groups_compute_hops_and_other():
    groups = analysis.split_stages(
        {
            "pre": 0.1,
            "infer": 0.2,
            "post": 0.05,
            "hop_pre": 1.0,
            "hop_infer": 0.9,
            "http_other": 0.4,
            "cache": None,
        }
    )
    assert groups == {
        "compute": {"pre": 0.1, "infer": 0.2, "post": 0.05},
        "hops": {"hop_pre": 1.0, "hop_infer": 0.9},
        "other": {"http_other": 0.4},
    }


# --- Charts -----------------------------------------------------------------------------------


def test_latency_chart_draws_slo_and_capacity_markers(results):
    figure = plots.latency_vs_throughput(results)
    axes = figure.axes[0]
    horizontal = [line for line in axes.get_lines() if list(line.get_ydata()) == [SLO, SLO]]
    assert horizontal, "SLO line missing"
    texts = " ".join(text.get_text() for text in axes.texts)
    assert "monolith capacity\n750 req/s" in texts
    assert "microservices capacity\n200 req/s" in texts


def test_time_breakdown_bars_sum_to_the_stage_totals(results):
    axes = plots.time_breakdown(results).axes[0]
    right_ends = {}
    for patch in axes.patches:
        row = round(patch.get_y() + patch.get_height() / 2)
        right_ends[row] = max(right_ends.get(row, 0.0), patch.get_x() + patch.get_width())
    expected = [
        sum(v for v in arch["stages_ms"].values()) for arch in results["architectures"].values()
    ]
    assert [right_ends[row] for row in sorted(right_ends)] == pytest.approx(expected)


def test_figure_helpers_produce_png_and_svg(results):
    figure = plots.cost_chart(results)
    assert charts.figure_to_png_bytes(figure).startswith(b"\x89PNG")
    assert base64.b64decode(charts.figure_to_base64_png(figure)).startswith(b"\x89PNG")
    svg = charts.figure_to_svg(figure)
    assert "<svg" in svg and "<metadata" not in svg


# --- Report -----------------------------------------------------------------------------------


def test_headline_names_the_faster_architecture(results):
    sentence = report.headline(results)
    assert sentence == (
        "On 1 vCPU, the monolith served 3.8x the requests/s of microservices within a p99 SLO "
        "of 50 ms, at 0.27x the provisioned cost per million predictions."
    )
    swapped = copy.deepcopy(results)
    micro = swapped["architectures"]["microservices"]
    micro["capacity_rps"] = 1500.0
    micro["cost_per_million_usd"]["provisioned"] = 0.004581
    assert report.headline(swapped).startswith(
        "On 1 vCPU, microservices served 2.0x the requests/s of the monolith"
    )


def test_headline_when_one_architecture_never_met_the_slo(results):
    results["architectures"]["microservices"]["capacity_rps"] = None
    sentence = report.headline(results)
    assert sentence.startswith(
        "On 1 vCPU, the monolith served 750 requests/s within a p99 SLO of 50 ms"
    )
    assert sentence.endswith("; microservices did not meet the SLO at any tested rate.")


def test_headline_when_nothing_met_the_slo(results):
    for arch in results["architectures"].values():
        arch["capacity_rps"] = None
    assert report.headline(results) == (
        "On 1 vCPU, no architecture (the monolith and microservices) met a p99 SLO of 50 ms at "
        "any tested rate."
    )


def test_headline_with_three_architectures_is_one_sentence(results):
    third = copy.deepcopy(results["architectures"]["microservices"])
    third["capacity_rps"] = 375.0
    third["cost_per_million_usd"]["provisioned"] = 0.018322
    results["architectures"]["batched"] = third
    sentence = report.headline(results)
    assert sentence.endswith(".") and ". " not in sentence
    assert "the monolith served the most requests/s" in sentence
    assert "2.0x batched and 3.8x microservices" in sentence


def write_fixture_run(tmp_path: Path, results: dict) -> Path:
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "results.json").write_text(json.dumps(results), encoding="utf-8")
    return run_dir


def test_write_report_writes_markdown_html_and_charts(tmp_path, results):
    run_dir = write_fixture_run(tmp_path, results)
    written = report.write_report(run_dir)
    markdown = (run_dir / "report.md").read_text(encoding="utf-8")
    assert set(written) >= {run_dir / "report.md", run_dir / "report.html"}
    chart_refs = re.findall(r"!\[[^\]]*\]\((charts/[^)]+\.png)\)", markdown)
    assert len(chart_refs) == 4
    for ref in chart_refs:
        assert (run_dir / ref).read_bytes().startswith(b"\x89PNG")
    assert report.headline(results) in markdown
    for heading in (
        "## Summary",
        "## Where the time goes",
        "## Caveats",
        "## Machine and settings",
        "## Prices",
    ):
        assert heading in markdown
    assert "AMD EPYC 7B13" in markdown and "3f9c2d1e" in markdown
    assert "GCP Compute Engine e2 on-demand" in markdown
    assert (
        "| monolith | 750 | 600–900 | 4.90 | 30.5 | $0.00916 | $0.00663 | 1.05 | 301 |" in markdown
    )


def test_html_is_self_contained_and_embeds_the_charts(tmp_path, results):
    run_dir = write_fixture_run(tmp_path, results)
    report.write_report(run_dir)
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.IGNORECASE)
    assert "http://" not in page and "https://" not in page
    assert "<script" not in page.lower() and "<link" not in page.lower()
    assert page.count('src="data:image/svg+xml;base64,') == 4
    assert "<style>" in page
    assert report.headline(results).replace("'", "&#x27;") in page


def test_loadgen_bound_level_is_flagged_in_the_report(results):
    markdown = report.render_markdown(results)
    bound_rows = [
        line for line in markdown.splitlines() if "loadgen-bound" in line and line.startswith("| ")
    ]
    assert len(bound_rows) == 1
    assert bound_rows[0].startswith("| 0 | 2 | 900 | 842 |")
    assert (
        "monolith, repetition 0, step 2 (target 900 req/s): load generator at 89% CPU" in markdown
    )
    assert 'class="beyond loadgen"' in report.render_html(results)


def test_beyond_capacity_levels_say_why(results):
    markdown = report.render_markdown(results)
    assert (
        "beyond capacity: achieved 87% of target; p99 412 ms > SLO 50 ms; error rate 0.43% > 0.1%"
        in markdown
    )


def test_where_the_time_goes_compares_hops_with_compute(results):
    paragraph = report.where_the_time_goes(results)
    assert "2.72 ms of hop overhead" in paragraph
    assert "7.5x the compute itself" in paragraph
    assert "hops take 78% of the server time" in paragraph


def test_quick_mode_is_warned_about(results):
    assert "Quick mode:" not in report.render_markdown(results)
    results["run"]["quick"] = True
    assert "Quick mode: this run used short steps" in report.render_markdown(results)


def test_single_architecture_renders(tmp_path, results):
    del results["architectures"]["microservices"]
    results["run"]["settings"]["archs"] = ["monolith"]
    analysis.validate_results(results)
    markdown = report.render_markdown(results)
    assert "microservices" not in markdown
    assert "Only one architecture was measured" in markdown
    assert report.headline(results) == (
        "On 1 vCPU, the monolith served 750 requests/s within a p99 SLO of 50 ms, at $0.00916 "
        "per million predictions (provisioned)."
    )
    report.write_report(write_fixture_run(tmp_path, results))


def test_single_architecture_that_never_met_the_slo_renders(results):
    del results["architectures"]["microservices"]
    monolith = results["architectures"]["monolith"]
    monolith["capacity_rps"] = None
    monolith["capacity_spread"] = {"median": None, "min": None, "max": None, "values": [None, None]}
    monolith["cost_per_million_usd"]["provisioned"] = None
    analysis.validate_results(results)
    assert report.headline(results) == (
        "On 1 vCPU, the monolith did not meet a p99 SLO of 50 ms at any tested rate."
    )
    assert "<html" in report.render_html(results)


def test_write_report_refuses_invalid_results(tmp_path, results):
    results["schema_version"] = 99
    run_dir = write_fixture_run(tmp_path, results)
    with pytest.raises(analysis.ResultsValidationError):
        report.write_report(run_dir)
    assert not (run_dir / "report.md").exists()


def test_command_line_prints_the_paths_written(tmp_path, results):
    run_dir = write_fixture_run(tmp_path, results)
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.report", str(run_dir)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    printed = completed.stdout.split()
    assert str(run_dir / "report.md") in printed
    assert str(run_dir / "report.html") in printed
    assert str(run_dir / "charts" / "latency_vs_throughput.png") in printed


# --- Experiment knobs -------------------------------------------------------------------------

KNOBS_FIXTURE = REPO_ROOT / "tests" / "fixtures" / "results_knobs.json"


@pytest.fixture
def knob_results() -> dict:
    """A run with every knob away from its default (three topologies, cache, batching, replicas, delay)."""
    return json.loads(KNOBS_FIXTURE.read_text(encoding="utf-8"))


def test_knob_fixture_validates_and_old_results_still_do(knob_results, results):
    analysis.validate_results(knob_results)
    assert "knobs" not in results["run"]
    analysis.validate_results(results)


@pytest.fixture(scope="module")
def knob_pages() -> tuple[str, str]:
    """The knob fixture's report as Markdown and as HTML text, rendered once (charts are slow)."""
    results = json.loads(KNOBS_FIXTURE.read_text(encoding="utf-8"))
    page = html.unescape(report.render_html(results)).replace("<code>", "`").replace("</code>", "`")
    return report.render_markdown(results), page


@pytest.mark.parametrize("knob", [knob.key for knob in knobs.KNOBS])
def test_report_explains_every_knob_away_from_its_default(knob_results, knob_pages, knob):
    spec = knobs.BY_KEY[knob]
    markdown, page = knob_pages
    section = markdown.split("## What this run varies")[1].split("\n## ")[0]
    value = knob_results["run"]["knobs"][knob]
    assert f"### {spec.variable}={spec.show(value)}" in section
    assert spec.about in section
    assert spec.about in page


def test_knob_paragraphs_say_what_this_run_did(knob_results):
    section = report.render_markdown(knob_results).split("## What this run varies")[1]
    assert (
        "sitting at: monolith: in process; microservices: inference service; split: inference service"
        in section
    )
    assert (
        "This run added 2 ms per hop to microservices, split, by an in-process sleep before each call."
        in section
    )
    assert "batched at most 16 rows per model call, waiting at most 1 ms" in section
    assert "Replicas in this run: microservices inference=2; split inference=2." in section
    assert "split: a Flask gateway running preprocess and postprocess in process" in section


def test_cache_table_shows_hit_rate_next_to_capacity_and_cost(knob_results):
    markdown = report.render_markdown(knob_results)
    assert "### Cache hits" in markdown
    assert "| monolith | in process | 74.4% | 7,000 | 750 |" in markdown


def test_knob_table_lists_every_knob_with_its_default(knob_results):
    markdown = report.render_markdown(knob_results)
    settings = markdown.split("## Machine and settings")[1]
    for spec in knobs.KNOBS:
        assert (
            f"| {spec.variable} | {spec.show(knob_results['run']['knobs'][spec.key])} | {spec.show(spec.default)} |"
            in settings
        )


def test_defaults_and_old_results_have_no_knob_section(results):
    markdown = report.render_markdown(results)
    assert "## What this run varies" not in markdown and "Knob (make variable)" not in markdown
    results["run"]["knobs"] = knobs.record(knobs.defaults())
    markdown = report.render_markdown(results)
    assert "## What this run varies" not in markdown and "Knob (make variable)" in markdown


def test_steps_too_short_for_a_p99_are_named_in_the_caveats(results):
    assert "so their p99 is their slowest request" not in report.render_markdown(results)
    levels = results["architectures"]["microservices"]["levels"]
    levels[1].update(requests=60, failures=0)  # 60 answers: the p99 is the slowest of them
    levels[2].update(requests=140, failures=50)  # 90 answered, 50 failed
    markdown = report.render_markdown(results)
    assert (
        "fewer than 100 requests, so their p99 is their slowest request and one slow request "
        f"decides them (repetition.step): microservices 2 of {len(levels)} "
        f"(steps {levels[1]['repetition']}.{levels[1]['step']}, "
        f"{levels[2]['repetition']}.{levels[2]['step']})" in markdown
    )
    assert analysis.p99_is_the_slowest_request({"requests": 99, "failures": 0})
    assert not analysis.p99_is_the_slowest_request({"requests": 100, "failures": 0})
    assert not analysis.p99_is_the_slowest_request({"requests": 5, "failures": 5})  # no p99 at all
