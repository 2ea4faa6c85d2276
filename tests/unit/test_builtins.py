"""The 24 built-in filters: names and UUIDs of the seed, rules of builtin-filters.md, libvirt's files."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from nwguard.api import Client
from nwguard.builtin import builtin_filters, builtin_xml
from nwguard.model.filter import FilterRef, Rule
from nwguard.model.protocols import PROTOCOLS
from nwguard.model.values import format_value
from nwguard.state.filters import find_loop
from nwguard.xmlio.filter_xml import parse_filter, write_filter

# The seed's `virsh nwfilter-list` (libvirt's firewall documentation).
SEED_LIST = """
15b1ab2b-b1ac-1be2-ed49-2042caba4abb allow-arp
6c51a466-8d14-6d11-46b0-68b1a883d00f allow-dhcp
7517ad6c-bd90-37c8-26c9-4eabcb69848d allow-dhcp-server
7680776c-77aa-496f-90d6-13097664b925 allow-dhcpv6
9cdaad60-7631-4172-8ccb-ef774be7485b allow-dhcpv6-server
3d38b406-7cf0-8335-f5ff-4b9add35f288 allow-incoming-ipv4
908543c1-902e-45f6-a6ca-1a0ad35e7599 allow-incoming-ipv6
5ff06320-9228-2899-3db0-e32554933415 allow-ipv4
ce8904cc-ad3a-4454-896c-53452882f817 allow-ipv6
db0b1767-d62b-269b-ea96-0cc8b451144e clean-traffic
6d6ddcc8-1242-4c43-ac63-63af80493132 clean-traffic-gateway
4cf38077-c7d5-4e25-99bb-6c4c9efad294 no-arp-ip-spoofing
0b11a636-ce58-497f-be90-17f63c92487a no-arp-mac-spoofing
f88f1932-debf-4aa1-9fbe-f10d3aa4bc95 no-arp-spoofing
772f112d-52e4-700c-0250-e178a3d91a7a no-ip-multicast
7ee20370-8106-765d-f7ff-8a60d5aaf30b no-ip-spoofing
f8a51c43-a08f-49b3-b9e2-393d54522dc0 no-ipv6-multicast
a7f0afe9-a428-44b8-8566-c8ee2a669271 no-ipv6-spoofing
d5d3c490-c2eb-68b1-24fc-3ee362fc8af3 no-mac-broadcast
fb57c546-76dc-a372-513f-e8179011b48a no-mac-spoofing
dba10ea7-446d-76de-346f-335bd99c1d05 no-other-l2-traffic
f5c78134-9da4-0c60-a9f0-fb37bc21ac1f no-other-rarp-traffic
7637e405-4ccf-42ac-5b41-14f8d03d8cf3 qemu-announce-self
9aed52e7-f0f3-343e-fe5c-7dcb27b594e5 qemu-announce-self-rarp
"""
SEED = {name: uuid for uuid, name in (line.split() for line in SEED_LIST.strip().splitlines())}
LIBVIRT_DIR = Path("/usr/share/libvirt/nwfilter")

# fmt: off
DHCP_OUT = ("accept", "out", 100, "ip", {"srcipaddr": "0.0.0.0", "dstipaddr": "255.255.255.255", "protocol": "udp", "srcportstart": "68", "dstportstart": "67"})
DHCP6_OUT = ("accept", "out", 100, "ipv6", {"srcipaddr": "fe80::", "srcipmask": "10", "dstipaddr": "ff02::1:2", "protocol": "udp", "srcportstart": "546", "dstportstart": "547"})
RARP_ANNOUNCE = {"opcode": "Request_Reverse", "dstmacaddr": "ff:ff:ff:ff:ff:ff", "arpsrcmacaddr": "$MAC", "arpdstmacaddr": "$MAC", "arpsrcipaddr": "0.0.0.0", "arpdstipaddr": "0.0.0.0"}

# builtin-filters.md, rule by rule: name -> (chain, chain priority, entries); an entry is a
# filterref name or (action, direction, priority, protocol, {attribute: written value}).
SPEC: dict[str, tuple[str, int, list]] = {
    "allow-arp": ("arp", -500, [("accept", "inout", 500, None, {})]),
    "allow-dhcp": ("ipv4", -700, [DHCP_OUT, ("accept", "in", 100, "ip", {"protocol": "udp", "srcportstart": "67", "dstportstart": "68"})]),
    "allow-dhcp-server": ("ipv4", -700, [DHCP_OUT, ("accept", "in", 100, "ip", {"srcipaddr": "$DHCPSERVER", "protocol": "udp", "srcportstart": "67", "dstportstart": "68"})]),
    "allow-dhcpv6": ("ipv6", -600, [DHCP6_OUT, ("accept", "in", 100, "ipv6", {"protocol": "udp", "srcportstart": "547", "dstportstart": "546"})]),
    "allow-dhcpv6-server": ("ipv6", -600, [DHCP6_OUT, ("accept", "in", 100, "ipv6", {"srcipaddr": "$DHCPSERVER", "protocol": "udp", "srcportstart": "547", "dstportstart": "546"})]),
    "allow-incoming-ipv4": ("ipv4", -700, [("accept", "in", 500, None, {})]),
    "allow-incoming-ipv6": ("ipv6", -600, [("accept", "in", 500, None, {})]),
    "allow-ipv4": ("ipv4", -700, [("accept", "inout", 500, None, {})]),
    "allow-ipv6": ("ipv6", -600, [("accept", "inout", 500, None, {})]),
    "clean-traffic": ("root", 0, [
        "no-mac-spoofing", "no-ip-spoofing",
        ("accept", "out", -650, "mac", {"protocolid": "ipv4"}),
        "allow-incoming-ipv4", "no-arp-spoofing",
        ("accept", "inout", -500, "mac", {"protocolid": "arp"}),
        "no-other-l2-traffic", "qemu-announce-self",
    ]),
    "clean-traffic-gateway": ("root", 0, [
        "no-mac-spoofing", "no-ip-spoofing", "no-arp-spoofing",
        ("accept", "inout", -500, "mac", {"protocolid": "arp"}),
        ("accept", "in", 500, "mac", {"srcmacaddr": "$GATEWAY_MAC"}),
        ("accept", "out", 500, "mac", {"dstmacaddr": "$GATEWAY_MAC"}),
        "no-other-l2-traffic", "qemu-announce-self",
    ]),
    "no-arp-ip-spoofing": ("arp-ip", -510, [("return", "out", 400, "arp", {"arpsrcipaddr": "$IP"}), ("drop", "out", 1000, None, {})]),
    "no-arp-mac-spoofing": ("arp-mac", -520, [("return", "out", 350, "arp", {"arpsrcmacaddr": "$MAC"}), ("drop", "out", 1000, None, {})]),
    "no-arp-spoofing": ("root", 0, ["no-arp-mac-spoofing", "no-arp-ip-spoofing"]),
    "no-ip-multicast": ("ipv4", -700, [("drop", "out", 500, "ip", {"dstipaddr": "224.0.0.0", "dstipmask": "4"})]),
    "no-ip-spoofing": ("ipv4-ip", -710, [
        ("return", "out", 100, "ip", {"srcipaddr": "0.0.0.0", "protocol": "udp"}),
        ("return", "out", 500, "ip", {"srcipaddr": "$IP"}),
        ("drop", "out", 1000, None, {}),
    ]),
    "no-ipv6-multicast": ("ipv6", -600, [("drop", "out", 500, "ipv6", {"dstipaddr": "ff00::", "dstipmask": "8"})]),
    "no-ipv6-spoofing": ("ipv6-ip", -610, [
        ("return", "out", 100, "ipv6", {"srcipaddr": "fe80::", "srcipmask": "10", "protocol": "udp"}),
        ("return", "out", 500, "ipv6", {"srcipaddr": "$IPV6"}),
        ("drop", "out", 1000, None, {}),
    ]),
    "no-mac-broadcast": ("ipv4", -700, [("drop", "out", 500, "mac", {"dstmacaddr": "ff:ff:ff:ff:ff:ff"})]),
    "no-mac-spoofing": ("mac", -800, [("return", "out", 500, "mac", {"srcmacaddr": "$MAC"}), ("drop", "out", 500, "mac", {})]),
    "no-other-l2-traffic": ("root", 0, [("drop", "inout", 1000, None, {})]),
    "no-other-rarp-traffic": ("rarp", -400, [("drop", "inout", 1000, None, {})]),
    "qemu-announce-self": ("root", 0, [
        ("accept", "out", 500, "mac", {"protocolid": "0x835"}),
        "qemu-announce-self-rarp", "no-other-rarp-traffic",
    ]),
    "qemu-announce-self-rarp": ("rarp", -400, [
        ("accept", "out", 500, "rarp", {"srcmacaddr": "$MAC", **RARP_ANNOUNCE}),
        ("accept", "in", 500, "rarp", RARP_ANNOUNCE),
    ]),
}
# fmt: on


def test_names_and_uuids_are_the_seeds():
    assert {n: f.uuid for n, f in builtin_filters().items()} == SEED
    assert list(builtin_filters()) == sorted(SEED)


def _entry_summary(e):
    if isinstance(e, FilterRef):
        assert e.params == ()
        return e.filter
    assert isinstance(e, Rule) and e.statematch
    proto = PROTOCOLS[e.protocol] if e.protocol else None
    attrs = {}
    for a in e.attrs:
        assert not a.negated, (e, a)
        attrs[a.name] = format_value(proto.attr(a.name).type, a.value)
    return (e.action, e.direction, e.priority, e.protocol, attrs)


@pytest.mark.parametrize("name", sorted(SEED))
def test_rules_are_those_of_the_spec(name):
    f = builtin_filters()[name]
    chain, prio, entries = SPEC[name]
    assert (f.chain, f.priority) == (chain, prio)
    assert [_entry_summary(e) for e in f.entries] == entries


@pytest.mark.parametrize("name", sorted(SEED))
def test_file_is_canonical_and_round_trips(name):
    text = builtin_xml()[name].decode()
    f = parse_filter(text)
    assert f == builtin_filters()[name]
    without_comments = re.sub(r"  <!--.*?-->\n", "", text)
    assert write_filter(f) == without_comments
    assert parse_filter(write_filter(f)) == f


def test_references_resolve_to_builtins_without_loops():
    b = builtin_filters()
    for f in b.values():
        for ref in f.refs:
            assert ref.filter in b, (f.name, ref.filter)
        assert find_loop(f, b) is None


def test_each_defines_dumps_and_round_trips(tmp_path):
    c = Client.open(config_dir=str(tmp_path / "etc"), state_dir=str(tmp_path / "run"))
    listed = {f.name: f.uuid for f in c.nwfilter_list()}
    assert listed == SEED
    for name, f in builtin_filters().items():
        dumped = c.nwfilter_dumpxml(name)
        assert parse_filter(dumped) == f
        redefined = c.nwfilter_define(dumped).filter
        assert redefined == f
        assert c.nwfilter_dumpxml(f.uuid) == dumped
    assert (tmp_path / "etc" / "nwfilter" / "clean-traffic.xml").read_text() == write_filter(
        builtin_filters()["clean-traffic"]
    )


def libvirt_dir() -> Path:
    """libvirt's own filter files; scripts/install.sh installs them, so CI fails without."""
    if not LIBVIRT_DIR.is_dir():
        reason = "libvirt-daemon-config-nwfilter is not installed (scripts/install.sh)"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and {reason}", pytrace=False)
        pytest.skip(reason)
    return LIBVIRT_DIR


@pytest.mark.parametrize("name", sorted(SEED))
def test_equivalent_to_libvirts_file(name):
    theirs = libvirt_dir() / f"{name}.xml"
    assert theirs.exists()
    f = parse_filter(theirs.read_bytes(), str(theirs))
    assert f.replace(uuid=SEED[name]) == builtin_filters()[name]


def test_libvirt_ships_the_same_24():
    assert sorted(p.stem for p in libvirt_dir().glob("*.xml")) == sorted(SEED)
