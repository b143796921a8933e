"""The container image (no Docker engine here, so its Dockerfile is checked as text)."""

from __future__ import annotations

import json
import re

from tests.conftest import ROOT

DOCKERFILE = (ROOT / "Dockerfile").read_text()
MAKEFILE = (ROOT / "Makefile").read_text()


def final_stage() -> str:
    return DOCKERFILE[DOCKERFILE.rindex("\nFROM ") :]


def test_the_image_runs_the_command_make_run_runs() -> None:
    [cmd] = re.findall(r"^CMD (\[.*\])$", DOCKERFILE, re.MULTILINE)
    image = json.loads(cmd)
    recipe = re.search(r"^run:.*\n\t(.+)$", MAKEFILE, re.MULTILINE)
    assert recipe is not None
    port = re.search(r"^PORT \?= (\d+)$", MAKEFILE, re.MULTILINE)
    assert port is not None
    make_run = recipe.group(1).replace("$(PORT)", port.group(1)).split()
    assert make_run[0] == "$(BIN)/aep-relay"
    assert image == ["aep-relay", *make_run[1:]]


def test_the_image_is_multi_stage_slim_and_runs_as_non_root() -> None:
    assert len(re.findall(r"^FROM ", DOCKERFILE, re.MULTILINE)) >= 2
    final = final_stage()
    assert re.search(r"^FROM python:3\.11-slim", final.strip(), re.MULTILINE)
    assert re.search(r"^USER 10001", final, re.MULTILINE)
    assert "HEALTHCHECK" in final and "/healthz" in final
    assert "RELAY_MAPPINGS_DIR=/app/mappings" in final
    for compiler in ("gcc", "build-essential", "g++"):
        assert compiler not in final


def test_the_image_installs_exactly_the_hashed_lock_of_pyproject() -> None:
    import tomllib

    from packaging.requirements import Requirement

    lock = (ROOT / "requirements.lock").read_text()
    pinned = {
        re.sub(r"[-_.]+", "-", name).lower(): version
        for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+) \\$", lock, re.MULTILINE)
    }
    blocks = re.split(r"\n(?=[A-Za-z0-9_.-]+==)", lock.split("\n", 2)[2])
    assert all("--hash=sha256:" in block for block in blocks if "==" in block)
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for dependency in project["dependencies"]:
        requirement = Requirement(dependency)
        name = re.sub(r"[-_.]+", "-", requirement.name).lower()
        assert name in pinned, f"{name} is not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(pinned[name]), (
            f"{name}=={pinned[name]} breaks {requirement}: run `make lock`"
        )
    build = DOCKERFILE[: DOCKERFILE.rindex("\nFROM ")]
    assert "pip install --require-hashes --no-deps -r requirements.lock" in build
    assert re.search(r"^RUN pip install --no-deps \.$", build, re.MULTILINE)
