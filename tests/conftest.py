"""Test-suite wide set-up: the ``kernel`` marker and when kernel tests are skipped.

Every test under ``tests/kernel/`` is marked ``kernel`` (whether or not it says so), and a
``kernel`` test is skipped, with the reason, unless this process is root and can create a
network namespace with ``ip netns`` and has ``nft``. ``pytest -m 'not kernel'`` runs the rest.
When ``CI`` is set a missing need fails the test instead: a CI without root or namespaces
must not pass with no packet test at all (:func:`unavailable`).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

KERNEL_DIR = Path(__file__).parent / "kernel"


@functools.cache
def kernel_unavailable_reason() -> str | None:
    """Why kernel tests cannot run here, or None when they can (checked once per run)."""
    if os.geteuid() != 0:
        return "kernel tests need root"
    for tool in ("ip", "nft"):
        if (
            shutil.which(tool, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"]))
            is None
        ):
            return f"kernel tests need {tool!r} (see scripts/install.sh)"
    probe = f"nwgt-{os.getpid()}-probe"
    made = subprocess.run(
        ["ip", "netns", "add", probe], capture_output=True, text=True, check=False
    )
    if made.returncode != 0:
        return f"cannot create a network namespace: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True, check=False)
    return None


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark the tests under tests/kernel/ before ``-m`` selection looks at markers."""
    for item in items:
        if KERNEL_DIR in Path(item.path).parents:
            item.add_marker(pytest.mark.kernel)


def unavailable(reason: str) -> None:
    """Skip the running test for ``reason``, or fail it when ``CI`` is set (any value)."""
    if os.environ.get("CI"):
        pytest.fail(f"CI is set and {reason}", pytrace=False)
    pytest.skip(reason)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("kernel") is not None:
        reason = kernel_unavailable_reason()
        if reason is not None:
            unavailable(reason)
