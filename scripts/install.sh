#!/usr/bin/env bash
# Install what nwguard needs on a Debian 12 host, then the project itself into ./.venv.
#
# Idempotent: a second run installs nothing and takes well under a second.
# Run as root (apt-get needs it); without root it only works when nothing is missing.
#
# Environment:
#   PYTHON        interpreter used to create .venv (default: python3)
#   NWGUARD_VENV  where the venv lives (default: <repo>/.venv)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
VENV="${NWGUARD_VENV:-$ROOT/.venv}"
STAMP="$VENV/.nwguard-install-stamp"

# Debian packages the project, its kernel tests and bench/ use. python3-venv is handled apart.
PACKAGES=(nftables libnftables1 dnsmasq-base iproute2 iptables ebtables tcpdump procps
          python3 python3-dev iperf3)

log() { printf 'install: %s\n' "$*" >&2; }

is_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

APT_UPDATED=0
apt_install() {
    if [[ $EUID -ne 0 ]]; then
        log "missing Debian packages: $*; run this script as root"
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    if [[ $APT_UPDATED -eq 0 ]]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    is_installed "$pkg" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    apt_install "${missing[@]}"
fi

# The venv. Debian's python3 can only make one with python3-venv (ensurepip); another
# python3 (pyenv, a backport) may not need it. So try first, install it only on failure.
if [[ ! -x "$VENV/bin/python" ]]; then
    log "creating $VENV with $PYTHON"
    if ! "$PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
        rm -rf "$VENV"
        apt_install python3-venv
        "$PYTHON" -m venv "$VENV"
    fi
    rm -f "$STAMP"
fi

# The project, editable, with its test extras. Skipped when pyproject.toml has not changed
# since the last successful install and the package still imports from this tree.
want="$(sha256sum "$ROOT/pyproject.toml" | cut -d' ' -f1) $ROOT"
have="$(cat "$STAMP" 2>/dev/null || true)"
if [[ "$want" != "$have" ]] \
    || ! "$VENV/bin/python" - "$ROOT/src" <<'PYEOF' >/dev/null 2>&1
import importlib.util as u, pathlib, sys
spec = u.find_spec("nwguard")
assert spec and pathlib.Path(spec.origin).is_relative_to(sys.argv[1])
assert all(u.find_spec(m) for m in ("scapy", "pytest", "nftables", "pyroute2", "lxml"))
PYEOF
then
    log "pip install -e .[test,demo]"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[test,demo]"
    printf '%s\n' "$want" >"$STAMP"
fi
