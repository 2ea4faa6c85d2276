"""One definition of each name and identifier (model/names.py), the same in every document.

The regression tests are named after the disagreement they pin: before, filter bindings,
domain interfaces and networks each had their own interface-name and MAC patterns.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from nwguard.errors import HostError, XMLError
from nwguard.host import dnsmasq, port
from nwguard.host.bridge import BridgeSpec, create_bridge
from nwguard.model.names import IFNAME, UUID
from nwguard.model.values import MAC, BadValue, is_multicast_mac, random_mac
from nwguard.xmlio.binding_xml import parse_binding, write_binding
from nwguard.xmlio.common import Node, write_xml
from nwguard.xmlio.filter_xml import parse_filter
from nwguard.xmlio.interface_xml import parse_interface
from nwguard.xmlio.network_xml import parse_network

UUID_TEXT = "d2b2f9b6-94ff-4aa7-b4b0-8f0e5b8e2a53"


def binding(portdev: str = "vnet0", mac: str = "52:54:00:7b:35:93", uuid: str = UUID_TEXT) -> str:
    return (
        f"<filterbinding><owner><name>vm</name><uuid>{uuid}</uuid></owner>"
        f"<portdev name='{portdev}'/><mac address='{mac}'/>"
        "<filterref filter='clean-traffic'/></filterbinding>"
    )


def interface(bridge: str = "br0", dev: str = "vnet0", mac: str = "52:54:00:00:00:01") -> str:
    return (
        f"<interface type='bridge'><source bridge='{bridge}'/><target dev='{dev}'/>"
        f"<mac address='{mac}'/></interface>"
    )


def network(inner: str, uuid: str | None = None) -> str:
    head = f"<uuid>{uuid}</uuid>" if uuid else ""
    return f"<network><name>n</name>{head}{inner}<ip address='10.0.0.1' prefix='24'/></network>"


# ----------------------------------------------------------------------------- interface names

KERNEL_VALID = ["vnet0", "br@0", "v+1", "-x", "a#b", "eth0.100", "a" * 15, "éé", "!"]
KERNEL_INVALID = [
    "",
    ".",
    "..",
    "a/b",
    "eth0:1",
    "a b",
    "a\tb",
    "a" * 16,
    "é" * 8,  # 8 characters, 16 bytes: the limit is IFNAMSIZ bytes
    "à",  # UTF-8 c3 a0: the kernel's isspace() takes byte 0xa0 for a space
]


@pytest.mark.parametrize("name", KERNEL_VALID)
def test_ifname_accepts_what_the_kernel_accepts(name: str) -> None:
    assert IFNAME.parse(name) == name


@pytest.mark.parametrize("name", KERNEL_INVALID)
def test_ifname_refuses_what_the_kernel_refuses(name: str) -> None:
    with pytest.raises(BadValue, match="1 to 15 characters"):
        IFNAME.parse(name)


@pytest.mark.parametrize("name", [".", ".."])
def test_binding_portdev_dot_and_dotdot_are_refused(name: str) -> None:
    # binding_xml's own pattern [A-Za-z0-9_.:@+-]{1,15} took both
    with pytest.raises(XMLError, match="invalid interface name"):
        parse_binding(binding(portdev=name))


def test_binding_portdev_with_alias_colon_is_refused() -> None:
    # binding_xml's own pattern allowed ':', which the kernel refuses in device names
    with pytest.raises(XMLError, match="invalid interface name 'eth0:1'"):
        parse_binding(binding(portdev="eth0:1"))


@pytest.mark.parametrize("name", ["br@0", "v+1", "-br", "éé"])
def test_network_bridge_takes_every_name_an_interface_can_use(name: str) -> None:
    # network_xml's own pattern refused '@', '+', a leading '-' and non-ASCII names that
    # <interface><source bridge=> and <filterbinding><portdev> accepted
    net = parse_network(network(f"<bridge name='{name}'/><forward dev='{name}'/>"))
    assert net.bridge.name == name
    assert net.forward is not None and net.forward.dev == name
    assert parse_interface(interface(bridge=name, dev=name)).source_bridge == name
    assert parse_binding(binding(portdev=name)).portdev == name


@pytest.mark.parametrize("name", KERNEL_INVALID[1:])
def test_every_document_refuses_the_same_interface_names(name: str) -> None:
    cases: list[tuple[Callable[[str], object], str]] = [
        (parse_network, network(f"<bridge name='{name}'/>")),
        (parse_network, network(f"<forward dev='{name}'/>")),
        (parse_interface, interface(bridge=name)),
        (parse_interface, interface(dev=name)),
        (parse_binding, binding(portdev=name)),
    ]
    for parse, doc in cases:
        with pytest.raises(XMLError):
            parse(doc)


def test_host_creates_no_device_with_an_invalid_name() -> None:
    with pytest.raises(HostError, match="allowed names"):
        port.create("a/b", None)
    with pytest.raises(HostError, match="allowed names"):
        port.create("vnet0", None, veth_peer="..")
    with pytest.raises(HostError, match="allowed names"):
        create_bridge(BridgeSpec(".."))


@pytest.mark.parametrize("name", ["br,lo", 'br"0', "br\\0"])
def test_dnsmasq_refuses_bridge_names_it_would_split_or_unquote(name: str) -> None:
    net = parse_network(network(f"<bridge name='{name}'/>"))
    with pytest.raises(HostError, match="dnsmasq cannot serve"):
        dnsmasq.render_config(net, dnsmasq.DnsmasqFiles(Path("/run/x")))


# ----------------------------------------------------------------------------- MAC addresses


def test_network_mac_takes_one_digit_octets_like_bindings_and_filters() -> None:
    # network_xml's own pattern wanted two digits per byte; everything else took one or two
    net = parse_network(network("<mac address='52:54:0:A:b:1'/>"))
    assert net.mac == "52:54:00:0a:0b:01"
    assert parse_binding(binding(mac="52:54:0:A:b:1")).mac == "52:54:00:0a:0b:01"
    f = parse_filter(
        "<filter name='f'><rule action='drop' direction='out'>"
        "<mac srcmacaddr='52:54:0:A:b:1'/></rule></filter>"
    )
    assert f.rules[0].attrs[0].value == "52:54:00:0a:0b:01"


def test_dhcp_host_mac_is_canonical() -> None:
    net = parse_network(
        "<network><name>n</name><ip address='10.0.0.1' prefix='24'><dhcp>"
        "<host mac='52:54:0:AB:cd:1' ip='10.0.0.5'/></dhcp></ip></network>"
    )
    assert net.ips[0].hosts[0].mac == "52:54:00:ab:cd:01"


@pytest.mark.parametrize(
    "parse",
    [
        lambda: parse_network(network("<mac address='01:00:5e:00:00:01'/>")),
        lambda: parse_interface(interface(mac="01:00:5e:00:00:01")),
        lambda: parse_binding(binding(mac="01:00:5e:00:00:01")),
    ],
)
def test_multicast_mac_is_refused_with_one_message(parse: Callable[[], object]) -> None:
    with pytest.raises(XMLError, match="'01:00:5e:00:00:01' is a multicast MAC address"):
        parse()


def test_random_mac_is_unicast_in_libvirts_range() -> None:
    macs = {random_mac() for _ in range(64)}
    assert len(macs) > 1
    for mac in macs:
        assert MAC.parse(mac) == mac and mac.startswith("52:54:00:")
        assert not is_multicast_mac(mac)


# ----------------------------------------------------------------------------- UUIDs


@pytest.mark.parametrize(
    "text",
    [
        "{d2b2f9b6-94ff-4aa7-b4b0-8f0e5b8e2a53}",
        "urn:uuid:d2b2f9b6-94ff-4aa7-b4b0-8f0e5b8e2a53",
        "d2b2f9b6-94ff-4aa7-b4b0-8f0e5b8e2a5-3",
        "d2b2f9b6-94ff-4aa7-b4b0-8f0e5b8e2a53-",
    ],
)
def test_uuid_forms_python_takes_but_libvirt_refuses_are_refused(text: str) -> None:
    # every document parsed UUIDs with Python's uuid.UUID, which takes braces and URNs
    with pytest.raises(BadValue):
        UUID.parse(text)
    with pytest.raises(XMLError, match="malformed uuid"):
        parse_filter(f"<filter name='f'><uuid>{text}</uuid></filter>")
    with pytest.raises(XMLError, match="invalid UUID"):
        parse_network(network("", uuid=text))
    with pytest.raises(XMLError, match="malformed uuid"):
        parse_binding(binding(uuid=text))


@pytest.mark.parametrize(
    "text",
    [
        UUID_TEXT,
        UUID_TEXT.upper(),
        UUID_TEXT.replace("-", ""),
        " d2b2f9b6 94ff 4aa7 b4b0 8f0e5b8e2a53\n",
    ],
)
def test_uuid_forms_libvirt_takes_are_canonical_everywhere(text: str) -> None:
    assert UUID.parse(text) == UUID_TEXT
    assert parse_filter(f"<filter name='f'><uuid>{text}</uuid></filter>").uuid == UUID_TEXT
    assert parse_network(network("", uuid=text)).uuid == UUID_TEXT
    assert parse_binding(binding(uuid=text)).owner_uuid == UUID_TEXT


# ----------------------------------------------------------------------------- the writer


def test_writer_escapes_attributes_and_text() -> None:
    node = Node(
        "a", (("x", "it's <&>\t\n"), ("skip", None), ("on", False)), (Node("b", text="<&>'"),)
    )
    assert (
        write_xml(node)
        == "<a x='it&apos;s &lt;&amp;&gt;&#9;&#10;' on='no'>\n  <b>&lt;&amp;&gt;'</b>\n</a>\n"
    )


def test_binding_write_parse_is_a_fixed_point_with_odd_owner_names() -> None:
    b = parse_binding(binding().replace("<name>vm</name>", "<name>a&lt;b&gt;&amp;'c</name>"))
    assert b.owner_name == "a<b>&'c"
    text = write_binding(b)
    assert parse_binding(text) == b and write_binding(parse_binding(text)) == text
