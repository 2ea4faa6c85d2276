"""Which firewall backend is in force, and its executor.

The setting (:func:`nwguard.state.config.firewall_setting`) names ``nftables`` or
``iptables``; unset, nftables is used when libnftables loads and the kernel answers, else
iptables (as libvirt's ``firewall_backend`` default does). The chosen tools must be present:
a missing one is a :class:`~nwguard.errors.HostError` naming it and the package.
"""

from __future__ import annotations

from collections.abc import Callable

from nwguard.backends import Executor
from nwguard.errors import HostError
from nwguard.records import ValueRecord
from nwguard.state.config import FirewallSetting


class BackendChoice(ValueRecord):
    """``name``: nftables or iptables; ``variant``: nft or legacy (iptables only)."""

    name: str
    variant: str | None
    source: str  # what decided: the environment variable, nwguard.conf or "default"

    def to_json(self) -> dict[str, str | None]:
        return {"name": self.name, "variant": self.variant, "source": self.source}


def nft_unusable() -> str | None:
    """Why nftables cannot be used here (None: it can)."""
    try:
        import nftables

        nft = nftables.Nftables()
    except (ImportError, OSError) as exc:
        return f"libnftables cannot be loaded ({exc})"
    # one netlink dump of the table list: "list tables" reads the whole ruleset first (18 ms
    # with 1000 ports bound, in every process)
    rc, _out, err = nft.cmd("list flowtables")
    if rc != 0 and "Operation not permitted" not in err:  # no rights is not no kernel support
        return f"the kernel refuses nftables ({' / '.join(err.split())[:200] or rc})"
    return None


def iptables_unusable(variant: str) -> str | None:
    """Why the iptables backend's tools of ``variant`` cannot be used (None: they can)."""
    import shutil

    from nwguard.backends.ebiptables.executor import TOOLS

    missing = [
        f"{tool}{suffix}"
        for tool in TOOLS[variant].values()
        for suffix in ("-save", "-restore")
        if shutil.which(f"{tool}{suffix}") is None
    ]
    if missing:
        return f"{', '.join(missing)} not found (apt-get install iptables ebtables)"
    return None


def choose(
    setting: FirewallSetting,
    nft_probe: Callable[[], str | None] = nft_unusable,
    ipt_probe: Callable[[str], str | None] = iptables_unusable,
) -> BackendChoice:
    """The backend ``setting`` asks for, checked; unset: nftables if usable, else iptables."""
    variant = setting.variant or "nft"
    if setting.backend == "nftables":
        why = nft_probe()
        if why:
            raise HostError(f"firewall backend nftables ({setting.source}) is not usable: {why}")
        return BackendChoice("nftables", None, setting.source)
    if setting.backend == "iptables":
        why = ipt_probe(variant)
        if why:
            raise HostError(f"firewall backend iptables ({setting.source}) is not usable: {why}")
        return BackendChoice("iptables", variant, setting.source)
    nft_why = nft_probe()
    if nft_why is None:
        return BackendChoice("nftables", None, "default")
    ipt_why = ipt_probe(variant)
    if ipt_why:
        raise HostError(f"no usable firewall backend: nftables: {nft_why}; iptables: {ipt_why}")
    return BackendChoice("iptables", variant, "default (nftables not usable)")


def make_executor(choice: BackendChoice) -> Executor:
    """A fresh executor of the chosen backend."""
    if choice.name == "iptables":
        from nwguard.backends.ebiptables.executor import EbiptablesExecutor

        return EbiptablesExecutor(variant=choice.variant or "nft")
    from nwguard.backends.nft.executor import NftExecutor

    return NftExecutor()
