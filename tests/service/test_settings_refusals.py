"""Outside GEOFENCE_ENV=local, a placeholder hash key or an unset public URL stops start-up, with why."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from geofence.service.settings import PLACEHOLDER_HASH_KEY, Settings

GOOD = {"hash_key": "x7Qm2-generated-secret", "public_base_url": "https://geofence.example.com"}


@pytest.mark.parametrize("env", ["production", "staging", "test"])
def test_placeholder_hash_key_is_refused_outside_local(env):
    with pytest.raises(ValidationError, match="GEOFENCE_HASH_KEY is a placeholder"):
        Settings(env=env, public_base_url=GOOD["public_base_url"])
    with pytest.raises(ValidationError, match="GEOFENCE_HASH_KEY is a placeholder"):
        Settings(env=env, hash_key="change-me", public_base_url=GOOD["public_base_url"])


def test_unset_public_base_url_is_refused_outside_local():
    with pytest.raises(ValidationError, match="GEOFENCE_PUBLIC_BASE_URL is not set"):
        Settings(env="production", hash_key=GOOD["hash_key"])
    with pytest.raises(ValidationError, match="GEOFENCE_PUBLIC_BASE_URL is not set"):
        Settings(env="production", hash_key=GOOD["hash_key"], public_base_url=" ")


def test_local_keeps_its_defaults_and_a_configured_deployment_starts():
    assert Settings(env="local").hash_key.get_secret_value() == PLACEHOLDER_HASH_KEY
    assert Settings(env="production", **GOOD).public_base_url == GOOD["public_base_url"]


def test_serve_exits_with_the_reason_not_a_traceback(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GEOFENCE_")}
    env.update(GEOFENCE_ENV="production", GEOFENCE_DATABASE_URL=f"sqlite:///{tmp_path}/x.db")
    done = subprocess.run(
        [sys.executable, "-c", "from geofence.service.cli import main; main()", "serve", "--port", "0"],
        env=env, capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "GEOFENCE_HASH_KEY is a placeholder" in done.stderr
    assert "GEOFENCE_PUBLIC_BASE_URL is not set" in done.stderr
    assert "Traceback" not in done.stderr
