"""Unit tests for settings loading (`servinglab.config`): defaults, `LAB_*` variables, overrides.

Every test passes its own environment mapping, so the real process environment never leaks in.
"""

from __future__ import annotations

import dataclasses

import pytest

from servinglab import config


def test_defaults_with_an_empty_environment():
    settings = config.load(environ={})
    assert settings.by_name() == config.DEFAULTS
    assert settings == config.Settings()
    assert settings.model_dir == "models"
    assert settings.model_profile == "linear"
    assert settings.confidence_threshold == 0.6
    assert settings.max_instances == 1000
    assert settings.max_content_length == 1048576
    assert settings.preprocess_addr is None


def test_settings_are_frozen_and_typed():
    settings = config.load(environ={})
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.max_instances = 5  # type: ignore[misc]
    # A default written as an integer is still a number of the setting's type.
    assert type(settings.batch_max_wait_ms) is float and settings.batch_max_wait_ms == 2.0
    assert type(settings.hop_delay_ms) is float and type(settings.max_instances) is int
    assert config.DEFAULTS["BATCH_MAX_WAIT_MS"] == 2


def test_names_and_defaults_cover_every_setting():
    assert set(config.DEFAULTS) == {
        item.name.upper() for item in dataclasses.fields(config.Settings)
    } - {"EXTRA"}
    assert all(config.Settings().get(name) == default for name, default in config.DEFAULTS.items())


def test_loading_does_not_mutate_the_defaults():
    before = dict(config.DEFAULTS)
    config.load(environ={"LAB_MAX_INSTANCES": "5"}, overrides={"MODEL_DIR": "/elsewhere"})
    assert before == config.DEFAULTS


def test_unrelated_variables_are_ignored():
    settings = config.load(
        environ={
            "PATH": "/usr/bin",
            "LABEL_COLOUR": "red",
            "lab_MAX_INSTANCES": "3",
            "MAX_INSTANCES": "7",
        }
    )
    assert settings.by_name() == config.DEFAULTS
    assert settings.extra == {}


@pytest.mark.parametrize(
    "raw,parsed",
    [
        ("50", 50),
        ("0.75", 0.75),
        ("1e3", 1000.0),
        ("true", True),
        ("null", None),
        ('["a", "b"]', ["a", "b"]),
        ('"quoted"', "quoted"),
    ],
)
def test_values_are_parsed_as_json(raw, parsed):
    value = config.load(environ={"LAB_SETTING": raw}).get("SETTING")
    assert value == parsed
    assert type(value) is type(parsed)


@pytest.mark.parametrize(
    "raw", ["models/forest", "127.0.0.1:50051", "boosting", "sync", "0.0.0.0:8000", ""]
)
def test_plain_strings_stay_strings(raw):
    assert config.load(environ={"LAB_SETTING": raw}).get("SETTING") == raw


@pytest.mark.parametrize("raw", ["models/forest", "2024", "1e3", "true", "0.0.0.0:8000", ""])
def test_text_settings_keep_their_text(raw):
    assert config.load(environ={"LAB_MODEL_PROFILE": raw}).model_profile == raw


def test_a_json_string_or_null_reaches_a_text_setting_as_such():
    assert config.load(environ={"LAB_MODEL_PROFILE": '"forest"'}).model_profile == "forest"
    assert config.load(environ={"LAB_CACHE_URL": "null"}).cache_url is None


def test_env_overrides_defaults_with_typed_values():
    settings = config.load(
        environ={
            "LAB_MAX_INSTANCES": "50",
            "LAB_CONFIDENCE_THRESHOLD": "0.9",
            "LAB_MODEL_PROFILE": "forest",
            "LAB_HTTP_BIND": "0.0.0.0:9000",
        }
    )
    assert settings.max_instances == 50 and type(settings.max_instances) is int
    assert settings.confidence_threshold == 0.9
    assert settings.model_profile == "forest"
    assert settings.http_bind == "0.0.0.0:9000"
    # Untouched settings keep their defaults.
    assert settings.http_workers == 2


@pytest.mark.parametrize("raw, value", [("1e3", 1000), ("12", 12), (" 12 ", 12), ("", 1000)])
def test_integers_take_whole_numbers_and_empty_means_the_default(raw, value):
    settings = config.load(environ={"LAB_MAX_INSTANCES": raw})
    assert settings.max_instances == value and type(settings.max_instances) is int


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("on", True),
        ("off", False),
        ("True", True),
        ("false", False),
        ("1", True),
        ("0", False),
        ("yes", True),
        ("", False),
    ],
)
def test_switches_take_the_usual_spellings(raw, expected):
    assert config.load(environ={"LAB_GRPC_REUSEPORT": raw}).grpc_reuseport is expected


@pytest.mark.parametrize(
    "variable, raw",
    [
        ("LAB_MAX_INSTANCES", "2.5"),
        ("LAB_MAX_INSTANCES", "many"),
        ("LAB_MAX_INSTANCES", "true"),
        ("LAB_MAX_INSTANCES", "null"),
        ("LAB_CONFIDENCE_THRESHOLD", "high"),
        ("LAB_CONFIDENCE_THRESHOLD", "[1]"),
        ("LAB_BATCHING", "sometimes"),
        ("LAB_MODEL_DIR", "null"),
        ("LAB_HOP_DELAY_MS", "far"),
    ],
)
def test_a_bad_value_is_refused_naming_the_variable(variable, raw):
    with pytest.raises(config.SettingsError, match=f"^{variable} must be"):
        config.load(environ={variable: raw})


def test_overrides_are_checked_like_the_environment():
    with pytest.raises(config.SettingsError, match="LAB_HTTP_WORKERS"):
        config.load(environ={}, overrides={"HTTP_WORKERS": "two"})
    settings = config.load(environ={}, overrides={"HTTP_WORKERS": "3", "CONFIDENCE_THRESHOLD": 1})
    assert settings.http_workers == 3 and settings.confidence_threshold == 1.0
    with pytest.raises(config.SettingsError, match="LAB_MAX_INSTANCES"):
        dataclasses.replace(settings, max_instances=2.5)


def test_env_may_add_settings_without_defaults():
    assert config.load(environ={"LAB_EXTRA_FLAG": "1"}).get("EXTRA_FLAG") == 1


def test_explicit_overrides_win_over_env_and_defaults():
    settings = config.load(
        environ={"LAB_MAX_INSTANCES": "50", "LAB_MODEL_DIR": "from-env"},
        overrides={"MAX_INSTANCES": 7, "HTTP_WORKERS": 8},
    )
    assert settings.max_instances == 7
    assert settings.http_workers == 8
    assert settings.model_dir == "from-env"


def test_process_environment_is_the_default_source(monkeypatch):
    monkeypatch.setenv("LAB_MAX_INSTANCES", "12")
    monkeypatch.setenv("LAB_MODEL_DIR", "/srv/models")
    settings = config.load()
    assert settings.max_instances == 12
    assert settings.model_dir == "/srv/models"


def test_resolve_takes_settings_as_they_are_or_overrides():
    settings = config.load(environ={}, overrides={"MAX_INSTANCES": 5})
    assert config.resolve(settings) is settings
    assert config.resolve({"MAX_INSTANCES": 6}).max_instances == 6


def test_env_name():
    assert config.env_name("PREPROCESS_ADDR") == "LAB_PREPROCESS_ADDR"


def test_require_passes_when_present():
    settings = config.load(environ={"LAB_PREPROCESS_ADDR": "127.0.0.1:50051"})
    config.require(settings, "PREPROCESS_ADDR", "MODEL_DIR")


def test_require_names_every_missing_variable():
    settings = config.load(environ={"LAB_INFERENCE_ADDR": "127.0.0.1:50052"})
    with pytest.raises(RuntimeError) as caught:
        config.require(settings, "PREPROCESS_ADDR", "INFERENCE_ADDR", "POSTPROCESS_ADDR")
    message = str(caught.value)
    assert "LAB_PREPROCESS_ADDR, LAB_POSTPROCESS_ADDR" in message
    assert "LAB_INFERENCE_ADDR" not in message


def test_require_treats_empty_values_as_missing():
    with pytest.raises(RuntimeError, match="LAB_PREPROCESS_ADDR"):
        config.require(config.load(environ={"LAB_PREPROCESS_ADDR": ""}), "PREPROCESS_ADDR")


def test_require_treats_unknown_keys_as_missing():
    with pytest.raises(RuntimeError, match="LAB_NOT_A_SETTING"):
        config.require(config.load(environ={}), "NOT_A_SETTING")
