"""The ``aep-relay`` command line, run as a real process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import EXAMPLES, MAPPINGS
from tests.e2e.relay_process import ROOT


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        cwd=ROOT, env={"PATH": "/usr/bin:/bin", **(env or {})}, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_mappings_test_passes_on_the_shipped_mappings() -> None:
    done = cli("mappings", "test", str(MAPPINGS))
    assert done.returncode == 0, done.stdout + done.stderr
    passes = done.stdout.count("PASS ")
    assert passes >= 11 and f"{passes} passed, 0 failed" in done.stdout  # every example, none failing


def test_mappings_test_reports_a_failing_example(tmp_path: Path) -> None:
    (tmp_path / "m.yaml").write_text(
        "destination: zendesk\nbody:\n  event: {source: s, type: t, properties: {a: '{{ xdm.a }}'}}\n"
        "examples:\n  - input: {xdm: {a: 1}}\n    expect: {event: {source: s, type: t, properties: {a: 2}}}\n"
    )
    done = cli("mappings", "test", str(tmp_path))
    assert done.returncode == 1
    assert f"FAIL m ({tmp_path / 'm.yaml'}:5)" in done.stdout
    assert '-      "a": 2' in done.stdout and '+      "a": 1' in done.stdout


def test_mappings_check_reports_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("destination: nowhere\nbody: {}\n")
    done = cli("mappings", "check", str(tmp_path))
    assert done.returncode == 2
    assert f"{tmp_path / 'bad.yaml'}:1: unknown destination 'nowhere'" in done.stderr
    assert cli("mappings", "check", str(MAPPINGS)).stdout.strip() == "ok: 5 mappings"


def test_mappings_render_prints_the_body() -> None:
    done = cli("mappings", "render", "order-completed", str(EXAMPLES / "purchase.json"),
               env={"RELAY_MAPPINGS_DIR": str(MAPPINGS)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    [result] = json.loads(done.stdout)
    assert result["body"]["event"]["properties"]["order_id"] == "ORD-1001"


def test_mappings_render_exits_1_on_validation_problems(tmp_path: Path) -> None:
    payload = tmp_path / "p.json"
    payload.write_text('{"xdm": {"eventType": "commerce.purchases"}}')
    done = cli("mappings", "render", str(MAPPINGS / "zendesk-order-completed.yaml"), str(payload))
    assert done.returncode == 1
    [result] = json.loads(done.stdout)
    assert result["problem"]["violations"][0]["path"] == "profile.identifiers"


def test_serve_with_a_missing_secret_file_says_which_and_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-token"
    result = cli("serve", env={"RELAY_INGEST_TOKENS_FILE": str(missing)})
    assert result.returncode == 2  # a configuration error, as for any invalid setting
    assert f"RELAY_INGEST_TOKENS_FILE={missing}: cannot read it" in result.stderr
    assert "Traceback" not in result.stderr
