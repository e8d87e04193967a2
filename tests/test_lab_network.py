"""Bring up every topology with plain routing, ping across it, capture, and leave nothing behind.

Needs root (network namespaces); skipped otherwise. Each test checks afterwards that the run
left no process, no namespace holder, no link in the root namespace and no run directory.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from ipseclab.lab.api import Lab
from ipseclab.lab.capture import frames
from ipseclab.lab.cleanup import PREFIX, RUN_ROOT, clean
from ipseclab.lab.network import Network
from ipseclab.lab.runner import run_scenario
from ipseclab.lab.topology import TOPOLOGY_DIR, load_topology

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]

# (topology, from, to, a segment the pings cross, how often each packet crosses it)
CASES = [
    ("host-to-host", "h1", "h2", "wan", 1),
    ("site-to-site", "h1", "h2", "wan", 1),
    ("hub-and-spoke", "h1", "h3", "wan", 2),  # spoke1 -> hub -> spoke3
    ("on-path-attacker", "h1", "h2", "wan2", 1),
    ("nat-road-warrior", "rw", "h2", "wan", 1),
]


def root_links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return {line.split(":", 2)[1].strip().split("@")[0] for line in out.splitlines()}


def lab_processes() -> set[int]:
    """Processes whose command line shows a lab run (Mininet shells are 'mininet:ipl...')."""
    pids = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                cmdline = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if f"mininet:{PREFIX}".encode() in cmdline:
                pids.add(int(proc.name))
    return pids


def run_dirs() -> set[str]:
    return {p.name for p in RUN_ROOT.iterdir()} if RUN_ROOT.is_dir() else set()


@pytest.fixture
def nothing_left() -> Iterator[None]:
    links, procs, runs = root_links(), lab_processes(), run_dirs()
    yield
    assert root_links() - links == set()
    assert lab_processes() - procs == set()
    assert run_dirs() - runs == set()


@pytest.mark.parametrize(("name", "src", "dst", "segment", "crossings"), CASES)
def test_topology_pings_across(name: str, src: str, dst: str, segment: str, crossings: int,
                               tmp_path: Path, nothing_left: None) -> None:
    with Lab(name, workdir=tmp_path) as lab:
        with lab.capture(segment) as pcap:
            result = lab.ping(src, dst, count=2, pattern="ipseclab-test")
        assert result.sent == 2 and result.received == 2 and len(result.rtts) == 2
        icmp = [f for f in frames(pcap) if f.proto == 1]
        assert [f.icmp_type for f in icmp].count(8) == 2 * crossings  # echo requests
        assert [f.icmp_type for f in icmp].count(0) == 2 * crossings  # echo replies
        assert sum(b"ipseclab-test" in f.data for f in icmp) == 4 * crossings
        assert lab.cmd(src, "sysctl", "-n", "net.ipv4.ip_forward").strip() == "0"
    assert pcap.stat().st_size > 24
    # Nothing but the traffic itself and ARP: no IPv6 autoconfiguration, no IGMP reports.
    noise = [f for f in frames(pcap) if f.kind == "ipv6" or (f.kind == "ipv4" and f.proto == 2)]
    assert noise == []


def test_nat_hides_the_road_warrior(tmp_path: Path, nothing_left: None) -> None:
    with Lab("nat-road-warrior", workdir=tmp_path) as lab:
        with lab.capture("wan") as pcap:
            assert lab.ping("rw", "h2", count=1).received == 1
        sources = {f.src for f in frames(pcap) if f.proto == 1}
        assert sources == {"203.0.113.2", "10.2.0.10"}
        assert lab.ping("h2", "rw", count=1, timeout=0.3).received == 0
        assert lab.cmd("nat", "sysctl -n net.ipv4.ip_forward").strip() == "1"


def test_teardown_when_the_body_raises(tmp_path: Path, nothing_left: None) -> None:
    with pytest.raises(RuntimeError, match="boom"), Lab("site-to-site", workdir=tmp_path) as lab:
        lab.network.start_capture("wan")  # left running on purpose
        lab.node("h1").popen(["sleep", "60"], "a stray process")
        raise RuntimeError("boom")


def test_clean_removes_a_dead_runs_leftovers(nothing_left: None) -> None:
    net = Network(load_topology("host-to-host"))
    net.start()
    assert net.run is not None
    tag, shell = net.run.tag, net.nodes["h1"].pid
    # Pretend the owner died: forget the owner record, then clean as another invocation would.
    (net.run.path / "owner").write_text("1 0\n")
    removed = clean()
    assert any(f"process {shell} " in r for r in removed)
    assert not (RUN_ROOT / tag).exists()
    assert not Path(f"/proc/{shell}").exists() or b"mininet" not in Path(
        f"/proc/{shell}/cmdline").read_bytes()
    net.stop()  # harmless a second time


def test_scenario_is_honest_about_plain_gateways(tmp_path: Path, nothing_left: None) -> None:
    result = run_scenario(TOPOLOGY_DIR / "scenarios" / "host-to-host.yaml", tmp_path,
                          impl="none")
    status = {c.name.split()[0]: c for c in result.checks}
    assert status["reachable"].passed
    assert status["wan_only_ipsec"].status == "fail" and "impl none" in status[
        "wan_only_ipsec"].detail
    assert status["no_plaintext"].status == "fail"
    assert result.pcaps["wan"].exists() and (tmp_path / "result.txt").exists()
    assert not result.passed


def test_clean_leaves_links_of_runs_recorded_elsewhere(tmp_path: Path, nothing_left: None) -> None:
    """A link of a run kept under another IPSECLAB_RUN_DIR is not clean's to delete; a link
    of a dead run recorded under clean's own root is."""
    from ipseclab.lab.cleanup import RunDir, untracked_links

    dead = RunDir.create(tmp_path)
    (dead.path / "owner").write_text("1 0\n")
    foreign = next(f"{PREFIX}{t}" for t in ("zq1", "zq2", "zq3") if t != dead.tag)
    pairs = [(f"{dead.prefix}s0", f"{dead.prefix}s1"), (f"{foreign}s0", f"{foreign}s1")]
    try:
        for a, b in pairs:  # veth pairs in the root namespace: no traffic, just names
            subprocess.run(["ip", "link", "add", a, "type", "veth", "peer", "name", b],
                           check=True)
        assert {f"{foreign}s0", f"{foreign}s1"} <= set(untracked_links(tmp_path))
        removed = clean(root=tmp_path)
        assert f"link {dead.prefix}s0" in removed or f"link {dead.prefix}s1" in removed
        left = root_links()
        assert f"{dead.prefix}s0" not in left and f"{dead.prefix}s1" not in left
        assert f"{foreign}s0" in left and f"{foreign}s1" in left
    finally:
        for a, _b in pairs:
            subprocess.run(["ip", "link", "del", a], capture_output=True)
