"""One error hierarchy with stable codes.

Every error nwguard reports to a user is an ``NwguardError``. Its ``code`` is stable (the daemon
sends it on the wire, the CLI maps it to an exit status); its message is one line that names
where the problem is, what was given and what is allowed.
"""

from __future__ import annotations


class NwguardError(Exception):
    """Base of all errors meant for the user."""

    code = "error"
    exit_status = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class XMLError(NwguardError):
    """A document is not valid: names file, element (with line), attribute, value, allowed."""

    code = "invalid-xml"

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        path: str | None = None,
        attribute: str | None = None,
    ) -> None:
        self.file, self.line, self.path, self.attribute = file, line, path, attribute
        where = []
        if file:
            where.append(f"{file}:{line}" if line else file)
        elif line:
            where.append(f"line {line}")
        if path:
            where.append(path + (f"/@{attribute}" if attribute else ""))
        prefix = (" ".join(where) + ": ") if where else ""
        super().__init__(prefix + message)
        self.detail = message


class HostileXMLError(XMLError):
    """Entities, DTDs, oversized or too deeply nested documents."""

    code = "hostile-xml"


class NotFoundError(NwguardError):
    code = "not-found"


class ConflictError(NwguardError):
    """Name/UUID clashes, objects in use, duplicates."""

    code = "conflict"


class InUseError(ConflictError):
    code = "in-use"


class LoopError(NwguardError):
    code = "filter-loop"


class ResolveError(NwguardError):
    """Instantiation problems: missing filter, unresolvable variables, cardinality."""

    code = "resolve"


class CompileError(NwguardError):
    """A construct that the chosen backend cannot express."""

    code = "unsupported"


class ApplyError(NwguardError):
    """The kernel refused a transaction; the old rules stay."""

    code = "apply-failed"


class HostError(NwguardError):
    """Devices, processes, sysctls: the host side of an operation failed."""

    code = "host"


class ConfigError(NwguardError):
    """A setting of ``nwguard.conf`` or its environment override is not valid."""

    code = "bad-config"


class PermissionDeniedError(NwguardError):
    code = "permission"


class StateError(NwguardError):
    """A file nwguard keeps (status, learned addresses …) it cannot read: damaged, or written
    in a schema version this nwguard does not know."""

    code = "bad-state"


def _family(cls: type[NwguardError]) -> list[type[NwguardError]]:
    return [cls, *(c for sub in cls.__subclasses__() for c in _family(sub))]


# Every class above that names its own code (derived, so a new error cannot be forgotten).
ALL_ERRORS: dict[str, type[NwguardError]] = {
    cls.code: cls for cls in _family(NwguardError) if "code" in vars(cls)
}
