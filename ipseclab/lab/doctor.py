"""Is this machine ready for the lab? One line per requirement, with the command that fixes it."""

from __future__ import annotations

import glob
import importlib.util
import os
import shutil
from dataclasses import dataclass


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""

    def __str__(self) -> str:
        mark = "ok  " if self.ok else "MISSING"
        fix = f"  -> {self.fix}" if not self.ok and self.fix else ""
        return f"{mark} {self.name}: {self.detail}{fix}"


def _apt(package: str) -> str:
    return f"apt-get install -y {package}"


def _program(name: str, package: str, why: str) -> Check:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None
    )
    return Check(name, path is not None, path or f"not found ({why})", _apt(package))


def doctor() -> list[Check]:
    """Everything the lab and the interop tests use; nothing here changes the machine."""
    checks = [
        Check("root", os.geteuid() == 0, "running as root" if os.geteuid() == 0 else
              "network namespaces need root", "run with sudo"),
        Check("mininet", importlib.util.find_spec("mininet") is not None,
              "Python module importable" if importlib.util.find_spec("mininet") else
              "Python module not importable", _apt("mininet") + "; then scripts/setup.sh"),
        _program("mnexec", "mininet", "starts Mininet's namespaces"),
        Check("/dev/net/tun", os.path.exists("/dev/net/tun"),
              "present" if os.path.exists("/dev/net/tun") else "missing: gateways need TUN",
              "modprobe tun"),
        _program("ip", "iproute2", "namespaces, links, bridges"),
        _program("iptables", "iptables", "the NAT node's MASQUERADE"),
        _program("ping", "iputils-ping", "ping steps and reachable checks"),
        _program("tcpdump", "tcpdump", "captures"),
        _program("tshark", "tshark", "decoding captures with key logs"),
        _program("iperf3", "iperf3", "iperf3 steps"),
        _program("charon-systemd", "charon-systemd", "strongSwan as the reference gateway"),
        _program("swanctl", "strongswan-swanctl", "configuring strongSwan"),
    ]
    plugin = sorted(glob.glob("/usr/lib/*/ipsec/plugins/libstrongswan-kernel-libipsec.so")
                    + glob.glob("/usr/lib/ipsec/plugins/libstrongswan-kernel-libipsec.so"))
    checks.append(Check("strongSwan kernel-libipsec plugin", bool(plugin),
                        plugin[0] if plugin else "not found (userspace ESP for strongSwan)",
                        _apt("libcharon-extra-plugins")))
    cmac = sorted(glob.glob("/usr/lib/*/ipsec/plugins/libstrongswan-cmac.so")
                  + glob.glob("/usr/lib/ipsec/plugins/libstrongswan-cmac.so"))
    checks.append(Check("strongSwan cmac plugin", bool(cmac),
                        cmac[0] if cmac else "not found (aescmac, prfaescmac for strongSwan)",
                        _apt("libstrongswan-extra-plugins")))
    from ipseclab.ipsec import fastpath

    checks.append(Check("ESP compiled fast path", fastpath.built(), fastpath.status(),
                        _apt("gcc libc6-dev libssl-dev python3-dev") + "; then scripts/setup.sh"))
    return checks
