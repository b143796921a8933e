"""The playground's and /docs's pages and scripts are part of a non-editable build (as the image
installs it)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BUILD_PY = "import sys, setuptools; sys.argv = ['setup.py', '-q', 'build_py', '--build-lib', sys.argv[1]]; setuptools.setup()"


def test_a_build_of_the_package_holds_every_file_of_the_page(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "app", source / "app", ignore=shutil.ignore_patterns("__pycache__"))
    built = tmp_path / "lib"
    subprocess.run(
        [sys.executable, "-c", BUILD_PY, str(built)], cwd=source, check=True, capture_output=True, timeout=60
    )
    for package, page, script in (("ui", "index.html", "main.js"), ("apidocs", "docs.html", "docs.js")):
        shipped = sorted(p.name for p in (ROOT / "app" / package / "static").iterdir())
        assert page in shipped and script in shipped
        assert sorted(p.name for p in (built / "app" / package / "static").iterdir()) == shipped, package
