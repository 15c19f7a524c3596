"""`LAB_SETTINGS_FILE`: settings from a file, beneath the environment, read at every load.

This is how a changed setting reaches only what starts next (a rolled stage, a replacement
gunicorn worker), as a mounted ConfigMap does: `make scenarios`' ship scenario relies on it.
"""

from __future__ import annotations

import pytest

from servinglab import config


def write(path, *lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_values_come_from_the_file_and_are_typed(tmp_path):
    settings_file = write(
        tmp_path / "lab.env",
        "# the postprocess rule",
        "LAB_CONFIDENCE_THRESHOLD=0.9",
        "",
        "LAB_MODEL_PROFILE = knn",
        "LAB_SOMETHING_ELSE=[1, 2]",
    )
    settings = config.load(environ={"LAB_SETTINGS_FILE": str(settings_file)})
    assert settings.confidence_threshold == 0.9
    assert settings.model_profile == "knn"
    assert settings.extra["SOMETHING_ELSE"] == [1, 2]
    assert settings.settings_file == str(settings_file)


def test_the_environment_wins_over_the_file_and_overrides_over_both(tmp_path):
    settings_file = write(
        tmp_path / "lab.env", "LAB_CONFIDENCE_THRESHOLD=0.9", "LAB_HTTP_WORKERS=3"
    )
    environ = {"LAB_SETTINGS_FILE": str(settings_file), "LAB_CONFIDENCE_THRESHOLD": "0.7"}
    settings = config.load(environ=environ)
    assert settings.confidence_threshold == 0.7 and settings.http_workers == 3
    overridden = config.load(environ=environ, overrides={"HTTP_WORKERS": 5})
    assert overridden.http_workers == 5
    # The file may also be named by an override (a factory's settings).
    assert config.load(environ={}, overrides={"SETTINGS_FILE": settings_file}).http_workers == 3


def test_each_load_reads_the_file_again(tmp_path):
    settings_file = write(tmp_path / "lab.env", "LAB_CONFIDENCE_THRESHOLD=0.6")
    environ = {"LAB_SETTINGS_FILE": str(settings_file)}
    assert config.load(environ=environ).confidence_threshold == 0.6
    write(settings_file, "LAB_CONFIDENCE_THRESHOLD=0.95")
    assert config.load(environ=environ).confidence_threshold == 0.95


@pytest.mark.parametrize(
    "line",
    ["CONFIDENCE_THRESHOLD=0.9", "LAB_CONFIDENCE_THRESHOLD", "LAB_SETTINGS_FILE=/elsewhere"],
)
def test_a_malformed_line_is_one_error_naming_the_line(tmp_path, line):
    settings_file = write(tmp_path / "lab.env", "# fine", line)
    with pytest.raises(config.SettingsError, match=r"LAB_SETTINGS_FILE .*lab.env, line 2"):
        config.load(environ={"LAB_SETTINGS_FILE": str(settings_file)})


def test_a_missing_file_or_a_bad_value_names_what_is_wrong(tmp_path):
    with pytest.raises(config.SettingsError, match=r"LAB_SETTINGS_FILE: cannot read .*nowhere"):
        config.load(environ={"LAB_SETTINGS_FILE": str(tmp_path / "nowhere")})
    settings_file = write(tmp_path / "lab.env", "LAB_CONFIDENCE_THRESHOLD=high")
    with pytest.raises(config.SettingsError, match="LAB_CONFIDENCE_THRESHOLD must be a number"):
        config.load(environ={"LAB_SETTINGS_FILE": str(settings_file)})


def test_no_file_changes_nothing():
    assert config.load(environ={}) == config.Settings()
