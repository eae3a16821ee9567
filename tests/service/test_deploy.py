"""deploy/: .env.example documents every setting; the image and compose file keep their promises."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from geofence.service.settings import Settings

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
SETTING_LINE = re.compile(r"^#? ?[A-Z][A-Z0-9_]*=")


def _env_names(model: type[BaseModel], prefix: str = "GEOFENCE_") -> list[str]:
    names = []
    for name, field in model.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names += _env_names(annotation, f"{prefix}{name.upper()}__")
        else:
            names.append(f"{prefix}{name.upper()}")
    return names


def test_env_example_documents_every_setting_with_a_comment():
    text = (DEPLOY / ".env.example").read_text()
    lines = text.splitlines()
    missing, uncommented = [], []
    for name in _env_names(Settings):
        index = next((i for i, line in enumerate(lines) if re.match(rf"^#? ?{name}=", line)), None)
        if index is None:
            missing.append(name)
        else:  # the nearest line above that is not a setting must be an explanation
            above = index - 1
            while above >= 0 and SETTING_LINE.match(lines[above]):
                above -= 1
            if above < 0 or not lines[above].startswith("# "):
                uncommented.append(name)
    assert not missing, f"add these settings to deploy/.env.example: {missing}"
    assert not uncommented, f"explain these settings with a comment line above them: {uncommented}"


def test_env_example_values_parse_as_settings(monkeypatch):
    for line in (DEPLOY / ".env.example").read_text().splitlines():
        match = re.match(r"^#? ?(GEOFENCE_[A-Z0-9_]+)=(.*)$", line)
        if match and match.group(2):
            monkeypatch.setenv(match.group(1), match.group(2))
    with pytest.raises(ValueError, match="GEOFENCE_HASH_KEY is a placeholder"):
        Settings()  # the example's hash key must be replaced before a production start
    monkeypatch.setenv("GEOFENCE_HASH_KEY", "a-generated-secret-for-this-test")
    Settings()  # raises on a value of the wrong type


def test_compose_binds_ports_to_localhost_and_runs_one_worker():
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    services = compose["services"]
    assert {"api", "worker", "postgres"} <= set(services)
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"
    assert services["worker"]["command"] == ["geofence", "worker"]
    assert services["api"]["environment"]["GEOFENCE_SCHEDULER__ENABLED"] == "false"


def test_dockerfile_runs_the_factory_as_a_non_root_user():
    dockerfile = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.\d+-slim", dockerfile, re.M)
    users = re.findall(r"^USER (\S+)", dockerfile, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert "uvicorn --factory geofence.service.app:create_app" in dockerfile
