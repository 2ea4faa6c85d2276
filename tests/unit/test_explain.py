"""explain: a packet's way through a port's compiled rules, in the terms of the filters."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner

from nwguard.builtin import builtin_filters
from nwguard.cli.main import main_group, register
from nwguard.explain import Conntrack, decode, explain, port_contribution, to_json, to_text
from nwguard.explain.describe import DescriptionError, describe
from nwguard.ir.ports import Contribution
from nwguard.model.binding import FilterBinding
from nwguard.model.filter import Filter, FilterRef, make_params
from nwguard.xmlio.filter_xml import parse_filter

PORT, MAC, IP = "vnet0", "52:54:00:aa:bb:cc", "10.0.0.5"
PEER_MAC, PEER = "52:54:00:00:00:09", "10.0.0.9"


def contribution(top: str, *xml: str, **params: str) -> Contribution:
    filters: dict[str, Filter] = dict(builtin_filters())
    for x in xml:
        f = parse_filter(x)
        filters[f.name] = f
    b = FilterBinding("vm", "u", PORT, MAC, FilterRef(top, make_params(params)))
    return port_contribution(b, filters)


def frame(desc: str, direction: str = "out", mac: str = MAC, vlan: int | None = None) -> bytes:
    src, dst = (mac, PEER_MAC) if direction == "out" else (PEER_MAC, mac)
    return describe(desc, src_mac=src, dst_mac=dst, vlan=vlan)


def verdict(c: Contribution, desc: str, direction: str = "out", **kw: object) -> str:
    ct = kw.pop("ct", None)
    assert ct is None or isinstance(ct, Conntrack)
    return explain(c, PORT, decode(frame(desc, direction, **kw)), direction, ct).verdict  # type: ignore[arg-type]


# ------------------------------------------------------------------------------ clean-traffic


def test_clean_traffic_names_the_rule_that_drops_a_spoofed_source_ip() -> None:
    c = contribution("clean-traffic", IP=IP)
    good = explain(c, PORT, decode(frame(f"tcp {IP}:40000 > {PEER}:25")), "out")
    bad = explain(c, PORT, decode(frame(f"tcp 10.0.0.6:40000 > {PEER}:25")), "out")
    assert good.verdict == "accept" and good.decided_by is None
    assert bad.verdict == "drop"
    o = bad.decided_by.origin if bad.decided_by else None
    assert o is not None and (o.filter, o.path, o.index, o.line) == (
        "no-ip-spoofing", ("clean-traffic", "no-ip-spoofing"), 3, 10,
    )  # fmt: skip
    lookup = [s for s in bad.steps if s.variables]
    assert ("IP", ("10.0.0.5",)) in lookup[-1].variables and not lookup[-1].matched


def test_clean_traffic_spoofed_mac_and_arp() -> None:
    c = contribution("clean-traffic", IP=IP)
    spoofed = explain(
        c, PORT, decode(frame(f"udp {IP} > {PEER}:53", mac="52:54:00:de:ad:01")), "out"
    )
    assert spoofed.verdict == "drop"
    assert spoofed.decided_by and spoofed.decided_by.origin
    assert spoofed.decided_by.origin.filter == "no-mac-spoofing"
    assert verdict(c, f"arp request {PEER} tell {IP}") == "accept"
    assert verdict(c, f"arp request {PEER} tell 10.0.0.77") == "drop"  # no-arp-ip-spoofing
    assert verdict(c, f"arp reply {PEER} is-at 52:54:00:11:22:33 to {IP}", "in") == "accept"
    assert verdict(c, "ether 0x88cc") == "drop"  # no-other-l2-traffic


# ------------------------------------------------------------------------------ state, layers

TCP_CLIENT = """<filter name='tcp-client'><filterref filter='clean-traffic'/>
<rule action='accept' direction='out'><tcp/></rule>
<rule action='drop' direction='inout' priority='1000'><all/></rule></filter>"""


def test_connection_state_decides_at_the_ip_layer() -> None:
    c = contribution("tcp-client", TCP_CLIENT, IP=IP)
    assert verdict(c, f"tcp {IP}:40000 > {PEER}:80") == "accept"
    assert verdict(c, f"tcp {PEER}:40000 > {IP}:80", "in") == "drop"  # new, inbound
    reply = Conntrack("established", reply=True)
    assert verdict(c, f"tcp {PEER}:80 > {IP}:40000 flags SA", "in", ct=reply) == "accept"
    e = explain(c, PORT, decode(frame(f"tcp {PEER}:80 > {IP}:40000 flags SA", "in")), "in")
    assert e.conntrack == Conntrack("invalid", assumed=True) and e.verdict == "drop"


def test_reject_at_the_ip_layer_and_at_the_ethernet_layer() -> None:
    l4 = """<filter name='r4'><rule action='reject' direction='out'><tcp dstportstart='25'/>
    </rule></filter>"""
    l2 = """<filter name='r2'><rule action='reject' direction='out'>
    <ip protocol='tcp' dstportstart='25'/></rule></filter>"""
    assert verdict(contribution("r4", l4), f"tcp {IP} > {PEER}:25") == "reject"
    assert verdict(contribution("r4", l4), f"tcp {IP} > {PEER}:26") == "accept"
    assert verdict(contribution("r2", l2), f"tcp {IP} > {PEER}:25") == "drop"


def test_return_in_a_sub_chain_goes_back_to_the_root_chain() -> None:
    sub = """<filter name='sub' chain='ipv4-r'>
    <rule action='return' direction='out' priority='100'><ip protocol='udp' dstportstart='5000'/></rule>
    <rule action='accept' direction='out' priority='100'><ip protocol='udp' dstportstart='5001'/></rule>
    </filter>"""
    top = """<filter name='top'><filterref filter='sub'/>
    <rule action='drop' direction='out' priority='500'><ip protocol='udp'/></rule></filter>"""
    c = contribution("top", sub, top)
    assert [verdict(c, f"udp {IP} > {PEER}:{p}") for p in (5000, 5001, 5002)] == [
        "drop", "accept", "drop",
    ]  # fmt: skip


def test_vlan_rules() -> None:
    vlan = """<filter name='v100' chain='vlan'>
    <rule action='drop' direction='out'><vlan vlanid='100'/></rule></filter>"""
    c = contribution("v100", vlan)
    assert verdict(c, f"udp {IP} > {PEER}:1", vlan=100) == "drop"
    assert verdict(c, f"udp {IP} > {PEER}:1", vlan=200) == "accept"
    assert verdict(c, f"udp {IP} > {PEER}:1") == "accept"


def test_ipv6_and_a_field_the_packet_lacks() -> None:
    f = """<filter name='no-dport-22'>
    <rule action='drop' direction='out'><tcp-ipv6 dstportstart='22'/></rule>
    <rule action='drop' direction='out'><ip protocol='udp' dstportstart='53'/></rule></filter>"""
    c = contribution("no-dport-22", f)
    assert verdict(c, "tcp [2001:db8::5]:4000 > [2001:db8::9]:22") == "drop"
    assert verdict(c, "tcp [2001:db8::5]:4000 > [2001:db8::9]:23") == "accept"
    e = explain(c, PORT, decode(frame(f"arp request {PEER} tell {IP}")), "out")
    assert e.verdict == "accept"


def test_decode_finds_the_transport_header_of_ipv6_after_extension_headers() -> None:
    base = frame("udp [2001:db8::5]:1000 > [2001:db8::9]:53")
    ip6 = bytearray(base[14:])
    udp = bytes(ip6[40:])
    hop = bytes([17, 0]) + bytes(6)  # next header udp, 8 bytes
    ip6[6] = 0  # hop-by-hop first
    ip6[4:6] = struct.pack("!H", len(udp) + 8)
    p = decode(base[:14] + bytes(ip6[:40]) + hop + udp)
    assert (p.l4proto, p.th) == (17, 14 + 48)
    frag = bytes([17, 0]) + struct.pack("!H", 8 << 3) + bytes(4)  # offset 8: not the first
    ip6[6] = 44
    q = decode(base[:14] + bytes(ip6[:40]) + frag + udp)
    assert (q.l4proto, q.th) == (17, None)


def test_descriptions_that_make_no_packet_are_refused() -> None:
    for bad in ("", "tcp 10.0.0.1", "tcp 10.0.0.1 > 2001:db8::1", "arp hello", "xyz a > b"):
        with pytest.raises(DescriptionError):
            describe(bad, src_mac=MAC, dst_mac=PEER_MAC)


def test_text_and_json_name_file_line_and_variables() -> None:
    c = contribution("clean-traffic", IP=IP)
    e = explain(c, PORT, decode(frame(f"tcp 10.0.0.6:1 > {PEER}:25")), "out")
    files = {"no-ip-spoofing": "/etc/nwguard/nwfilter/no-ip-spoofing.xml"}
    text = to_text(e, files)
    assert (
        "clean-traffic > no-ip-spoofing rule[3] at /etc/nwguard/nwfilter/no-ip-spoofing.xml:10"
        in text
    )
    assert "variable IP = 10.0.0.5" in text and text.endswith("DROP by no-ip-spoofing rule[3]")
    doc = to_json(e, files)
    assert doc["verdict"] == "drop"
    decided = doc["rules"][doc["decided_by"]]
    assert decided["origin"]["file"] == files["no-ip-spoofing"] and decided["matched"] is True
    assert json.loads(json.dumps(doc)) == doc


# ------------------------------------------------------------------------------ the command

BINDING = f"""<filterbinding><owner><name>vm1</name>
<uuid>d2b2f9b6-94ff-4aa7-b4b0-8f0e5b8e2a53</uuid></owner>
<portdev name='{PORT}'/><mac address='{MAC}'/>
<filterref filter='clean-traffic'><parameter name='IP' value='{IP}'/></filterref></filterbinding>"""


def run(tmp_path: Path, *args: str) -> tuple[int, str]:
    register()
    binding = tmp_path / "b.xml"
    binding.write_text(BINDING)
    base = ["--config-dir", str(tmp_path / "etc"), "--state-dir", str(tmp_path / "run"),
            "--dry-run", "explain", PORT, "--binding", str(binding)]  # fmt: skip
    r = CliRunner().invoke(main_group, [*base, *args], env={"NWGUARD_NO_DAEMON": "1"})
    return r.exit_code, r.output


def test_cli_explains_a_binding_not_applied_yet(tmp_path: Path) -> None:
    code, out = run(tmp_path, "--out", f"tcp 10.0.0.6:4000 > {PEER}:25", "--json")
    assert code == 2, out
    doc = json.loads(out)
    assert doc["verdict"] == "drop" and doc["rules"][doc["decided_by"]]["origin"]["line"] == 10
    assert doc["rules"][doc["decided_by"]]["origin"]["file"].endswith("no-ip-spoofing.xml")
    code, out = run(tmp_path, "--out", f"tcp {IP}:4000 > {PEER}:25")
    assert code == 0 and out.rstrip().endswith("verdict: ACCEPT"), out


def test_cli_frame_and_pcap(tmp_path: Path) -> None:
    good, bad = frame(f"udp {IP} > {PEER}:53"), frame(f"udp 10.0.0.7 > {PEER}:53")
    code, out = run(tmp_path, "--frame", good.hex(), "--out", "--json")
    assert (code, json.loads(out)["verdict"]) == (0, "accept"), out
    pcap = tmp_path / "p.pcap"
    recs = b"".join(struct.pack("<IIII", 0, 0, len(f), len(f)) + f for f in (good, bad))
    pcap.write_bytes(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1) + recs)
    code, out = run(tmp_path, "--pcap", str(pcap), "--out", "--json")
    assert code == 2 and [d["verdict"] for d in json.loads(out)] == ["accept", "drop"], out


def test_cli_needs_one_direction_and_one_packet(tmp_path: Path) -> None:
    code, out = run(tmp_path, "--frame", "00")
    assert code != 0 and "exactly one of --out and --in" in out
    code, out = run(tmp_path, "--out", "tcp a > b", "--in", "udp a > b")
    assert code != 0 and "exactly one of --out and --in" in out
