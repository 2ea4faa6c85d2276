"""``nwguard qemu-attach``: a guest's ``<interface>`` made into a tap QEMU opens, one step.

It is ``iface-attach`` (the tap is created, plugged and its filter bound before QEMU starts)
followed by the QEMU options that open that tap::

    qemu-system-x86_64 ... $(nwguard qemu-attach vm1-nic.xml)
    # -netdev tap,id=net0,ifname=vnet0,script=no,downscript=no
    # -device virtio-net-pci,netdev=net0,mac=52:54:00:7b:35:93

``script=no``: QEMU must not run its own ifup script (nwguard plugged the tap already).
When the guest is gone, ``nwguard iface-detach DEV`` removes the binding and the tap.
"""

from __future__ import annotations

from pathlib import Path

import click

from nwguard.cli.group import main_group, print_dry_run
from nwguard.cli.main import Obj

# libvirt's <model type=...> -> QEMU's device; libvirt passes other names through as is.
DEVICES = {"virtio": "virtio-net-pci"}


def _qemu_value(text: str) -> str:
    """One value of a QEMU option list: a comma is written twice."""
    return text.replace(",", ",,")


def qemu_args(dev: str, mac: str, model: str | None = None, netdev_id: str = "net0") -> list[str]:
    """The QEMU options that open tap ``dev`` as the guest's NIC with ``mac``.

    >>> qemu_args("vnet0", "52:54:00:7b:35:93")
    ['-netdev', 'tap,id=net0,ifname=vnet0,script=no,downscript=no', '-device', \
'virtio-net-pci,netdev=net0,mac=52:54:00:7b:35:93']
    """
    device = DEVICES.get(model or "virtio", model or "virtio")
    nid = _qemu_value(netdev_id)
    return [
        "-netdev",
        f"tap,id={nid},ifname={_qemu_value(dev)},script=no,downscript=no",
        "-device",
        f"{_qemu_value(device)},netdev={nid},mac={mac}",
    ]


def interface_model(xml: bytes) -> str | None:
    """``<model type=...>`` of an ``<interface>`` (nwguard's interface model leaves it out)."""
    from nwguard.xmlio.safe import parse_xml

    el = parse_xml(xml).find("model")
    return el.get("type") if el is not None else None


@main_group.command("qemu-attach")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--id", "netdev_id", default="net0", show_default=True, help="QEMU's netdev id.")
@click.pass_obj
def qemu_attach(obj: Obj, file: str, netdev_id: str) -> None:
    """Attach an <interface> XML FILE as a tap and print the QEMU options that open it."""
    data = Path(file).read_bytes()
    result = obj.client.iface_attach(data, file, None)
    if print_dry_run(obj, result):
        return
    rec = result.interface
    click.echo(" ".join(qemu_args(rec.dev, rec.mac, interface_model(data), netdev_id)))
