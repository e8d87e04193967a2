"""Every shipped ipseclab scenario passes, and a run leaves nothing behind, even a failed one.

Needs root (network namespaces); skipped otherwise. The scenarios run on ``impl: ipseclab``
gateways with manual SAs (``topologies/configs/*/*.xfrm``). After each run the test compares
what exists with what existed before: named network namespaces, links in the root namespace,
run directories under ``/run/ipseclab`` and processes. Other labs may run on the same machine at
the same time, so links, run directories and processes count as left behind only when they
belong to this test's runs: the run's tag (learnt through the progress callback while the run
is alive), the processes it recorded, or children of this process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ipseclab.lab.cleanup import PREFIX, RUN_ROOT, live_tags
from ipseclab.lab.runner import ScenarioResult, run_scenario
from ipseclab.lab.scenario import load_scenario
from ipseclab.lab.topology import TOPOLOGY_DIR

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

SCENARIO_DIR = TOPOLOGY_DIR / "scenarios"
PATTERN = "ipseclab-secret"


def ipseclab_scenarios() -> list[str]:
    """Scenarios whose IPsec nodes all run ipseclab (strongSwan ones have their own tests)."""
    names = []
    for path in sorted(SCENARIO_DIR.glob("*.yaml")):
        scenario = load_scenario(path)
        impls = {scenario.gateway(g.name).impl for g in scenario.topology.gateways}
        if "ipseclab" in impls and impls <= {"ipseclab", "none"}:
            names.append(path.stem)
    return names


SCENARIOS = ipseclab_scenarios()


def test_every_topology_has_an_ipseclab_scenario() -> None:
    """Each topology is used by a scenario with an ipseclab gateway in it (those beside
    strongSwan, like site-to-site-algorithms, are run in test_interop_strongswan.py)."""
    topologies = {p.stem for p in TOPOLOGY_DIR.glob("*.yaml")}
    used = set()
    for path in SCENARIO_DIR.glob("*.yaml"):
        scenario = load_scenario(path)
        if any(scenario.gateway(g.name).impl == "ipseclab" for g in scenario.topology.gateways):
            used.add(scenario.topology.name)
    assert topologies <= used, topologies - used


# --- what exists, and what a run of ours created ------------------------------------------


def netns() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    return {line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines()}


def run_dirs() -> set[str]:
    return {p.name for p in RUN_ROOT.iterdir()} if RUN_ROOT.is_dir() else set()


def pids() -> set[int]:
    return {int(p.name) for p in Path("/proc").iterdir() if p.name.isdigit()}


def _stat(pid: int) -> tuple[int, str] | None:
    """(parent PID, start time) of a process, None once it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = stat[stat.rfind(")") + 2 :].split()
    return int(rest[1]), rest[19]


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


@dataclass
class Watch:
    """The progress callback of a run: notes the run's tag and the processes it recorded."""

    before_netns: set[str] = field(default_factory=netns)
    before_links: set[str] = field(default_factory=links)
    before_runs: set[str] = field(default_factory=run_dirs)
    before_pids: set[int] = field(default_factory=pids)
    tags: set[str] = field(default_factory=set)
    recorded: set[tuple[int, str]] = field(default_factory=set)
    what: set[str] = field(default_factory=set)  # what the recorded processes are
    messages: list[str] = field(default_factory=list)

    def __call__(self, message: str) -> None:
        self.messages.append(message)
        me = os.getpid()
        for tag in run_dirs():
            try:
                owner = int((RUN_ROOT / tag / "owner").read_text().split()[0])
                procs = (RUN_ROOT / tag / "procs").read_text().splitlines()
            except (OSError, ValueError, IndexError):
                continue
            if owner != me:
                continue
            self.tags.add(tag)
            for line in procs:
                pid, start, what = line.split(" ", 2)
                self.recorded.add((int(pid), start))
                self.what.add(what)

    def ours(self, name: str) -> bool:
        return any(name.startswith(f"{PREFIX}{t}") for t in self.tags)

    def leftovers(self) -> list[str]:
        me = os.getpid()
        others = live_tags() - self.tags
        # The lab names no namespace; other tools' 'ipl...' namespaces are not ours to judge.
        left = [f"netns {n}" for n in netns() - self.before_netns
                if self.ours(n) or not n.startswith(PREFIX)]
        left += [f"link {n}" for n in links() - self.before_links
                 if not any(n.startswith(f"{PREFIX}{t}") for t in others)]
        left += [f"run directory {t}" for t in self.tags if (RUN_ROOT / t).exists()]
        left += [f"run directory {t}" for t in run_dirs() - self.before_runs - others]
        for pid in pids() - self.before_pids:
            stat = _stat(pid)
            if stat is None:
                continue
            mine = stat[0] == me or (pid, stat[1]) in self.recorded or any(
                f"{PREFIX}{t}".encode() in _cmdline(pid) for t in self.tags)
            if mine:
                command = _cmdline(pid).replace(b"\0", b" ").decode(errors="replace")
                left.append(f"process {pid} {command!r}")
        return left

    def assert_nothing_left(self) -> None:
        assert self.tags, "the run never showed its run directory"
        left = self.leftovers()
        if left:  # links of a concurrent lab exist for a moment before they move: look again
            time.sleep(0.5)
            again = set(self.leftovers())
            left = [x for x in left if x in again]
        assert left == []


# --- every scenario passes ----------------------------------------------------------------

_RUNS: dict[str, tuple[ScenarioResult, Path]] = {}


def run(name: str, out: Path) -> tuple[ScenarioResult, Watch]:
    watch = Watch()
    result = run_scenario(SCENARIO_DIR / f"{name}.yaml", out, progress=watch)
    _RUNS[name] = (result, out)
    return result, watch


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_passes_and_leaves_nothing(name: str, tmp_path_factory) -> None:
    out = tmp_path_factory.mktemp(name)
    result, watch = run(name, out)
    assert result.passed, "\n" + result.table() + "\n" + "\n".join(result.steps)
    scenario = load_scenario(SCENARIO_DIR / f"{name}.yaml")
    kinds = [c.name.split()[0] for c in result.checks]
    assert {"reachable", "wan_only_ipsec", "no_plaintext", "sa_counters"} <= set(kinds)
    ipsec_nodes = {g.name for g in scenario.topology.gateways
                   if scenario.gateway(g.name).impl == "ipseclab"}
    counted = {c.name.split()[1] for c in result.checks if c.name.startswith("sa_counters")}
    assert counted == ipsec_nodes
    assert all("packets" in c.detail for c in result.checks if c.name.startswith("sa_counters"))
    assert (out / "result.txt").read_text().startswith("check")
    assert all(p.stat().st_size > 24 for p in result.pcaps.values())
    watch.assert_nothing_left()


def test_broken_gateway_config_fails_cleanly(tmp_path: Path) -> None:
    """gw2's key is cut short: the start step fails with file:line, gw1 is stopped again."""
    configs = TOPOLOGY_DIR / "configs" / "site-to-site"
    good = (configs / "gw2.xfrm").read_text()
    broken = good.replace("0x1112131415161718191a1b1c1d1e1f20b1b2b3b4", "0x1112")
    assert broken != good
    (tmp_path / "gw2.xfrm").write_text(broken)
    scenario = (SCENARIO_DIR / "site-to-site.yaml").read_text()
    scenario = scenario.replace("../configs/site-to-site/gw2.xfrm", "gw2.xfrm")
    scenario = scenario.replace("../configs/", f"{TOPOLOGY_DIR}/configs/")
    scenario = scenario.replace("../site-to-site.yaml", f"{TOPOLOGY_DIR}/site-to-site.yaml")
    (tmp_path / "scenario.yaml").write_text(scenario)

    watch = Watch()
    result = run_scenario(tmp_path / "scenario.yaml", tmp_path / "out", progress=watch)
    assert not result.passed
    first = result.checks[0]
    assert first.name == "step start" and first.status == "fail"
    assert f"{tmp_path}/gw2.xfrm:" in first.detail and "key" in first.detail, first.detail
    assert first.detail.startswith("gw2: ")
    assert "\n" not in first.detail and "Traceback" not in first.detail
    assert len(result.steps) == 1  # no traffic after a failed start
    assert any("remaining steps are skipped" in m for m in watch.messages)
    # gw1 was up before gw2 failed: it was one of the recorded processes, now gone.
    assert {"gw1: ipseclab gateway", "gw2: ipseclab gateway"} <= watch.what
    watch.assert_nothing_left()


# --- the key log decrypts the capture --------------------------------------------------------


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_decrypts_site_to_site_with_the_key_log(tmp_path_factory) -> None:
    if "site-to-site" not in _RUNS:
        run("site-to-site", tmp_path_factory.mktemp("site-to-site"))
    result, out = _RUNS["site-to-site"]
    wan = result.pcaps["wan"]
    assert (out / "wireshark" / "esp_sa").is_file()
    fields = ["ip.src", "ip.dst", "esp.spi", "icmp.type", "icmp.seq", "data.data"]

    def icmp(*options: str) -> list[list[str]]:
        env = {**os.environ, "XDG_CONFIG_HOME": str(out)}
        args = ["tshark", "-n", "-r", str(wan), *options, "-Y", "icmp", "-T", "fields",
                *[x for f in fields for x in ("-e", f)]]
        proc = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 0, proc.stderr
        return [line.split("\t") for line in proc.stdout.splitlines() if line]

    assert icmp() == []  # without decryption the WAN shows no ICMP at all
    rows = icmp("-o", "esp.enable_encryption_decode:TRUE")
    requests = [r for r in rows if r[3] == "8"]
    replies = [r for r in rows if r[3] == "0"]
    # The scenario's ping step sent 3 echo requests with the pattern (the reachable check's
    # pings come after the capture stopped).
    assert len(requests) == 3 and len(replies) == 3, rows
    for src, dst, spi, _type, _seq, data in requests:
        assert src.split(",") == ["192.0.2.1", "10.1.0.10"]  # outer, inner
        assert dst.split(",") == ["192.0.2.2", "10.2.0.10"]
        assert spi == "0x00001001"
        assert PATTERN.encode() in bytes.fromhex(data)
    assert [int(r[4]) for r in requests] == [1, 2, 3]
    assert {r[2] for r in replies} == {"0x00002001"}
    assert all(PATTERN.encode() in bytes.fromhex(r[5]) for r in replies)
