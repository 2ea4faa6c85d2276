"""Network XML: round trips, the bad-input corpus with its exact messages, hostile XML."""

from __future__ import annotations

from ipaddress import ip_address

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nwguard.errors import HostileXMLError, XMLError
from nwguard.model.network import Bridge, DhcpHost, DhcpRange, Forward, IPConfig, NatConfig, Network
from nwguard.xmlio.network_xml import parse_network, write_network

DEFAULT = """<network>
  <name>default</name>
  <uuid>3e3fce45-4f53-4fa7-bb32-11f34168b82b</uuid>
  <forward mode='nat'/>
  <bridge name='virbr0' stp='on' delay='0'/>
  <mac address='52:54:00:0a:cd:21'/>
  <ip address='192.168.122.1' netmask='255.255.255.0'>
    <dhcp>
      <range start='192.168.122.2' end='192.168.122.254'/>
    </dhcp>
  </ip>
</network>
"""

FULL = """<network ipv6='yes'>
  <name>full</name>
  <uuid>0b9a7f3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b</uuid>
  <forward mode='nat' dev='eth0'>
    <nat ipv6='yes'>
      <address start='198.51.100.10' end='198.51.100.20'/>
      <port start='2000' end='3000'/>
    </nat>
    <interface dev='eth0'/>
  </forward>
  <bridge name='br-full' stp='off' delay='5' zone='libvirt'/>
  <mtu size='9000'/>
  <mac address='52:54:00:12:34:56'/>
  <domain name='example.com' localOnly='yes'/>
  <dns enable='yes' forwardPlainNames='no'>
    <forwarder domain='corp.example' addr='192.0.2.53'/>
    <forwarder addr='2001:db8::53'/>
    <host ip='10.1.0.5'>
      <hostname>web</hostname>
      <hostname>www</hostname>
    </host>
  </dns>
  <ip address='10.1.0.1' prefix='24' localPtr='yes'>
    <dhcp>
      <range start='10.1.0.100' end='10.1.0.200'>
        <lease expiry='2' unit='hours'/>
      </range>
      <host mac='52:54:00:00:00:01' name='g1' ip='10.1.0.10'/>
      <host mac='52:54:00:00:00:02' ip='10.1.0.11'>
        <lease expiry='0'/>
      </host>
    </dhcp>
  </ip>
  <ip family='ipv6' address='fd00:1::1' prefix='64'>
    <dhcp>
      <range start='fd00:1::100' end='fd00:1::1ff'/>
      <host id='00:01:00:01:aa:bb' name='g6' ip='fd00:1::10'/>
    </dhcp>
  </ip>
</network>
"""


def test_default_network_parses_like_libvirt() -> None:
    net = parse_network(DEFAULT)
    assert net.mode == "nat" and net.bridge_name == "virbr0"
    assert str(net.ips[0].network) == "192.168.122.0/24"
    assert net.ips[0].ranges == (
        DhcpRange(ip_address("192.168.122.2"), ip_address("192.168.122.254")),
    )


@pytest.mark.parametrize("text", [DEFAULT, FULL], ids=["default", "full"])
def test_written_xml_is_byte_identical_to_libvirt_style_input(text: str) -> None:
    assert write_network(parse_network(text)) == text


@pytest.mark.parametrize("text", [DEFAULT, FULL], ids=["default", "full"])
def test_round_trip_is_a_fixed_point(text: str) -> None:
    net = parse_network(text)
    assert parse_network(write_network(net)) == net


def test_forward_without_mode_is_nat_and_absent_forward_is_isolated() -> None:
    assert parse_network("<network><name>a</name><forward/></network>").mode == "nat"
    assert parse_network("<network><name>a</name></network>").mode == "isolated"


def test_missing_uuid_bridge_and_mac_are_left_for_define() -> None:
    net = parse_network("<network><name>a</name></network>")
    assert (net.uuid, net.bridge.name, net.mac) == (None, None, None)


def test_netmask_and_prefix_give_the_same_subnet_and_each_round_trips() -> None:
    a = parse_network(
        "<network><name>a</name><ip address='10.0.0.1' netmask='255.255.0.0'/></network>"
    )
    b = parse_network("<network><name>a</name><ip address='10.0.0.1' prefix='16'/></network>")
    assert a.ips[0].network == b.ips[0].network
    assert "netmask='255.255.0.0'" in write_network(a) and "prefix='16'" in write_network(b)


def test_ipv6_address_is_normalised() -> None:
    net = parse_network(
        "<network><name>a</name><ip family='ipv6' address='FD00:0:0::0001' prefix='64'/></network>"
    )
    assert "address='fd00::1'" in write_network(net)


# ----------------------------------------------------------------------------- bad input corpus

N = "<network><name>a</name>{}</network>"
IP = "<ip address='10.0.0.1' prefix='24'>{}</ip>"
BAD: list[tuple[str, str, str]] = [
    ("<filter/>", "/filter", "unknown root element <filter>; expected <network>"),
    ("<network/>", "/network", "network has no <name>"),
    ("<network><name>a/b</name></network>", "/network/name", "invalid network name 'a/b'"),
    ("<network><name>a</name><name>b</name></network>", "/network/name", "<name> given 2 times"),
    (N.format("<uuid>nope</uuid>"), "/network/uuid", "invalid UUID 'nope'"),
    (
        N.format("<frobnicate/>"),
        "/network/frobnicate",
        "unsupported element <frobnicate>; allowed here: name",
    ),
    (
        N.format("<route address='10.9.0.0' prefix='24' gateway='10.0.0.2'/>"),
        "/network/route",
        "unsupported element <route>",
    ),
    (
        "<network foo='1'><name>a</name></network>",
        "/network/@foo",
        "unknown attribute 'foo'; allowed: ipv6",
    ),
    (
        "<network ipv6='maybe'><name>a</name></network>",
        "/network/@ipv6",
        "invalid value 'maybe'; allowed: yes, no",
    ),
    (
        N.format("<forward mode='bridge'/>"),
        "/network/forward/@mode",
        "forward mode 'bridge' is not supported; allowed: nat, route, open",
    ),
    (
        N.format("<forward mode='open' dev='eth0'/>"),
        "/network/forward/@dev",
        "dev 'eth0' is not allowed with forward mode 'open'",
    ),
    (
        N.format("<forward mode='route'><nat/></forward>"),
        "/network/forward/nat",
        "<nat> is only allowed with mode 'nat', not 'route'",
    ),
    (
        N.format("<forward dev='a b'/>"),
        "/network/forward/@dev",
        "invalid value 'a b'; allowed: 1 to 15 characters",
    ),
    (
        N.format("<forward dev='eth0'><interface dev='eth1'/></forward>"),
        "/network/forward/interface[1]/@dev",
        "dev 'eth1' differs from <forward dev='eth0'>",
    ),
    (
        N.format("<forward><nat><port start='2000' end='2000'/></nat></forward>"),
        "/network/forward/nat/port/@start",
        "invalid port range 2000-2000; start must be below end",
    ),
    (
        N.format("<forward><nat><port start='0' end='100'/></nat></forward>"),
        "/network/forward/nat/port/@start",
        "invalid value '0'; allowed: an integer 1 to 65535",
    ),
    (
        N.format("<forward><nat><port start='10'/></nat></forward>"),
        "/network/forward/nat/port/@end",
        "<nat><port> needs both start and end",
    ),
    (
        N.format("<forward><nat><address start='fd00::1' end='fd00::2'/></nat></forward>"),
        "/network/forward/nat/address/@start",
        "'fd00::1' is not an IPv4 address",
    ),
    (
        N.format("<forward><nat><address start='1.2.3.9' end='1.2.3.4'/></nat></forward>"),
        "/network/forward/nat/address/@start",
        "start '1.2.3.9' is after end '1.2.3.4'",
    ),
    (
        N.format("<bridge name='much-too-long-name0'/>"),
        "/network/bridge/@name",
        "invalid value 'much-too-long-name0'",
    ),
    (
        N.format("<bridge stp='yes'/>"),
        "/network/bridge/@stp",
        "invalid value 'yes'; allowed: on, off",
    ),
    (
        N.format("<bridge delay='-1'/>"),
        "/network/bridge/@delay",
        "invalid value '-1'; allowed: an integer 0 to 30",
    ),
    (
        N.format("<bridge macTableManager='libvirt'/>"),
        "/network/bridge/@macTableManager",
        "macTableManager 'libvirt' is not supported",
    ),
    (
        N.format("<mac address='01:00:5e:00:00:01'/>"),
        "/network/mac/@address",
        "'01:00:5e:00:00:01' is a multicast MAC address",
    ),
    (
        N.format("<mac address='52:54:00:zz:00:01'/>"),
        "/network/mac/@address",
        "invalid value '52:54:00:zz:00:01'; allowed: a MAC address",
    ),
    (
        N.format("<mtu size='20'/>"),
        "/network/mtu/@size",
        "invalid value '20'; allowed: an integer 68 to 65535",
    ),
    (
        N.format("<domain name='-bad-.com'/>"),
        "/network/domain/@name",
        "invalid DNS name '-bad-.com'",
    ),
    (
        N.format("<domain name='ok' localOnly='1'/>"),
        "/network/domain/@localOnly",
        "invalid value '1'; allowed: yes, no",
    ),
    (
        N.format("<dns><forwarder/></dns>"),
        "/network/dns/forwarder[1]/@addr",
        "<forwarder> needs an addr, a domain or both",
    ),
    (
        N.format("<dns><host ip='10.0.0.5'/></dns>"),
        "/network/dns/host[1]",
        "<host> needs at least one <hostname>",
    ),
    (
        N.format("<dns><host ip='10.0.0.5'><hostname>a b</hostname></host></dns>"),
        "/network/dns/host[1]/hostname[1]",
        "invalid DNS name 'a b'",
    ),
    (
        N.format("<dns><txt name='a' value='b'/></dns>"),
        "/network/dns/txt",
        "unsupported element <txt>",
    ),
    (
        N.format("<dns enable='no'><forwarder addr='192.0.2.1'/></dns>"),
        "/network/dns/@enable",
        "DNS is disabled (enable='no') but forwarders or hosts are given",
    ),
    (
        N.format("<ip address='10.0.0.1'/>"),
        "/network/ip[1]/@prefix",
        "<ip> needs a netmask or a prefix",
    ),
    (N.format("<ip prefix='24'/>"), "/network/ip[1]/@address", "<ip> needs an address"),
    (
        N.format("<ip address='10.0.0.300' prefix='24'/>"),
        "/network/ip[1]/@address",
        "invalid IP address '10.0.0.300'",
    ),
    (
        N.format("<ip address='fd00::1' prefix='64'/>"),
        "/network/ip[1]/@address",
        "'fd00::1' is not an IPv4 address as the family requires",
    ),
    (
        N.format("<ip family='ipx' address='10.0.0.1' prefix='8'/>"),
        "/network/ip[1]/@family",
        "invalid family 'ipx'; allowed: ipv4, ipv6",
    ),
    (
        N.format("<ip address='10.0.0.1' netmask='255.0.255.0'/>"),
        "/network/ip[1]/@netmask",
        "invalid netmask '255.0.255.0'",
    ),
    (
        N.format("<ip address='10.0.0.1' netmask='255.0.0.0' prefix='8'/>"),
        "/network/ip[1]/@netmask",
        "give netmask or prefix, not both",
    ),
    (
        N.format("<ip family='ipv6' address='fd00::1' netmask='255.0.0.0'/>"),
        "/network/ip[1]/@netmask",
        "netmask is only allowed for IPv4",
    ),
    (
        N.format("<ip address='10.0.0.1' prefix='33'/>"),
        "/network/ip[1]/@prefix",
        "invalid value '33'; allowed: an integer 1 to 32",
    ),
    (
        N.format("<ip address='10.0.0.0' prefix='24'/>"),
        "/network/ip[1]/@address",
        "address '10.0.0.0' is the network or broadcast address of 10.0.0.0/24",
    ),
    (
        N.format("<ip address='10.0.0.1' prefix='24'><tftp root='/srv'/></ip>"),
        "/network/ip[1]/tftp",
        "unsupported element <tftp>; allowed here: dhcp",
    ),
    (
        N.format(IP.format("<dhcp><range start='10.0.0.9' end='10.0.0.2'/></dhcp>")),
        "/network/ip[1]/dhcp/range[1]/@start",
        "range start '10.0.0.9' is after end '10.0.0.2'",
    ),
    (
        N.format(
            IP.format(
                "<dhcp><range start='10.0.0.2' end='10.0.0.9'/><range start='10.0.0.20' end='10.0.1.9'/></dhcp>"
            )
        ),
        "/network/ip[1]/dhcp/range[2]/@end",
        "address '10.0.1.9' is not a host address of the network 10.0.0.0/24",
    ),
    (
        N.format(IP.format("<dhcp><range start='10.0.0.2' end='10.0.0.255'/></dhcp>")),
        "/network/ip[1]/dhcp/range[1]/@end",
        "address '10.0.0.255' is not a host address",
    ),
    (
        N.format(IP.format("<dhcp><range start='10.0.0.2'/></dhcp>")),
        "/network/ip[1]/dhcp/range[1]/@end",
        "<range> needs both start and end",
    ),
    (
        N.format(
            IP.format(
                "<dhcp><range start='10.0.0.2' end='10.0.0.9'><lease expiry='1' unit='seconds'/></range></dhcp>"
            )
        ),
        "/network/ip[1]/dhcp/range[1]/lease/@expiry",
        "lease of 1 seconds is too short",
    ),
    (
        N.format(
            IP.format(
                "<dhcp><range start='10.0.0.2' end='10.0.0.9'><lease expiry='1' unit='days'/></range></dhcp>"
            )
        ),
        "/network/ip[1]/dhcp/range[1]/lease/@unit",
        "invalid unit 'days'; allowed: seconds, minutes, hours",
    ),
    (
        N.format(IP.format("<dhcp><host ip='10.0.0.5'/></dhcp>")),
        "/network/ip[1]/dhcp/host[1]/@mac",
        "a static IPv4 host needs a mac or a name",
    ),
    (
        N.format(IP.format("<dhcp><host mac='52:54:00:00:00:01' ip='10.0.9.5'/></dhcp>")),
        "/network/ip[1]/dhcp/host[1]/@ip",
        "address '10.0.9.5' is not a host address of the network 10.0.0.0/24",
    ),
    (
        N.format(IP.format("<dhcp><host mac='52:54:00:00:00:01' name='bad_name'/></dhcp>")),
        "/network/ip[1]/dhcp/host[1]/@name",
        "invalid DNS name 'bad_name'",
    ),
    (
        N.format(
            "<ip family='ipv6' address='fd00::1' prefix='64'><dhcp><host mac='52:54:00:00:00:01' ip='fd00::5'/></dhcp></ip>"
        ),
        "/network/ip[1]/dhcp/host[1]/@mac",
        "mac is not allowed for IPv6 hosts",
    ),
    (
        N.format(IP.format("<dhcp/>") + "<ip address='10.1.0.1' prefix='24'><dhcp/></ip>"),
        "/network/ip[2]/dhcp",
        "DHCP is already served on another ipv4 address",
    ),
    (
        N.format(IP.format("") + "<ip address='10.0.0.9' prefix='16'/>"),
        "/network/ip[2]/@address",
        "subnet 10.0.0.0/16 overlaps 10.0.0.0/24 of ip[1]",
    ),
    ("<network><name>a</name>", None, "malformed XML"),
]


@pytest.mark.parametrize(("text", "path", "message"), BAD, ids=[m[:40] for _, _, m in BAD])
def test_bad_input_is_refused_with_location_value_and_allowed(
    text: str, path: str | None, message: str
) -> None:
    with pytest.raises(XMLError) as info:
        parse_network(text, file="net.xml")
    text_of = str(info.value)
    assert message in text_of
    assert text_of.startswith("net.xml")
    if path is not None:
        assert f" {path}: " in text_of, text_of


def test_error_carries_line_and_attribute() -> None:
    text = "<network>\n  <name>a</name>\n  <bridge stp='x'/>\n</network>"
    with pytest.raises(XMLError) as info:
        parse_network(text, file="f.xml")
    assert info.value.line == 3 and info.value.attribute == "stp"
    assert str(info.value) == "f.xml:3 /network/bridge/@stp: invalid value 'x'; allowed: on, off"


# ----------------------------------------------------------------------------- hostile XML

HOSTILE = [
    "<!DOCTYPE network [<!ENTITY a 'aaaa'>]><network><name>&a;</name></network>",
    "<!DOCTYPE network SYSTEM 'file:///etc/passwd'><network><name>a</name></network>",
    "<?xml version='1.0'?>\n<!DOCTYPE n [<!ENTITY % p SYSTEM 'http://192.0.2.1/x'> %p;]><network/>",
    "<network>" + "<dns>" * 40 + "</dns>" * 40 + "</network>",
    "<network><name>a</name><!--" + "x" * (1 << 20) + "--></network>",
]


@pytest.mark.parametrize(
    "text", HOSTILE, ids=["entity", "external-dtd", "param-entity", "deep", "huge"]
)
def test_hostile_xml_is_refused(text: str) -> None:
    with pytest.raises(HostileXMLError):
        parse_network(text)


# ----------------------------------------------------------------------------- property: round trip

octet = st.integers(min_value=0, max_value=255)


@st.composite
def networks(draw: st.DrawFn) -> Network:
    third = draw(octet)
    base = f"10.{draw(octet)}.{third}"
    ranges: tuple[DhcpRange, ...] = ()
    hosts: tuple[DhcpHost, ...] = ()
    if draw(st.booleans()):
        lo = draw(st.integers(2, 100))
        ranges = (
            DhcpRange(
                ip_address(f"{base}.{lo}"), ip_address(f"{base}.{lo + draw(st.integers(0, 150))}")
            ),
        )
    if draw(st.booleans()):
        hosts = (
            DhcpHost(
                mac="52:54:00:00:00:0a",
                name=draw(st.sampled_from(["a", "b-1", "x.y"])),
                ip=ip_address(f"{base}.254"),
            ),
        )
    ip = IPConfig(
        "ipv4",
        ip_address(f"{base}.1"),
        24,
        draw(st.booleans()),
        ranges,
        hosts,
        bool(ranges or hosts),
    )
    mode = draw(st.sampled_from([None, "nat", "route", "open"]))
    nat = None
    if mode == "nat" and draw(st.booleans()):
        nat = NatConfig(
            port_start=draw(st.integers(1, 1000)), port_end=draw(st.integers(1001, 65535))
        )
    forward = None if mode is None else Forward(mode, None, nat)
    bridge = Bridge(
        draw(st.sampled_from([None, "br0", "virbr9"])), draw(st.sampled_from([None, True, False]))
    )
    return Network(draw(st.sampled_from(["n", "net-1", "a.b"])), None, forward, bridge, ips=(ip,))


@settings(max_examples=200, deadline=None)
@given(networks())
def test_any_network_round_trips(net: Network) -> None:
    text = write_network(net)
    assert parse_network(text) == net
    assert write_network(parse_network(text)) == text
