"""Drive nwguard inside a lab's host namespace, through its Python API (forked into the netns)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .lab import Lab, Node


def binding_xml(port: str, mac: str, filter: str, **params: Any) -> str:
    lines = [
        "<filterbinding><owner><name>guest</name>",
        "<uuid>d2b2f9b6-94ff-4aa7-b4b0-8f0e5b8e2a53</uuid></owner>",
        f"<portdev name='{port}'/><mac address='{mac}'/><filterref filter='{filter}'>",
    ]
    for name, value in params.items():
        for v in value if isinstance(value, (list, tuple)) else [value]:
            lines.append(f"<parameter name='{name}' value='{v}'/>")
    lines.append("</filterref></filterbinding>")
    return "".join(lines)


def _call(config: str, state: str, method: str, *args: Any) -> Any:
    from nwguard.api import Client

    c = Client.open(config_dir=config, state_dir=state)
    result = getattr(c, method)(*args)
    return None if method.endswith(("_create", "_define")) else result


class Nwguard:
    """nwguard with private config/state dirs, run inside the lab's host namespace."""

    def __init__(self, lab: Lab, tmp: Path) -> None:
        self.lab, self.config, self.state = lab, str(tmp / "etc"), str(tmp / "run")

    def call(self, method: str, *args: Any) -> Any:
        return self.lab.call_in(self.lab.host_ns, _call, self.config, self.state, method, *args)

    def bind(self, guest: Node, filter: str, **params: Any) -> None:
        self.call("nwfilter_binding_create", binding_xml(guest.port, guest.mac, filter, **params))

    def unbind(self, guest: Node) -> None:
        self.call("nwfilter_binding_delete", guest.port)

    def define(self, xml: str) -> None:
        self.call("nwfilter_define", xml)

    def undefine(self, name: str) -> None:
        self.call("nwfilter_undefine", name)

    def ruleset(self) -> str:
        return self.lab.run(self.lab.host_ns, "nft", "list", "ruleset").stdout
