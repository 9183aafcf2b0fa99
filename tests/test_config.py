"""Settings.from_env: defaults, parsing, validation that names the variable, URL redaction."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

import pytest

from shap_service.config import DEFAULTS, Settings, SettingsError, settings_table


def test_defaults_from_an_empty_environment() -> None:
    s = Settings.from_env({})
    assert s.redis_url == "redis://localhost:6379/0"
    assert s.queue_name == "shap-jobs"
    assert s.admin_token == "" and s.api_key == ""
    assert s.host == "127.0.0.1" and s.port == 8000
    assert s.heartbeat_interval == 2.0 and s.liveness_ttl == 6.0 and s.sweep_interval == 2.0
    assert s.max_attempts == 3
    assert s.job_timeout == 180
    assert s.hard_kill_grace == 10.0
    assert s.result_ttl == 86400 and s.failure_ttl == 7 * 86400
    assert s.connection_check is True and s.connection_grace == 0.6
    assert s.shutdown_grace == 20.0
    assert s.api_sweeper is True
    assert s.chaos_hooks is False
    assert s.model_cache_dir == ""
    assert s.log_level == "INFO"
    assert s.recovery_bound_s == 8.0


def test_defaults_table_matches_the_dataclass() -> None:
    # DEFAULTS feeds the README; the dataclass defaults are what Settings() uses.
    names = [f.name.upper() for f in fields(Settings)]
    assert sorted(names) == sorted(DEFAULTS)
    plain = Settings()
    for f in fields(Settings):
        default = DEFAULTS[f.name.upper()][0]
        assert getattr(plain, f.name) == default, f.name
        assert type(getattr(plain, f.name)) is type(default), f.name
    assert Settings.from_env({}) == plain


def test_unrelated_and_lowercase_variables_are_ignored() -> None:
    assert Settings.from_env({"PATH": "/bin", "port": "1", "Redis_Url": "x"}) == Settings()


def test_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("QUEUE_NAME", "from-os-env")
    monkeypatch.setenv("MAX_ATTEMPTS", "7")
    s = Settings.from_env()
    assert s.queue_name == "from-os-env" and s.max_attempts == 7


@pytest.mark.parametrize("raw", ["1", "true", "TRUE", "yes", "On", " true "])
def test_bool_true(raw: str) -> None:
    assert Settings.from_env({"CHAOS_HOOKS": raw, "API_SWEEPER": raw}).chaos_hooks is True


@pytest.mark.parametrize("raw", ["0", "false", "False", "no", "OFF", ""])
def test_bool_false(raw: str) -> None:
    s = Settings.from_env({"CONNECTION_CHECK": raw, "API_SWEEPER": raw})
    assert s.connection_check is False and s.api_sweeper is False


def test_ints_and_floats_and_strings() -> None:
    s = Settings.from_env(
        {
            "PORT": "9001",
            "MAX_ATTEMPTS": "5",
            "JOB_TIMEOUT": " 30 ",
            "HEARTBEAT_INTERVAL": "0.5",
            "LIVENESS_TTL": "1",
            "SWEEP_INTERVAL": "0.25",
            "SHUTDOWN_GRACE": "1e1",
            "REDIS_URL": "rediss://default:pw@cache.example:6380/2",
            "QUEUE_NAME": "q2",
        }
    )
    assert (s.port, s.max_attempts, s.job_timeout) == (9001, 5, 30)
    assert all(type(v) is int for v in (s.port, s.max_attempts, s.job_timeout))
    assert (s.heartbeat_interval, s.liveness_ttl, s.sweep_interval, s.shutdown_grace) == (0.5, 1.0, 0.25, 10.0)
    assert all(type(v) is float for v in (s.heartbeat_interval, s.liveness_ttl, s.shutdown_grace))
    assert s.redis_url == "rediss://default:pw@cache.example:6380/2"
    assert s.queue_name == "q2"
    assert s.recovery_bound_s == 1.25


def test_overrides_win_and_none_overrides_are_ignored() -> None:
    s = Settings.from_env({"PORT": "9001", "HOST": "0.0.0.0"}, port=9100, host=None)
    assert s.port == 9100
    assert s.host == "0.0.0.0"


@pytest.mark.parametrize(
    "name, raw, needle",
    [
        ("CHAOS_HOOKS", "maybe", "expected true/false"),
        ("API_SWEEPER", "2", "expected true/false"),
        ("PORT", "80x", "expected an integer"),
        ("MAX_ATTEMPTS", "2.5", "expected an integer"),
        ("JOB_TIMEOUT", "", "expected an integer"),
        ("HEARTBEAT_INTERVAL", "soon", "expected a number of seconds"),
        ("LIVENESS_TTL", "6s", "expected a number of seconds"),
    ],
)
def test_bad_value_names_the_variable(name: str, raw: str, needle: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({name: raw})
    assert str(err.value) == f"{name}={raw!r}: {needle}"


@pytest.mark.parametrize(
    "env, needle",
    [
        ({"MAX_ATTEMPTS": "0"}, "MAX_ATTEMPTS"),
        ({"JOB_TIMEOUT": "0"}, "JOB_TIMEOUT"),
        ({"HEARTBEAT_INTERVAL": "0"}, "HEARTBEAT_INTERVAL"),
        ({"SWEEP_INTERVAL": "-1"}, "SWEEP_INTERVAL"),
        ({"LIVENESS_TTL": "nan"}, "LIVENESS_TTL"),
        ({"HEARTBEAT_INTERVAL": "nan"}, "HEARTBEAT_INTERVAL"),
        ({"SWEEP_INTERVAL": "nan"}, "SWEEP_INTERVAL"),
        ({"HEARTBEAT_INTERVAL": "inf", "LIVENESS_TTL": "inf"}, "HEARTBEAT_INTERVAL"),
    ],
)
def test_unusable_values_rejected(env: dict[str, str], needle: str) -> None:
    with pytest.raises(SettingsError, match=needle):
        Settings.from_env(env)


@pytest.mark.parametrize("hb, ttl", [("2", "3.99"), ("1", "1.5"), ("0.5", "0.9")])
def test_liveness_ttl_below_twice_heartbeat_rejected(hb: str, ttl: str) -> None:
    with pytest.raises(SettingsError) as err:
        Settings.from_env({"HEARTBEAT_INTERVAL": hb, "LIVENESS_TTL": ttl})
    message = str(err.value)
    assert f"LIVENESS_TTL={float(ttl)}" in message
    assert f"HEARTBEAT_INTERVAL={float(hb)}" in message
    assert "twice" in message


def test_liveness_ttl_of_exactly_twice_heartbeat_accepted() -> None:
    s = Settings.from_env({"HEARTBEAT_INTERVAL": "2", "LIVENESS_TTL": "4"})
    assert (s.heartbeat_interval, s.liveness_ttl) == (2.0, 4.0)


def test_direct_construction_is_validated_too() -> None:
    with pytest.raises(SettingsError, match="LIVENESS_TTL"):
        Settings(heartbeat_interval=5.0, liveness_ttl=6.0)


@pytest.mark.parametrize(
    "url, redacted",
    [
        ("redis://user:s3cret@host:6379/0", "redis://user:***@host:6379/0"),
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        ("rediss://default:s3cret@cache.example:6380", "rediss://default:***@cache.example:6380"),
        ("redis://u:p@ss:w0rd@host/1", "redis://u:***@host/1"),
        ("redis://s3cret@host:6379", "redis://:***@host:6379"),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("unix:///tmp/redis.sock", "unix:///tmp/redis.sock"),
    ],
)
def test_redacted_url_hides_the_password(url: str, redacted: str) -> None:
    s = Settings(redis_url=url)
    assert s.redacted_url() == redacted
    assert "s3cret" not in s.redacted_url() and "w0rd" not in s.redacted_url()


def test_model_cache_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert Settings(model_cache_dir=str(tmp_path)).model_cache_path == tmp_path
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert Settings().model_cache_path == tmp_path / "xdg" / "shap-service"


def test_fix_io_timeout_leaves_room_for_a_retry_inside_the_lease() -> None:
    assert Settings.from_env({}).redis_io_timeout_s == 1.5
    ci = Settings.from_env({"HEARTBEAT_INTERVAL": "0.5", "LIVENESS_TTL": "2"})
    assert ci.redis_io_timeout_s == 0.5
    assert Settings.from_env({"HEARTBEAT_INTERVAL": "0.1", "LIVENESS_TTL": "0.4"}).redis_io_timeout_s == 0.25
    for s in (Settings.from_env({}), ci):  # a stuck beat + a fresh connect + a beat fit the lease
        assert s.heartbeat_interval + 2 * s.redis_io_timeout_s < s.liveness_ttl


def test_the_readme_configuration_table_is_generated_from_the_defaults() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    start = readme.index("<!-- generated by `python -m shap_service.config`")
    section = readme[readme.index("\n", start) + 1 : readme.index("<!-- end of generated table -->")]
    assert section == settings_table(), "README's table is stale: paste `python -m shap_service.config` into it"
