"""Packet-mark bits that carry conntrack state into the bridge family.

This kernel has no bridge conntrack (``ct`` is refused in bridge chains), but br_netfilter
runs the IPv4/IPv6 hooks for bridged packets. Chains in ``inet nwguard`` (prerouting,
output, and forward into a bridge; after conntrack) copy the state into these bits;
bridge-family rules match them (see ``render._ct_state``).
``REJECT`` asks the inet forward/input chains to reject a packet the bridge rules let through,
because the bridge family cannot send rejects here.
"""

from __future__ import annotations

NEW = 0x01000000
ESTABLISHED = 0x02000000
RELATED = 0x04000000
INVALID = 0x08000000
REPLY = 0x10000000
REJECT = 0x20000000
MASK = 0x3F000000
STATE_BITS = {"NEW": NEW, "ESTABLISHED": ESTABLISHED, "RELATED": RELATED, "INVALID": INVALID}
