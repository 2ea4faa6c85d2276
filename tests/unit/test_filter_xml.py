"""Filter XML: every protocol and attribute round-trips; written XML looks like libvirt's.

The protocol table drives the cases, so an attribute added to the table is tested here too.
"""

from __future__ import annotations

import pytest

from nwguard.model import protocols as P
from nwguard.model.filter import Filter, FilterRef, Rule
from nwguard.model.values import Num, VarRef
from nwguard.xmlio.filter_xml import parse_filter, write_filter

UUID = "d217f2d7-5a04-0e01-8b98-ec2743436b74"

# type name -> [(input text, canonical output)]
SAMPLES: dict[str, list[tuple[str, str]]] = {
    "UINT8": [("17", "17"), ("0x1F", "0x1f"), ("ff", "0xff"), ("0", "0")],
    "UINT16": [("1024", "1024"), ("0xFFFF", "0xffff"), ("65535", "65535")],
    "UINT32": [("100000", "100000"), ("0xffffffff", "0xffffffff")],
    "DSCP": [("46", "46"), ("0x3f", "0x3f")],
    "VLAN_ID": [("4095", "4095"), ("0x10", "0x10")],
    "ETHERTYPE": [("0x0800", "ipv4"), ("IPv6", "ipv6"), ("0x835", "0x835"), ("1536", "1536")],
    "ENCAP_PROTOCOL": [("arp", "arp"), ("0x3c", "0x3c"), ("34525", "ipv6")],
    "IP_PROTOCOL": [("6", "tcp"), ("UDP", "udp"), ("33", "33"), ("0x84", "sctp")],
    "ARP_OPCODE": [("1", "Request"), ("request_reverse", "Request_Reverse"), ("10", "10")],
    "MAC_ADDR": [("52:54:0:AB:cd:1", "52:54:00:ab:cd:01")],
    "MAC_MASK": [("FF:FF:FF:00:00:00", "ff:ff:ff:00:00:00")],
    "IP_ADDR": [("10.1.2.3", "10.1.2.3")],
    "IP_MASK": [("255.255.255.0", "24"), ("8", "8")],
    "IPV6_ADDR": [("FE80::0:1", "fe80::1"), ("::ffff:10.0.0.1", "::ffff:a00:1")],
    "IPV6_MASK": [("ffff:ffff::", "32"), ("64", "64")],
    "STATE": [("new,Established", "NEW,ESTABLISHED"), ("NONE", "NONE")],
    "TCP_FLAGS": [("SYN,ACK/SYN", "SYN,ACK/SYN"), ("ALL/", "ALL/NONE"), ("psh/none", "PSH/NONE")],
    "IPSETNAME": [("my set.1", "my set.1")],
    "IPSETFLAGS": [("SRC,dst", "src,dst")],
    "STRING": [("a 'quoted' <comment> & more", "a &apos;quoted&apos; &lt;comment&gt; &amp; more")],
    "BOOLEAN": [("yes", "true"), ("0", "false")],
}
VARIABLES = [("$IP", "$IP"), ("$IP[2]", "$IP[2]"), ("$IP[@1]", "$IP[@1]"), ("$IP[ @0 ]", "$IP")]


def _needs_protocol(proto: str, attr: str) -> str:
    """ip/ipv6 port attributes need a port protocol in the same rule."""
    if proto in ("ip", "ipv6") and attr in P.PORT_ATTRS:
        return " protocol='tcp'"
    return ""


def _doc(body: str, head: str = "<filter name='t' chain='root'>") -> str:
    return f"{head}<uuid>{UUID}</uuid>{body}</filter>"


def _attr_cases():
    for proto in P.PROTOCOLS.values():
        for attr in proto.attrs:
            yield pytest.param(proto.name, attr.name, id=f"{proto.name}-{attr.name}")


def assert_round_trip(f: Filter) -> str:
    """write → parse gives the same filter, and writing again gives the same text."""
    text = write_filter(f)
    again = parse_filter(text)
    assert again == f, text
    assert write_filter(again) == text
    return text


@pytest.mark.parametrize(("proto", "attr"), list(_attr_cases()))
def test_every_attribute_round_trips(proto, attr):
    """Each sample value of the attribute's type and each variable form, plain and negated."""
    extra = _needs_protocol(proto, attr)
    vtype = P.PROTOCOLS[proto].attr(attr).type.name
    for text, canon in SAMPLES[vtype] + VARIABLES:
        for neg in ("", " match='no'"):
            xml = _doc(
                f"<rule action='accept' direction='inout'>"
                f'<{proto}{neg} {attr}="{_xml_attr(text)}"{extra}/></rule>'
            )
            f = parse_filter(xml)
            rule = f.entries[0]
            assert rule.protocol == proto
            av = rule.get(attr)
            assert av is not None and av.negated == bool(neg), xml
            out = assert_round_trip(f)
            assert f"{attr}='{canon}'" in out, (xml, out)
            if neg:
                assert f"<{proto} match='no' " in out


def _xml_attr(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace('"', "&quot;")


@pytest.mark.parametrize("proto", list(P.PROTOCOLS))
def test_all_attributes_of_a_protocol_at_once(proto):
    p = P.PROTOCOLS[proto]
    attrs = []
    for a in p.attrs:
        text = SAMPLES[a.type.name][0][0]
        if a.name == "protocol":
            text = "tcp"
        attrs.append(f'{a.name}="{_xml_attr(text)}"')
    xml = _doc(f"<rule action='drop' direction='out'><{proto} {' '.join(attrs)}/></rule>")
    f = parse_filter(xml)
    assert [a.name for a in f.entries[0].attrs] == list(p.attr_names)
    assert_round_trip(f)


@pytest.mark.parametrize("proto", list(P.PROTOCOLS))
def test_protocol_without_attributes(proto):
    f = parse_filter(_doc(f"<rule action='accept' direction='in'><{proto}/></rule>"))
    assert f.entries[0].protocol == proto and f.entries[0].attrs == ()
    assert f"    <{proto}/>\n" in assert_round_trip(f)


@pytest.mark.parametrize(("alias", "proto"), sorted(P.PROTOCOL_ALIASES.items()))
def test_protocol_aliases(alias, proto):
    f = parse_filter(_doc(f"<rule action='accept' direction='in'><{alias}/></rule>"))
    assert f.entries[0].protocol == proto


def test_variable_references_are_parsed():
    f = parse_filter(
        _doc(
            "<rule action='accept' direction='out'>"
            "<udp srcipaddr='$A[@1]' dstipaddr='$B[2]' srcportstart='$C' dstportstart='$D[@0]'/></rule>"
        )
    )
    rule = f.entries[0]
    assert rule.get("srcipaddr").value == VarRef("A", None, 1)
    assert rule.get("dstipaddr").value == VarRef("B", 2, None)
    assert rule.get("srcportstart").value == VarRef("C")
    assert rule.get("dstportstart").value == VarRef("D")
    assert [str(v) for v in rule.variables()] == ["$A[@1]", "$B[2]", "$C", "$D"]
    assert assert_round_trip(f).count("$") == 4


def test_mixed_negation_is_split_into_elements_in_table_order():
    f = parse_filter(
        _doc(
            "<rule action='drop' direction='out'>"
            "<tcp dstportstart='22'/><tcp match='no' srcipaddr='10.0.0.1' srcipmask='255.0.0.0'/>"
            "</rule>"
        )
    )
    text = assert_round_trip(f)
    assert (
        "    <tcp match='no' srcipaddr='10.0.0.1' srcipmask='8'/>\n"
        "    <tcp dstportstart='22'/>\n" in text
    )


def test_mask_takes_the_negation_of_its_address():
    f = parse_filter(
        _doc(
            "<rule action='drop' direction='out'>"
            "<ip match='no' srcipaddr='10.0.0.0'/><ip srcipmask='8'/></rule>"
        )
    )
    assert f.entries[0].get("srcipmask").negated is True
    assert "<ip match='no' srcipaddr='10.0.0.0' srcipmask='8'/>" in assert_round_trip(f)


# ----------------------------------------------------------------------------- layout


def test_layout_of_a_filter_with_rules_and_references():
    xml = """<filter name='test-filter' chain='ipv4' priority='-650'>
      <uuid>D217F2D7-5A04-0E01-8B98-EC2743436B74</uuid>
      <!-- a comment is dropped -->
      <rule direction='out' action='accept' priority='-100' statematch='FALSE'>
        <ip srcmacaddr='52:54:0:1:2:3' protocol='6' dstportstart='80'/>
      </rule>
      <rule action='drop' direction='inout'/>
      <filterref filter='clean-traffic'>
        <parameter name='MAC' value='52:54:00:00:00:01'/>
        <parameter name='IP' value='10.0.0.2'/>
        <parameter name='IP' value='10.0.0.1'/>
      </filterref>
      <filterref filter='allow-arp'/>
    </filter>"""
    expected = (
        "<filter name='test-filter' chain='ipv4' priority='-650'>\n"
        "  <uuid>d217f2d7-5a04-0e01-8b98-ec2743436b74</uuid>\n"
        "  <rule action='accept' direction='out' priority='-100' statematch='false'>\n"
        "    <ip srcmacaddr='52:54:00:01:02:03' protocol='tcp' dstportstart='80'/>\n"
        "  </rule>\n"
        "  <rule action='drop' direction='inout' priority='500'/>\n"
        "  <filterref filter='clean-traffic'>\n"
        "    <parameter name='IP' value='10.0.0.2'/>\n"
        "    <parameter name='IP' value='10.0.0.1'/>\n"
        "    <parameter name='MAC' value='52:54:00:00:00:01'/>\n"
        "  </filterref>\n"
        "  <filterref filter='allow-arp'/>\n"
        "</filter>\n"
    )
    f = parse_filter(xml)
    assert write_filter(f) == expected
    assert f.refs[0].params == (("IP", ("10.0.0.2", "10.0.0.1")), ("MAC", ("52:54:00:00:00:01",)))


def test_layout_chain_defaults_and_root_priority():
    # chain absent: root, priority not written; chain given without priority: the prefix default
    assert write_filter(parse_filter(_doc("", "<filter name='a'>"))).startswith(
        "<filter name='a' chain='root'>\n"
    )
    assert write_filter(parse_filter(_doc("", "<filter name='a' chain='arp-ip'>"))).startswith(
        "<filter name='a' chain='arp-ip' priority='-500'>\n"
    )
    # libvirt range-checks a priority without chain but keeps root's 0
    f = parse_filter(_doc("", "<filter name='a' priority='-300'>"))
    assert (f.chain, f.priority) == ("root", 0)


@pytest.mark.parametrize(
    ("chain", "prio"),
    [
        ("root", 0),
        ("mac", -800),
        ("vlan", -750),
        ("stp", 0),
        ("arp", -500),
        ("rarp-x", -400),
        ("ipv4", -700),
        ("ipv6-ip", -600),
        ("arp:1", -500),
    ],
)
def test_default_chain_priorities(chain, prio):
    assert parse_filter(_doc("", f"<filter name='a' chain='{chain}'>")).priority == prio


def test_missing_uuid_gets_a_random_one_or_the_callers():
    a = parse_filter("<filter name='a'/>")
    b = parse_filter("<filter name='a'/>")
    assert a.uuid != b.uuid
    assert parse_filter("<filter name='a'/>", missing_uuid=lambda n: UUID).uuid == UUID


def test_empty_filter_layout():
    assert (
        write_filter(Filter("e", UUID))
        == f"<filter name='e' chain='root'>\n  <uuid>{UUID}</uuid>\n</filter>\n"
    )


def test_model_built_in_python_writes_and_reads_back():
    from nwguard.model.filter import AttrValue, make_params

    f = Filter(
        "py",
        UUID,
        "ipv6",
        -600,
        (
            Rule(
                "reject",
                "in",
                10,
                False,
                "icmpv6",
                (AttrValue("type", Num(135)), AttrValue("code", Num(0))),
            ),
            Rule("continue", "inout"),
            FilterRef("x", make_params({"B": ["1", "2"], "A": "x"})),
        ),
    )
    assert_round_trip(f)


def test_comment_with_newline_and_tab_survives():
    f = parse_filter(
        _doc("<rule action='drop' direction='out'><tcp comment='a&#10;b&#9;c'/></rule>")
    )
    assert f.entries[0].get("comment").value == "a\nb\tc"
    assert_round_trip(f)


def test_zero_chain_priority_on_a_non_root_chain_is_written():
    """Found by hypothesis: libvirt omits priority='0', which then reads back as the default."""
    f = parse_filter(_doc("", "<filter name='a' chain='mac' priority='0'>"))
    assert f.priority == 0
    assert write_filter(f).startswith("<filter name='a' chain='mac' priority='0'>\n")
    assert_round_trip(f)
    # where 0 is the default (root, stp) it stays unwritten, as libvirt does
    assert write_filter(parse_filter(_doc("", "<filter name='a' chain='stp'>"))).startswith(
        "<filter name='a' chain='stp'>\n"
    )
