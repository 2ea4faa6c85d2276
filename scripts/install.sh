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
          python3 python3-dev tmux iperf3
          # bench/bench_frame_cost.py compiles its frame sender
          gcc libc6-dev
          # libvirt 9.0.0 itself: the differential harness and its filter files
          libvirt-daemon libvirt-clients libvirt-daemon-config-nwfilter
          # the CNI plugin's tests: a real podman (4.3, CNI backend) on a busybox image
          podman containernetworking-plugins busybox-static
          # the QEMU guest test (TCG; its kernel is extracted below, not installed)
          qemu-system-x86)

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
    # Installing starts no service (podman, libvirt and firewalld ship units): a policy-rc.d
    # refuses every start meanwhile; one the machine already has is put back afterwards.
    local guard=/usr/sbin/policy-rc.d saved="" rc=0
    if [[ -e $guard ]]; then
        saved="$(mktemp)"
        cp -a "$guard" "$saved"
    fi
    printf '#!/bin/sh\n# nwguard install.sh: start nothing while installing\nexit 101\n' >"$guard"
    chmod 755 "$guard"
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null || rc=$?
    if [[ -n $saved ]]; then mv -f "$saved" "$guard"; else rm -f "$guard"; fi
    return $rc
}

missing=()
for pkg in "${PACKAGES[@]}"; do
    is_installed "$pkg" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    apt_install "${missing[@]}"
fi

# The QEMU guest test's kernel: Debian's cloud kernel and the modules virtio_net needs, taken
# out of the package (apt-get download, dpkg-deb -x) into GUEST_DIR; no kernel is installed.
GUEST_DIR="${NWGUARD_GUEST_DIR:-/var/cache/nwguard/guest}"
GUEST_MODULES=(virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci
               failover net_failover virtio_net)
guest_ready() {
    [[ -s "$GUEST_DIR/vmlinuz" ]] || return 1
    local m
    for m in "${GUEST_MODULES[@]}"; do [[ -s "$GUEST_DIR/$m.ko" ]] || return 1; done
}
if ! guest_ready; then
    if [[ $EUID -ne 0 ]]; then
        log "no guest kernel in $GUEST_DIR; run this script as root"
        exit 1
    fi
    if [[ $APT_UPDATED -eq 0 ]]; then apt-get update -qq; APT_UPDATED=1; fi
    pkg="$(apt-cache depends linux-image-cloud-amd64 2>/dev/null \
           | sed -n 's/^ *Depends: \(linux-image-[0-9].*\)$/\1/p' | head -n1)"
    [[ -n "$pkg" ]] || { log "apt knows no linux-image-cloud-amd64"; exit 1; }
    log "extracting $pkg into $GUEST_DIR"
    tmp="$(mktemp -d)"
    (cd "$tmp" && apt-get download -qq "$pkg" 2>/dev/null)
    dpkg-deb -x "$tmp"/*.deb "$tmp/x"
    mkdir -p "$GUEST_DIR"
    cp "$tmp"/x/boot/vmlinuz-* "$GUEST_DIR/vmlinuz"
    for m in "${GUEST_MODULES[@]}"; do
        find "$tmp/x/lib/modules" -name "$m.ko" -exec cp {} "$GUEST_DIR/" \;
    done
    rm -rf "$tmp"
    guest_ready || { log "$pkg lacks the guest's modules"; exit 1; }
fi

# firewalld: the kernel tests run a private one (own bus, namespaces, /etc/firewalld copy);
# the host's service is never started (apt_install) nor enabled: the unit the package enables
# is disabled again, only when this script installed the package.
FIREWALLD_PACKAGES=(firewalld ipset)
fw_missing=()
for pkg in "${FIREWALLD_PACKAGES[@]}"; do
    is_installed "$pkg" || fw_missing+=("$pkg")
done
if ((${#fw_missing[@]})); then
    fw_had=0
    is_installed firewalld && fw_had=1
    apt_install "${fw_missing[@]}"
    if [[ $fw_had -eq 0 ]] && command -v systemctl >/dev/null; then
        systemctl disable firewalld.service >/dev/null 2>&1 || true
    fi
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
assert all(u.find_spec(m) for m in ("scapy", "pytest", "nftables", "pyroute2", "lxml", "jeepney"))
PYEOF
then
    log "pip install -e .[test,demo]"
    "$VENV/bin/python" -m pip install -q --disable-pip-version-check -e "$ROOT[test,demo]"
    printf '%s\n' "$want" >"$STAMP"
fi

# nwguard's firewalld zones (libvirt, libvirt-routed and their policies), as libvirt's
# package installs its own; kept when an admin changed them. Reloads firewalld if it runs.
if is_installed firewalld && [[ $EUID -eq 0 ]]; then
    "$VENV/bin/nwguard" firewalld-install | sed 's/^/install: /' >&2 \
        || log "firewalld-install failed (the zones can be added later: nwguard firewalld-install)"
fi
