"""Follow one packet through nwguard's tables with nftables tracing (``explain --live``).

:class:`Tracer` adds ``table bridge nwguard_trace`` whose chains run first on a hook
(priority -400) and set ``meta nftrace`` on the packets of one port that match a few header
fields, runs ``nft -a monitor trace`` and collects the events of the first such packet; the
table is deleted and the monitor stopped on exit, whatever happens. :func:`kernel_decision`
reads what nwguard's rules did with it (pure, as :func:`parse_line`).
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
import threading
import time
from typing import Any, Self

from nwguard.backends.nft import layout
from nwguard.errors import HostError
from nwguard.records import ValueRecord

TABLE = "nwguard_trace"
_LINE = re.compile(
    r"^trace id (?P<id>[0-9a-f]+) (?P<family>\S+) (?P<table>\S+) (?P<chain>\S+) "
    r"(?P<kind>packet|rule|policy|verdict|unknown)\b(?P<rest>.*)$"
)
_HANDLE = re.compile(r"# handle (\d+)")
_VERDICT = re.compile(r"\(verdict (\w+)(?: (\S+))?\)\s*$")
# where the first part of each side ends: hooks of the other part come after it
_OUT_HOOKS = {"cnt_pre", "pre_l2", "pre_l4"}
_IN_HOOKS = {"cnt_fwd", "fwd_l4", "cnt_out", "out_l4", "post_l2"}


class TraceEvent(ValueRecord):
    id: str
    family: str
    table: str
    chain: str
    kind: str  # packet, rule, policy, verdict
    handle: int | None
    verdict: str | None  # accept, drop, continue, jump, goto, return ...
    text: str


def parse_line(line: str) -> TraceEvent | None:
    m = _LINE.match(line.strip())
    if m is None:
        return None
    rest = m["rest"]
    h = _HANDLE.search(rest)
    v = _VERDICT.search(rest)
    verdict = v[1] if v else None
    if m["kind"] == "policy":
        verdict = rest.split()[0] if rest.split() else None
    return TraceEvent(m["id"], m["family"], m["table"], m["chain"], m["kind"],
                      int(h[1]) if h else None, verdict, rest.strip())  # fmt: skip


class Decision(ValueRecord):
    """What the kernel did with the traced packet on the port's side: the verdict and, when
    a port rule ended its way, that rule's chain and kernel handle."""

    verdict: str  # accept, drop or reject
    chain: str | None
    handle: int | None


def kernel_decision(events: list[TraceEvent], direction: str) -> Decision:
    """The verdict of nwguard's rules on the port's side, from one packet's trace events."""
    side = _OUT_HOOKS if direction == "out" else _IN_HOOKS
    started = False
    last_port_rule: TraceEvent | None = None
    for e in events:
        if e.table != layout.TABLE:
            continue
        if e.family == layout.BRIDGE and e.chain in _OUT_HOOKS | _IN_HOOKS:
            if e.chain in side:
                started = True
                if e.kind == "rule" and e.verdict == "drop":  # out_l4: the host's reject
                    return Decision("reject", *_where(last_port_rule))
            elif started:
                break  # the other side's hooks: ours are over
            continue
        if not started:
            continue
        if e.family == layout.INET:
            if e.kind == "rule" and e.verdict == "drop" and e.chain.startswith("rej_"):
                return Decision("reject", *_where(last_port_rule))
            continue
        if e.kind == "rule" and e.verdict in ("accept", "drop"):
            if e.verdict == "drop":
                return Decision("drop", e.chain, e.handle)
            last_port_rule = e
    if direction == "out" and last_port_rule is not None:
        # an L4 reject: accepted with the reject mark, rejected later in inet nwguard
        for e in events:
            if e.family == layout.INET and e.chain.startswith("rej_") and e.verdict == "drop":
                return Decision("reject", *_where(last_port_rule))
    return Decision("accept", None, None)


def _where(e: TraceEvent | None) -> tuple[str | None, int | None]:
    return (e.chain, e.handle) if e is not None else (None, None)


def _matches(frame: bytes) -> list[dict[str, Any]]:
    """Matches for the frame's addresses, type, and IPv4/IPv6 addresses, protocol, ports."""

    def m(left: Any, right: Any) -> dict[str, Any]:
        return {"match": {"op": "==", "left": left, "right": right}}

    def pl(proto: str, field: str) -> dict[str, Any]:
        return {"payload": {"protocol": proto, "field": field}}

    out = [
        m(pl("ether", "saddr"), frame[6:12].hex(":")),
        m(pl("ether", "daddr"), frame[0:6].hex(":")),
    ]
    et = int.from_bytes(frame[12:14], "big")
    nh = 14
    if et == 0x8100 and len(frame) >= 18:
        et, nh = int.from_bytes(frame[16:18], "big"), 18
    out.append(m(pl("ether", "type"), et) if nh == 14 else m(pl("vlan", "type"), et))
    ip = frame[nh:]
    if et == 0x0800 and len(ip) >= 20:
        out += [m(pl("ip", "saddr"), str(ipaddress.IPv4Address(ip[12:16]))),
                m(pl("ip", "daddr"), str(ipaddress.IPv4Address(ip[16:20]))),
                m({"meta": {"key": "l4proto"}}, ip[9])]  # fmt: skip
        th, proto = ip[(ip[0] & 15) * 4 :], ip[9]
    elif et == 0x86DD and len(ip) >= 40:
        out += [m(pl("ip6", "saddr"), str(ipaddress.IPv6Address(ip[8:24]))),
                m(pl("ip6", "daddr"), str(ipaddress.IPv6Address(ip[24:40])))]  # fmt: skip
        th, proto = ip[40:], ip[6]
    else:
        return out
    if proto in (6, 17) and len(th) >= 4:
        out += [m(pl("th", "sport"), int.from_bytes(th[0:2], "big")),
                m(pl("th", "dport"), int.from_bytes(th[2:4], "big"))]  # fmt: skip
    return out


class Tracer:
    """Trace the next packet like ``frame`` that ``port`` sends (``out``) or receives (``in``)."""

    def __init__(self, port: str, direction: str, frame: bytes) -> None:
        self.port, self.direction, self.frame = port, direction, frame
        self.events: dict[str, list[TraceEvent]] = {}
        self.first: str | None = None
        self._done = threading.Event()
        self._proc: subprocess.Popen[str] | None = None

    def _table(self) -> list[dict[str, Any]]:
        ref = {"family": layout.BRIDGE, "table": TABLE}
        key = "iifname" if self.direction == "out" else "oifname"
        hooks = [("pre", "prerouting")] if self.direction == "out" else [
            ("fwd", "forward"), ("out", "output")]  # fmt: skip
        cmds: list[dict[str, Any]] = [{"add": {"table": {"family": layout.BRIDGE, "name": TABLE}}}]
        for name, hook in hooks:
            cmds.append({"add": {"chain": {**ref, "name": name, "type": "filter", "hook": hook,
                                           "prio": -400, "policy": "accept"}}})  # fmt: skip
            when = {"match": {"op": "==", "left": {"meta": {"key": key}}, "right": self.port}}
            mark = {"mangle": {"key": {"meta": {"key": "nftrace"}}, "value": 1}}
            expr = [when, *_matches(self.frame), mark]
            cmds.append({"add": {"rule": {**ref, "chain": name, "expr": expr}}})
        return cmds

    def __enter__(self) -> Self:
        from nwguard.backends.nft.executor import _handle

        self._proc = subprocess.Popen(
            ["nft", "-a", "monitor", "trace"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True,
        )  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()
        time.sleep(0.2)  # let the monitor subscribe before the first packet is marked
        try:
            rc, _out, err = _handle().json_cmd({"nftables": self._table()})
        except BaseException:
            self._stop()
            raise
        if rc != 0:
            self._stop()
            raise HostError(f"cannot add the trace table: {err.strip()}")
        return self

    def _read(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        for line in self._proc.stdout:
            e = parse_line(line)
            if e is None:
                continue
            if self.first is None and e.table == TABLE and e.kind == "packet":
                self.first = e.id
            if e.id == self.first or (self.first is not None and e.table == layout.TABLE):
                self.events.setdefault(e.id, []).append(e)
            if e.id == self.first and e.verdict in ("drop",) and e.table == layout.TABLE:
                self._done.set()

    def wait(self, timeout: float) -> list[TraceEvent] | None:
        """The first traced packet's events (None: none came within ``timeout`` seconds)."""
        end = time.monotonic() + timeout
        while self.first is None and time.monotonic() < end:
            time.sleep(0.05)
        if self.first is None:
            return None
        self._done.wait(min(0.5, max(end - time.monotonic(), 0.0)))  # the rest of its way
        return list(self.events.get(self.first, []))

    def _stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()

    def __exit__(self, *exc: object) -> None:
        from nwguard.backends.nft.executor import _handle

        try:
            _handle().json_cmd(
                {"nftables": [{"delete": {"table": {"family": layout.BRIDGE, "name": TABLE}}}]}
            )
        finally:
            self._stop()


def positions(chain: str, list_json: Any = None) -> dict[int, int]:
    """Kernel handle -> 1-based position among the chain's filter rules (counting rules, which
    end in a set update, are not filter rules)."""
    if list_json is None:
        from nwguard.backends.nft.executor import run_json

        list_json = run_json
    listing = list_json(f"list chain {layout.BRIDGE} {layout.TABLE} {chain}")
    out, n = {}, 0
    for item in listing.get("nftables", []):
        r = item.get("rule")
        if r is None:
            continue
        last = (r.get("expr") or [{}])[-1]
        if "set" in last and last["set"].get("set") == "@" + layout.DROPS:
            continue
        n += 1
        out[int(r["handle"])] = n
    return out
