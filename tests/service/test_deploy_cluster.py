"""deploy/ for the scaled layout: the compose file and the Kubernetes manifests keep their promises
(a 3-node JetStream cluster, replicas 3, probes on the health routes), and a real 3-node cluster of
local ``nats-server`` processes run from the same ``cluster.conf`` survives the loss of a stream leader."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.service.bus import IN_CI

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
CLUSTER_CONF = (DEPLOY / "nats" / "cluster.conf").read_text()


def test_the_scaled_compose_file_runs_a_three_node_cluster_and_every_role_on_it() -> None:
    services = yaml.safe_load((DEPLOY / "compose.scaled.yaml").read_text())["services"]
    nats = {name: s for name, s in services.items() if name.startswith("nats-")}
    assert len(nats) == 3
    assert {s["environment"]["NATS_SERVER_NAME"] for s in nats.values()} == set(nats)
    for node in nats.values():
        routes = {v for k, v in node["environment"].items() if k.startswith("NATS_ROUTE_")}
        assert routes == {f"nats-route://{name}:6222" for name in nats}
        assert "./nats/cluster.conf:/etc/nats/cluster.conf:ro" in node["volumes"]
    for role in ("api", "ingest-worker", "event-worker"):
        env = services[role]["environment"]
        assert set(env["GEOFENCE_BUS"].split(",")) == {f"nats://{name}:4222" for name in nats}
        assert env["GEOFENCE_EVENT_STREAM__REPLICAS"] == "3"
        assert env["GEOFENCE_PARTITIONED__REPLICAS"] == "3"
    assert services["ingest-worker"]["command"] == ["geofence", "ingest-worker"]
    assert services["event-worker"]["command"] == ["geofence", "worker"]
    for name, service in services.items():
        for port in service.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond localhost"


def _k8s() -> dict[tuple[str, str], dict[str, object]]:
    docs = {}
    for path in (DEPLOY / "k8s").glob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and "metadata" in doc:
                docs[(doc["kind"], doc["metadata"]["name"])] = doc
    return docs


def test_kubernetes_runs_nats_as_a_statefulset_of_three_from_the_same_cluster_conf() -> None:
    docs = _k8s()
    assert docs[("ConfigMap", "nats-config")]["data"]["cluster.conf"] == CLUSTER_CONF  # type: ignore[index]
    sts = docs[("StatefulSet", "nats")]["spec"]
    assert sts["replicas"] == 3 and sts["serviceName"] == "nats-headless"  # type: ignore[index]
    (container,) = sts["template"]["spec"]["containers"]  # type: ignore[index]
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert {env[f"NATS_ROUTE_{i}"] for i in (1, 2, 3)} == {
        f"nats-route://nats-{i}.nats-headless:6222" for i in range(3)
    }
    assert container["readinessProbe"]["httpGet"]["path"].startswith("/healthz")
    app_config = docs[("ConfigMap", "geofence-config")]["data"]
    assert app_config["GEOFENCE_EVENT_STREAM__REPLICAS"] == "3"  # type: ignore[index]
    assert app_config["GEOFENCE_PARTITIONED__REPLICAS"] == "3"  # type: ignore[index]


def test_kubernetes_probes_use_the_health_routes_the_api_serves() -> None:
    from geofence.service.routes.health import router

    served = {route.path for route in router.routes}  # type: ignore[attr-defined]
    api = _k8s()[("Deployment", "geofence-api")]["spec"]["template"]["spec"]["containers"][0]  # type: ignore[index]
    assert api["readinessProbe"]["httpGet"]["path"] == "/readyz" in served
    assert api["livenessProbe"]["httpGet"]["path"] == "/healthz" in served
    workers = {name: _k8s()[("Deployment", name)]["spec"]["template"]["spec"]["containers"][0]["command"]  # type: ignore[index]
               for name in ("geofence-ingest-worker", "geofence-event-worker")}
    assert workers == {"geofence-ingest-worker": ["geofence", "ingest-worker"],
                       "geofence-event-worker": ["geofence", "worker"]}


def _nats_server() -> str:
    found = shutil.which("nats-server") or shutil.which("nats-server", path="/usr/sbin:/usr/local/bin")
    if not found:
        if IN_CI:
            pytest.fail("nats-server is required under CI=true")
        pytest.skip("nats-server not installed")
    return found


def test_the_cluster_config_is_valid_for_nats_server() -> None:
    env = {**os.environ, "NATS_SERVER_NAME": "n", "NATS_HOST": "127.0.0.1", "NATS_CLIENT_PORT": "4222",
           "NATS_CLUSTER_PORT": "6222", "NATS_MONITOR_PORT": "8222", "NATS_STORE_DIR": "/tmp/unused",
           **{f"NATS_ROUTE_{i}": f"nats-route://127.0.0.1:{6221 + i}" for i in (1, 2, 3)}}
    check = subprocess.run([_nats_server(), "-c", str(DEPLOY / "nats" / "cluster.conf"), "-t"], env=env,
                           capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.slow
def test_a_three_node_cluster_keeps_publishing_and_consuming_when_the_stream_leader_is_killed() -> None:
    _nats_server()
    run = subprocess.run([sys.executable, str(DEPLOY / "nats" / "local_cluster.py")], cwd=ROOT,
                         capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, run.stdout + run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 3 and result["new_leader"] != result["killed_leader"]
    # none lost, none stored twice
    assert result["stored"] == result["published"] == result["consumed_unique"] == 2000


@pytest.mark.slow
def test_on_a_three_node_cluster_the_fix_stream_and_the_lease_bucket_get_the_replicas_setting(
    tmp_path: Path,
) -> None:
    _nats_server()
    sys.path.insert(0, str(DEPLOY / "nats"))
    try:
        from local_cluster import start_cluster  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(DEPLOY / "nats"))
    from geofence.service.bus.link import NatsLink
    from geofence.service.settings import PartitionedIngestSettings

    config = PartitionedIngestSettings(replicas=3)
    with start_cluster(tmp_path) as cluster:
        link = NatsLink(cluster.urls, config)
        try:
            js = link.connect()
            fixes = link.call(js.stream_info(config.stream))
            leases = link.call(js.stream_info(f"KV_{config.lease_bucket}"))
        finally:
            link.close()
    assert fixes.config.num_replicas == 3 and 1 + len(fixes.cluster.replicas or []) == 3  # type: ignore[union-attr]
    assert leases.config.num_replicas == 3
