"""IKEv2 in the lab: certificates against strongSwan, road warriors behind NAT, cookies under flood.

Root (network namespaces) and, where strongSwan takes part, charon-systemd with
kernel-libipsec. Each test builds its own topology and removes it again.

* Certificates (RFC 7296 §3.6-3.8, RFC 7427): the lab PKI is generated for the run
  (``options: {pki: lab}``), gw1 signs with RSA ("moon", FQDN ID), gw2 with ECDSA P-256
  ("sun", DN ID); ipseclab on both sides, ipseclab answering strongSwan, and ipseclab
  initiating to strongSwan from either side (so ours signs with RSA and with ECDSA).
* NAT (RFC 7296 §2.23, RFC 3948) with a virtual IP (§2.19): the road warrior behind the
  MASQUERADE router initiates; every pairing of ipseclab and strongSwan; h2 sees only the
  leased address.
* Cookies (§2.6): 2000 IKE_SA_INIT requests with random SPIs from one address in about two
  seconds; our responder answers with COOKIE, keeps its half-open SAs at the threshold, and
  a legitimate peer still connects meanwhile.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ipseclab.drivers.cli_gateway import request_gateway
from ipseclab.lab import strongswan
from ipseclab.lab.api import Lab
from ipseclab.lab.capture import frames
from ipseclab.lab.runner import run_scenario
from ipseclab.lab.topology import TOPOLOGY_DIR, GatewaySpec

pytestmark = [
    pytest.mark.root,
    pytest.mark.interop,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]
needs_charon = pytest.mark.skipif(not strongswan.available(),
                                  reason="charon-systemd is not installed")

SCENARIOS = TOPOLOGY_DIR / "scenarios"
CERTS = TOPOLOGY_DIR / "configs" / "site-to-site-certs"
PSK_CONFIGS = TOPOLOGY_DIR / "configs" / "site-to-site"
MOON, SUN = "moon.ipseclab.test", "C=CH, O=ipseclab, CN=sun.ipseclab.test"
VIP = "10.3.0.1"  # the first address of rw_pool


def ctl(lab: Lab, node: str, command: str) -> object:
    return request_gateway(lab.workdir / node / "control.sock", {"command": command})


def ping_replies(lab: Lab, src: str, dst: str, count: int, interval: float) -> int:
    out = lab.cmd(src, "ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", "1",
                  lab.address(dst))
    m = re.search(r"(\d+) received", out)
    assert m, out
    return int(m[1])


def log_of(out: Path, node: str) -> str:
    return (out / node / "gateway.log").read_text()


# -- certificates --------------------------------------------------------------------------


def test_no_private_keys_are_checked_in() -> None:
    assert not any(p.suffix == ".pem" for p in CERTS.rglob("*")), list(CERTS.rglob("*"))


@pytest.mark.parametrize("name", ["site-to-site-ikev2-certs",
                                  pytest.param("site-to-site-mixed-certs", marks=needs_charon)])
def test_certificate_scenarios_pass(name: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_scenario(SCENARIOS / f"{name}.yaml", out)
    assert result.passed, "\n" + result.table() + "\n" + "\n".join(result.steps)
    assert not list((out / "gw1" / "swanctl" / "private").glob("caKey*"))  # CA key stays put
    # gw1 proved "moon" (RSA) and accepted "sun" by its DN (ECDSA), both under the lab CA
    assert re.search(rf"established \(.*{MOON} 192\.0\.2\.1 <-> {SUN} 192\.0\.2\.2",
                     log_of(out, "gw1")), log_of(out, "gw1")
    if name.endswith("mixed-certs"):
        charon_log = (out / "gw2" / "strongswan" / "charon.log").read_text()
        assert f"authentication of '{MOON}' with RSA" in charon_log
        assert "successful" in charon_log


@needs_charon
@pytest.mark.parametrize("ours", ["gw1", "gw2"], ids=["ours-rsa", "ours-ecdsa"])
def test_ours_initiates_with_certificates_to_strongswan(ours: str, tmp_path: Path) -> None:
    theirs = "gw2" if ours == "gw1" else "gw1"
    gateways = {ours: GatewaySpec("ipseclab", (CERTS / f"{ours}.swanctl.conf",),
                                  {"pki": "lab"}),
                theirs: GatewaySpec("strongswan", (CERTS / f"{theirs}.swanctl.conf",),
                                    {"pki": "lab"})}
    host, other = ("h1", "h2") if ours == "gw1" else ("h2", "h1")
    with Lab("site-to-site", tmp_path / "lab", gateways) as lab:
        # the trap on our side starts IKE; the first ping may wait for it
        assert ping_replies(lab, host, other, 4, 0.3) >= 3, log_of(lab.workdir, ours)
        assert ping_replies(lab, other, host, 3, 0.2) == 3
        (ike,) = ctl(lab, ours, "list-ike-sas")
        assert ike["initiator"] and ike["nat"], ike
        assert ike["local_id"] == (MOON if ours == "gw1" else SUN)
        assert ike["remote_id"] == (SUN if ours == "gw1" else MOON)
        charon = lab.node(theirs).launcher.charon
        (sa,) = charon.list_sas()
        assert sa["state"] == "ESTABLISHED", sa
        assert f"remote '{ike['local_id']}' @ 192.0.2" in charon.swanctl("--list-sas")
        charon_log = charon.log_text()
        method = "RSA" if ours == "gw1" else "ECDSA"
        assert re.search(rf"authentication of '{re.escape(ike['local_id'])}' with "
                         rf"{method}.* successful", charon_log), charon_log[-2000:]


# -- road warrior behind NAT with a virtual IP ------------------------------------------------


@pytest.mark.parametrize("name", [
    "nat-road-warrior-ikev2",
    pytest.param("nat-road-warrior-mixed", marks=needs_charon),      # strongSwan road warrior
    pytest.param("nat-road-warrior-mixed-gw", marks=needs_charon),   # strongSwan gateway
])
def test_road_warrior_behind_nat_with_virtual_ip(name: str, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = run_scenario(SCENARIOS / f"{name}.yaml", out)
    assert result.passed, "\n" + result.table() + "\n" + "\n".join(result.steps)
    # h2 sees the leased address, never the road warrior's own (nor the NAT's)
    lan = [f for f in frames(result.pcaps["lan"]) if f.proto == 1]
    assert lan and {f.src for f in lan if f.icmp_type == 8} == {VIP}, \
        {(f.src, f.dst, f.icmp_type) for f in lan}
    # behind NAT: after IKE_SA_INIT only UDP 4500 on the WAN, from the NAT's address
    wan = [f for f in frames(result.pcaps["wan"]) if f.proto == 17]
    assert sum(1 for f in wan if 500 in (f.sport, f.dport)) == 2, [f.describe() for f in wan]
    assert all(f.src in ("203.0.113.1", "203.0.113.2") for f in wan)
    impls = result.impls
    if impls["gw"] == "ipseclab":
        assert re.search(rf"leased {VIP} to rw\.lab\.example", log_of(out, "gw"))
        assert re.search(r"203\.0\.113\.2, NAT-T\)", log_of(out, "gw"))
    if impls["rw"] == "ipseclab":
        assert f"virtual IP {VIP} on lo" in log_of(out, "rw")
        assert "route 10.2.0.0/24 via" in log_of(out, "rw")


# -- cookies under an IKE_SA_INIT flood ---------------------------------------------------------

FLOODER = r"""
import json, os, select, socket, sys, time
template = bytes.fromhex(sys.argv[1]); target = sys.argv[2]; count = int(sys.argv[3])
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
sock.setblocking(False)
replies = cookies = sent = 0
start = time.monotonic()

def drain():
    global replies, cookies
    while True:
        try:
            data = sock.recv(65535)
        except BlockingIOError:
            return
        replies += 1
        # a stateless COOKIE answer: one Notify (41) of type COOKIE (16390) and nothing else
        if data[16] == 41 and int.from_bytes(data[34:36], "big") == 16390:
            cookies += 1

while sent < count:
    for _ in range(50):
        sock.sendto(os.urandom(8) + template[8:], (target, 500))
        sent += 1
    drain()
    time.sleep(0.05)
deadline = time.monotonic() + 1.0
while time.monotonic() < deadline:
    select.select([sock], [], [], 0.1)
    drain()
print(json.dumps({"sent": sent, "replies": replies, "cookies": cookies,
                  "seconds": time.monotonic() - start}))
"""


def sa_init_request() -> bytes:
    """A genuine IKE_SA_INIT request (aes128gcm16-prfsha256-x25519) to gw's address."""
    from ipseclab.ike.config import ChildConfig, IkeConfig
    from ipseclab.ike.engine import IkeEngine

    config = IkeConfig("flood", local_addrs=["10.2.0.10"], remote_addrs=["203.0.113.1"],
                       proposals="aes128gcm16-prfsha256-x25519", local_id="flood.example",
                       remote_id="gw.lab.example", psk=b"x" * 20,
                       children=[ChildConfig("c", local_ts=["10.2.0.10/32"],
                                             remote_ts=["10.2.0.0/24"])])
    engine = IkeEngine(config)
    engine.initiate("flood", 0.0)
    ((data, _, _),) = engine.datagrams_to_send()
    return data


def test_cookie_flood_keeps_half_open_bounded_and_a_peer_connects(tmp_path: Path) -> None:
    """The road-warrior gateway answers any address (remote_addrs %any): h2 floods it from
    10.2.0.10, and the road warrior starts (behind the NAT) while the flood runs."""
    nat = TOPOLOGY_DIR / "configs" / "nat-road-warrior"
    gateways = {"gw": GatewaySpec("ipseclab", (nat / "gw.swanctl.conf",)),
                "rw": GatewaySpec("ipseclab", (nat / "rw.swanctl.conf",))}
    with Lab("nat-road-warrior", tmp_path / "lab", gateways, start_gateways=False) as lab:
        lab.start_gateway("gw")
        stats = ctl(lab, "gw", "stats")["ike"]
        threshold = stats["cookie_threshold"]
        assert stats["half_open"] == 0 and threshold == 20, stats
        # h2 floods gw's WAN address from the LAN (delivered locally, never on the WAN)
        flood = lab.node("h2").popen(
            [sys.executable, "-c", FLOODER, sa_init_request().hex(), "203.0.113.1", "2000"],
            "flooder", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        half_open: list[int] = []
        stop = threading.Event()

        def watch() -> None:
            while not stop.is_set():
                half_open.append(ctl(lab, "gw", "stats")["ike"]["half_open"])
                time.sleep(0.1)

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            time.sleep(0.5)  # the flood is on: gw demands cookies by now
            lab.start_gateway("rw")  # initiates at once (start_action = start)
            replies = ping_replies(lab, "rw", "h2", 6, 0.3)
        finally:
            out, err = flood.communicate(timeout=30)
            stop.set()
            watcher.join()
        result = json.loads(out)
        log_gw = log_of(lab.workdir, "gw")
        print(f"\nflood: {result}; half-open max {max(half_open)}; ping {replies}/6")
        assert result["sent"] == 2000 and result["seconds"] < 6, (result, err)
        # cookies on: all but the first `threshold` requests were answered statelessly
        assert result["cookies"] >= 1500, result
        assert max(half_open) == threshold, half_open  # reached, never exceeded
        # the flood's SAs were still half-open (30 s) when the road warrior came: its
        # IKE_SA_INIT got a COOKIE too, it returned it, and its tunnel is up
        assert half_open[-1] == threshold, half_open
        assert replies >= 4, log_of(lab.workdir, "rw")
        (ike,) = [s for s in ctl(lab, "gw", "list-ike-sas") if s["state"] == "ESTABLISHED"]
        assert ike["remote"][0] == "203.0.113.2" and ike["children"], ike
        assert "Traceback" not in log_gw
        assert ctl(lab, "gw", "stats")["ike"]["internal_errors"] == 0


def test_a_revoked_peer_is_refused_at_reauthentication(tmp_path: Path) -> None:
    """gw1 and gw2 (ipseclab) with the lab PKI; then the CA revokes sun, gw2's certificate.
    gw1 loads the CRL (``ctl load-creds``, RFC 5280 §5): its IKE SA keeps working, since
    nothing checks certificates again until a reauthentication (RFC 7296 §2.8.3), which
    gw1 then refuses ('was revoked'), keeping the old IKE SA."""
    import datetime

    from ipseclab.ike.testpki import revoke

    gateways = {gw: GatewaySpec("ipseclab", (CERTS / f"{gw}.swanctl.conf",), {"pki": "lab"})
                for gw in ("gw1", "gw2")}
    with Lab("site-to-site", tmp_path / "lab", gateways) as lab:
        assert ping_replies(lab, "h1", "h2", 3, 0.3) >= 2  # the trap brings the tunnel up
        (before,) = ctl(lab, "gw1", "list-ike-sas")
        crl = revoke(lab.workdir / "pki", ["sun"], last_update=datetime.datetime.now(
            datetime.UTC) - datetime.timedelta(minutes=1))
        target = lab.workdir / "gw1" / "swanctl" / "x509crl"
        target.mkdir()
        (target / crl.name).write_bytes(crl.read_bytes())
        sock = lab.workdir / "gw1" / "control.sock"
        assert request_gateway(sock, {"command": "load-creds"}) == {
            "crls": 1, "connections": ["site-to-site"]}
        assert ping_replies(lab, "h1", "h2", 3, 0.2) == 3  # nothing checks the old IKE SA
        request_gateway(sock, {"command": "reauth", "target": "site-to-site"})
        deadline = time.monotonic() + 10
        while "was revoked" not in log_of(lab.workdir, "gw1") and time.monotonic() < deadline:
            time.sleep(0.2)
        log = log_of(lab.workdir, "gw1")
        assert re.search(r"certificate 'C=CH, O=ipseclab, CN=sun\.ipseclab\.test' was revoked"
                         r" on .* \(keyCompromise\)", log), log
        (after,) = ctl(lab, "gw1", "list-ike-sas")
        assert after["name"] == before["name"]  # the old IKE SA stays, until over_time
        assert ping_replies(lab, "h1", "h2", 3, 0.2) == 3
        assert "Traceback" not in log
