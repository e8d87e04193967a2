"""Time from ``start_action = start`` to the first ping answered through the tunnel.

    sudo .venv/bin/python benchmarks/ike_bringup.py [--repeat 3]

In the site-to-site topology gw2 runs first as a responder; then the clock starts and gw1
is started with a connection whose child says ``start_action = start`` (ipseclab), or with
``swanctl --initiate`` right after loading (strongSwan, whose kernel-libipsec cannot trap;
its launcher initiates while starting). h1 pings h2 (``-c 1 -W 0.2``) until one is answered.
Pairs measured: ipseclab-ipseclab, ipseclab-strongswan (ours initiates), strongswan-strongswan.
Each time includes starting the initiating daemon (Python start-up, or charon's plugins and
swanctl --load-all). Prints a table; asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ipseclab.lab import strongswan  # noqa: E402
from ipseclab.lab.api import Lab  # noqa: E402
from ipseclab.lab.topology import TOPOLOGY_DIR, GatewaySpec  # noqa: E402

CONFIGS = TOPOLOGY_DIR / "configs" / "site-to-site"


def starting_config(directory: Path) -> Path:
    """gw1's shipped config with start_action = start instead of trap."""
    text = (CONFIGS / "gw1.swanctl.conf").read_text().replace("start_action = trap",
                                                              "start_action = start")
    path = directory / "gw1.swanctl.conf"
    path.write_text(text)
    return path


def measure(initiator: str, responder: str, directory: Path) -> float:
    if initiator == "ipseclab":
        gw1 = GatewaySpec("ipseclab", (starting_config(directory),))
    else:
        gw1 = GatewaySpec("strongswan", (CONFIGS / "gw1.swanctl.conf",), {"initiate": ["net"]})
    gw2 = GatewaySpec(responder, (CONFIGS / "gw2.swanctl.conf",))
    with Lab("site-to-site", directory / "lab", {"gw1": gw1, "gw2": gw2},
             start_gateways=False) as lab:
        lab.start_gateway("gw2")
        h1, h2 = lab.node("h1"), lab.address("h2")
        start = time.monotonic()
        lab.start_gateway("gw1")
        while time.monotonic() - start < 20:
            if " 0% packet loss" in h1.cmd("ping", "-n", "-c", "1", "-W", "0.2", h2):
                return time.monotonic() - start
        return float("nan")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("needs root (network namespaces)", file=sys.stderr)
        return 2
    pairs = [("ipseclab", "ipseclab")]
    if strongswan.available():
        pairs += [("ipseclab", "strongswan"), ("strongswan", "strongswan")]
    print(f"{'initiator -> responder':<28} {'median s':>9} {'min s':>7} {'max s':>7}")
    for initiator, responder in pairs:
        times = []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="ike-bringup-") as tmp:
                times.append(measure(initiator, responder, Path(tmp)))
        print(f"{initiator + ' -> ' + responder:<28} {statistics.median(times):9.2f}"
              f" {min(times):7.2f} {max(times):7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
