"""Golden files of the iptables/ebtables backend: the restore inputs that bind one port.

The cases are those of the nftables golden files (``test_golden.CASES``): each binds one
filter to one port on a host without any of nwguard's rules, and the file holds the
``ebtables-restore`` / ``iptables-restore`` / ``ip6tables-restore`` inputs the backend sends.
Files: ``tests/golden/ebiptables/<case>.txt``; rewritten by ``make golden`` (review
the diff) (ebiptables-layout.md, and what libvirt 9.0.0 makes: ``tests/golden/libvirt/``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from nwguard.backends.ebiptables.executor import EbiptablesExecutor, Runner
from nwguard.backends.ebiptables.tables import TABLES
from nwguard.compile.kernel_state import KernelState, full

from .test_golden import CASES, contribution

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "ebiptables"
TOOL = {"eb": "ebtables-restore", "ip4": "iptables-restore", "ip6": "ip6tables-restore"}


class EmptyHost(Runner):
    """A host without any rule: every ``*-save`` is empty, nothing is ever restored."""

    def save(self, kind: str) -> str:
        return ""

    def restore(self, kind: str, text: str) -> None:
        raise AssertionError("a unit test must not apply")


def render(name: str) -> str:
    case = CASES[name]
    state = KernelState().with_port(case.port, contribution(case))
    inputs = EbiptablesExecutor(runner=EmptyHost()).restore_inputs(full(state))
    none = "(nothing)\n"
    return "".join(f"# {TOOL[k]} --noflush\n{inputs[k] or none}\n" for k in TABLES)


NAMES = sorted(n for n, c in CASES.items() if not c.batch)


@pytest.mark.parametrize("name", NAMES)
def test_golden_restore_inputs(name: str) -> None:
    path = GOLDEN / f"{name}.txt"
    text = render(name)
    assert path.exists(), f"{path} missing; run `make golden` and review it"
    assert path.read_text() == text, (
        f"{path} differs; run `make golden` if intended and review the diff"
    )


def test_no_stale_golden_files() -> None:
    assert {p.stem for p in GOLDEN.glob("*.txt")} <= set(NAMES)
