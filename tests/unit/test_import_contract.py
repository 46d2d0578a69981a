"""The import contract of `make lint` (pyproject.toml, [tool.importlinter]) holds, and it
catches a cycle: a copy of the package with one import added the wrong way fails it."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def lint(where: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT), "--no-cache", "--config", str(where / "pyproject.toml")],
                          cwd=where, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(where), "PATH": "/usr/bin:/bin"})


@pytest.fixture
def copy(tmp_path) -> Path:
    shutil.copytree(ROOT / "portal", tmp_path / "portal",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


def test_the_contract_holds(copy):
    result = lint(copy)
    assert result.returncode == 0, result.stdout
    assert "2 kept, 0 broken" in result.stdout


def test_a_lower_package_importing_a_higher_one_breaks_the_contract(copy):
    splits = copy / "portal" / "ledger" / "splits.py"
    splits.write_text(splits.read_text() + "\nfrom ..payments import services  # noqa\n")
    result = lint(copy)
    assert result.returncode != 0
    assert "portal.ledger is not allowed to import portal.payments" in result.stdout


def test_a_cycle_between_shared_modules_breaks_the_contract(copy):
    money = copy / "portal" / "money.py"
    money.write_text(money.read_text() + "\nfrom . import jobs  # noqa\n")
    jobs = copy / "portal" / "jobs.py"
    jobs.write_text(jobs.read_text() + "\nfrom . import money  # noqa\n")
    result = lint(copy)
    assert result.returncode != 0
    assert "No import cycle" in result.stdout and "BROKEN" in result.stdout
