"""libvirt <interface> XML: what nwguard reads, what it ignores, what it refuses."""

from __future__ import annotations

import pytest

from nwguard.engine.interfaces import binding_for
from nwguard.errors import XMLError
from nwguard.xmlio.interface_xml import parse_interface, write_interface

FULL = """<interface type='network'>
  <mac address='52:54:00:AB:CD:01'/>
  <source network='default' portgroup='x'/>
  <target dev='vnet7'/>
  <ip address='10.0.0.5' prefix='24'/>
  <ip address='10.0.0.6'/>
  <ip address='fd00::5'/>
  <model type='virtio'/>
  <driver name='vhost'/>
  <address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0'/>
  <alias name='net0'/>
  <filterref filter='clean-traffic'>
    <parameter name='CTRL_IP_LEARNING' value='none'/>
  </filterref>
</interface>"""


def test_hypervisor_elements_are_ignored_and_ours_are_read() -> None:
    i = parse_interface(FULL)
    assert (i.type, i.mac, i.source_network, i.target_dev) == (
        "network",
        "52:54:00:ab:cd:01",
        "default",
        "vnet7",
    )
    assert i.ips == (("10.0.0.5", 24), ("10.0.0.6", None), ("fd00::5", None))
    assert i.filterref is not None and i.filterref.params == (("CTRL_IP_LEARNING", ("none",)),)


def test_round_trip_keeps_what_nwguard_uses() -> None:
    i = parse_interface(FULL)
    assert parse_interface(write_interface(i)) == i


def test_ip_elements_become_IP_and_IPV6_unless_given_as_parameters() -> None:
    b = binding_for(parse_interface(FULL), "vnet7", "52:54:00:ab:cd:01")
    assert b is not None
    assert b.params()["IP"] == ("10.0.0.5", "10.0.0.6")
    assert b.params()["IPV6"] == ("fd00::5",)
    assert b.params()["MAC"] == ("52:54:00:ab:cd:01",)
    given = FULL.replace(
        "<parameter name='CTRL_IP_LEARNING' value='none'/>",
        "<parameter name='IP' value='10.9.9.9'/>",
    )
    b2 = binding_for(parse_interface(given), "vnet7", "52:54:00:ab:cd:01")
    assert b2 is not None and b2.params()["IP"] == ("10.9.9.9",)


def test_no_filterref_means_no_binding() -> None:
    i = parse_interface("<interface type='bridge'><source bridge='br0'/></interface>")
    assert binding_for(i, "vnet0", "52:54:00:00:00:01") is None


@pytest.mark.parametrize(
    ("xml", "message"),
    [
        (
            "<interface type='direct'/>",
            "unsupported interface type 'direct'; allowed: bridge, network, ethernet",
        ),
        ("<interface type='bridge'/>", "needs <source bridge='...'/>"),
        (
            "<interface type='network'><source bridge='x'/></interface>",
            "needs <source network='...'/>",
        ),
        (
            "<interface type='bridge'><source bridge='br0'/><mac address='01:00:5e:00:00:01'/></interface>",
            "multicast",
        ),
        (
            "<interface type='bridge'><source bridge='br0'/><mac address='zz'/></interface>",
            "illegal value 'zz'",
        ),
        (
            "<interface type='bridge'><source bridge='br0'/><ip address='10.0.0.300'/></interface>",
            "illegal value '10.0.0.300'",
        ),
        (
            "<interface type='bridge'><source bridge='br0'/><ip address='10.0.0.3' prefix='33'/></interface>",
            "prefix length 0-32",
        ),
        (
            "<interface type='bridge'><source bridge='br0'/><target dev='a-name-much-too-long'/></interface>",
            "invalid target dev",
        ),
        (
            "<interface type='bridge'><source bridge='br0'/><filterref/></interface>",
            "invalid filter 'None'",
        ),
        ("<domain/>", "expected <interface>"),
    ],
)
def test_bad_interfaces_are_refused_with_a_located_error(xml: str, message: str) -> None:
    with pytest.raises(
        XMLError,
        match=message.replace("(", r"\(").replace("?", r"\?").replace(".", r"\.").replace("'", "'"),
    ) as info:
        parse_interface(xml, file="vm.xml")
    assert str(info.value).startswith("vm.xml:1")
