"""``<config-dir>/nwguard.conf``: host settings, in the syntax of libvirt's ``network.conf``.

One ``key = value`` per line, values optionally in double quotes, ``#`` starts a comment::

    firewall_backend = "iptables"   # or "nftables" (libvirt's key)
    iptables_variant = "legacy"     # or "nft": which Debian tools (iptables-legacy ...)
    lenient = 1                     # nwfilter-define ignores what libvirt ignores (default 0)

The environment overrides the file (``NWGUARD_FIREWALL_BACKEND``, ``NWGUARD_IPTABLES_VARIANT``).
Unknown keys and values are errors: a misspelt backend must not silently pick another.

>>> parse_config('firewall_backend = "iptables"  # x\\n', "c").firewall_backend
'iptables'
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from nwguard.errors import ConfigError
from nwguard.records import ValueRecord

CONFIG_FILE = "nwguard.conf"
BACKENDS = ("nftables", "iptables")
VARIANTS = ("nft", "legacy")
ENV_BACKEND = "NWGUARD_FIREWALL_BACKEND"
ENV_VARIANT = "NWGUARD_IPTABLES_VARIANT"
_ALLOWED = {
    "firewall_backend": BACKENDS,
    "iptables_variant": VARIANTS,
    "lenient": ("0", "1"),
}


class Config(ValueRecord):
    """The settings of ``nwguard.conf`` (None: not set)."""

    firewall_backend: str | None = None
    iptables_variant: str | None = None
    lenient: str | None = None

    @property
    def lenient_define(self) -> bool:
        """Whether ``nwfilter-define`` ignores unknown attributes and elements by default."""
        return self.lenient == "1"


class FirewallSetting(ValueRecord):
    """The backend asked for, the variant, and where each came from (for messages)."""

    backend: str | None
    variant: str | None
    source: str  # "NWGUARD_FIREWALL_BACKEND", ".../nwguard.conf" or "default"


def parse_config(text: str, where: str) -> Config:
    """Parse the file's text; ``where`` names it in errors."""
    values: dict[str, str] = {}
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        key, eq, value = (p.strip() for p in line.partition("="))
        if not eq or not key:
            raise ConfigError(f"{where}:{n}: expected 'key = value', got {raw.strip()!r}")
        if len(value) >= 2 and value[0] == value[-1] == '"':
            value = value[1:-1]
        if key not in _ALLOWED:
            raise ConfigError(f"{where}:{n}: unknown key {key!r} (known: {', '.join(_ALLOWED)})")
        _check(key, value, f"{where}:{n}")
        values[key] = value
    return Config(**values)


def read_config(config_dir: Path) -> Config:
    """The settings of ``config_dir/nwguard.conf`` (all unset when there is no file)."""
    path = config_dir / CONFIG_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        return Config()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse_config(text, str(path))


def firewall_setting(config_dir: Path, environ: Mapping[str, str] | None = None) -> FirewallSetting:
    """The firewall backend and iptables variant in force: environment, else the file."""
    env = os.environ if environ is None else environ
    conf = read_config(config_dir)
    where = str(config_dir / CONFIG_FILE)
    backend, source = conf.firewall_backend, where if conf.firewall_backend else "default"
    if env.get(ENV_BACKEND):
        backend, source = env[ENV_BACKEND], ENV_BACKEND
        _check("firewall_backend", backend, ENV_BACKEND)
    variant = conf.iptables_variant
    if env.get(ENV_VARIANT):
        variant = env[ENV_VARIANT]
        _check("iptables_variant", variant, ENV_VARIANT)
    return FirewallSetting(backend, variant, source)


def write_settings(config_dir: Path, **settings: str) -> None:
    """Set keys of ``nwguard.conf`` (checked), keeping its other lines and comments."""
    from nwguard.state.files import atomic_write

    for key, value in settings.items():
        if key not in _ALLOWED:
            raise ConfigError(f"unknown key {key!r} (known: {', '.join(_ALLOWED)})")
        _check(key, value, key)
    path = config_dir / CONFIG_FILE
    lines = path.read_text().splitlines() if path.exists() else []
    todo = dict(settings)
    for i, raw in enumerate(lines):
        key = raw.split("#", 1)[0].partition("=")[0].strip()
        if key in todo:
            lines[i] = f'{key} = "{todo.pop(key)}"'
    lines += [f'{key} = "{value}"' for key, value in todo.items()]
    config_dir.mkdir(parents=True, exist_ok=True)
    atomic_write(path, "\n".join(lines) + "\n", mode=0o644)


def _check(key: str, value: str, where: str) -> None:
    if value not in _ALLOWED[key]:
        allowed = " or ".join(_ALLOWED[key])
        raise ConfigError(f"{where}: {key} {value!r} is not {allowed}")
