"""Where nwguard keeps its configuration (persistent) and state (runtime)."""

from __future__ import annotations

import os
from pathlib import Path

from nwguard.records import ValueRecord


class Paths(ValueRecord):
    """The two directories of one nwguard instance.

    >>> p = Paths(Path("/tmp/c"), Path("/tmp/s"))
    >>> p.nwfilter_dir
    PosixPath('/tmp/c/nwfilter')
    """

    config_dir: Path
    state_dir: Path

    @classmethod
    def from_env(cls, config_dir: str | None = None, state_dir: str | None = None) -> Paths:
        root = os.geteuid() == 0
        cfg = config_dir or os.environ.get("NWGUARD_CONFIG_DIR")
        st = state_dir or os.environ.get("NWGUARD_STATE_DIR")
        if not cfg:
            cfg = "/etc/nwguard" if root else str(Path.home() / ".config" / "nwguard")
        if not st:
            st = (
                "/run/nwguard"
                if root
                else str(Path(os.environ.get("XDG_RUNTIME_DIR", "/tmp")) / "nwguard")
            )
        return cls(Path(cfg), Path(st))

    @property
    def nwfilter_dir(self) -> Path:
        return self.config_dir / "nwfilter"

    @property
    def network_dir(self) -> Path:
        return self.config_dir / "networks"

    @property
    def binding_dir(self) -> Path:
        return self.state_dir / "nwfilter-binding"

    @property
    def network_state_dir(self) -> Path:
        return self.state_dir / "network"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "nwguard.lock"

    @property
    def socket(self) -> Path:
        return self.state_dir / "nwguardd.sock"

    @property
    def socket_ro(self) -> Path:
        return self.state_dir / "nwguardd-ro.sock"
