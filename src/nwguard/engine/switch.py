"""Moving a host from one firewall backend to the other (``nwguard backend-switch``).

Order, so that no port and no network is ever without its rules: the whole port state goes
onto the new backend first (both filter meanwhile: a frame must pass both), then every
active network's rules are added on the new backend and removed from the old, then the old
backend's port rules go, and ``nwguard.conf`` names the new backend. If installing on the
new backend fails, what it got is removed again and the old backend stays in force.

``<state-dir>/firewall-backend.json`` names the backend the applied state was made on
(written by nwguardd's start and by a switch). When nwguardd starts and ``nwguard.conf`` or
the environment names another one, :func:`follow_setting` moves everything the same way.
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
from nwguard.state.paths import Paths
from nwguard.state.persist import Document, Format


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
            record_backend(ctx.paths, new)
            return Switched(old, new, 0, ())
        switched = _move(ctx, old, new)
        write_settings(ctx.paths.config_dir, **settings)
        return switched


def follow_setting(ctx: Context) -> Switched | None:
    """nwguardd's start: if the applied state was made on another backend than the one in
    force now, move every port and active network to it (as :func:`switch_backend`, without
    touching ``nwguard.conf``). None when nothing had to move."""
    with ctx.lock():
        old, new = applied_backend(ctx.paths), ctx.backend()
        moved = None
        if old is not None and (old.name, old.variant) != (new.name, new.variant):
            moved = _move(ctx, old, new)
        record_backend(ctx.paths, new)
        return moved


def _move(ctx: Context, old: BackendChoice, new: BackendChoice) -> Switched:
    """Ports onto ``new``, networks moved, ports off ``old`` (lock held)."""
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
    record_backend(ctx.paths, new)
    ctx.use_backend(new)
    return Switched(old, new, len(state.ports), tuple(networks))


_FORMAT: Format[BackendChoice] = Format(
    "the backend of the applied state",
    1,
    lambda d: BackendChoice(d["name"], d.get("variant"), "state"),
    lambda c: {"name": c.name, "variant": c.variant},
)


def _record(paths: Paths) -> Document[BackendChoice]:
    return Document(paths.state_dir / "firewall-backend.json", _FORMAT, mode=0o644)


def applied_backend(paths: Paths) -> BackendChoice | None:
    """The backend the applied state was made on, as recorded (None: no record)."""
    return _record(paths).read()


def record_backend(paths: Paths, choice: BackendChoice) -> None:
    paths.state_dir.mkdir(parents=True, exist_ok=True)
    _record(paths).write(choice)


def network_firewalls(ctx: Context) -> dict[str, Batch]:
    """Every active network's firewall batch, as it was started (its recorded XML)."""
    from nwguard.compile.network import network_batch
    from nwguard.state.networks import NetworkStatusStore
    from nwguard.xmlio.network_xml import parse_network

    store, out = NetworkStatusStore(ctx.paths), {}
    for name in sorted(store.names()):
        status = store.get(name)
        if status is not None and status.table and status.xml:
            out[name] = network_batch(parse_network(status.xml))
    return out


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
