"""Guest interface XML: round trips, the filter's variables, the bad-input corpus."""

from __future__ import annotations

import pytest

from nwguard.errors import HostileXMLError, XMLError
from nwguard.xmlio.interface_xml import parse_interface, write_interface

BRIDGE = """<interface type='bridge'>
  <mac address='52:54:00:56:44:32'/>
  <source bridge='br1'/>
  <ip address='10.33.8.131' prefix='24'/>
  <ip address='fd00::5' prefix='64'/>
  <target dev='vnet7' managed='no'/>
  <model type='virtio'/>
  <filterref filter='clean-traffic'>
    <parameter name='CTRL_IP_LEARNING' value='none'/>
    <parameter name='IP' value='10.33.8.131'/>
  </filterref>
</interface>
"""

NETWORK = """<interface type='network'>
  <source network='default' portgroup='web'/>
  <filterref filter='no-spoofing'/>
</interface>
"""


@pytest.mark.parametrize("text", [BRIDGE, NETWORK], ids=["bridge", "network"])
def test_libvirt_style_input_round_trips_byte_for_byte(text: str) -> None:
    iface = parse_interface(text)
    assert write_interface(iface) == text
    assert parse_interface(write_interface(iface)) == iface


def test_filter_params_take_ip_and_mac_from_the_interface() -> None:
    text = BRIDGE.replace("    <parameter name='IP' value='10.33.8.131'/>\n", "")
    params = dict(parse_interface(text).filter_params())
    assert params == {
        "CTRL_IP_LEARNING": ("none",),
        "IP": ("10.33.8.131",),
        "IPV6": ("fd00::5",),
        "MAC": ("52:54:00:56:44:32",),
    }


def test_explicit_parameters_win_over_the_interface() -> None:
    text = BRIDGE.replace(
        "value='10.33.8.131'/>\n  </filterref>", "value='10.33.8.9'/>\n  </filterref>"
    )
    assert dict(parse_interface(text).filter_params())["IP"] == ("10.33.8.9",)


def test_a_repeated_parameter_is_a_list() -> None:
    text = NETWORK.replace(
        "<filterref filter='no-spoofing'/>",
        "<filterref filter='f'><parameter name='IP' value='10.0.0.1'/><parameter name='IP' value='10.0.0.2'/></filterref>",
    )
    assert dict(parse_interface(text).filter_params())["IP"] == ("10.0.0.1", "10.0.0.2")


I = "<interface type='bridge'><source bridge='br0'/>{}</interface>"
BAD = [
    ("<network/>", "/network", "unknown root element <network>; expected <interface>"),
    (
        "<interface type='direct'><source dev='eth0'/></interface>",
        "/interface/@type",
        "interface type 'direct' is not supported; allowed: network, bridge",
    ),
    (
        "<interface type='bridge'/>",
        "/interface",
        "an interface of type 'bridge' needs a <source bridge='…'/>",
    ),
    (
        "<interface type='bridge'><source network='x'/></interface>",
        "/interface/source/@network",
        "unknown attribute 'network'; allowed: bridge",
    ),
    (
        "<interface type='network'><source/></interface>",
        "/interface/source/@network",
        "<source> needs a network",
    ),
    (
        I.format("<mac address='ff:ff:ff:ff:ff:ff'/>"),
        "/interface/mac/@address",
        "is a multicast MAC address",
    ),
    (
        I.format("<target dev='this-name-is-far-too-long'/>"),
        "/interface/target/@dev",
        "invalid value 'this-name-is-far-too-long'",
    ),
    (
        I.format("<ip address='10.0.0.1' prefix='40'/>"),
        "/interface/ip[1]/@prefix",
        "invalid value '40'; allowed: an integer 0 to 32",
    ),
    (I.format("<ip address='nope'/>"), "/interface/ip[1]/@address", "invalid IP address 'nope'"),
    (I.format("<filterref/>"), "/interface/filterref/@filter", "filterref has no filter attribute"),
    (
        I.format("<filterref filter='f'><parameter name='IP' value='a b'/></filterref>"),
        "/interface/filterref/parameter[1]/@value",
        "invalid parameter value 'a b'",
    ),
    (I.format("<bandwidth/>"), "/interface/bandwidth", "unsupported element <bandwidth>"),
]


@pytest.mark.parametrize(("text", "path", "message"), BAD, ids=[m[:40] for _, _, m in BAD])
def test_bad_input_is_refused_with_location(text: str, path: str, message: str) -> None:
    with pytest.raises(XMLError) as info:
        parse_interface(text, file="if.xml")
    assert message in str(info.value) and f" {path}: " in str(info.value), str(info.value)


def test_hostile_xml_is_refused() -> None:
    with pytest.raises(HostileXMLError):
        parse_interface("<!DOCTYPE i [<!ENTITY x 'y'>]><interface type='bridge'/>")
