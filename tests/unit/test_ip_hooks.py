"""Which ports need bridged IP to pass the IP hooks (issue 13), and when the engine asks."""

from __future__ import annotations

from pathlib import Path

import pytest

from nwguard.backends import RecordingExecutor
from nwguard.builtin import builtin_filters
from nwguard.engine.ports import Engine
from nwguard.errors import ApplyError
from nwguard.model.filter import Filter
from nwguard.state.paths import Paths
from nwguard.xmlio.binding_xml import parse_binding
from nwguard.xmlio.filter_xml import parse_filter


class Host:
    """Records each ensure_bridge_netfilter call as (hooked, released)."""

    def __init__(self) -> None:
        self.calls: list[tuple[set[str], set[str]]] = []

    def port_exists(self, name: str) -> bool:
        return True

    def ensure_bridge_netfilter(self, hooked=(), released=()) -> None:  # type: ignore[no-untyped-def]
        self.calls.append((set(hooked), set(released)))


def filters(*xml: str) -> dict[str, Filter]:
    out = dict(builtin_filters())
    for x in xml:
        f = parse_filter(x)
        out[f.name] = f
    return out


STATEFUL = (
    "<filter name='stateful' chain='root'><filterref filter='clean-traffic'/>"
    "<rule action='accept' direction='in' priority='500'><tcp dstportstart='22'/></rule></filter>"
)
STATELESS_L4 = (
    "<filter name='stateless' chain='root'><rule action='drop' direction='out' "
    "statematch='false'><tcp dstportstart='25'/></rule></filter>"
)
REJECTS = (
    "<filter name='rejects' chain='root'><rule action='reject' direction='out' "
    "statematch='false'><tcp dstportstart='25'/></rule></filter>"
)


def binding(port: str, filt: str) -> str:
    return f"""<filterbinding><owner><name>vm</name><uuid>d2b2f9b6-94ff-4aa7-b4b0-8f0e5b8e2a53</uuid></owner>
      <portdev name='{port}'/><mac address='52:54:00:12:34:56'/>
      <filterref filter='{filt}'><parameter name='IP' value='10.0.0.5'/></filterref></filterbinding>"""


def engine(tmp_path: Path, host: Host, kernel: RecordingExecutor | None = None) -> Engine:
    return Engine(
        Paths(tmp_path / "etc", tmp_path / "run"), executor=kernel or RecordingExecutor(), host=host
    )


@pytest.mark.parametrize(
    ("filt", "hooked"),
    [("clean-traffic", False), ("stateful", True), ("stateless", False), ("rejects", True)],
)
def test_only_state_or_reject_needs_the_ip_hooks(tmp_path: Path, filt: str, hooked: bool) -> None:
    host = Host()
    eng = engine(tmp_path, host)
    eng.bind(parse_binding(binding("vnet0", filt)), filters(STATEFUL, STATELESS_L4, REJECTS))
    assert host.calls == [({"vnet0"} if hooked else set(), set())]


def test_a_port_that_stops_needing_them_releases_its_bridge_after_the_commit(
    tmp_path: Path,
) -> None:
    host, kernel = Host(), RecordingExecutor()
    eng = engine(tmp_path, host, kernel)
    fs = filters(STATEFUL)
    eng.bind_many([parse_binding(binding(p, "stateful")) for p in ("vnet0", "vnet1")], fs)
    eng.bind(parse_binding(binding("vnet2", "clean-traffic")), fs)
    assert host.calls == [({"vnet0", "vnet1"}, set()), ({"vnet0", "vnet1"}, set())]
    host.calls.clear()
    eng.unbind("vnet0")
    # on for what stays before the batch; vnet0's bridge released once the batch is in
    assert host.calls == [({"vnet1"}, set()), ({"vnet1"}, {"vnet0"})]


def test_a_refused_change_releases_nothing(tmp_path: Path) -> None:
    host, kernel = Host(), RecordingExecutor()
    eng = engine(tmp_path, host, kernel)
    eng.bind(parse_binding(binding("vnet0", "stateful")), filters(STATEFUL))
    host.calls.clear()
    kernel.fail = 2
    with pytest.raises(ApplyError):
        eng.unbind("vnet0")
    assert host.calls == [(set(), set())]  # nothing turned off: vnet0's rules are still there


class IptablesLike(RecordingExecutor):
    """A backend whose IP-layer rules live in the IP hooks (as iptables does)."""

    ip_rules_need_ip_hooks = True


def test_on_iptables_a_stateless_ip_layer_rule_needs_the_hooks_too(tmp_path: Path) -> None:
    # Bug: the per-bridge hooks were decided for nftables alone, so on the iptables backend a
    # port with only stateless tcp rules got no IP hooks and its FI-/FO- chains saw nothing.
    fs = filters(STATELESS_L4)
    nft_host, ipt_host = Host(), Host()
    engine(tmp_path / "nft", nft_host).bind(parse_binding(binding("vnet0", "stateless")), fs)
    engine(tmp_path / "ipt", ipt_host, IptablesLike()).bind(
        parse_binding(binding("vnet0", "stateless")), fs
    )
    assert nft_host.calls[-1][0] == set()  # nftables: the bridge family reads the IP headers
    assert ipt_host.calls[-1][0] == {"vnet0"}
    mac_only = parse_binding(binding("vnet1", "no-mac-spoofing"))
    engine(tmp_path / "ipt2", ipt_host, IptablesLike()).bind(mac_only, fs)
    assert ipt_host.calls[-1][0] == set()  # Ethernet layer only: no hooks, on iptables either
