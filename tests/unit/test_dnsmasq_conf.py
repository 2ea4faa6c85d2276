"""dnsmasq config rendering (pure) and lease parsing."""

from __future__ import annotations

from pathlib import Path

import pytest

from nwguard.errors import HostError
from nwguard.host import dnsmasq
from nwguard.xmlio.network_xml import parse_network

DUAL = """<network><name>d</name><bridge name='br0'/><domain name='lab' localOnly='yes'/>
<dns forwardPlainNames='no'><forwarder addr='192.0.2.53'/><forwarder domain='corp' addr='192.0.2.54'/>
<host ip='10.0.0.5'><hostname>web</hostname><hostname>www</hostname></host></dns>
<ip address='10.0.0.1' prefix='24'><dhcp><range start='10.0.0.10' end='10.0.0.19'><lease expiry='1' unit='hours'/></range>
<host mac='52:54:00:00:00:01' name='g1' ip='10.0.0.5'/><host mac='52:54:00:00:00:02' ip='10.0.0.6'><lease expiry='0'/></host></dhcp></ip>
<ip family='ipv6' address='fd00::1' prefix='64'><dhcp><range start='fd00::10' end='fd00::19'/>
<host id='00:01:00:01:aa:bb' name='g6' ip='fd00::5'/></dhcp></ip></network>"""


def test_dual_stack_config() -> None:
    files = dnsmasq.DnsmasqFiles(Path("/run/x/network/d"))
    lines = dnsmasq.render_config(parse_network(DUAL), files).splitlines()
    assert lines[1:] == [
        "user=nobody",
        "strict-order",
        "pid-file=/run/x/network/d/dnsmasq.pid",
        "except-interface=lo",
        "bind-dynamic",
        "interface=br0",
        "dhcp-leasefile=/run/x/network/d/dnsmasq.leases",
        "domain=lab",
        "expand-hosts",
        "local=/lab/",
        "domain-needed",
        "server=192.0.2.53",
        "server=/corp/192.0.2.54",
        "no-resolv",
        "host-record=web,www,web.lab,www.lab,10.0.0.5",
        "dhcp-no-override",
        "dhcp-authoritative",
        "dhcp-lease-max=23",
        "dhcp-range=10.0.0.10,10.0.0.19,255.255.255.0,3600",
        "dhcp-host=52:54:00:00:00:01,10.0.0.5,g1",
        "dhcp-host=52:54:00:00:00:02,10.0.0.6,infinite",
        "dhcp-range=fd00::10,fd00::19,64",
        "dhcp-host=id:00:01:00:01:aa:bb,[fd00::5],g6",
        "enable-ra",
    ]


def test_dns_disabled_turns_the_dns_port_off() -> None:
    net = parse_network(
        "<network><name>d</name><bridge name='b'/><dns enable='no'/><ip address='10.0.0.1' prefix='24'/></network>"
    )
    assert "port=0" in dnsmasq.render_config(net, dnsmasq.DnsmasqFiles(Path("/x"))).splitlines()


def test_control_characters_never_reach_the_config() -> None:
    with pytest.raises(HostError, match="control character"):
        dnsmasq._line("interface", "br0\nconf-file=/etc/shadow")


def test_lease_file_parsing() -> None:
    net = parse_network(DUAL)
    text = (
        "1700000000 52:54:00:00:00:01 10.0.0.5 g1 01:52:54:00:00:00:01\n"
        "0 52:54:00:00:00:02 10.0.0.6 * *\n"
        "duid 00:01:00:01:2c:00:00:00:52:54:00:00:00:00\n"
        "1700000100 1234 fd00::5 g6 00:01:00:01:aa:bb\n"
    )
    leases = dnsmasq.parse_leases(text, net)
    assert [(x.protocol, x.ip, x.prefix, x.hostname, x.mac) for x in leases] == [
        ("ipv4", "10.0.0.5", 24, "g1", "52:54:00:00:00:01"),
        ("ipv4", "10.0.0.6", 24, None, "52:54:00:00:00:02"),
        ("ipv6", "fd00::5", 64, "g6", None),
    ]
