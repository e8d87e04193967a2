"""iperf3 TCP throughput h1 -> h2 across the site-to-site lab, by gateway implementation.

    .venv/bin/python benchmarks/lab_throughput.py [--seconds 5] [--repeat 2]    (as root)

One run, figures side by side: plain routing (impl none), ipseclab gateways with ESP
(aes128gcm16, tunnel mode, manual SAs), ipseclab with ESP in UDP 4500, and strongSwan
(charon with kernel-libipsec, keyed by IKEv2, aes128gcm16; kernel-libipsec always sends ESP
in UDP 4500, so compare it with ipseclab's UDP figure). The goal (issue 3): ipseclab at
least 50% of strongSwan's throughput, aiming at parity. Each variant builds and tears down
its own lab; nothing leaves the namespaces.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from ipseclab.lab.api import Lab
from ipseclab.lab.topology import GatewaySpec

CONFIGS = Path(__file__).resolve().parents[1] / "topologies" / "configs" / "site-to-site"


def _udp_copy(src: Path, dst_dir: Path) -> Path:
    """The same manual SAs, with ESP in UDP 4500 (an ``encap`` on every state line)."""
    out = []
    for line in src.read_text().replace("\\\n", " ").splitlines():
        if line.startswith("ip xfrm state add"):
            line += " encap espinudp 4500 4500 0.0.0.0"
        out.append(line)
    path = dst_dir / src.name
    path.write_text("\n".join(out) + "\n")
    return path


def variants(tmp: Path) -> dict[str, dict[str, GatewaySpec] | None]:
    udp = {gw: GatewaySpec("ipseclab", (_udp_copy(CONFIGS / f"{gw}.xfrm", tmp),))
           for gw in ("gw1", "gw2")}
    return {
        "plain routing": {gw: GatewaySpec("none") for gw in ("gw1", "gw2")},
        "ipseclab ESP": {gw: GatewaySpec("ipseclab", (CONFIGS / f"{gw}.xfrm",))
                         for gw in ("gw1", "gw2")},
        "ipseclab ESP in UDP": udp,
        "strongSwan (ESP in UDP)": {
            "gw1": GatewaySpec("strongswan", (CONFIGS / "gw1.swanctl.conf",)),
            "gw2": GatewaySpec("strongswan", (CONFIGS / "gw2.swanctl.conf",),
                               {"initiate": ["net"]})},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--repeat", type=int, default=2)
    a = ap.parse_args()
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, gateways in variants(Path(tmp)).items():
            runs = []
            try:
                with Lab("site-to-site", gateways=gateways) as lab:
                    lab.ping("h1", "h2", count=2)
                    for _ in range(a.repeat):
                        runs.append(lab.iperf3("h1", "h2", seconds=a.seconds).bits_per_second)
            except Exception as exc:  # a missing strongSwan should not hide the other figures
                print(f"{name}: failed: {exc}")
                continue
            results[name] = runs
            print(f"{name}: " + ", ".join(f"{r / 1e6:.0f}" for r in runs) + " Mbit/s", flush=True)
    print()
    ref = statistics.median(results["strongSwan (ESP in UDP)"]) if \
        "strongSwan (ESP in UDP)" in results else None
    print(f"{'variant':26s} {'Mbit/s':>9s} {'vs strongSwan':>14s}")
    for name, runs in results.items():
        med = statistics.median(runs)
        ratio = f"{med / ref:.2f}" if ref else "-"
        print(f"{name:26s} {med / 1e6:9.0f} {ratio:>14s}")


if __name__ == "__main__":
    main()
