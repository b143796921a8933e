"""A real Prometheus (Debian's ``prometheus``, on loopback) scrapes a real relay with the rules
of the rendered PrometheusRule, as shipped: while the fake Zendesk refuses every ticket with a
422 (not retryable), the events go to the dead letters and AepRelayDeadLetters is seen firing
through Prometheus's HTTP API; before that, with the same series scraped, it is quiet."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.deploy.monitoring import DEPLOY, alert_rules, debian_binary, render_with_monitoring, rule_groups
from tests.e2e.relay_process import RelayProcess, free_port
from tests.fakes.zendesk import CannedResponse, FakeZendesk
from tests.load.loadgen import purchase, wait_until
from tests.load.test_durability import TOKEN, relay_env

pytestmark = [pytest.mark.e2e, pytest.mark.slow(seconds=30)]

ALERT = "AepRelayDeadLetters"
INTERVAL = "1s"  # scrape and rule evaluation: the relay's store figures refresh every 5 s


class PrometheusProcess:
    """``prometheus`` with a config, data dir and listen address of its own."""

    def __init__(self, workdir: Path, relay_port: int, groups: dict[str, Any]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.workdir = workdir
        (workdir / "rules.yaml").write_text(yaml.safe_dump(groups, sort_keys=False))
        config = {
            "global": {"scrape_interval": INTERVAL, "evaluation_interval": INTERVAL},
            "rule_files": ["rules.yaml"],
            "scrape_configs": [
                {
                    "job_name": "aep-relay",
                    "static_configs": [
                        {"targets": [f"127.0.0.1:{relay_port}"], "labels": {"namespace": "e2e"}}
                    ],
                }
            ],
        }
        (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.log_path = workdir / "prometheus.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    debian_binary("prometheus"),
                    f"--config.file={self.workdir / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        if not wait_until(self.ready, 30, interval=0.2):
            raise RuntimeError(f"prometheus did not become ready:\n{self.logs()}")

    def ready(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise RuntimeError(f"prometheus exited with {self.process.returncode}:\n{self.logs()}")
        try:
            return httpx.get(f"{self.url}/-/ready", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    def api(self, path: str, **params: str) -> Any:
        answer = httpx.get(f"{self.url}/api/v1/{path}", params=params, timeout=5)
        answer.raise_for_status()
        body = answer.json()
        assert body["status"] == "success", body
        return body["data"]

    def alerts(self, name: str) -> list[dict[str, Any]]:
        return [a for a in self.api("alerts")["alerts"] if a["labels"]["alertname"] == name]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def exposed_metrics(relay: RelayProcess) -> set[str]:
    """Every series name the relay's /metrics declares (``# TYPE`` lines: a labelled metric with
    no sample yet is declared too), with a histogram's ``_bucket``, ``_count`` and ``_sum``."""
    names: set[str] = set()
    for line in httpx.get(f"{relay.url}/metrics", timeout=10).text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            names.add(name)
            if kind == "histogram":
                names |= {f"{name}_bucket", f"{name}_count", f"{name}_sum"}
    return names


@pytest.fixture
def relay(fake_zendesk: FakeZendesk, tmp_path: Path) -> Iterator[RelayProcess]:
    fake_zendesk.set_default(
        CannedResponse(422, {"error": "RecordInvalid", "description": "Record validation errors"})
    )
    process = RelayProcess(relay_env(fake_zendesk), tmp_path / "relay.log")
    process.start()
    try:
        yield process
    finally:
        process.stop()


def test_the_dead_letter_alert_fires_in_a_real_prometheus(
    relay: RelayProcess, fake_zendesk: FakeZendesk, tmp_path: Path
) -> None:
    groups = rule_groups(render_with_monitoring(DEPLOY / "overlays" / "single", tmp_path / "render"))
    assert "for" not in alert_rules(groups)[ALERT]  # the shipped rule, unchanged
    named = {m for rule in alert_rules(groups).values() for m in re.findall(r"\baep_relay_\w+", rule["expr"])}
    assert len(named) >= 10
    assert named <= exposed_metrics(relay), named - exposed_metrics(relay)
    workdir = tmp_path / "prometheus"
    workdir.mkdir()
    prometheus = PrometheusProcess(workdir, relay.port, groups)
    prometheus.start()
    try:

        def scraped() -> bool:
            result = prometheus.api(
                "query", query='count_over_time(aep_relay_store_dead_letters{namespace="e2e"}[1m])'
            )
            return bool(result["result"]) and float(result["result"][0]["value"][1]) >= 3

        assert wait_until(scraped, 30, interval=0.5), prometheus.api("targets")
        rules = prometheus.api("rules")["groups"]
        assert {r["name"] for g in rules for r in g["rules"]} == set(alert_rules(groups))
        assert all(r["health"] == "ok" for g in rules for r in g["rules"]), rules
        assert prometheus.alerts(ALERT) == []  # scraped, evaluated, and quiet with no dead letter

        answer = httpx.post(
            f"{relay.url}/v1/events",
            content=purchase("order-dead-1"),
            headers={"Authorization": f"Bearer {TOKEN}", "Content-Type": "text/plain"},
            timeout=30,
        )
        assert answer.status_code in (200, 202, 207, 422), answer.text
        assert wait_until(lambda: len(fake_zendesk.received) >= 1, 15), relay.logs()[-2000:]

        def firing() -> bool:
            return any(a["state"] == "firing" for a in prometheus.alerts(ALERT))

        assert wait_until(firing, 30, interval=0.5), (prometheus.api("alerts"), relay.logs()[-2000:])
        [alert] = prometheus.alerts(ALERT)
        assert alert["labels"] == {"alertname": ALERT, "namespace": "e2e", "severity": "warning"}
    finally:
        prometheus.stop()
