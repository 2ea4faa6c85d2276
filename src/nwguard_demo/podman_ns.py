"""Run one podman command in a private mount namespace over the demo's own directories.

Usage (the demo runs it inside ``unshare --mount --propagation private``)::

    python podman_ns.py WORKDIR podman ARGS...

``WORKDIR/run`` is bound over ``/run`` (podman's network namespaces, ``/run/crun``,
``/run/containers``, ``/run/libpod``), ``WORKDIR/varlib`` over ``/var/lib`` (libcni's cache)
and ``WORKDIR/shm`` over ``/dev/shm`` (podman's locks); the cgroup v2 mount crun would try to
use is unmounted (containers run with ``--cgroups=disabled``). Then podman is exec'd with
``CONTAINERS_CONF=WORKDIR/containers.conf``: nothing of the machine's podman state is used
or left behind. The kernel tests run podman through it too.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def main() -> None:
    work, argv = Path(sys.argv[1]), sys.argv[2:]
    for sub, target in (("run", "/run"), ("varlib", "/var/lib"), ("shm", "/dev/shm")):
        (work / sub).mkdir(exist_ok=True)
        subprocess.run(["mount", "--bind", str(work / sub), target], check=True)
    Path("/run/netns").mkdir(exist_ok=True)
    if os.path.ismount("/sys/fs/cgroup/unified"):
        subprocess.run(["umount", "/sys/fs/cgroup/unified"], check=True)
    env = {**os.environ, "CONTAINERS_CONF": str(work / "containers.conf")}
    env.pop("XDG_RUNTIME_DIR", None)
    os.execvpe(argv[0], argv, env)


if __name__ == "__main__":
    main()
