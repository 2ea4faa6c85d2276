"""Every frame of a kernel battery, checked against ``nwguard explain``.

:func:`rerun_with_explain` makes a module that re-runs a battery's frame tests (those that
send frames through ``deliveries``), with that module's ``deliveries`` replaced by one that
also asks explain, in the lab's host namespace and on the bindings in force, what should
happen to each frame: ``out`` on the sender's port, ``in`` on the receiver's. A frame is
delivered exactly when explain accepts it on every bound port it crosses; any disagreement
fails the test with explain's account of the frame. A dropped frame must name the rule that
dropped it. The test fails if not one frame was compared.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import pytest

from .lab import Lab
from .nwg import Nwguard, deliveries


def explain_frames(config: str, state: str, asks: list[tuple[str, str, str]]) -> list[Any]:
    """(verdict, decided rule, text) for each (port, direction, frame hex); in the host ns."""
    from nwguard.api import Client
    from nwguard.explain import decode, explain, port_contribution, to_text
    from nwguard.xmlio.binding_xml import parse_binding

    c = Client.open(config_dir=config, state_dir=state)
    filters = {f.name: f for f in c.nwfilter_list()}
    contribs: dict[str, Any] = {}
    out = []
    for port, direction, hexframe in asks:
        if port not in contribs:
            b = parse_binding(c.nwfilter_binding_dumpxml(port))
            contribs[port] = port_contribution(b, filters)
        e = explain(contribs[port], port, decode(bytes.fromhex(hexframe)), direction)
        d = e.decided_by
        rule = None if d is None or d.origin is None else (d.origin.filter, d.origin.index)
        out.append((e.verdict, rule, to_text(e)))
    return out


class Checker:
    def __init__(self, lab: Lab, ng: Nwguard) -> None:
        self.lab, self.ng = lab, ng
        self.compared = 0

    def deliveries(self, lab: Lab, sender: Any, frames: Any, receiver: Any, **kw: Any) -> dict:
        got = deliveries(lab, sender, frames, receiver, **kw)
        bound = {p for p, _ in self.ng.bindings()}
        sides = [(getattr(sender, "port", None), "out"), (getattr(receiver, "port", None), "in")]
        sides = [(p, d) for p, d in sides if p in bound]
        if not sides:
            return got
        names = list(frames)
        asks = [(p, d, bytes(frames[n]).hex()) for n in names for p, d in sides]
        answers = iter(self.lab.call_in(self.lab.host_ns, explain_frames, self.ng.config,
                                        self.ng.state, asks))  # fmt: skip
        for name in names:
            mine = [next(answers) for _ in sides]
            expected = all(v == "accept" for v, _, _ in mine)
            for v, rule, text in mine:
                assert v == "accept" or rule is not None, f"{name}: no rule named\n{text}"
            if expected != got[name]:
                accounts = "\n\n".join(t for _, _, t in mine)
                raise AssertionError(
                    f"frame {name!r}: kernel {'delivered' if got[name] else 'dropped'} it, "
                    f"explain says otherwise:\n{accounts}"
                )
            self.compared += 1
        return got


def _sends_frames(fn: Any) -> bool:
    try:
        src = inspect.getsource(fn)
    except (OSError, TypeError):
        return False
    return any(
        w in src for w in ("verdicts(", "deliveries(", "probe_directions(", "spoof_verdicts(")
    )


def rerun_with_explain(
    battery: ModuleType, namespace: dict[str, Any], without: tuple[str, ...] = ()
) -> None:
    """Put ``battery``'s fixtures and frame tests into ``namespace`` (a test module's globals),
    with an autouse fixture that checks every frame they send against explain. ``without``:
    tests whose frames cross no bound port."""
    for name, obj in vars(battery).items():
        if name in without:
            continue
        frame_test = name.startswith("test_") and callable(obj) and _sends_frames(obj)
        fixture = hasattr(obj, "_fixture_function_marker")
        if frame_test or fixture or name == "pytestmark":
            namespace[name] = obj

    @pytest.fixture(autouse=True)
    def _explain_every_frame(
        request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
    ) -> Iterator[None]:
        checker = Checker(request.getfixturevalue("lab"), request.getfixturevalue("ng"))
        monkeypatch.setattr(battery, "deliveries", checker.deliveries)
        yield
        assert checker.compared > 0, "no frame of this test crossed a bound port"

    namespace["_explain_every_frame"] = _explain_every_frame
