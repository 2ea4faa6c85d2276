"""The suite's own rules: a missing kernel need fails under CI, goldens are only compared."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
PROBE = """
import pytest

@pytest.mark.kernel
def test_needs_the_kernel():
    pass
"""


def _run_probe(tmp_path: Path, ci: str | None) -> subprocess.CompletedProcess[str]:
    """pytest on one kernel test under the suite's conftest, its kernel needs said missing."""
    conftest = (ROOT / "tests" / "conftest.py").read_text()
    missing = '\n\ndef kernel_unavailable_reason():\n    return "kernel tests need root"\n'
    (tmp_path / "conftest.py").write_text(conftest + missing)
    (tmp_path / "test_probe.py").write_text(PROBE)
    (tmp_path / "pytest.ini").write_text("[pytest]\nmarkers =\n    kernel: probe\n")
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    if ci is not None:
        env["CI"] = ci
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs", str(tmp_path)]
    return subprocess.run(
        argv, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120, check=False
    )


def test_kernel_tests_skip_without_ci_and_fail_with_it(tmp_path: Path) -> None:
    skipped = _run_probe(tmp_path, None)
    assert skipped.returncode == 0 and "1 skipped" in skipped.stdout, skipped.stdout
    failed = _run_probe(tmp_path, "true")
    assert failed.returncode == 1 and "1 error" in failed.stdout, failed.stdout  # in setup
    assert "CI is set and kernel tests need root" in failed.stdout


def test_no_test_writes_golden_files() -> None:
    """Only scripts/regen_golden.py writes tests/golden/; no test reads REGENERATE."""
    for path in (ROOT / "tests").rglob("*.py"):
        text = path.read_text()
        assert "REGENERATE" not in text or path == Path(__file__), path


@pytest.mark.parametrize("name", ["golden", "fuzz"])
def test_make_has_the_target(name: str) -> None:
    assert f"\n{name}: " in (ROOT / "Makefile").read_text()
