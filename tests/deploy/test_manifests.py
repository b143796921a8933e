"""Every overlay in deploy/ renders, passes the Kubernetes schemas, yamllint and the workload
rules, and keeps what the relay relies on (probes, grace period, mounts, store per overlay)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import MAPPINGS, ROOT
from tests.deploy.manifests import Doc, find, lint_errors, policy_errors, render, schema_errors

DEPLOY = ROOT / "deploy"
OVERLAYS = sorted(p.parent.name for p in (DEPLOY / "overlays").glob("*/kustomization.yaml"))
SECRETS_DIR = "/run/secrets/aep-relay"


@pytest.fixture(scope="module", params=OVERLAYS)
def overlay(request: pytest.FixtureRequest) -> tuple[str, list[Doc]]:
    return request.param, render(DEPLOY / "overlays" / request.param)


def relay(docs: list[Doc]) -> Doc:
    return find(docs, "Deployment", "aep-relay")


def container(docs: list[Doc]) -> Doc:
    [relay_container] = relay(docs)["spec"]["template"]["spec"]["containers"]
    return relay_container


def settings(docs: list[Doc]) -> dict[str, str]:
    """The relay's environment from its generated ConfigMap (the name carries a hash)."""
    [ref] = [s["configMapRef"]["name"] for s in container(docs)["envFrom"]]
    data: dict[str, str] = find(docs, "ConfigMap", ref)["data"]
    return data


def kinds(docs: list[Doc]) -> set[str]:
    return {d["kind"] for d in docs}


def test_the_overlays_are_the_documented_ones() -> None:
    assert OVERLAYS == ["replicas", "replicas-with-redis", "single"]


def test_every_overlay_passes_the_kubernetes_schemas(overlay: tuple[str, list[Doc]]) -> None:
    assert schema_errors(overlay[1]) == []


def test_every_overlay_keeps_the_workload_rules(overlay: tuple[str, list[Doc]]) -> None:
    assert policy_errors(overlay[1]) == []


def test_the_sources_pass_yamllint() -> None:
    files = [*DEPLOY.rglob("*.yaml"), MAPPINGS / "Kustomization"]
    assert len(files) > 10
    assert lint_errors(files) == []


def test_probes_hit_readyz_and_healthz_on_the_relay_port(overlay: tuple[str, list[Doc]]) -> None:
    relay_container = container(overlay[1])
    assert relay_container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert relay_container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    ports = {p["name"]: p["containerPort"] for p in relay_container["ports"]}
    assert ports == {"http": 8080}  # the port of the image's CMD
    service = find(overlay[1], "Service", "aep-relay")
    assert [p["targetPort"] for p in service["spec"]["ports"]] == ["http"]


def test_the_grace_period_covers_the_pause_the_relay_grace_and_a_margin(
    overlay: tuple[str, list[Doc]],
) -> None:
    docs = overlay[1]
    pause_command = container(docs)["lifecycle"]["preStop"]["exec"]["command"]
    assert pause_command[0] == "sleep"
    pause = float(pause_command[1])
    relay_grace = float(settings(docs)["RELAY_SHUTDOWN_GRACE"])
    grace = relay(docs)["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert pause >= 3
    assert grace >= pause + relay_grace + 5


def test_the_pod_runs_as_the_images_user_with_a_read_only_root(overlay: tuple[str, list[Doc]]) -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    [user] = re.findall(r"^USER (\d+)", dockerfile, re.MULTILINE)
    pod = relay(overlay[1])["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsUser"] == int(user)
    mounts = {m["mountPath"]: m for m in container(overlay[1])["volumeMounts"]}
    assert "/tmp" in mounts  # the one writable place besides the store's volume
    assert mounts["/app/mappings"]["readOnly"] is True


def test_secrets_are_read_from_files_of_the_mounted_secret(overlay: tuple[str, list[Doc]]) -> None:
    env = settings(overlay[1])
    files = {k: v for k, v in env.items() if k.endswith("_FILE")}
    assert {"RELAY_INGEST_TOKENS_FILE", "RELAY_ADMIN_TOKEN_FILE"} <= set(files)
    for key, path in files.items():
        assert path == f"{SECRETS_DIR}/{key.removesuffix('_FILE')}"
    for key in env:
        assert not re.search(r"TOKEN$|PASSWORD$|SECRET$|API_KEY$", key), f"{key} in clear in a ConfigMap"
    mounts = {m["name"]: m["mountPath"] for m in container(overlay[1])["volumeMounts"]}
    volumes = {v["name"]: v for v in relay(overlay[1])["spec"]["template"]["spec"]["volumes"]}
    assert volumes["secrets"]["secret"]["secretName"] == "aep-relay"
    assert mounts["secrets"] == SECRETS_DIR


def test_the_mappings_configmaps_hold_the_whole_mappings_folder(overlay: tuple[str, list[Doc]]) -> None:
    docs = overlay[1]
    mapping_files = {p.name for p in MAPPINGS.glob("*.y*ml")}
    example_files = {p.name for p in (MAPPINGS / "examples").iterdir()}
    assert set(find(docs, "ConfigMap", "aep-relay-mappings")["data"]) == mapping_files
    assert set(find(docs, "ConfigMap", "aep-relay-mapping-examples")["data"]) == example_files
    volumes = {v["name"]: v for v in relay(docs)["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in container(docs)["volumeMounts"]}
    sources = {
        s["configMap"]["name"]: s["configMap"]
        for s in volumes[mounts["/app/mappings"]]["projected"]["sources"]
    }
    assert "items" not in sources["aep-relay-mappings"]  # every mapping file, new ones too
    items = {i["key"]: i["path"] for i in sources["aep-relay-mapping-examples"]["items"]}
    assert items == {name: f"examples/{name}" for name in example_files}  # where `input:` finds them
    assert settings(docs)["RELAY_MAPPINGS_DIR"] == "/app/mappings"


def test_the_mappings_configmaps_keep_their_names_so_updates_reach_running_pods(
    overlay: tuple[str, list[Doc]],
) -> None:
    names = {d["metadata"]["name"] for d in overlay[1] if d["kind"] == "ConfigMap"}
    assert {"aep-relay-mappings", "aep-relay-mapping-examples"} <= names
    # while a changed environment gets a new name, so the pods roll
    assert any(re.fullmatch(r"aep-relay-env-[a-z0-9]{10}", n) for n in names)


def test_single_is_one_pod_on_sqlite_on_a_volume() -> None:
    docs = render(DEPLOY / "overlays" / "single")
    deployment = relay(docs)
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert not kinds(docs) & {"HorizontalPodAutoscaler", "PodDisruptionBudget", "StatefulSet"}
    store = settings(docs)["RELAY_STORE"]
    assert store.startswith("sqlite:///")
    db_dir = str(Path(store.removeprefix("sqlite:///")).parent)
    mounts = {m["mountPath"]: m["name"] for m in container(docs)["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    claim = volumes[mounts[db_dir]]["persistentVolumeClaim"]["claimName"]
    assert find(docs, "PersistentVolumeClaim", claim)["spec"]["accessModes"] == ["ReadWriteOnce"]


@pytest.mark.parametrize("name", ["replicas", "replicas-with-redis"])
def test_replicas_share_redis_autoscale_and_roll_without_a_gap(name: str) -> None:
    docs = render(DEPLOY / "overlays" / name)
    deployment = relay(docs)
    assert "replicas" not in deployment["spec"]
    assert deployment["spec"]["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    hpa = find(docs, "HorizontalPodAutoscaler", "aep-relay")
    assert hpa["spec"]["minReplicas"] >= 2
    assert find(docs, "PodDisruptionBudget", "aep-relay")["spec"]["maxUnavailable"] == 1
    [store] = [e for e in container(docs)["env"] if e["name"] == "RELAY_STORE"]
    assert store["valueFrom"]["secretKeyRef"] == {"name": "aep-relay", "key": "RELAY_STORE"}
    assert "RELAY_STORE" not in settings(docs)
    egress_ports = _ports(find(docs, "NetworkPolicy", "aep-relay")["spec"]["egress"])
    assert {("UDP", 53), ("TCP", 53), ("TCP", 443), ("TCP", 6379)} == egress_ports


def test_the_shipped_redis_is_durable_private_and_on_a_volume() -> None:
    docs = render(DEPLOY / "overlays" / "replicas-with-redis")
    redis = find(docs, "StatefulSet", "aep-relay-redis")
    [server] = redis["spec"]["template"]["spec"]["containers"]
    args = " ".join(server["args"])
    assert "--appendonly yes" in args and "--appendfsync always" in args
    assert "--maxmemory-policy noeviction" in args  # never evict a delivery
    assert "--requirepass $(REDIS_PASSWORD)" in args
    mounts = {m["mountPath"]: m["name"] for m in server["volumeMounts"]}
    [claim] = redis["spec"]["volumeClaimTemplates"]
    assert mounts["/data"] == claim["metadata"]["name"]
    policy = find(docs, "NetworkPolicy", "aep-relay-redis")["spec"]
    assert policy["policyTypes"] == ["Ingress", "Egress"] and "egress" not in policy
    [rule] = policy["ingress"]
    assert rule["from"] == [{"podSelector": {"matchLabels": {"app.kubernetes.io/name": "aep-relay"}}}]
    service = find(docs, "Service", "aep-relay-redis")
    assert service["spec"]["selector"] == redis["spec"]["template"]["metadata"]["labels"]
    assert redis["spec"]["serviceName"] == "aep-relay-redis"


def test_the_readme_commands_name_the_real_overlays() -> None:
    readme = (DEPLOY / "README.md").read_text()
    applied = set(re.findall(r"kubectl apply -k deploy/overlays/([\w-]+)", readme))
    assert applied == set(OVERLAYS)


def _ports(rules: list[dict[str, Any]]) -> set[tuple[str, int]]:
    return {(p["protocol"], p["port"]) for rule in rules for p in rule["ports"]}
