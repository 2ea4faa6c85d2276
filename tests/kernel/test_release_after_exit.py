"""A one-shot command does not wait for the kernel's cleanup of a deleting transaction: its
netlink sockets are handed to a child that holds nothing else (issue 13)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from .lab import Lab

pytestmark = pytest.mark.kernel

SRC = Path(__file__).resolve().parents[2] / "src"

SCRIPT = textwrap.dedent(
    """
    import fcntl, sys
    sys.path.insert(0, {src!r})
    from nwguard.backends.nft import executor
    from nwguard.backends.nft.render import NftBatch
    lock = open({lock!r}, "w")
    fcntl.flock(lock, fcntl.LOCK_EX)
    assert executor.release_after_exit() is None  # nothing sent: no child
    executor.apply(NftBatch(({{"add": {{"table": {{"family": "inet", "name": "nwgrel"}}}}}},
                             {{"delete": {{"table": {{"family": "inet", "name": "nwgrel"}}}}}})))
    print(executor.release_after_exit(), flush=True)
    sys.stdin.readline()  # the test looks at the child meanwhile
    """
)


def test_the_child_holds_only_netlink_sockets_and_ends_after_the_process(
    lab: Lab, tmp_path: Path
) -> None:
    lab.host()
    lock = tmp_path / "lock"
    proc = subprocess.Popen(
        ["ip", "netns", "exec", lab.host_ns, sys.executable, "-c",
         SCRIPT.format(src=str(SRC), lock=str(lock))],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdin is not None
        child = int(proc.stdout.readline())

        def child_fds() -> dict[int, str]:
            d = f"/proc/{child}/fd"
            return {int(fd): os.readlink(f"{d}/{fd}") for fd in os.listdir(d)}

        deadline = time.monotonic() + 5  # the child closes the rest right after the fork
        while len(fds := child_fds()) > 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        kinds = sorted(t.split(":")[0] for t in fds.values())
        assert kinds == ["pipe", "socket"], fds  # its pipe from the process, libnftables' socket
        # the process's stdout, the lock and the pipe's other end are not the child's
        mine = {os.readlink(f"/proc/{proc.pid}/fd/{fd}") for fd in (0, 1, 2)}
        assert not mine & set(fds.values())
        proc.stdin.write("\n")
        proc.stdin.flush()
        _out, err = proc.communicate(timeout=10)  # stdout ends with the process
        assert proc.returncode == 0, err
        deadline = time.monotonic() + 5
        while os.path.exists(f"/proc/{child}") and time.monotonic() < deadline:
            time.sleep(0.01)
        assert not os.path.exists(f"/proc/{child}")  # gone once the process is
        import fcntl

        with open(lock, "w") as f:  # the lock went with the process
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
