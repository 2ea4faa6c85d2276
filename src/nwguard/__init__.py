"""nwguard: libvirt's network filters and virtual networks, on nftables, for any Linux host."""

__version__ = "0.1.0"
