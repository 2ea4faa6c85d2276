"""libvirt's filter binding: filter F with parameters applied to port P of guest G."""

from __future__ import annotations

from nwguard.model.filter import FilterRef, Params
from nwguard.records import ValueRecord


class FilterBinding(ValueRecord):
    owner_name: str
    owner_uuid: str
    portdev: str
    mac: str
    filterref: FilterRef
    linkdev: str | None = None

    def params(self) -> dict[str, tuple[str, ...]]:
        """The variables the port's filter sees: its parameters, plus ``MAC`` unless given."""
        env = dict(self.filterref.params)
        env.setdefault("MAC", (self.mac,))
        return env

    def with_params(self, params: Params) -> FilterBinding:
        return FilterBinding(
            self.owner_name,
            self.owner_uuid,
            self.portdev,
            self.mac,
            FilterRef(self.filterref.filter, params),
            self.linkdev,
        )
