"""Issue 13: ``Contribution`` and ``KernelState`` are plain classes (no ``dataclasses``, which
imports ``inspect``) that keep a dataclass's construction, equality, repr and copies."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nwguard.compile.kernel_state import KernelState
from nwguard.ir.ports import Contribution

SRC = Path(__file__).resolve().parents[2] / "src"


def test_defaults_are_fresh_and_fields_positional_or_named() -> None:
    a, b = Contribution(), Contribution()
    a.chains["x"] = ()
    assert b.chains == {} and KernelState().ports is not KernelState().ports
    c = Contribution({"c": ()}, {"s": ("ifname",)}, {"s": [("vnet0",)]}, {"l2o": "c"}, 2, {"k": 1})
    assert c == Contribution(
        chains={"c": ()}, sets={"s": ("ifname",)}, elements={"s": [("vnet0",)]},
        dispatch={"l2o": "c"}, fallback_rules=2, slots={"k": 1},
    )  # fmt: skip
    assert KernelState({}, {}, {"p": c}, {"c": 1}, 1) == KernelState(
        ports={"p": c}, refs={"c": 1}, ip_ports=1
    )


def test_equality_by_value_and_class_repr_and_no_hash() -> None:
    assert Contribution(fallback_rules=1) != Contribution()
    assert KernelState(ip_ports=1) != KernelState()
    assert Contribution() != KernelState() and Contribution() != object()
    assert repr(Contribution()) == (
        "Contribution(chains={}, sets={}, elements={}, dispatch={}, fallback_rules=0, slots={})"
    )
    assert repr(KernelState()) == "KernelState(chains={}, sets={}, ports={}, refs={}, ip_ports=0)"
    with pytest.raises(TypeError):
        hash(KernelState())
    s = KernelState(ports={"p": Contribution(dispatch={"l2o": "c"})})
    deep, flat = copy.deepcopy(s), copy.copy(s)
    assert deep == s and deep.ports["p"] is not s.ports["p"] and flat.ports is s.ports


def test_a_delete_imports_no_dataclasses() -> None:
    probe = (
        "import sys, json; import nwguard.engine.ports, nwguard.compile.kernel_state, "
        "nwguard.state.applied; print(json.dumps('dataclasses' in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True,
        env={"PYTHONPATH": str(SRC), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert json.loads(out.stdout) is False
