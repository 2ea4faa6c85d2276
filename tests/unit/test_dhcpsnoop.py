"""The pure halves of nwguardd: frame evidence for IP learning, and ruleset fingerprints."""

from __future__ import annotations

import pytest
from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Dot1Q, Ether
from scapy.utils import mac2str

from nwguard.backends.nft.render import nft_json
from nwguard.compile.kernel_state import full
from nwguard.compile.learning import interim_filters
from nwguard.daemon import dhcpsnoop as S
from nwguard.daemon import monitor as M

MAC, OTHER = "52:54:00:00:00:01", "52:54:00:00:00:02"
SRV = "192.0.2.1"


def dhcp(op: int, kind: str, *, chaddr: str = MAC, yiaddr: str = "0.0.0.0", ciaddr: str = "0.0.0.0",
         src: str = SRV, sport: int = 67, dport: int = 68, dst_mac: str = MAC, src_mac: str = OTHER,
         extra: tuple = ()) -> bytes:  # fmt: skip
    return bytes(
        Ether(src=src_mac, dst=dst_mac)
        / IP(src=src, dst="255.255.255.255")
        / UDP(sport=sport, dport=dport)
        / BOOTP(op=op, chaddr=mac2str(chaddr), yiaddr=yiaddr, ciaddr=ciaddr)
        / DHCP(options=[("message-type", kind), *extra, "end"])
    )


def ipv4(src: str, src_mac: str = MAC) -> bytes:
    return bytes(Ether(src=src_mac, dst=OTHER) / IP(src=src, dst="192.0.2.200") / UDP(dport=9))


# ----------------------------------------------------------------------------- any


@pytest.mark.parametrize(
    ("frame", "to_guest", "want"),
    [
        (ipv4("192.0.2.5"), False, "192.0.2.5"),
        (ipv4("192.0.2.5", src_mac=OTHER), False, None),  # not the guest's MAC
        (ipv4("0.0.0.0"), False, None),
        (ipv4("224.0.0.5"), False, None),
        (ipv4("255.255.255.255"), False, None),
        (bytes(Ether(src=MAC, dst=OTHER) / Dot1Q(vlan=5) / IP(src="192.0.2.6", dst="192.0.2.1")),
         False, "192.0.2.6"),
        (bytes(Ether(src=MAC) / ARP(op=1, hwsrc=MAC, psrc="192.0.2.7", pdst="192.0.2.1")),
         False, "192.0.2.7"),  # a request: its sender (libvirt would take 192.0.2.1)
        (bytes(Ether(src=MAC) / ARP(op=1, hwsrc=MAC, psrc="0.0.0.0", pdst="192.0.2.8")),
         False, None),  # an ARP probe claims nothing yet
        (bytes(Ether(src=MAC) / ARP(op=2, hwsrc=MAC, psrc="192.0.2.9", pdst="192.0.2.1")),
         False, "192.0.2.9"),
        (bytes(Ether(src=MAC) / ARP(op=2, hwsrc=OTHER, psrc="192.0.2.9")), False, None),
        (dhcp(2, "offer", yiaddr="192.0.2.10"), True, "192.0.2.10"),
        (dhcp(2, "ack", yiaddr="192.0.2.11", dst_mac="ff:ff:ff:ff:ff:ff"), True, "192.0.2.11"),
        (dhcp(2, "ack", yiaddr="192.0.2.11", chaddr=OTHER), True, None),
        (dhcp(2, "nak", yiaddr="192.0.2.11"), True, None),
        (dhcp(2, "ack", yiaddr="192.0.2.11"), False, None),  # an "ACK" the guest sent
        (ipv4("192.0.2.5"), True, None),  # traffic to the guest says nothing
        (b"\x00" * 10, False, None),
    ],
)  # fmt: skip
def test_any_evidence(frame, to_guest, want):
    assert S.any_evidence(frame, to_guest, MAC) == want


# ----------------------------------------------------------------------------- dhcp


def test_ack_gives_a_lease_with_its_lifetime():
    ev = S.dhcp_event(
        dhcp(2, "ack", yiaddr="192.0.2.20", extra=(("lease_time", 600),)), True, MAC, now=1000.0
    )
    assert ev == S.Acked("192.0.2.20", SRV, 1600.0)
    forever = dhcp(2, "ack", yiaddr="192.0.2.20", extra=(("lease_time", 0xFFFFFFFF),))
    assert S.dhcp_event(forever, True, MAC).expiry is None


def test_dhcpserver_restricts_acks():
    frame = dhcp(2, "ack", yiaddr="192.0.2.21", src="192.0.2.66")
    ev = S.dhcp_event(frame, True, MAC, servers=(SRV,))
    assert isinstance(ev, S.Ignored) and ev.kind == "ignored" and "192.0.2.66" in ev.reason
    assert S.dhcp_event(frame, True, MAC, servers=("192.0.2.66",)).kind == "ack"


@pytest.mark.parametrize(
    ("frame", "to_guest", "want"),
    [
        (dhcp(1, "release", ciaddr="192.0.2.22", src="192.0.2.22", sport=68, dport=67,
              src_mac=MAC, dst_mac=OTHER), False, ("release", "192.0.2.22")),
        (dhcp(1, "decline", src="0.0.0.0", sport=68, dport=67, src_mac=MAC, dst_mac=OTHER,
              extra=(("requested_addr", "192.0.2.23"),)), False, ("release", "192.0.2.23")),
        (dhcp(1, "release", ciaddr="192.0.2.22", sport=68, dport=67, src_mac=OTHER), False, None),
        (dhcp(1, "request", sport=68, dport=67, src_mac=MAC), False, None),
        (dhcp(2, "offer", yiaddr="192.0.2.24"), True, None),  # only ACKs make leases
        (dhcp(2, "ack", yiaddr="192.0.2.24"), False, None),  # from the guest's side
    ],
)  # fmt: skip
def test_dhcp_events(frame, to_guest, want):
    ev = S.dhcp_event(frame, to_guest, MAC)
    assert (None if ev is None else (ev.kind, ev.ip)) == want


def _bpf_run(prog: list[tuple[int, int, int, int]], pkt: bytes) -> int:
    """A tiny classic-BPF interpreter for the opcodes the filters use."""
    a = x = pc = 0
    while True:
        op, jt, jf, k = prog[pc]
        pc += 1
        if op == S.LDH_ABS:
            a = int.from_bytes(pkt[k : k + 2], "big") if k + 2 <= len(pkt) else None
        elif op == S.LDB_ABS:
            a = pkt[k] if k < len(pkt) else None
        elif op == S.LDXB_MSH:
            x = (pkt[k] & 0xF) * 4
        elif op == S.LDH_IND:
            a = int.from_bytes(pkt[x + k : x + k + 2], "big") if x + k + 2 <= len(pkt) else None
        elif op == S.JEQ:
            pc += jt if a == k else jf
        elif op == S.JSET:
            pc += jt if a & k else jf
        elif op == S.RET:
            return k
        if a is None:
            return 0


def test_capture_filters():
    assert _bpf_run(S.BPF_ANY, ipv4("192.0.2.5"))
    assert _bpf_run(S.BPF_ANY, bytes(Ether() / ARP()))
    assert not _bpf_run(S.BPF_ANY, bytes(Ether(type=0x86DD) / (b"x" * 40)))
    assert _bpf_run(S.BPF_DHCP, dhcp(2, "ack"))
    assert _bpf_run(S.BPF_DHCP, dhcp(1, "request", sport=68, dport=67))
    assert not _bpf_run(S.BPF_DHCP, ipv4("192.0.2.5"))
    assert not _bpf_run(S.BPF_DHCP, bytes(Ether() / IP() / UDP(sport=67, dport=67)))


# ----------------------------------------------------------------------------- fingerprints


def _state():
    from nwguard.compile.kernel_state import KernelState
    from nwguard.compile.program import compile_port
    from nwguard.resolve.resolver import resolve

    st = KernelState()
    for port, mac in (("vnet0", MAC), ("vnet1", OTHER)):
        inst = resolve(interim_filters(), "nwguard-learn-dhcp", {"MAC": (mac,)})
        st = st.with_port(port, compile_port(port, inst))
    return st


def test_fingerprint_of_the_state_matches_itself_and_sees_what_is_missing():
    batch = nft_json(full(_state()))
    want = M.expected([batch])
    # learning ports have Ethernet-layer rules only: no IP-layer table (deleted by the batch)
    assert want.tables == {("bridge", "nwguard")}
    assert ("bridge", "nwguard", "pre_l4") not in want.chains
    assert want.sets[("bridge", "nwguard", "l2o")] == 2
    have = M.expected([batch])
    assert M.compare(want, have) == []
    del have.chains[("bridge", "nwguard", "pre_l2")]
    have.sets[("bridge", "nwguard", "l2o")] = 1
    have.chains[("bridge", "nwguard", "intruder")] = 1
    got = {text for _t, text in M.compare(want, have)}
    assert got == {
        "chain bridge nwguard pre_l2 missing",
        "set bridge nwguard l2o has 1 elements, not 2",
        "foreign chain bridge nwguard intruder",
    }


def test_fingerprint_of_a_state_with_ip_layer_rules_wants_the_ip_layer():
    from nwguard.compile.kernel_state import KernelState

    from .test_golden import CASES, contribution

    st = KernelState().with_port("vnet0", contribution(CASES["web-guest"]))
    assert st.ip_layer
    want = M.expected([nft_json(full(st))])
    assert ("inet", "nwguard") in want.tables
    assert {"pre_l4", "fwd_l4", "out_l4"} <= {c for _f, _t, c in want.chains}
    have = M.expected([nft_json(full(st))])
    have.tables.discard(("inet", "nwguard"))
    del have.chains[("bridge", "nwguard", "fwd_l4")]
    got = {text for _t, text in M.compare(want, have)}
    assert got == {"table inet nwguard missing", "chain bridge nwguard fwd_l4 missing"}


def test_counter_sets_filling_up_is_not_a_difference_but_a_missing_one_is():
    """The packet path adds elements to the counter sets: a check must not re-apply (and so
    reset the counters) because they have elements; a counter set gone is still missing."""
    want = M.expected([nft_json(full(_state()))])
    have = M.expected([nft_json(full(_state()))])
    for name in ("drops",):
        assert ("bridge", "nwguard", name) in want.dynamic
        have.sets[("bridge", "nwguard", name)] = 7
    assert M.compare(want, have) == []
    have.sets[("bridge", "nwguard", "l2o")] = 1
    del have.sets[("bridge", "nwguard", "drops")]
    got = {text for _t, text in M.compare(want, have)}
    assert got == {
        "set bridge nwguard l2o has 1 elements, not 2",
        "set bridge nwguard drops missing",
    }


def test_monitor_lines():
    assert M.touches_ours("delete table bridge nwguard")
    assert M.touches_ours("add rule inet nwguard_net_br0 forward handle 4")
    assert not M.touches_ours("delete table inet admin")
    assert not M.touches_ours("# new generation 3 by process 7 (nft)")
    own = M.OwnThreads(keep=2)
    own.add(10)
    own.add(11)
    own.add(12)
    assert 12 in own and 10 not in own
