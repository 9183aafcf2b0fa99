"""render.yaml is a valid Blueprint that deploys the service with the fix, and holds no secret."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest
import yaml

from shap_service.config import DEFAULTS

BLUEPRINT = Path(__file__).resolve().parent.parent / "render.yaml"


@pytest.fixture(scope="module")
def services() -> dict[str, dict]:
    doc = yaml.safe_load(BLUEPRINT.read_text())
    return {s["type"]: s for s in doc["services"]}


def test_three_services_of_the_right_types(services):
    assert set(services) == {"web", "worker", "keyvalue"}
    for kind in ("web", "worker"):
        assert services[kind]["runtime"] == "python"
        assert services[kind]["buildCommand"] == "pip install ."


def test_web_runs_the_api_with_health_check_and_repair_before_deploy(services):
    web = services["web"]
    assert web["startCommand"] == "shap-api"
    assert web["healthCheckPath"] == "/ping"
    assert shlex.split(web["preDeployCommand"])[0] == "repair-stuck-jobs"


def test_worker_runs_the_fixed_worker_forever_on_2gb(services):
    worker = services["worker"]
    argv = shlex.split(worker["startCommand"])
    assert argv[0] == "shap-worker"
    assert "--burst" not in argv and "--fix" not in argv
    assert worker["plan"] == "standard"


def test_keyvalue_is_internal_and_never_evicts(services):
    kv = services["keyvalue"]
    assert kv["ipAllowList"] == []
    assert kv["maxmemoryPolicy"] == "noeviction"


def test_redis_url_is_wired_from_the_keyvalue_service(services):
    for kind in ("web", "worker"):
        env = {e["key"]: e for e in services[kind]["envVars"]}
        assert env["REDIS_URL"]["fromService"] == {
            "type": "keyvalue",
            "name": services["keyvalue"]["name"],
            "property": "connectionString",
        }


def test_no_secret_in_the_file(services):
    text = BLUEPRINT.read_text()
    assert not re.search(r"rediss?://[^\s]*:[^\s]*@", text), "a Redis URL with a password is committed"
    for kind in ("web", "worker"):
        for env in services[kind]["envVars"]:
            if re.search(r"TOKEN|KEY|PASSWORD|SECRET", env["key"]):
                assert env == {"key": env["key"], "sync": False}, env


def test_every_env_var_is_a_known_setting(services):
    for kind in ("web", "worker"):
        for env in services[kind]["envVars"]:
            assert env["key"] in DEFAULTS, env["key"]
