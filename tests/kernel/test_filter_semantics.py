"""libvirt's filter semantics on real ports: state, directions, actions, priorities, reject,
guest-to-host filtering, redefinition of a filter in use, and what a binding leaves behind.

Guest ``a`` is filtered; ``b`` (and ``c``) are unfiltered peers on the same bridge, whose host
side has an address (``br.ip``) for the tests that talk to the host. Expected verdicts follow
``spec/ebiptables-layout.md`` §3.4 and §4 (copies per direction, state, mirroring) and
``spec/nwfilter-format.md`` §4 and §9 (actions, ordering).
"""

from __future__ import annotations

import time

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Ether
from scapy.packet import Raw

from .lab import Lab, Node
from .nwg import Nwguard, binding_xml, deliveries

pytestmark = pytest.mark.kernel

FOREIGN_MAC = "52:54:00:de:ad:02"
NO = 0.5  # seconds to wait for something that must not happen


@pytest.fixture
def ng(lab: Lab, tmp_path, firewall_backend) -> Nwguard:
    return Nwguard(lab, tmp_path)


@pytest.fixture
def br(lab: Lab):
    return lab.bridge(ip="192.0.2.1/24")


@pytest.fixture
def a(lab: Lab, br) -> Node:
    return lab.guest("a")


@pytest.fixture
def b(lab: Lab, a: Node) -> Node:
    return lab.guest("b")


def define(ng: Nwguard, name: str, *entries: str, chain: str = "root", priority: str = "") -> str:
    prio = f" priority='{priority}'" if priority else ""
    ng.define(f"<filter name='{name}' chain='{chain}'{prio}>{''.join(entries)}</filter>")
    return name


def rule(action: str, direction: str, body: str = "", priority: int | None = None) -> str:
    prio = f" priority='{priority}'" if priority is not None else ""
    return f"<rule action='{action}' direction='{direction}'{prio}>{body}</rule>"


def ref(name: str) -> str:
    return f"<filterref filter='{name}'/>"


def udp(src: Node, dst: Node, *, sport: int = 40000, dport: int = 40000, mac: str | None = None,
        tag: str = "") -> Ether:  # fmt: skip
    return (
        Ether(src=mac or src.mac, dst=dst.mac)
        / IP(src=src.ip, dst=dst.ip)
        / UDP(sport=sport, dport=dport)
        / Raw(f"nwguard-test {tag}".encode())
    )


def verdicts(lab: Lab, sender: Node, frames: dict, receiver: Node) -> dict[str, str]:
    got = deliveries(lab, sender, frames, receiver)
    return {name: "pass" if ok else "drop" for name, ok in got.items()}


# ------------------------------------------------------------------------------ state


TCP_CLIENT = (
    ref("clean-traffic"),
    rule("accept", "out", "<tcp/>"),
    rule("drop", "inout", "<all/>", priority=1000),
)


def test_accept_out_tcp_lets_the_guest_connect_to_a_guest_and_to_the_host(lab, ng, br, a, b):
    ng.bind(a, define(ng, "tcp-client", *TCP_CLIENT), IP=a.ip)
    assert lab.tcp_try(a, b, 8080) == "ok"  # replies come back: established, reply direction
    assert lab.tcp_try(a, lab.host_ns, 8081, dst=br.ip) == "ok"


def test_accept_out_tcp_does_not_let_others_connect_in(lab, ng, br, a, b):
    ng.bind(a, define(ng, "tcp-client", *TCP_CLIENT), IP=a.ip)
    assert lab.tcp_try(b, a, 8080, timeout=NO) == "timeout"
    assert lab.tcp_try(lab.host_ns, a, 8081, timeout=NO) == "timeout"
    assert not lab.ping(a, b, timeout=NO) and not lab.udp_exchange(a, b, 5353, timeout=NO)


def test_explicit_tcp_state_passes_established_replies_and_drops_new_inbound(lab, ng, a, b):
    name = define(
        ng, "tcp-state",
        ref("clean-traffic"),
        rule("accept", "out", "<tcp state='NEW,ESTABLISHED'/>"),
        rule("accept", "in", "<tcp state='ESTABLISHED'/>"),
        rule("drop", "inout", "<tcp/>", priority=1000),
    )  # fmt: skip
    ng.bind(a, name, IP=a.ip)
    assert lab.tcp_try(a, b, 8080) == "ok"
    assert lab.tcp_try(b, a, 8080, timeout=NO) == "timeout"
    assert lab.udp_exchange(b, a, 5353)  # only tcp is touched


def test_accept_in_tcp_port_lets_peers_connect_but_not_the_guest_initiate_from_it(lab, ng, a, b):
    # ebiptables-layout.md §4.3: the FO copy sees the SYN to port 22 (NEW, original); the
    # mirrored FI copy only lets established replies *from* port 22 out.
    name = define(
        ng, "ssh-server",
        ref("clean-traffic"),
        rule("accept", "in", "<tcp dstportstart='22'/>"),
        rule("drop", "inout", "<all/>", priority=1000),
    )  # fmt: skip
    ng.bind(a, name, IP=a.ip)
    assert lab.tcp_try(b, a, 22) == "ok"
    assert lab.tcp_try(b, a, 23, timeout=NO) == "timeout"
    syn_from_22 = (
        Ether(src=a.mac, dst=b.mac) / IP(src=a.ip, dst=b.ip) / TCP(sport=22, dport=40022, flags="S")
    )
    reply_from_22 = (
        Ether(src=a.mac, dst=b.mac)
        / IP(src=a.ip, dst=b.ip)
        / TCP(sport=22, dport=40023, flags="SA")
    )
    assert verdicts(lab, a, {"syn": syn_from_22, "unsolicited syn-ack": reply_from_22}, b) == {
        "syn": "drop", "unsolicited syn-ack": "drop",
    }  # fmt: skip


def test_statematch_false_lets_new_inbound_connections_through_the_mirrored_copy(lab, ng, a, b):
    # Without state matching the mirrored copy of "accept out tcp" is a plain accept of
    # every tcp packet towards the guest, so b can connect in.
    name = define(
        ng, "tcp-stateless",
        ref("clean-traffic"),
        "<rule action='accept' direction='out' statematch='false'><tcp/></rule>",
        rule("drop", "inout", "<all/>", priority=1000),
    )  # fmt: skip
    ng.bind(a, name, IP=a.ip)
    assert lab.tcp_try(a, b, 8080) == "ok"
    assert lab.tcp_try(b, a, 8080) == "ok"


# ------------------------------------------------------------------------------ directions

# Four UDP packets: guest→peer and peer→guest, each to port 5000 and from port 5000.
PROBES = ("out to 5000", "in to 5000", "out from 5000", "in from 5000")


def probe_directions(lab: Lab, a: Node, b: Node) -> dict[str, str]:
    out = verdicts(lab, a, {
        "out to 5000": udp(a, b, dport=5000), "out from 5000": udp(a, b, sport=5000),
    }, b)  # fmt: skip
    inbound = verdicts(lab, b, {
        "in to 5000": udp(b, a, dport=5000), "in from 5000": udp(b, a, sport=5000),
    }, a)  # fmt: skip
    return {**out, **inbound}


def dropped(*names: str) -> dict[str, str]:
    return {p: "drop" if p in names else "pass" for p in PROBES}


@pytest.mark.parametrize(
    ("direction", "expected"),
    [
        # the primary copy matches dport 5000; the mirrored copy (other side) sport 5000
        ("out", dropped("out to 5000", "in from 5000")),
        ("in", dropped("in to 5000", "out from 5000")),
        # inout: the attributes describe traffic *to* the guest; its own packets are matched
        # mirrored (libvirt installs the FI copy mirrored, as for "in")
        ("inout", dropped("in to 5000", "out from 5000")),
    ],
)
def test_direction_of_an_ip_layer_drop(lab, ng, a, b, direction, expected):
    ng.bind(
        a, define(ng, f"udp5000-{direction}", rule("drop", direction, "<udp dstportstart='5000'/>"))
    )
    assert probe_directions(lab, a, b) == expected


@pytest.mark.parametrize(
    ("direction", "expected"),
    [
        # Ethernet layer: out/in have one copy each, no mirrored copy
        ("out", dropped("out to 5000")),
        ("in", dropped("in to 5000")),
        ("inout", dropped("in to 5000", "out from 5000")),  # the guest's side is mirrored
    ],
)
def test_direction_of_an_ethernet_layer_drop(lab, ng, a, b, direction, expected):
    body = "<ip protocol='udp' dstportstart='5000'/>"
    ng.bind(a, define(ng, f"ip5000-{direction}", rule("drop", direction, body)))
    assert probe_directions(lab, a, b) == expected


# ------------------------------------------------------------------------------ return, continue


def test_return_in_the_root_chain_ends_the_ports_ethernet_filtering(lab, ng, a, b):
    name = define(
        ng, "root-return",
        rule("return", "out", "<ip protocol='udp' dstportstart='5000'/>", priority=100),
        rule("drop", "out", priority=200),
    )  # fmt: skip
    ng.bind(a, name)
    frames = {"returned": udp(a, b, dport=5000), "other": udp(a, b, dport=5001)}
    assert verdicts(lab, a, frames, b) == {"returned": "pass", "other": "drop"}


def test_return_in_a_sub_chain_goes_on_with_the_root_chain(lab, ng, a, b):
    sub = define(
        ng, "sub-return",
        rule("return", "out", "<ip protocol='udp' dstportstart='5000'/>", priority=100),
        rule("accept", "out", "<ip protocol='udp' dstportstart='5001'/>", priority=100),
        chain="ipv4-r",
    )  # fmt: skip
    top = define(
        ng, "top-after-return",
        ref(sub),
        rule("drop", "out", "<ip protocol='udp'/>", priority=500),  # after the ipv4 jump (-700)
    )  # fmt: skip
    ng.bind(a, top)
    frames = {
        "returned": udp(a, b, dport=5000),  # back in root: the drop applies
        "accepted": udp(a, b, dport=5001),  # accept ends the port's filtering
        "fell through": udp(a, b, dport=5002),  # end of sub-chain: back in root, dropped
    }
    assert verdicts(lab, a, frames, b) == {
        "returned": "drop", "accepted": "pass", "fell through": "drop",
    }  # fmt: skip


def test_continue_matches_and_evaluation_goes_on(lab, ng, a, b):
    name = define(
        ng, "l2-continue",
        rule("continue", "out", "<ip protocol='udp' dstportstart='5000'/>", priority=100),
        rule("accept", "out", "<ip protocol='udp' dstportstart='5001'/>", priority=150),
        rule("drop", "out", "<ip protocol='udp'/>", priority=200),
    )  # fmt: skip
    ng.bind(a, name)
    frames = {"continued": udp(a, b, dport=5000), "accepted": udp(a, b, dport=5001)}
    assert verdicts(lab, a, frames, b) == {"continued": "drop", "accepted": "pass"}


def test_return_at_the_ip_layer_ends_the_ports_ip_filtering(lab, ng, a, b):
    name = define(
        ng, "l4-return",
        rule("return", "out", "<udp dstportstart='5000'/>", priority=100),
        rule("drop", "out", "<udp/>", priority=200),
    )  # fmt: skip
    ng.bind(a, name)
    assert lab.udp_exchange(a, b, 5000, reply=False)
    assert not lab.udp_exchange(a, b, 5001, reply=False, timeout=NO)


def test_continue_at_the_ip_layer_goes_on(lab, ng, a, b):
    # libvirt hands CONTINUE to iptables, which has no such target; nwguard keeps the
    # documented meaning (match, then go on) at this layer too.
    name = define(
        ng, "l4-continue",
        rule("continue", "out", "<udp dstportstart='5000'/>", priority=100),
        rule("drop", "out", "<udp dstportstart='5000'/>", priority=200),
    )  # fmt: skip
    ng.bind(a, name)
    assert not lab.udp_exchange(a, b, 5000, reply=False, timeout=NO)
    assert lab.udp_exchange(a, b, 5001, reply=False)


# ------------------------------------------------------------------------------ priorities


def spoof_verdicts(lab: Lab, a: Node, b: Node) -> dict[str, str]:
    frames = {"own mac": udp(a, b, tag="own"), "foreign mac": udp(a, b, mac=FOREIGN_MAC)}
    return verdicts(lab, a, frames, b)


@pytest.mark.parametrize(
    ("priority", "foreign"),
    [(-900, "pass"), (-801, "pass"), (-800, "drop"), (-700, "drop"), (500, "drop")],
)
def test_a_root_rule_runs_before_a_sub_chain_only_below_its_chain_priority(
    lab, ng, a, b, priority, foreign
):
    # no-mac-spoofing's chain 'mac' has priority -800: its jump precedes root rules of
    # priority >= -800 and follows those below (nwfilter-format.md §9 step 4).
    name = define(
        ng, "early-accept",
        ref("no-mac-spoofing"),
        rule("accept", "out", f"<mac srcmacaddr='{FOREIGN_MAC}'/>", priority=priority),
    )  # fmt: skip
    ng.bind(a, name)
    assert spoof_verdicts(lab, a, b) == {"own mac": "pass", "foreign mac": foreign}


@pytest.mark.parametrize(("chain_priority", "foreign"), [(-850, "pass"), (-750, "drop")])
def test_sub_chains_run_in_the_order_of_their_chain_priority(
    lab, ng, a, b, chain_priority, foreign
):
    early = define(
        ng, "mac-exception",
        rule("accept", "out", f"<mac srcmacaddr='{FOREIGN_MAC}'/>"),
        chain="mac-x", priority=str(chain_priority),
    )  # fmt: skip
    ng.bind(a, define(ng, "two-mac-chains", ref("no-mac-spoofing"), ref(early)))
    assert spoof_verdicts(lab, a, b) == {"own mac": "pass", "foreign mac": foreign}


def test_rules_of_a_chain_run_by_priority_not_document_order(lab, ng, a, b):
    name = define(
        ng, "prio-order",
        rule("accept", "out", "<ip protocol='udp' dstportstart='5000'/>", priority=300),
        rule("drop", "out", "<ip protocol='udp'/>", priority=200),
        rule("accept", "out", "<ip protocol='udp' dstportstart='5001'/>", priority=100),
    )  # fmt: skip
    ng.bind(a, name)
    frames = {"5000": udp(a, b, dport=5000), "5001": udp(a, b, dport=5001)}
    assert verdicts(lab, a, frames, b) == {"5000": "drop", "5001": "pass"}


# ------------------------------------------------------------------------------ no-spamming

NO_SPAMMING = """<filter name='no-spamming' chain='root'>
<uuid>d217f2d7-5a04-0e01-8b98-ec2743436b74</uuid>
<rule action='drop' direction='out' priority='500'>
<tcp dstportstart='25' dstportend='25'/>
</rule>
</filter>"""


def test_no_spamming_added_to_clean_traffic_applies_to_a_bound_guest_at_once(lab, ng, a, b):
    ng.bind(a, "clean-traffic", IP=a.ip)
    assert lab.tcp_try(a, b, 25) == "ok"
    ng.define(NO_SPAMMING)
    # virsh nwfilter-edit clean-traffic: add <filterref filter='no-spamming'/>
    xml = ng.dumpxml("clean-traffic")
    ng.define(xml.replace("</filter>", "  <filterref filter='no-spamming'/>\n</filter>"))
    assert "no-spamming" in ng.dumpxml("clean-traffic")
    assert lab.tcp_try(a, b, 25, timeout=NO) == "timeout"
    assert lab.tcp_try(a, b, 80) == "ok"
    assert lab.tcp_try(b, a, 25) == "ok"  # only what the guest sends


# ------------------------------------------------------------------------------ reject


def connect_time(lab: Lab, client, server, port: int, **kw) -> tuple[str, float]:
    t0 = time.monotonic()
    result = lab.tcp_try(client, server, port, timeout=3.0, **kw)
    return result, time.monotonic() - t0


def test_reject_out_refuses_the_guests_connection_at_once(lab, ng, a, b):
    ng.bind(a, define(ng, "reject-smtp", rule("reject", "out", "<tcp dstportstart='25'/>")))
    result, took = connect_time(lab, a, b, 25)  # b listens: a refusal can only be the reject
    assert result == "ECONNREFUSED" and took < 0.5, (result, took)
    assert lab.tcp_try(a, b, 80) == "ok"


def test_reject_in_refuses_connections_to_the_guest_at_once(lab, ng, a, b):
    ng.bind(a, define(ng, "reject-ssh", rule("reject", "in", "<tcp dstportstart='22'/>")))
    result, took = connect_time(lab, b, a, 22)
    assert result == "ECONNREFUSED" and took < 0.5, (result, took)
    assert lab.tcp_try(b, a, 80) == "ok"


def test_reject_out_to_the_host_is_refused_at_once(lab, ng, br, a):
    ng.bind(a, define(ng, "reject-telnet", rule("reject", "out", "<tcp dstportstart='23'/>")))
    result, took = connect_time(lab, a, lab.host_ns, 23, dst=br.ip)
    assert result == "ECONNREFUSED" and took < 0.5, (result, took)


def test_reject_of_udp_gets_the_sender_a_port_unreachable(lab, ng, a, b):
    ng.bind(a, define(ng, "reject-dns", rule("reject", "out", "<udp dstportstart='53'/>")))
    icmp = "icmp and icmp[icmptype] == icmp-unreach"
    with lab.sniffer(a, filter=icmp) as sn:
        assert not lab.udp_exchange(a, b, 53, reply=False, timeout=NO)
        assert sn.wait_for(None, timeout=1.0) is not None


def test_reject_at_the_ethernet_layer_is_a_drop(lab, ng, a, b):
    # as libvirt: ebtables cannot reject, so an Ethernet-layer reject drops silently
    name = define(ng, "l2-reject", rule("reject", "out", "<ip protocol='tcp' dstportstart='25'/>"))
    ng.bind(a, name)
    assert lab.tcp_try(a, b, 25, timeout=1.0) == "timeout"  # no refusal within a second


# ------------------------------------------------------------------------------ the host


def test_guest_to_host_traffic_is_filtered(lab, ng, br, a):
    ng.bind(a, define(ng, "no-ssh-to-host", rule("drop", "out", "<tcp dstportstart='22'/>")))
    assert lab.tcp_try(a, lab.host_ns, 22, dst=br.ip, timeout=NO) == "timeout"
    assert lab.tcp_try(a, lab.host_ns, 80, dst=br.ip) == "ok"
    assert lab.ping(a, br.ip)


def test_host_to_guest_traffic_is_filtered(lab, ng, br, a):
    ng.bind(a, define(ng, "no-telnet-in", rule("drop", "in", "<tcp dstportstart='23'/>")))
    assert lab.tcp_try(lab.host_ns, a, 23, timeout=NO) == "timeout"
    assert lab.tcp_try(lab.host_ns, a, 80) == "ok"


def test_a_stateful_guest_reaches_a_routed_outside_node_and_gets_its_replies(lab, ng, br, a):
    # Replies routed into the bridge by the host carry conntrack state like bridged ones.
    lab.set_forwarding(True)
    out = lab.outside("out", gateway=None)
    lab.route(out, "192.0.2.0/24", out.host_ip)
    lab.route(a, "default", br.ip)
    ng.bind(a, define(ng, "tcp-client", *TCP_CLIENT), IP=a.ip)
    assert lab.tcp_try(a, out, 8080) == "ok"
    assert lab.tcp_try(out, a, 8080, timeout=NO) == "timeout"


# ------------------------------------------------------------------------------ bindings


@pytest.mark.nftables_only
def test_deleting_a_binding_removes_every_trace_from_the_kernel(lab, ng, a, b):
    name = define(ng, "web-guest", ref("clean-traffic"),
                  rule("accept", "in", "<tcp dstportstart='80'/>"),
                  rule("drop", "inout", "<all/>", priority=1000))  # fmt: skip
    ng.bind(b, "clean-traffic", IP=b.ip)
    with_b = ng.census()
    ng.bind(a, name, IP=a.ip)
    assert a.port in ng.census().ports
    ng.unbind(a)
    assert ng.census() == with_b
    assert not any(a.port in str(obj) for obj in ng.table())
    ng.unbind(b)
    after = ng.census()
    assert (after.chains, after.rules, after.sets, after.elements) == (
        frozenset(),
        0,
        frozenset(),
        0,
    )
    assert not after.ports and after.base_rules == with_b.base_rules  # the fixed layout
    assert lab.tcp_try(a, b, 8080) == "ok" and lab.ping(b, a)  # unfiltered again
    frames = {"foreign mac": udp(a, b, mac=FOREIGN_MAC)}
    assert verdicts(lab, a, frames, b) == {"foreign mac": "pass"}


def test_deleting_a_binding_removes_every_iptables_rule_of_it(lab, tmp_path, monkeypatch, a, b):
    monkeypatch.setenv("NWGUARD_FIREWALL_BACKEND", "iptables")
    ng = Nwguard(lab, tmp_path)
    empty = ng.kernel()
    name = define(ng, "web-guest", ref("clean-traffic"),
                  rule("accept", "in", "<tcp dstportstart='80'/>"),
                  rule("drop", "inout", "<all/>", priority=1000))  # fmt: skip
    ng.bind(b, "clean-traffic", IP=b.ip)
    with_b = ng.kernel()
    ng.bind(a, name, IP=a.ip)
    assert a.port in str(ng.kernel())  # control: its chains are there
    assert f"FI-{a.port}" in str(ng.kernel()["iptables"])
    ng.unbind(a)
    assert ng.kernel() == with_b
    assert a.port not in str(ng.kernel())
    ng.unbind(b)
    assert ng.kernel() == empty
    assert lab.tcp_try(a, b, 8080) == "ok" and lab.ping(b, a)  # unfiltered again
    frames = {"foreign mac": udp(a, b, mac=FOREIGN_MAC)}
    assert verdicts(lab, a, frames, b) == {"foreign mac": "pass"}


def test_a_binding_for_a_missing_port_is_refused_and_changes_nothing(lab, ng, a):
    ng.bind(a, "clean-traffic", IP=a.ip)
    before = ng.kernel()
    assert a.port in str(before)  # control: the kernel holds the first binding
    kind, message = ng.refusal(
        "nwfilter_binding_create", binding_xml("nosuchport0", a.mac, "clean-traffic", IP=a.ip)
    )
    assert kind == "NotFoundError" and "nosuchport0" in message
    assert ng.kernel() == before
    assert [p for p, _ in ng.bindings()] == [a.port]


@pytest.mark.nftables_only  # libvirt's layout copies every rule into per-port chains
def test_ports_sharing_a_filter_share_its_chains(lab, ng, a):
    guests = [a] + [lab.guest(f"g{i}") for i in range(4)]
    for g in guests[:2]:
        ng.bind(g, "clean-traffic", IP=g.ip)
    two = ng.census()
    for g in guests[2:]:
        ng.bind(g, "clean-traffic", IP=g.ip)
    five = ng.census()
    # Binding more ports adds set elements and map entries only: no chain, no rule (qemu's
    # RARP announce check, with $MAC in raw RARP fields, uses typeof sets too).
    assert five.chains == two.chains
    assert five.rules == two.rules
    assert five.sets == two.sets  # the same sets (and maps) ...
    assert five.elements == two.elements * 5 // 2  # ... with elements for every port
    assert five.base_rules == two.base_rules
    assert five.dispatch["l2o"] == five.dispatch["l2i"] == {g.port for g in guests}
    assert lab.ping(guests[3], guests[4])


# ------------------------------------------------------------------------------ more protocols


def test_icmp_rules_with_a_type_let_the_guest_ping_but_not_be_pinged(lab, ng, a, b):
    # icmp with a type gets only its primary copy (libvirt's maySkipICMP): the echo reply
    # needs its own "in" rule, and nothing lets an echo request in.
    name = define(
        ng, "ping-out",
        ref("clean-traffic"),
        rule("accept", "out", "<icmp type='8'/>"),
        rule("accept", "in", "<icmp type='0'/>"),
        rule("drop", "inout", "<all/>", priority=1000),
    )  # fmt: skip
    ng.bind(a, name, IP=a.ip)
    assert lab.ping(a, b)
    assert not lab.ping(b, a, timeout=NO)


def test_two_filtered_guests_each_apply_their_own_side(lab, ng, a, b):
    client = define(ng, "tcp-client", *TCP_CLIENT)
    server = define(
        ng, "web-server",
        ref("clean-traffic"),
        rule("accept", "in", "<tcp dstportstart='80'/>"),
        rule("drop", "inout", "<all/>", priority=1000),
    )  # fmt: skip
    ng.bind(a, client, IP=a.ip)
    ng.bind(b, server, IP=b.ip)
    assert lab.tcp_try(a, b, 80) == "ok"  # a may connect out, b may be connected to on 80
    assert lab.tcp_try(a, b, 81, timeout=NO) == "timeout"  # b drops it
    assert lab.tcp_try(b, a, 80, timeout=NO) == "timeout"  # a takes no new connections


def test_ipv6_tcp_state_works_like_ipv4(lab, ng, br):
    a = lab.guest("a6", ip=None, ip6="2001:db8::11")
    b = lab.guest("b6", ip=None, ip6="2001:db8::12")
    name = define(
        ng, "tcp6-client",
        rule("accept", "out", "<tcp-ipv6/>"),
        rule("accept", "inout", "<icmpv6/>"),  # neighbour discovery
        rule("drop", "inout", "<all-ipv6/>", priority=1000),
    )  # fmt: skip
    ng.bind(a, name)
    assert lab.tcp_try(a, b, 8080, dst=b.ip6) == "ok"
    assert lab.tcp_try(b, a, 8080, dst=a.ip6, timeout=NO) == "timeout"
    assert not lab.udp_exchange(a, b, 5353, dst=b.ip6, timeout=NO)


def test_mac_given_as_a_parameter_wins_over_the_bindings_mac(lab, ng, a, b):
    ng.bind(a, "no-mac-spoofing", MAC=FOREIGN_MAC)
    frames = {"binding's mac": udp(a, b, tag="own"), "parameter's mac": udp(a, b, mac=FOREIGN_MAC)}
    assert verdicts(lab, a, frames, b) == {"binding's mac": "drop", "parameter's mac": "pass"}


def test_vlan_rules_match_tagged_frames(lab, ng, a, b):
    from scapy.layers.l2 import Dot1Q

    define(ng, "vlan-100", rule("drop", "out", "<vlan vlanid='100'/>"), chain="vlan")
    ng.bind(
        a, define(ng, "vlans", ref("vlan-100"), rule("drop", "out", "<vlan encap-protocol='arp'/>"))
    )

    def tagged(vid: int, ethertype: int = 0x0800) -> Ether:
        return (
            Ether(src=a.mac, dst=b.mac)
            / Dot1Q(vlan=vid, type=ethertype)
            / Raw(bytes(28) + bytes([vid % 256]))
        )

    frames = {
        "vlan 100": tagged(100),
        "vlan 200": tagged(200),
        "arp in vlan 300": tagged(300, 0x0806),
        "untagged": udp(a, b),
    }
    assert verdicts(lab, a, frames, b) == {
        "vlan 100": "drop", "vlan 200": "pass", "arp in vlan 300": "drop", "untagged": "pass",
    }  # fmt: skip
