"""TCP throughput through two ipseclab gateways, beside plain routing in the same namespaces.

    sudo .venv/bin/python benchmarks/gateway_throughput.py [--time 5] [--profile DIR]

Builds h1 - gw1 - gw2 - h2 (LANs 10.1.0.0/24 and 10.2.0.0/24, WAN 192.0.2.0/24) with
``ip netns`` and veth pairs, runs iperf3 from h1 to h2 (at most 10 s) three times: routed in
the clear, through the gateways with ESP (aes128gcm16, tunnel mode), and with ESP in UDP 4500;
prints Mbit/s side by side. Everything it creates is removed at the end, also on failure.
``--profile DIR`` runs gw1 under cProfile and writes ``DIR/gw1-esp.prof`` etc.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "gateway"
TAG = f"iplgw-bench-{os.getpid() % 10000}"


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, check=check, timeout=60)


class Bench:
    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.namespaces: list[str] = []
        self.procs: list[subprocess.Popen] = []

    def ns(self, name: str) -> str:
        full = f"{TAG}-{name}"
        sh("ip", "netns", "add", full)
        self.namespaces.append(full)
        sh("ip", "-n", full, "link", "set", "lo", "up")
        return full

    def link(self, a: str, a_if: str, a_addr: str, b: str, b_if: str, b_addr: str) -> None:
        sh("ip", "link", "add", a_if, "netns", a, "type", "veth", "peer", "name", b_if,
           "netns", b)
        for ns, dev, addr in ((a, a_if, a_addr), (b, b_if, b_addr)):
            sh("ip", "-n", ns, "addr", "add", addr, "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")

    def topology(self) -> tuple[str, str, str, str]:
        h1, gw1, gw2, h2 = self.ns("h1"), self.ns("gw1"), self.ns("gw2"), self.ns("h2")
        self.link(h1, "eth0", "10.1.0.2/24", gw1, "lan", "10.1.0.1/24")
        self.link(gw1, "wan", "192.0.2.1/24", gw2, "wan", "192.0.2.2/24")
        self.link(gw2, "lan", "10.2.0.1/24", h2, "eth0", "10.2.0.2/24")
        sh("ip", "-n", h1, "route", "add", "default", "via", "10.1.0.1")
        sh("ip", "-n", h2, "route", "add", "default", "via", "10.2.0.1")
        # Plain routing between the sites; the gateways' TUN routes (table 485, rule 220)
        # take precedence while they run.
        sh("ip", "-n", gw1, "route", "add", "10.2.0.0/24", "via", "192.0.2.2")
        sh("ip", "-n", gw2, "route", "add", "10.1.0.0/24", "via", "192.0.2.1")
        for gw in (gw1, gw2):
            sh("ip", "netns", "exec", gw, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        return h1, gw1, gw2, h2

    def gateway(self, ns: str, sa_file: str, name: str, profile: Path | None) -> subprocess.Popen:
        py = [sys.executable]
        if profile is not None:
            py += ["-m", "cProfile", "-o", str(profile)]
        cmd = ["ip", "netns", "exec", ns, *py, "-m", "ipseclab.drivers.cli_gateway",
               "gateway", "--manual", str(DATA / sa_file), "--name", name, "--control",
               str(self.workdir / f"{name}.sock"), "--log-level", "warning"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        self.procs.append(proc)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if select.select([proc.stdout], [], [], 0.2)[0]:
                if proc.stdout.readline().strip().endswith("ready"):
                    return proc
                if proc.poll() is not None:
                    break
        raise RuntimeError(f"gateway {name} did not start")

    def stop(self, proc: subprocess.Popen) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def iperf(self, h1: str, h2: str, seconds: int) -> float:
        server = subprocess.Popen(["ip", "netns", "exec", h2, "iperf3", "-s", "-1", "-B",
                                   "10.2.0.2"], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        self.procs.append(server)
        time.sleep(0.5)
        try:
            out = sh("ip", "netns", "exec", h1, "iperf3", "-c", "10.2.0.2", "-t", str(seconds),
                     "-J", check=False)
            if out.returncode != 0:
                return 0.0
            result = json.loads(out.stdout)
            return result["end"]["sum_received"]["bits_per_second"] / 1e6
        finally:
            self.stop(server)

    def cleanup(self) -> None:
        for proc in self.procs:
            self.stop(proc)
        for ns in self.namespaces:
            sh("ip", "netns", "del", ns, check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--time", type=int, default=5, help="seconds per iperf3 run (max 10)")
    parser.add_argument("--profile", type=Path, help="cProfile gw1 into this directory")
    args = parser.parse_args()
    if os.geteuid() != 0 or not shutil.which("iperf3"):
        print("needs root and iperf3", file=sys.stderr)
        return 2
    seconds = max(1, min(args.time, 10))
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="iplgw-bench-") as tmp:
        bench = Bench(Path(tmp))
        try:
            h1, gw1, gw2, h2 = bench.topology()
            results = {"plain routing": bench.iperf(h1, h2, seconds)}
            costs: dict[str, tuple[int, float, float]] = {}
            for label, suffix in (("ESP tunnel aes128gcm16", ""),
                                  ("ESP-in-UDP tunnel aes128gcm16", "-udp")):
                prof = args.profile / f"gw1{suffix or '-esp'}.prof" if args.profile else None
                g1 = bench.gateway(gw1, f"gw1{suffix}.xfrm", "bench-gw1", prof)
                g2 = bench.gateway(gw2, f"gw2{suffix}.xfrm", "bench-gw2", None)
                cpu0 = cpu_seconds(g1.pid)
                results[label] = bench.iperf(h1, h2, seconds)
                cpu = cpu_seconds(g1.pid) - cpu0
                stats = gateway_stats(Path(tmp) / "bench-gw1.sock")
                packets = stats["tun_read"] + stats["wire_received"]
                if packets:
                    costs[label] = (packets, cpu, cpu / packets * 1e6)
                bench.stop(g1)
                bench.stop(g2)
        finally:
            bench.cleanup()
    plain = results["plain routing"]
    print(f"{'path':<32} {'Mbit/s':>10} {'ratio':>8}")
    for label, mbps in results.items():
        ratio = f"{mbps / plain:.4f}" if plain else "-"
        print(f"{label:<32} {mbps:>10.1f} {ratio:>8}")
    for label, (packets, cpu, per) in costs.items():
        print(f"gw1, {label}: {packets} packets, {cpu:.2f} s CPU, {per:.1f} us/packet")
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (/proc/PID/stat fields 14 and 15)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def gateway_stats(sock: Path) -> dict:
    sys.path.insert(0, str(ROOT))
    from ipseclab.drivers.cli_gateway import request_gateway

    return request_gateway(sock, {"command": "stats"})["driver"]


if __name__ == "__main__":
    sys.exit(main())
