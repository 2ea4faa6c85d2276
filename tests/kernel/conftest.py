"""Fixtures of the kernel suite: ``lab`` (a fresh :class:`Lab` per test) and the sweep.

A test gets a topology with::

    def test_something(lab):
        a, b = lab.guest("a"), lab.guest("b")
        assert lab.ping(a, b)

Everything the lab made is removed when the test ends, pass or fail. Once per session, at
its start and its end, namespaces left by dead test runs (name prefix ``nwgt-``) are deleted.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .lab import Lab, kernel_unavailable_reason, sweep


@pytest.fixture(scope="session", autouse=True)
def _sweep_lab_leftovers() -> Iterator[None]:
    usable = kernel_unavailable_reason() is None
    if usable:
        sweep()
    yield
    if usable:
        sweep()


@pytest.fixture
def lab() -> Iterator[Lab]:
    """A fresh lab; its namespaces, devices, processes and sockets go when the test ends."""
    with Lab() as the_lab:
        yield the_lab
