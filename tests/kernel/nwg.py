"""Drive nwguard inside a lab's host namespace, through its Python API (forked into the netns)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nwguard.backends.nft import layout

from .lab import Lab, Node, Where


def binding_xml(port: str, mac: str, filter: str, **params: Any) -> str:
    lines = [
        "<filterbinding><owner><name>guest</name>",
        "<uuid>d2b2f9b6-94ff-4aa7-b4b0-8f0e5b8e2a53</uuid></owner>",
        f"<portdev name='{port}'/><mac address='{mac}'/><filterref filter='{filter}'>",
    ]
    for name, value in params.items():
        for v in value if isinstance(value, (list, tuple)) else [value]:
            lines.append(f"<parameter name='{name}' value='{v}'/>")
    lines.append("</filterref></filterbinding>")
    return "".join(lines)


def _call(config: str, state: str, method: str, *args: Any) -> Any:
    from nwguard.api import Client

    c = Client.open(config_dir=config, state_dir=state)
    result = getattr(c, method)(*args)
    return None if method.endswith(("_create", "_define")) else result


class Nwguard:
    """nwguard with private config/state dirs, run inside the lab's host namespace."""

    def __init__(self, lab: Lab, tmp: Path) -> None:
        self.lab, self.config, self.state = lab, str(tmp / "etc"), str(tmp / "run")

    def call(self, method: str, *args: Any) -> Any:
        return self.lab.call_in(self.lab.host_ns, _call, self.config, self.state, method, *args)

    def bind(self, guest: Node, filter: str, **params: Any) -> None:
        self.call("nwfilter_binding_create", binding_xml(guest.port, guest.mac, filter, **params))

    def unbind(self, guest: Node) -> None:
        self.call("nwfilter_binding_delete", guest.port)

    def define(self, xml: str) -> None:
        self.call("nwfilter_define", xml)

    def undefine(self, name: str) -> None:
        self.call("nwfilter_undefine", name)

    def ruleset(self) -> str:
        return self.lab.run(self.lab.host_ns, "nft", "list", "ruleset").stdout

    def refusal(self, method: str, *args: Any) -> tuple[str, str]:
        """Call ``method`` expecting nwguard to refuse it; return (error class, message)."""
        status, value = self.lab.call_in(
            self.lab.host_ns, _call_safe, self.config, self.state, method, *args
        )
        if status == "ok":
            raise AssertionError(f"{method} was accepted, expected a refusal")
        return value

    def bind_xml(self, xml: str) -> None:
        self.call("nwfilter_binding_create", xml)

    def dumpxml(self, name: str) -> str:
        return self.call("nwfilter_dumpxml", name)

    def bindings(self) -> list[tuple[str, str]]:
        """(port, filter) of every binding."""
        return self.lab.call_in(self.lab.host_ns, _binding_rows, self.config, self.state)

    def table(self, family: str = "bridge") -> list[dict[str, Any]]:
        """``nft -j list table <family> nwguard`` as its list of objects ([] when absent),
        without the counter sets' elements (they count traffic; they are not rules)."""
        out = self.lab.run(
            self.lab.host_ns, "nft", "-j", "list", "table", family, "nwguard", check=False
        )
        if out.returncode != 0:
            return []
        objects = json.loads(out.stdout)["nftables"]
        for obj in objects:
            if "set" in obj and obj["set"]["name"] in COUNTER_SETS:
                obj["set"].pop("elem", None)
        return objects

    def census(self) -> Census:
        """Chains, rules, sets and elements of ``bridge nwguard`` (see :class:`Census`)."""
        return Census.of(self.table())

    @property
    def backend(self) -> str:
        """The firewall backend in force (the kernel suite chooses it by environment)."""
        return os.environ.get("NWGUARD_FIREWALL_BACKEND") or "nftables"

    def kernel(self) -> Any:
        """What nwguard's backend holds in the kernel: ``bridge nwguard`` on nftables, else
        :func:`iptables_listing`."""
        return self.table() if self.backend == "nftables" else iptables_listing(self.lab)


IPTABLES_TOOLS = (("ebtables", "nat"), ("iptables", "filter"), ("ip6tables", "filter"))
_FRAME = re.compile(r"#|\*|COMMIT$|:(PREROUTING|INPUT|FORWARD|OUTPUT|POSTROUTING) ")


def iptables_tool(tool: str) -> str:
    """``tool`` of the iptables variant in force (``ebtables-nft`` ...)."""
    return f"{tool}-{os.environ.get('NWGUARD_IPTABLES_VARIANT') or 'nft'}"


def iptables_listing(lab: Lab) -> dict[str, list[str]]:
    """The ``*-save`` listings of ebtables ``nat`` and ip(6)tables ``filter`` in the host
    namespace, without comments, counters (traffic changes them) and the frame of a table
    that iptables-nft makes on first use and leaves (built-in chains, ``*table``, COMMIT)."""
    out = {}
    for tool, table in IPTABLES_TOOLS:
        argv = [f"{iptables_tool(tool)}-save", *(["-t", table] if tool != "ebtables" else [])]
        text = lab.run(lab.host_ns, *argv).stdout
        lines = [re.sub(r" \[\d+:\d+\]$", "", ln) for ln in text.splitlines()]
        out[tool] = [ln for ln in lines if ln and not _FRAME.match(ln)]
    return out


# --------------------------------------------------------------------------------------------
# More of the API, the kernel's view of nwguard's table, and frames in bulk


def _call_safe(config: str, state: str, method: str, *args: Any) -> tuple[str, Any]:
    """Like :func:`_call`, but an nwguard error comes back as ``("error", (class, message))``."""
    from nwguard.errors import NwguardError

    try:
        return "ok", _call(config, state, method, *args)
    except NwguardError as exc:
        return "error", (type(exc).__name__, str(exc))


def _binding_rows(config: str, state: str) -> list[tuple[str, str]]:
    from nwguard.api import Client

    c = Client.open(config_dir=config, state_dir=state)
    return [(b.portdev, b.filterref.filter) for b in c.nwfilter_binding_list()]


# the fixed layout: dispatch (the IP-layer part while a port needs it), the declaration
# chain of ``drops``, the counter set
BASE_CHAINS = frozenset({"pre_l2", "post_l2", *layout.ip_layer_chains(), layout.DROPS_ANCHOR})
DISPATCH_MAPS = frozenset({"l2o", "l2i", "l4o", "l4i"})
COUNTER_SETS = frozenset({layout.DROPS})


@dataclass(frozen=True)
class Census:
    """What ``bridge nwguard`` holds beyond its fixed layout."""

    chains: frozenset[str]  # non-base chains
    rules: int  # rules in non-base chains
    base_rules: int  # rules in the base chains
    sets: frozenset[str]  # sets other than the dispatch maps
    elements: int  # elements of those sets
    dispatch: dict[str, frozenset[str]]  # dispatch map -> ports in it

    @classmethod
    def of(cls, objects: list[dict[str, Any]]) -> Census:
        chains, sets, dispatch = set(), set(), {m: frozenset() for m in DISPATCH_MAPS}
        rules = base_rules = elements = 0
        for obj in objects:
            if "chain" in obj and obj["chain"]["name"] not in BASE_CHAINS:
                chains.add(obj["chain"]["name"])
            elif "rule" in obj:
                if obj["rule"]["chain"] in BASE_CHAINS:
                    base_rules += 1
                else:
                    rules += 1
            elif "map" in obj and obj["map"]["name"] in DISPATCH_MAPS:
                keys = [e[0] for e in obj["map"].get("elem", [])]
                dispatch[obj["map"]["name"]] = frozenset(keys)
            elif "set" in obj or "map" in obj:
                s = obj.get("set") or obj["map"]
                if s["name"] in COUNTER_SETS:
                    continue
                sets.add(s["name"])
                elements += len(s.get("elem", []))
        return cls(frozenset(chains), rules, base_rules, frozenset(sets), elements, dispatch)

    @property
    def ports(self) -> frozenset[str]:
        return frozenset().union(*self.dispatch.values())


def deliveries(
    lab: Lab,
    sender: Where,
    frames: Mapping[str, Any],
    receiver: Where,
    *,
    timeout: float = 0.4,
    promisc: bool = False,
    outgoing: bool = False,
) -> dict[str, bool]:
    """Send every frame from ``sender``; report for each name whether ``receiver`` got it.

    One capture for all frames: it ends once every frame arrived, else after ``timeout``.
    Frames must differ from each other; a frame counts as arrived when a received frame
    starts with its bytes.
    """
    data = {name: bytes(f) for name, f in frames.items()}
    if len(set(data.values())) != len(data):
        raise ValueError("deliveries() needs distinct frames")
    sent = list(data.values())

    def known(rx: bytes) -> bool:
        return any(rx[: len(d)] == d for d in sent)

    with lab.sniffer(receiver, promisc=promisc, outgoing=outgoing) as sn:
        lab.send(sender, *sent)
        got = sn.collect(timeout, count=len(sent), match=known)
    return {name: any(rx[: len(d)] == d for rx in got) for name, d in data.items()}
