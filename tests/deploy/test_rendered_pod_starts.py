"""The relay starts from what the single overlay gives its pod: the environment of the rendered
ConfigMap, the mappings folder as the projected ConfigMaps lay it out, the Secret's files.
The pod's mount paths are remapped under a temporary folder; the rest is the rendered text."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import MAPPINGS
from tests.deploy.manifests import Doc, find, render
from tests.deploy.test_manifests import DEPLOY, container, relay, settings
from tests.e2e.relay_process import RelayProcess

SECRET_VALUES = {"RELAY_INGEST_TOKENS": "k8s-ingest-1,k8s-ingest-2", "RELAY_ADMIN_TOKEN": "k8s-admin"}


def materialise(docs: list[Doc], root: Path) -> dict[str, str]:
    """Lay out the pod's volumes under ``root`` as kubelet would; the environment, remapped."""
    pod = relay(docs)["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: root / m["mountPath"].lstrip("/") for m in container(docs)["volumeMounts"]}
    env = settings(docs)
    for mount in container(docs)["volumeMounts"]:
        target = mounts[mount["mountPath"]]
        target.mkdir(parents=True)
        for source in volumes[mount["name"]].get("projected", {}).get("sources", []):
            data = find(docs, "ConfigMap", source["configMap"]["name"])["data"]
            items = source["configMap"].get("items") or [{"key": k, "path": k} for k in data]
            for item in items:
                (target / item["path"]).parent.mkdir(parents=True, exist_ok=True)
                (target / item["path"]).write_text(data[item["key"]])
    for key in env:
        if key.endswith("_FILE"):  # the Secret: one file per key named by a *_FILE setting
            name = key.removesuffix("_FILE")
            Path(remap(env[key], mounts)).write_text(SECRET_VALUES.get(name, f"test-{name.lower()}"))
    return {key: remap(value, mounts) for key, value in env.items()}


def remap(value: str, mounts: dict[str, Path]) -> str:
    """A path (or ``sqlite:///`` URL) under a mount path, moved to where that mount was laid out."""
    paths = "|".join(re.escape(p) for p in sorted(mounts, key=len, reverse=True))
    return re.sub(rf"(^|:///)({paths})(?=/|$)", lambda m: m.group(1) + str(mounts[m.group(2)]), value)


@pytest.fixture
def pod_relay(tmp_path: Path) -> RelayProcess:
    docs = render(DEPLOY / "overlays" / "single")
    env = materialise(docs, tmp_path / "pod")
    # No send can happen (nothing is ingested), but never point a test at the internet.
    env["ZENDESK_BASE_URL"] = "http://127.0.0.1:9"
    relay_process = RelayProcess(env, tmp_path / "relay.log")
    relay_process.env.pop("RELAY_ALLOW_UNAUTHENTICATED", None)
    return relay_process


def test_the_relay_starts_ready_from_the_rendered_pod_and_stops_cleanly(pod_relay: RelayProcess) -> None:
    pod_relay.start()
    try:
        ready = httpx.get(f"{pod_relay.url}/readyz", timeout=5)
        assert ready.status_code == 200, ready.text
        names = [yaml.safe_load(p.read_text())["name"] for p in MAPPINGS.glob("*.yaml")]
        assert sorted(ready.json()["mappings"]) == sorted(names)
        assert ready.json()["dry_run"]["zendesk"] is False  # the OAuth token file was read
        payload = (MAPPINGS / "examples" / "purchase.json").read_bytes()
        for token, status in (("k8s-ingest-2", 200), ("wrong", 401)):
            answer = httpx.post(
                f"{pod_relay.url}/v1/preview", content=payload, headers={"Authorization": f"Bearer {token}"}
            )
            assert answer.status_code == status, answer.text
        admin = httpx.get(f"{pod_relay.url}/v1/dead-letters", headers={"Authorization": "Bearer k8s-admin"})
        assert admin.status_code == 200, admin.text
    finally:
        code = pod_relay.stop()
    assert code in (0, -15), pod_relay.logs()  # uvicorn re-raises SIGTERM after a graceful stop
    assert '"event": "stopped"' in pod_relay.logs()
    assert (Path(pod_relay.env["RELAY_STORE"].removeprefix("sqlite:///"))).is_file()
