"""Path MTU discovery through the tunnel in a lab (RFC 4301 §8.2; the unit tests are in
tests/test_pmtu.py): h1 - gw1 - mallory - gw2 - h2, manual SAs, and mallory's link toward gw2
cut to 1300 octets. mallory sends gw1 "fragmentation needed" for the outer ESP packets with
DF set; gw1 records the SA's path MTU and tells h1 what is left inside the tunnel. The same
with ESP in UDP 4500 (RFC 3948), where the quote holds a UDP header before the SPI.

Before: DF pings bigger than the middle link vanished without an error and TCP stalled
(the outer ESP packets, DF copied from the inner ones, were dropped by mallory).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from ipseclab.drivers.cli_gateway import request_gateway
from ipseclab.lab.topology import TOPOLOGY_DIR, GatewaySpec

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")]

CONFIGS = TOPOLOGY_DIR / "configs" / "on-path-attacker"
MIDDLE_MTU = 1300
# 1300 - 20 (outer IPv4) - 8 (SPI, sequence) - 8 (IV) - 16 (ICV) - 2 (trailer), aes128gcm16;
# ESP in UDP (RFC 3948) 8 less for the UDP header.
INNER_MTU = {False: 1246, True: 1238}


def measure(workdir: Path, udp: bool = False) -> dict:
    """The pings and the TCP run of the module docstring; what each printed or moved."""
    from ipseclab.lab.api import Lab

    configs = {}
    for gw in ("gw1", "gw2"):
        configs[gw] = CONFIGS / f"{gw}.xfrm"
        if udp:  # the same SAs, ESP in UDP 4500 both ways
            text = configs[gw].read_text().replace(
                "mode tunnel \\\n", "mode tunnel encap espinudp 4500 4500 0.0.0.0 \\\n")
            assert text.count("espinudp") == 2
            configs[gw] = workdir.parent / f"{gw}-udp.xfrm"
            configs[gw].write_text(text)
    gateways = {gw: GatewaySpec("ipseclab", (configs[gw],), {}) for gw in ("gw1", "gw2")}
    inner_mtu = INNER_MTU[udp]
    with Lab("on-path-attacker", workdir, gateways) as lab:
        # Both ends of a veth pair: a veth also drops what it receives beyond its MTU.
        lab.cmd("mallory", f"ip link set dev eth1 mtu {MIDDLE_MTU}")
        lab.cmd("gw2", f"ip link set dev eth1 mtu {MIDDLE_MTU}")
        assert lab.ping("h1", "h2", count=2, interval=0.2).received == 2
        ping = "ping -n -c 3 -i 0.3 -W 1"
        results = {
            "df": lab.cmd("h1", f"{ping} -M do -s 1372 10.2.0.10"),
            "df_fits": lab.cmd("h1", f"{ping} -M do -s {inner_mtu - 28} 10.2.0.10"),
            "dont": lab.cmd("h1", f"{ping} -M dont -s 1400 10.2.0.10"),
        }
        try:
            results["tcp"] = lab.iperf3("h1", "h2", seconds=2).bits_per_second
        except Exception as exc:  # a stalled stream: iperf3 gives up
            results["tcp"] = 0.0
            results["tcp_error"] = str(exc)
        results["route"] = lab.cmd("h1", "ip route get 10.2.0.10")
        results["gw1_log"] = (lab.workdir / "gw1" / "gateway.log").read_text()
        stats = request_gateway(lab.workdir / "gw1" / "control.sock", {"command": "stats"})
        results["gw1"] = {k: v for k, v in stats["driver"].items()
                          if k in ("fragmented", "too_big_sent", "send_errors")}
    return results


def received(out: str) -> int:
    m = re.search(r"(\d+) received", out)
    return int(m[1]) if m else 0


@pytest.mark.parametrize("udp", [False, True], ids=["esp", "esp-in-udp"])
def test_df_traffic_learns_the_path_mtu_and_tcp_flows(tmp_path: Path, udp: bool) -> None:
    r = measure(tmp_path / "lab", udp)
    # The first 1400-octet DF ping is lost in the middle; the next get the tunnel's MTU.
    assert f"Frag needed and DF set (mtu = {INNER_MTU[udp]})" in r["df"], r["df"]
    assert "From 10.1.0.1 " in r["df"], r["df"]
    assert received(r["df_fits"]) == 3, r["df_fits"]
    assert received(r["dont"]) == 3, r["dont"]
    assert r["tcp"] > 1e6, r.get("tcp_error", r["tcp"])
    # TCP found the MTU from our errors: its segments fit, nothing was cut in fragments.
    assert r["gw1"]["too_big_sent"] >= 1 and r["gw1"]["send_errors"] == 0, r["gw1"]
    assert f"is now {MIDDLE_MTU} (ICMP from 192.0.2.254)" in r["gw1_log"], r["gw1_log"]
