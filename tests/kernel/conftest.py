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


# ----------------------------------------------------------------------------- both backends

BACKENDS = ("nftables", "iptables")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "nftables_only: looks at nftables objects; runs on the nftables backend only"
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A test using ``firewall_backend`` runs once per backend (``nftables_only``: once)."""
    if "firewall_backend" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("nftables_only") is not None
        metafunc.parametrize("firewall_backend", BACKENDS[:1] if only else BACKENDS, indirect=True)


@pytest.fixture
def firewall_backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The backend of this run, chosen as a user would: ``NWGUARD_FIREWALL_BACKEND`` (seen by
    nwguard forked into the lab's namespaces and by the processes it starts)."""
    # a test copied into another module is not parametrised: nftables
    name: str = getattr(request, "param", BACKENDS[0])
    monkeypatch.setenv("NWGUARD_FIREWALL_BACKEND", name)
    return name
