"""A corpus of bad filter documents, each with the error it must give and where it points.

Every error names the file and line, the element path and (when there is one) the attribute,
what was given and what is allowed. Hostile documents are refused fast and small.
"""

from __future__ import annotations

import time
import tracemalloc

import pytest

from nwguard.errors import HostileXMLError, XMLError
from nwguard.xmlio.filter_xml import parse_filter

FILE = "bad.xml"
F = "/filter[@name='f']"
R1 = F + "/rule[1]"


def rule(body: str, attrs: str = "action='drop' direction='out'") -> str:
    """A filter whose single rule (on line 3) holds ``body``."""
    return f"<filter name='f'>\n  <uuid>2fa0b2a7-0c1e-4d5b-8f8c-1d2f3a4b5c6d</uuid>\n  <rule {attrs}>{body}</rule>\n</filter>\n"


def proto(el: str, attr: str, value: str) -> tuple[str, str, str, int]:
    """A rule with ``<el attr=value/>``: (document, expected path, attribute, line)."""
    extra = " protocol='tcp'" if el in ("ip", "ipv6") and "port" in attr else ""
    return rule(f"<{el} {attr}='{value}'{extra}/>"), f"{R1}/{el}", attr, 3


# (id, document, message substring, path, attribute, line)
CASES: list[tuple[str, str, str, str | None, str | None, int | None]] = [
    # -- malformed XML
    ("unclosed", "<filter name='f'>\n<rule>\n</filter>", "malformed XML", None, None, 3),
    ("bad-quote", "<filter name='f>\n</filter>", "malformed XML", None, None, None),
    ("empty", "", "malformed XML", None, None, None),
    ("text-only", "hello", "only UTF-8", None, None, None),
    ("two-roots", "<filter name='a'/><filter name='b'/>", "malformed XML", None, None, 1),
    # -- the filter element
    ("root", "<network name='f'/>", "unknown root element <network>", "/network", None, 1),
    ("no-name", "<filter chain='root'/>", "filter has no name", "/filter", "name", 1),
    ("name-digit", "<filter name='1abc'/>", "invalid filter name '1abc'", None, "name", 1),
    ("name-slash", "<filter name='a/b'/>", "invalid filter name 'a/b'", None, "name", 1),
    ("name-space", "<filter name='a b'/>", "invalid filter name", None, "name", 1),
    ("name-empty", "<filter name=''/>", "invalid filter name ''", None, "name", 1),
    ("name-colon", "<filter name='a:b'/>", "invalid filter name", None, "name", 1),
    ("name-long", f"<filter name='{'a' * 129}'/>", "1 to 128 characters", None, "name", 1),
    ("filter-attr", "<filter name='f' prio='1'/>", "unknown attribute 'prio'", F, "prio", 1),
    (
        "uuid",
        "<filter name='f'>\n<uuid>not-a-uuid</uuid></filter>",
        "malformed uuid 'not-a-uuid'",
        F + "/uuid",
        None,
        2,
    ),
    (
        "uuid-short",
        "<filter name='f'><uuid>2fa0b2a7-0c1e</uuid></filter>",
        "malformed uuid",
        F + "/uuid",
        None,
        1,
    ),
    (
        "uuid-twice",
        f"<filter name='f'><uuid>{'1' * 32}</uuid>\n<uuid>{'2' * 32}</uuid></filter>",
        "<uuid> is given twice",
        F + "/uuid",
        None,
        2,
    ),
    (
        "chain-long",
        "<filter name='f' chain='ipv4-12345678'/>",
        "longer than 12 characters",
        F,
        "chain",
        1,
    ),
    ("chain-chars", "<filter name='f' chain='ipv4$x'/>", "invalid characters", F, "chain", 1),
    (
        "chain-unknown",
        "<filter name='f' chain='ether'/>",
        "invalid chain name 'ether'",
        F,
        "chain",
        1,
    ),
    (
        "chain-rootx",
        "<filter name='f' chain='rootx'/>",
        "invalid chain name 'rootx'",
        F,
        "chain",
        1,
    ),
    ("chain-empty", "<filter name='f' chain=''/>", "chain name ''", F, "chain", 1),
    (
        "chain-prio-text",
        "<filter name='f' chain='arp' priority='high'/>",
        "priority 'high' is not an integer in [-1000,1000]",
        F,
        "priority",
        1,
    ),
    (
        "chain-prio-hi",
        "<filter name='f' chain='arp' priority='1001'/>",
        "priority '1001'",
        F,
        "priority",
        1,
    ),
    (
        "chain-prio-lo",
        "<filter name='f' chain='arp' priority='-1001'/>",
        "priority '-1001'",
        F,
        "priority",
        1,
    ),
    ("chain-prio-root", "<filter name='f' priority='5000'/>", "priority '5000'", F, "priority", 1),
    (
        "chain-prio-under",
        "<filter name='f' chain='arp' priority='1_0'/>",
        "priority '1_0'",
        F,
        "priority",
        1,
    ),
    (
        "unknown-child",
        "<filter name='f'>\n\n<rules/></filter>",
        "unknown element <rules>; allowed: uuid, rule, filterref",
        F + "/rules",
        None,
        3,
    ),
    # -- rules
    (
        "rule-prio-hi",
        rule("", "action='drop' direction='out' priority='1001'"),
        "priority '1001' is not an integer in [-1000,1000]",
        R1,
        "priority",
        3,
    ),
    (
        "rule-prio-lo",
        rule("", "action='drop' direction='out' priority='-1001'"),
        "priority '-1001'",
        R1,
        "priority",
        3,
    ),
    (
        "rule-prio-float",
        rule("", "action='drop' direction='out' priority='1.5'"),
        "priority '1.5'",
        R1,
        "priority",
        3,
    ),
    (
        "no-action",
        rule("", "direction='out'"),
        "rule has no action; allowed: drop, accept, reject, return, continue",
        R1,
        "action",
        3,
    ),
    (
        "bad-action",
        rule("", "action='allow' direction='out'"),
        "unknown action 'allow'",
        R1,
        "action",
        3,
    ),
    (
        "no-direction",
        rule("", "action='drop'"),
        "rule has no direction; allowed: in, out, inout",
        R1,
        "direction",
        3,
    ),
    (
        "bad-direction",
        rule("", "action='drop' direction='both'"),
        "unknown direction 'both'",
        R1,
        "direction",
        3,
    ),
    (
        "statematch",
        rule("", "action='drop' direction='out' statematch='maybe'"),
        "invalid statematch 'maybe'",
        R1,
        "statematch",
        3,
    ),
    (
        "rule-attr",
        rule("", "action='drop' direction='out' chain='x'"),
        "unknown attribute 'chain'",
        R1,
        "chain",
        3,
    ),
    ("unknown-proto", rule("<tcpx/>"), "unknown protocol <tcpx>", R1 + "/tcpx", None, 3),
    (
        "misspelt-proto",
        rule("<ipv5 srcipaddr='1.2.3.4'/>"),
        "unknown protocol <ipv5>",
        R1 + "/ipv5",
        None,
        3,
    ),
    (
        "two-protocols",
        rule("<tcp/><udp/>"),
        "a rule holds one protocol; found <udp> after <tcp>",
        R1 + "/udp",
        None,
        3,
    ),
    (
        "unknown-attr",
        rule("<tcp dstport='22'/>"),
        "unknown attribute 'dstport' for <tcp>",
        R1 + "/tcp",
        "dstport",
        3,
    ),
    (
        "attr-other-proto",
        rule("<udp flags='SYN/SYN'/>"),
        "unknown attribute 'flags' for <udp>",
        R1 + "/udp",
        "flags",
        3,
    ),
    (
        "attr-twice",
        rule("<tcp dstportstart='1'/><tcp dstportstart='2'/>"),
        "'dstportstart' is given twice",
        R1 + "/tcp",
        "dstportstart",
        3,
    ),
    (
        "match",
        rule("<tcp match='maybe'/>"),
        "invalid match 'maybe'; allowed: yes, no",
        R1 + "/tcp",
        "match",
        3,
    ),
    ("proto-child", rule("<tcp><x/></tcp>"), "takes attributes only", R1 + "/tcp", None, 3),
    (
        "ports-no-proto",
        rule("<ip dstportstart='22'/>"),
        "a port match needs protocol tcp (6), udp (17), dccp (33) or sctp (132)",
        R1,
        "protocol",
        3,
    ),
    (
        "ports-icmp",
        rule("<ipv6 protocol='icmpv6' srcportstart='1'/>"),
        "a port match needs protocol",
        R1,
        "protocol",
        3,
    ),
    # -- filterref and parameters
    (
        "ref-no-filter",
        "<filter name='f'>\n<filterref/></filter>",
        "filterref has no filter attribute",
        F + "/filterref[1]",
        "filter",
        2,
    ),
    (
        "ref-bad-name",
        "<filter name='f'><filterref filter='../x'/></filter>",
        "invalid filter name '../x'",
        F + "/filterref[1]",
        "filter",
        1,
    ),
    (
        "ref-attr",
        "<filter name='f'><filterref filter='x' when='now'/></filter>",
        "unknown attribute 'when'",
        F + "/filterref[1]",
        "when",
        1,
    ),
    (
        "param-name",
        "<filter name='f'><filterref filter='x'><parameter name='A-B' value='1'/></filterref></filter>",
        "invalid parameter name 'A-B'",
        F + "/filterref[1]/parameter[1]",
        "name",
        1,
    ),
    (
        "param-no-name",
        "<filter name='f'><filterref filter='x'><parameter value='1'/></filterref></filter>",
        "invalid parameter name 'None'",
        F + "/filterref[1]/parameter[1]",
        "name",
        1,
    ),
    (
        "param-cidr",
        "<filter name='f'><filterref filter='x'><parameter name='IP' value='10.0.0.0/8'/></filterref></filter>",
        "invalid parameter value '10.0.0.0/8'",
        F + "/filterref[1]/parameter[1]",
        "value",
        1,
    ),
    (
        "param-space",
        "<filter name='f'><filterref filter='x'><parameter name='IP' value='a b'/></filterref></filter>",
        "invalid parameter value 'a b'",
        None,
        "value",
        1,
    ),
    (
        "param-comma",
        "<filter name='f'><filterref filter='x'><parameter name='IP' value='1,2'/></filterref></filter>",
        "invalid parameter value '1,2'",
        None,
        "value",
        1,
    ),
    (
        "param-empty",
        "<filter name='f'><filterref filter='x'><parameter name='IP' value=''/></filterref></filter>",
        "invalid parameter value ''",
        None,
        "value",
        1,
    ),
    (
        "param-element",
        "<filter name='f'><filterref filter='x'><param name='IP' value='1'/></filterref></filter>",
        "unknown element <param>; allowed: parameter",
        F + "/filterref[1]/param",
        None,
        1,
    ),
]

# (element, attribute, bad value, expected text): each type of bad value
BAD_VALUES = [
    ("icmp", "type", "256", "an integer from 0 to 255"),
    ("tcp", "option", "-1", "an integer from 0 to 255"),
    ("tcp", "dstportstart", "65536", "an integer from 0 to 65535"),
    ("udp", "srcportend", "1_000", "an integer from 0 to 65535"),
    ("udp", "srcportstart", "0x1g", "an integer from 0 to 65535"),
    ("udp", "srcportstart", "٣", "an integer from 0 to 65535"),
    ("stp", "root-cost", "0x100000000", "an integer from 0 to 4294967295"),
    ("ip", "dscp", "64", "an integer from 0 to 63"),
    ("vlan", "vlanid", "4096", "an integer from 0 to 4095"),
    ("mac", "protocolid", "0x5ff", "an integer from 1536 to 65535"),
    ("mac", "protocolid", "ipx", "or one of arp, rarp, ipv4, ipv6, vlan"),
    ("vlan", "encap-protocol", "0x3b", "an integer from 60 to 65535"),
    ("ip", "protocol", "gre", "one of tcp, udp"),
    ("ipv6", "protocol", "256", "an integer from 0 to 255"),
    ("arp", "opcode", "Requestx", "one of request, reply"),
    ("mac", "srcmacaddr", "52:54:00:00:00", "a MAC address"),
    ("rarp", "arpsrcmacaddr", "52:54:00:00:00:zz", "a MAC address"),
    ("mac", "srcmacmask", "ff:00:ff:00:00:00", "contiguous"),
    ("tcp", "srcipaddr", "10.0.0.256", "a dotted IPv4 address"),
    ("arp", "arpdstipaddr", "10.0.0", "a dotted IPv4 address"),
    ("tcp", "srcipmask", "33", "a prefix length 0-32"),
    ("ip", "dstipmask", "255.0.255.0", "contiguous dotted mask"),
    ("tcp-ipv6", "srcipaddr", "fe80:::1", "an IPv6 address"),
    ("ipv6", "srcipaddr", "fe80::1%eth0", "an IPv6 address"),
    ("icmpv6", "dstipmask", "129", "a prefix length 0-128"),
    ("tcp", "state", "NEW,FOO", "a comma list of NEW, ESTABLISHED"),
    ("udp", "state", "", "a comma list of NEW"),
    ("tcp", "flags", "SYN", "MASK/SET"),
    ("tcp", "flags", "SYN/FOO", "MASK/SET"),
    ("tcp", "flags", "SYN/ACK/FIN", "MASK/SET"),
    ("all", "ipset", "a" * 32, "1 to 31 characters"),
    ("all", "ipset", "a/b", "1 to 31 characters"),
    ("all", "ipsetflags", "src,up", "each src or dst"),
    ("all", "ipsetflags", ",".join(["src"] * 7), "1 to 6"),
    ("udp", "comment", "x" * 257, "at most 256 characters"),
    ("arp", "gratuitous", "maybe", "one of true, false"),
    ("tcp", "connlimit-above", "70000", "an integer from 0 to 65535"),
    # malformed variable references
    ("tcp", "srcipaddr", "$", "a variable reference"),
    ("tcp", "srcipaddr", "$a-b", "a variable reference"),
    ("tcp", "srcipaddr", "$X[", "a variable reference"),
    ("tcp", "srcipaddr", "$X[a]", "a variable reference"),
    ("tcp", "srcipaddr", "$X[-1]", "a variable reference"),
    ("tcp", "srcipaddr", "$X[@1001]", "an iterator id from 0 to 1000"),
    ("tcp", "comment", "$not a var", "a variable reference"),
]


def _check(exc: XMLError, msg: str, path: str | None, attr: str | None, line: int | None) -> None:
    text = str(exc)
    assert msg in text, text
    assert exc.file == FILE and text.startswith(FILE), text
    if line is not None:
        assert exc.line == line, text
        assert text.startswith(f"{FILE}:{line}"), text
    if path is not None:
        assert exc.path == path, text
        assert path in text
    if attr is not None:
        assert exc.attribute == attr, text
        assert text.find(f"/@{attr}:") > 0, text


@pytest.mark.parametrize(
    ("doc", "msg", "path", "attr", "line"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_bad_document(doc, msg, path, attr, line):
    with pytest.raises(XMLError) as info:
        parse_filter(doc, FILE)
    _check(info.value, msg, path, attr, line)


@pytest.mark.parametrize(
    ("el", "attr", "value", "allowed"),
    BAD_VALUES,
    ids=[f"{b[0]}-{b[1]}-{i}" for i, b in enumerate(BAD_VALUES)],
)
def test_bad_value(el, attr, value, allowed):
    doc, path, attribute, line = proto(el, attr, value)
    with pytest.raises(XMLError) as info:
        parse_filter(doc, FILE)
    _check(info.value, f"illegal value '{value}'; expected", path, attribute, line)
    assert allowed in str(info.value)


def test_case_ids_are_unique():
    ids = [c[0] for c in CASES]
    assert len(ids) == len(set(ids))


# ----------------------------------------------------------------------------- hostile XML

BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<filter name="f"><rule action="drop" direction="out"><tcp comment="&lol9;"/></rule></filter>
"""


def _refused_fast_and_small(doc: str | bytes, msg: str) -> None:
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(HostileXMLError) as info:
            parse_filter(doc, FILE)
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert msg in str(info.value)
    assert str(info.value).startswith(FILE)
    assert elapsed < 0.5, elapsed
    size = len(doc.encode() if isinstance(doc, str) else doc)
    assert peak < size + (2 << 20), peak  # the document itself plus a little


def test_billion_laughs_refused_fast_and_small():
    _refused_fast_and_small(BILLION_LAUGHS, "DOCTYPE and ENTITY declarations are not accepted")


def test_billion_laughs_hidden_in_utf16_refused():
    _refused_fast_and_small(
        BILLION_LAUGHS.replace("1.0", '1.0" encoding="UTF-16').encode("utf-16"), "only UTF-8"
    )


def test_billion_laughs_in_exotic_encoding_refused():
    doc = BILLION_LAUGHS.replace('"1.0"', '"1.0" encoding="UTF-7"')
    _refused_fast_and_small(doc, "encoding 'UTF-7' is not accepted")


def test_external_entity_refused():
    doc = (
        '<?xml version="1.0"?>\n<!DOCTYPE f [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>\n'
        "<filter name='f'><rule action='drop' direction='out'><tcp comment='&xxe;'/></rule></filter>"
    )
    _refused_fast_and_small(doc, "DOCTYPE and ENTITY")


def test_external_dtd_refused():
    doc = '<!DOCTYPE filter SYSTEM "http://example.invalid/x.dtd"><filter name="f"/>'
    _refused_fast_and_small(doc, "DOCTYPE and ENTITY")


def test_undeclared_entity_is_malformed_not_fetched():
    with pytest.raises(XMLError, match="malformed XML"):
        parse_filter("<filter name='&ent;'/>", FILE)


def test_five_megabytes_refused():
    doc = "<filter name='f'>" + "<!-- padding -->" * (5 * 1024 * 1024 // 16) + "</filter>"
    assert len(doc) > 5_000_000
    _refused_fast_and_small(doc, "bytes; at most")


@pytest.mark.parametrize("depth", [40, 300, 100_000])
def test_deep_nesting_refused(depth):
    doc = "<filter name='f'>" + "<a>" * depth + "</a>" * depth + "</filter>"  # < 1 MiB
    _refused_fast_and_small(doc, "nested deeper than")


def test_too_many_elements_refused():
    doc = "<filter name='f'>" + "<uuid/>" * 60_000 + "</filter>"
    _refused_fast_and_small(doc, "more than 50000 elements")
