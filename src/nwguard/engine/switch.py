"""Moving a host from one firewall backend to the other (``nwguard backend-switch``).

Order, so that no port and no network is ever without its rules: the whole port state goes
onto the new backend first (both filter meanwhile: a frame must pass both), then every
active network's rules are added on the new backend and removed from the old, then the old
backend's port rules go, and ``nwguard.conf`` names the new backend. If installing on the
new backend fails, what it got is removed again and the old backend stays in force.
"""

from __future__ import annotations

import os

from nwguard.backends.choice import BackendChoice, choose, make_executor
from nwguard.compile.kernel_state import KernelState, full
from nwguard.engine.context import Context
from nwguard.errors import ConfigError, NwguardError
from nwguard.ir.nodes import Batch, Table
from nwguard.records import ValueRecord
from nwguard.state.config import ENV_BACKEND, ENV_VARIANT, firewall_setting, write_settings


class Switched(ValueRecord):
    """What a switch did: the backends, the ports and networks moved."""

    old: BackendChoice
    new: BackendChoice
    ports: int
    networks: tuple[str, ...]


def switch_backend(ctx: Context, name: str, variant: str | None = None) -> Switched:
    """Move every bound port and active network to backend ``name`` and remove the old
    backend's rules; ``nwguard.conf`` then names ``name`` (and ``variant``)."""
    for env, want in ((ENV_BACKEND, name), (ENV_VARIANT, variant)):
        if os.environ.get(env) and want and os.environ[env] != want:
            raise ConfigError(f"{env}={os.environ[env]} overrides nwguard.conf: unset it first")
    setting = firewall_setting(ctx.paths.config_dir)
    wanted = setting.replace(backend=name, variant=variant or setting.variant, source="switch")
    with ctx.lock():
        old, new = ctx.backend(), choose(wanted)
        settings = {"firewall_backend": name}
        if new.variant:
            settings["iptables_variant"] = new.variant
        if (old.name, old.variant) == (new.name, new.variant):
            write_settings(ctx.paths.config_dir, **settings)
            return Switched(old, new, 0, ())
        engine = ctx.engine()
        state = engine.applied()
        engine.host.ensure_bridge_netfilter()
        executor = make_executor(new)
        executor.apply(full(state))
        from nwguard.engine.networks import NetworkService

        try:
            networks = NetworkService(ctx).move_firewalls(old, new)
        except NwguardError:
            remove_port_rules(new)
            raise
        remove_port_rules(old)
        write_settings(ctx.paths.config_dir, **settings)
        ctx.use_backend(new)
        return Switched(old, new, len(state.ports), tuple(networks))


def remove_port_rules(choice: BackendChoice) -> None:
    """Remove every port rule of nwguard's on backend ``choice`` (its tables or chains)."""
    if choice.name == "iptables":
        make_executor(choice).apply(full(KernelState()))
        return
    from nwguard.backends.nft.layout import BRIDGE, INET, TABLE

    batch = Batch()
    for family in (BRIDGE, INET):
        batch.add(Table(family, TABLE))  # (adding first: the delete succeeds either way)
        batch.delete(Table(family, TABLE))
    make_executor(choice).apply(batch)
