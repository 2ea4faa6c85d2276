"""Run one podman command in a private mount namespace so it touches no global state.

Usage (the test runs it)::

    nsenter --net=NETNS unshare --mount --propagation private \\
        python podman_sandbox.py WORKDIR podman ARGS...

In the new mount namespace, ``WORKDIR/run`` is bound over ``/run`` (podman's network
namespaces, ``/run/crun``, ``/run/containers``, ``/run/libpod`` land there),
``WORKDIR/varlib`` over ``/var/lib`` (libcni's cache ``/var/lib/cni``) and ``WORKDIR/shm``
over ``/dev/shm`` (podman's lock segment); the cgroup v2 mount crun would otherwise try to
use is unmounted (the test runs containers with ``--cgroups=disabled``). Then podman is
exec'd with ``CONTAINERS_CONF=WORKDIR/containers.conf``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def _mount(*argv: str) -> None:
    subprocess.run(["mount", *argv], check=True)


def main() -> None:
    work, argv = Path(sys.argv[1]), sys.argv[2:]
    for sub, target in (("run", "/run"), ("varlib", "/var/lib"), ("shm", "/dev/shm")):
        (work / sub).mkdir(exist_ok=True)
        _mount("--bind", str(work / sub), target)
    (Path("/run") / "netns").mkdir(exist_ok=True)
    if os.path.ismount("/sys/fs/cgroup/unified"):
        subprocess.run(["umount", "/sys/fs/cgroup/unified"], check=True)
    env = {**os.environ, "CONTAINERS_CONF": str(work / "containers.conf")}
    env.pop("XDG_RUNTIME_DIR", None)
    os.execvpe(argv[0], argv, env)


if __name__ == "__main__":
    main()
