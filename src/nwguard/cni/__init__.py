"""Container runtimes' plugins: put a container's interface behind an nwguard filter.

Two parts, so a netavark plugin (podman 5 drops CNI) can follow with its own front end:

- :mod:`nwguard.cni.attachment` is runtime-neutral: an :class:`Attachment` (container,
  interface, host port, MAC, addresses) becomes a filter binding, created, checked and
  removed through :class:`nwguard.api.Client` in this process (or through nwguardd when it
  runs), never by forking the ``nwguard`` command;
- :mod:`nwguard.cni.plugin` speaks the CNI protocol (spec 0.4.0 and 1.0.0): environment and
  stdin in, a result or an error object and an exit status out.
"""
