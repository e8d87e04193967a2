"""How fast a lab comes up, and what each ipseclab gateway costs in memory.

    sudo .venv/bin/python benchmarks/lab_bringup.py [--repeat 3] [--spokes 2 8 32]

For site-to-site (goal: first ping through the tunnel in under 3 s) and for hub-and-spoke with
N spokes (configs from ipseclab.lab.manual_sas), runs a scenario through ``run_scenario`` and
takes the time, from the call, at which
* the ``start`` step ended: topology built, captures listening, every gateway ready;
* the first ping through a tunnel was answered (h1 to h2, or h1 to the hub's h0; an upper
  bound: the step ends when ping exits);
and, after every host has pinged through its tunnel, the resident memory (VmRSS) of each
``ipseclab gateway`` process. Prints a table. Everything the runs create is removed by the lab.
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

from ipseclab.lab.cleanup import RUN_ROOT  # noqa: E402
from ipseclab.lab.manual_sas import write_hub_and_spoke_scenario  # noqa: E402
from ipseclab.lab.runner import run_scenario  # noqa: E402
from ipseclab.lab.topology import TOPOLOGY_DIR  # noqa: E402

PATTERN = "ipseclab-secret"


def site_to_site_scenario(directory: Path) -> Path:
    """The shipped site-to-site scenario cut down to one ping (no wait, no iperf3)."""
    configs = TOPOLOGY_DIR / "configs" / "site-to-site"
    path = directory / "site-to-site.yaml"
    path.write_text("\n".join([
        "name: site-to-site-bringup",
        f"topology: {TOPOLOGY_DIR / 'site-to-site.yaml'}",
        "gateways:",
        f"  gw1: {{impl: ipseclab, config: {configs / 'gw1.xfrm'}}}",
        f"  gw2: {{impl: ipseclab, config: {configs / 'gw2.xfrm'}}}",
        "capture: [wan]",
        "steps:",
        "  - start",
        f"  - ping: {{from: h1, to: h2, count: 1, pattern: {PATTERN}}}",
        "checks:",
        "  - wan_only_ipsec: wan",
        "  - sa_counters: {gateway: gw1}",
        "  - sa_counters: {gateway: gw2}",
    ]) + "\n")
    return path


def _rss_kib(pid: int) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


class Probe:
    """The runner's progress callback: times the steps, samples the gateways' RSS."""

    def __init__(self) -> None:
        self.t0 = time.monotonic()
        self.started: float | None = None
        self.first_ping: float | None = None
        self.first_ping_ok = False
        self.rss: dict[str, int] = {}  # "node: ipseclab gateway" -> KiB, last sample

    def __call__(self, message: str) -> None:
        now = time.monotonic() - self.t0
        if not message.startswith("step "):
            return
        if ": start: " in message and self.started is None:
            self.started = now
        elif " ping " in message and self.first_ping is None:
            self.first_ping = now
            self.first_ping_ok = " 0/" not in message and "FAILED" not in message
        self._sample()

    def _sample(self) -> None:
        me = os.getpid()
        for run in RUN_ROOT.iterdir() if RUN_ROOT.is_dir() else ():
            try:
                if int((run / "owner").read_text().split()[0]) != me:
                    continue
                lines = (run / "procs").read_text().splitlines()
            except (OSError, ValueError, IndexError):
                continue
            for line in lines:
                pid, _start, what = line.split(" ", 2)
                if what.endswith("ipseclab gateway"):
                    rss = _rss_kib(int(pid))
                    if rss is not None:
                        self.rss[what] = rss


def measure(scenario: Path, out: Path) -> tuple[Probe, float, bool]:
    probe = Probe()
    result = run_scenario(scenario, out, progress=probe)
    total = time.monotonic() - probe.t0
    return probe, total, result.passed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3, help="runs per topology (median)")
    parser.add_argument("--spokes", type=int, nargs="*", default=[2, 8, 32])
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("lab_bringup: needs root (network namespaces); run with sudo", file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory(prefix="ipseclab-bringup-") as tmp:
        work = Path(tmp)
        cases = [("site-to-site", 2, site_to_site_scenario(work))]
        for n in args.spokes:
            d = work / f"hub-and-spoke-{n}"
            cases.append((f"hub-and-spoke-{n}", n + 1, write_hub_and_spoke_scenario(n, d)))
        for name, gateways, scenario in cases:
            runs = []
            for i in range(args.repeat):
                probe, total, passed = measure(scenario, work / "out" / f"{name}-{i}")
                runs.append((probe, total, passed))
                print(f"  {name} run {i + 1}: start step {probe.started:.2f} s, first ping"
                      f" {probe.first_ping:.2f} s, total {total:.2f} s,"
                      f" {'passed' if passed else 'FAILED'}", file=sys.stderr)
            rss = [kib for p, _, _ in runs for kib in p.rss.values()]
            hub = [p.rss.get("hub: ipseclab gateway") for p, _, _ in runs]
            rows.append((
                name, gateways,
                statistics.median(p.started or 0 for p, _, _ in runs),
                statistics.median(p.first_ping or 0 for p, _, _ in runs),
                statistics.median(t for _, t, _ in runs),
                statistics.mean(rss) / 1024 if rss else 0.0,
                max(rss) / 1024 if rss else 0.0,
                max((h for h in hub if h), default=0) / 1024,
                all(p.first_ping_ok and ok for p, _, ok in runs),
            ))
    print(f"{'topology':<18} {'gws':>4} {'start step':>10} {'1st ping':>9} {'total':>7}"
          f" {'RSS/gw MiB':>10} {'max':>6} {'hub':>6}  ok")
    for name, gws, start, ping, total, mean, top, hub, ok in rows:
        hub_text = f"{hub:6.1f}" if hub else f"{'-':>6}"
        print(f"{name:<18} {gws:>4} {start:>9.2f}s {ping:>8.2f}s {total:>6.2f}s"
              f" {mean:>10.1f} {top:>6.1f} {hub_text}  {'yes' if ok else 'NO'}")
    print("times are medians from the run_scenario call; 'start step' = topology, captures and"
          " every gateway ready; RSS after every host pinged through its tunnel")
    return 0 if all(r[-1] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
