"""Lint and format rules of pyproject.toml [tool.ruff], checked on every `make test`."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


def _ruff():
    exe = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    if not Path(exe).exists():
        pytest.skip("ruff is not installed (make setup installs it)")
    return exe


@pytest.mark.parametrize(
    "args", [["check", "--output-format", "concise"], ["format", "--check"]], ids=["lint", "format"]
)
def test_ruff(args):
    r = subprocess.run([_ruff(), *args, "--no-cache", "."], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, f"ruff {' '.join(args)}:\n{r.stdout[-3000:]}{r.stderr[-2000:]}"


def test_ruff_catches_an_unused_import(tmp_path):
    """The rules are live: a file with an unused import fails the lint the suite runs."""
    (tmp_path / "pyproject.toml").write_text((ROOT / "pyproject.toml").read_text())
    (tmp_path / "bad.py").write_text("import os\n")
    r = subprocess.run([_ruff(), "check", "--no-cache", "."], cwd=tmp_path, capture_output=True, text=True)
    assert r.returncode == 1 and "F401" in r.stdout
