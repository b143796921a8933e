"""The README stays a short page for users, and its tables stay complete."""

from __future__ import annotations

import re
from pathlib import Path

from app.problems import CODES
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text(encoding="utf-8")
MAX_README_LINES = 250
MAX_RESULTS_LINES = 300


def section(text: str, heading: str) -> str:
    start = text.index(f"\n## {heading}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def test_the_readme_is_short() -> None:
    assert len(README.splitlines()) <= MAX_README_LINES


def test_bench_results_hold_figures_not_a_diary() -> None:
    assert len((ROOT / "bench" / "RESULTS.md").read_text(encoding="utf-8").splitlines()) <= MAX_RESULTS_LINES


def test_every_problem_code_is_in_the_readme_error_table() -> None:
    listed = set(re.findall(r"^\| `([a-z_]+)` \|", section(README, "Errors"), flags=re.M))
    assert listed == set(CODES)


def test_every_setting_is_in_the_readme_configuration_table() -> None:
    table = section(README, "Configuration")
    listed = {name.lower() for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", table)}
    assert set(Settings.model_fields) <= listed, set(Settings.model_fields) - listed


def test_every_link_between_the_docs_points_at_a_file() -> None:
    pages = [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
    broken = []
    for page in pages:
        for target in re.findall(r"\]\(([^)#:\s]+)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            if not (page.parent / target).exists():
                broken.append(f"{page.relative_to(ROOT)} -> {target}")
    assert broken == []
