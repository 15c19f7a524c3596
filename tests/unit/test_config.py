"""Unit tests for settings loading (`servinglab.config`): defaults, `LAB_*` variables, overrides.

Every test passes its own environment mapping, so the real process environment never leaks in.
"""

from __future__ import annotations

import pytest

from servinglab import config


def test_defaults_with_an_empty_environment():
    settings = config.load(environ={})
    assert settings == config.DEFAULTS
    assert settings is not config.DEFAULTS
    assert settings["MODEL_DIR"] == "models"
    assert settings["MODEL_PROFILE"] == "linear"
    assert settings["CONFIDENCE_THRESHOLD"] == 0.6
    assert settings["MAX_INSTANCES"] == 1000
    assert settings["MAX_CONTENT_LENGTH"] == 1048576
    assert settings["PREPROCESS_ADDR"] is None


def test_loading_does_not_mutate_the_defaults():
    before = dict(config.DEFAULTS)
    config.load(environ={"LAB_MAX_INSTANCES": "5"}, overrides={"MODEL_DIR": "/elsewhere"})
    assert config.DEFAULTS == before


def test_unrelated_variables_are_ignored():
    settings = config.load(environ={"PATH": "/usr/bin", "LABEL_COLOUR": "red", "lab_MAX_INSTANCES": "3",
                                    "MAX_INSTANCES": "7"})
    assert settings == config.DEFAULTS


@pytest.mark.parametrize("raw,parsed", [
    ("50", 50),
    ("0.75", 0.75),
    ("1e3", 1000.0),
    ("true", True),
    ("null", None),
    ('["a", "b"]', ["a", "b"]),
    ('"quoted"', "quoted"),
])
def test_values_are_parsed_as_json(raw, parsed):
    value = config.load(environ={"LAB_SETTING": raw})["SETTING"]
    assert value == parsed
    assert type(value) is type(parsed)


@pytest.mark.parametrize("raw", ["models/forest", "127.0.0.1:50051", "boosting", "sync", "0.0.0.0:8000", ""])
def test_plain_strings_stay_strings(raw):
    assert config.load(environ={"LAB_SETTING": raw})["SETTING"] == raw


def test_env_overrides_defaults_with_typed_values():
    settings = config.load(environ={
        "LAB_MAX_INSTANCES": "50",
        "LAB_CONFIDENCE_THRESHOLD": "0.9",
        "LAB_MODEL_PROFILE": "forest",
        "LAB_HTTP_BIND": "0.0.0.0:9000",
    })
    assert settings["MAX_INSTANCES"] == 50 and type(settings["MAX_INSTANCES"]) is int
    assert settings["CONFIDENCE_THRESHOLD"] == 0.9
    assert settings["MODEL_PROFILE"] == "forest"
    assert settings["HTTP_BIND"] == "0.0.0.0:9000"
    # Untouched settings keep their defaults.
    assert settings["HTTP_WORKERS"] == 2


def test_env_may_add_settings_without_defaults():
    assert config.load(environ={"LAB_EXTRA_FLAG": "1"})["EXTRA_FLAG"] == 1


def test_explicit_overrides_win_over_env_and_defaults():
    settings = config.load(environ={"LAB_MAX_INSTANCES": "50", "LAB_MODEL_DIR": "from-env"},
                           overrides={"MAX_INSTANCES": 7, "HTTP_WORKERS": 8})
    assert settings["MAX_INSTANCES"] == 7
    assert settings["HTTP_WORKERS"] == 8
    assert settings["MODEL_DIR"] == "from-env"


def test_process_environment_is_the_default_source(monkeypatch):
    monkeypatch.setenv("LAB_MAX_INSTANCES", "12")
    monkeypatch.setenv("LAB_MODEL_DIR", "/srv/models")
    settings = config.load()
    assert settings["MAX_INSTANCES"] == 12
    assert settings["MODEL_DIR"] == "/srv/models"


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
