"""The README's two set-up commands: `make serve` installs the runtime alone,
`make test` the test tools too. Read from `make -n` (prints, runs nothing)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _planned(target: str, venv: Path) -> list[str]:
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    result = subprocess.run(["make", "-n", target, f"VENV={venv}"], cwd=ROOT,
                            capture_output=True, text=True, timeout=60, check=True)
    return [line for line in result.stdout.splitlines() if "pip install" in line
            and "--upgrade pip" not in line]


def test_setup__serve_installs_runtime_dependencies_only(tmp_path: Path) -> None:
    [install] = _planned("serve", tmp_path / "venv")
    assert install.endswith("-e '.[fast]'"), install
    assert "[test" not in install


def test_setup__test_installs_the_test_extras(tmp_path: Path) -> None:
    [install] = _planned("test", tmp_path / "venv")
    assert install.endswith("-e '.[test,fast]'"), install


def test_setup__each_has_its_own_stamp(tmp_path: Path) -> None:
    """A venv set up by `make serve` still gets the test extras from `make test`."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").touch()
    stamp = venv / ".runtime"  # as `make serve` leaves it, newer than pyproject.toml
    stamp.touch()
    later = (ROOT / "pyproject.toml").stat().st_mtime + 3600
    os.utime(stamp, (later, later))
    assert _planned("serve", venv) == []
    [install] = _planned("test", venv)
    assert "[test,fast]" in install
