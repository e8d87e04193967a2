"""``ipseclab gateway --swanctl``: IKEv2 keys the data plane, opposite itself and strongSwan.

Lab runs in network namespaces (root), strongSwan 5.9.8 with kernel-libipsec as the
reference peer (it always UDP-encapsulates, so our NAT-T data plane is used against it):

* the two new scenarios pass their checks (ipseclab on both sides; ipseclab and strongSwan);
* ours as initiator (start_action=start) with a 5 s child rekey_time and a 7 s IKE rekey_time:
  a 12 s ping loses nothing across child and IKE rekeys (make-before-break, RFC 7296 §2.8),
  tshark decrypts the IKE_AUTH exchange and every echo request on the WAN with the key log
  the gateway wrote, and a peer killed with SIGKILL is noticed by DPD (RFC 7296 §2.4) and its
  SAs and policies are removed;
* ours as responder to strongSwan (trap on our side), ping both ways, ``ctl`` output;
* reauthentication (RFC 7296 §2.8.3): ours against charon every 5 s while h1 pings h2;
  charon reauthenticating as our AUTH_LIFETIME (RFC 4478) asks, then ``ctl reauth`` by us.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ipseclab.drivers.cli_gateway import request_gateway
from ipseclab.errors import IpsecLabError
from ipseclab.lab import strongswan
from ipseclab.lab.api import Lab
from ipseclab.lab.capture import frames
from ipseclab.lab.runner import FAIL, run_scenario
from ipseclab.lab.topology import TOPOLOGY_DIR, GatewaySpec

pytestmark = [
    pytest.mark.root,
    pytest.mark.interop,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
]
needs_charon = pytest.mark.skipif(not strongswan.available(),
                                  reason="charon-systemd is not installed")
needs_tshark = shutil.which("tshark") is not None

SCENARIOS = TOPOLOGY_DIR / "scenarios"
CONFIGS = TOPOLOGY_DIR / "configs" / "site-to-site"

CONF = """\
connections {{
  s2s {{
    local_addrs = {me}
    remote_addrs = {peer}
    proposals = aes128gcm16-prfsha256-x25519
    {ike_extra}
    local {{
      auth = psk
      id = {me}
    }}
    remote {{
      auth = psk
      id = {peer}
    }}
    children {{
      net {{
        local_ts = {my_lan}
        remote_ts = {peer_lan}
        esp_proposals = aes128gcm16
        {child_extra}
      }}
    }}
  }}
}}
secrets {{
  ike-lab {{
    id-a = 192.0.2.1
    id-b = 192.0.2.2
    secret = "ike gateway test secret"
  }}
}}
"""


def conf(side: int, ike_extra: str = "", child_extra: str = "") -> str:
    me, peer = ("192.0.2.1", "192.0.2.2") if side == 1 else ("192.0.2.2", "192.0.2.1")
    lans = ("10.1.0.0/24", "10.2.0.0/24") if side == 1 else ("10.2.0.0/24", "10.1.0.0/24")
    return CONF.format(me=me, peer=peer, my_lan=lans[0], peer_lan=lans[1],
                       ike_extra=ike_extra, child_extra=child_extra)


def control(lab: Lab, node: str) -> Path:
    return lab.workdir / node / "control.sock"


def ctl(lab: Lab, node: str, command: str, **kw) -> object:
    return request_gateway(control(lab, node), {"command": command, **kw})


def wait_until(predicate, timeout: float, step: float = 0.1) -> float | None:
    """Seconds until ``predicate()`` was true, or None."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(step)
    return None


def ping_replies(lab: Lab, src: str, dst: str, count: int, interval: float) -> tuple[int, int]:
    out = lab.cmd(src, "ping", "-n", "-q", "-c", str(count), "-i", str(interval), "-W", "1",
                  lab.address(dst))
    m = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert m, out
    return int(m[1]), int(m[2])


def ipseclab_gateways(tmp_path: Path, child1: str, child2: str = "",
                      swap: tuple[str, str] | None = None) -> dict[str, GatewaySpec]:
    """gw1 and gw2 both running ipseclab with ``conf(side, child_extra=...)``; ``swap``
    replaces one string in both files (the child's proposals, say)."""
    gateways = {}
    for side, extra in ((1, child1), (2, child2)):
        text = conf(side, child_extra=extra)
        path = tmp_path / f"gw{side}.swanctl.conf"
        path.write_text(text.replace(*swap) if swap else text)
        gateways[f"gw{side}"] = GatewaySpec("ipseclab", (path,), {})
    return gateways


@contextlib.contextmanager
def against_charon(tmp_path: Path, ours: tuple[str, str], theirs: tuple[str, str],
                   initiator: str = "gw1"):
    """gw1 runs ipseclab, gw2 charon, each with ``conf(side, ike_extra, child_extra)``; the
    responder starts first, then the initiator; yields the lab once gw1 has a child SA."""
    paths = []
    for side, (ike_extra, child_extra) in ((1, ours), (2, theirs)):
        path = tmp_path / f"gw{side}.swanctl.conf"
        path.write_text(conf(side, ike_extra, child_extra))
        paths.append(path)
    gateways = {"gw1": GatewaySpec("ipseclab", (paths[0],), {}),
                "gw2": GatewaySpec("strongswan", (paths[1],))}
    with Lab("site-to-site", tmp_path / "lab", gateways, start_gateways=False) as lab:
        lab.start_gateway("gw2" if initiator == "gw1" else "gw1")
        lab.start_gateway(initiator)
        up = wait_until(lambda: any(i["children"] for i in ctl(lab, "gw1", "list-ike-sas")),
                        15)
        assert up is not None, (lab.workdir / "gw1" / "gateway.log").read_text()
        yield lab


def tshark(pcap: Path, confdir: Path, display: str, *fields: str,
           options: tuple[str, ...] = ()) -> list[list[str]]:
    args = ["tshark", "-n", "-r", str(pcap), *options, "-Y", display, "-T", "fields"]
    for f in fields:
        args += ["-e", f]
    proc = subprocess.run(args, env=dict(os.environ, XDG_CONFIG_HOME=str(confdir)),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return [line.split("\t") for line in proc.stdout.splitlines() if line]


@pytest.mark.parametrize("name", ["site-to-site-ikev2",
                                  pytest.param("site-to-site-mixed", marks=needs_charon)])
def test_scenario_passes(name: str, tmp_path: Path) -> None:
    result = run_scenario(SCENARIOS / f"{name}.yaml", tmp_path / "out")
    assert result.passed, "\n" + result.table() + "\n" + "\n".join(result.steps)
    kinds = {c.name.split()[0] for c in result.checks}
    assert {"reachable", "wan_only_ipsec", "no_plaintext", "sa_counters", "no_weak_ike"} <= kinds
    probe = next(c for c in result.checks if c.name.startswith("no_weak_ike"))
    assert probe.detail == "192.0.2.2 accepts only aes128gcm16, prfsha256, x25519", probe.detail
    table = (tmp_path / "out" / "wireshark" / "ikev2_decryption_table").read_text()
    assert re.search(r"^[0-9a-f]{16},[0-9a-f]{16},", table, re.M), table
    # Every message in and out is logged as a decoder sees it, SK opened, no values shown.
    # gw1 initiates in site-to-site-ikev2 and answers strongSwan in site-to-site-mixed.
    log = (tmp_path / "out" / "gw1" / "gateway.log").read_text()
    request, response = ("sent to", "received from") if name.endswith("ikev2") else (
        "received from", "sent to")
    assert re.search(rf"{request} 192\.0\.2\.2\[\d+\]: IKE_AUTH #1 request from initiator:"
                     r" SK\{IDi, .*AUTH, SA, TSi, TSr", log), log
    assert re.search(rf"{response} 192\.0\.2\.2\[\d+\]: IKE_AUTH #1 response from"
                     r" responder: SK\{IDr, AUTH, SA, TSi, TSr", log), log


@needs_charon
def test_ours_initiates_rekeys_without_loss_and_dpd_clears(tmp_path: Path) -> None:
    ours = tmp_path / "gw1.swanctl.conf"
    ours.write_text(conf(1, "rekey_time = 7s\n    over_time = 10s\n    dpd_delay = 2s",
                         "start_action = start\n        rekey_time = 5s\n"
                         "        life_time = 20s\n        dpd_action = clear"))
    theirs = tmp_path / "gw2.swanctl.conf"
    theirs.write_text(conf(2))
    gateways = {
        "gw1": GatewaySpec("ipseclab", (ours,), {"args": ["--ike-retransmit-base", "0.5",
                                                           "--ike-retransmit-tries", "2"]}),
        "gw2": GatewaySpec("strongswan", (theirs,)),
    }
    with Lab("site-to-site", tmp_path / "lab", gateways, start_gateways=False) as lab:
        with lab.capture("wan") as pcap:
            lab.start_gateway("gw2")
            lab.start_gateway("gw1")
            up = wait_until(lambda: any(i["children"] for i in ctl(lab, "gw1", "list-ike-sas")),
                            10)
            assert up is not None, (lab.workdir / "gw1" / "gateway.log").read_text()
            sent, received = ping_replies(lab, "h1", "h2", 120, 0.1)
            back = ping_replies(lab, "h2", "h1", 3, 0.2)
        log = (lab.workdir / "gw1" / "gateway.log").read_text()
        assert (sent, received) == (120, 120), log
        assert back == (3, 3)
        (ike,) = ctl(lab, "gw1", "list-ike-sas")
        assert ike["initiator"] and ike["nat"] and ike["rekeys"] >= 1, ike
        assert log.count("rekeyed (replaces") >= 2, log  # child SA rekeys, 5 s apart
        assert "Traceback" not in log

        if needs_tshark:
            auth = tshark(pcap, lab.workdir, "isakmp.exchangetype == 35", "udp.dstport",
                          "isakmp.enc.decrypted", "isakmp.auth.method")
            assert len(auth) == 2 and all(r[0] == "4500" and r[1] and r[2] == "2"
                                          for r in auth), auth
            echo = tshark(pcap, lab.workdir, "icmp.type == 8 && ip.src == 10.1.0.10",
                          "esp.spi", options=("-o", "esp.enable_encryption_decode:TRUE"))
            spis = {r[0] for r in echo}
            assert len(echo) == 120 and len(spis) >= 3, spis  # every request, over 3+ SAs

        # DPD: the peer dies without a word; dpd_delay 2 s + retransmits 0.5+1+2 s.
        lab.node("gw2").launcher.charon.proc.kill()
        gone = wait_until(lambda: not ctl(lab, "gw1", "list-ike-sas"), 15)
        assert gone is not None and gone < 12, ctl(lab, "gw1", "list-ike-sas")
        print(f"\nDPD noticed the dead peer after {gone:.1f} s")
        assert ctl(lab, "gw1", "list-sas") == []
        assert ctl(lab, "gw1", "list-policies") == []
        log = (lab.workdir / "gw1" / "gateway.log").read_text()
        assert "does not answer" in log and "action clear" in log, log


@needs_charon
def test_strongswan_rekeys_our_sas_while_traffic_flows(tmp_path: Path) -> None:
    """charon begins the rekeys, the child SA every 3 s and the IKE SA every 5 s, while h1
    pings h2 (PFS rekeys: test_interop_strongswan.py). We answer, install the new
    inbound SA at once and send on the new outbound SA only after charon's Delete of the old
    pair (make-before-break on the responder's side, RFC 7296 §1.3.3): no ping lost."""
    ours = ("", "start_action = start")
    theirs = ("rekey_time = 5s\n    over_time = 20s\n    rand_time = 0s",
              "rekey_time = 3s\n        life_time = 20s\n        rand_time = 0s")
    with against_charon(tmp_path, ours, theirs) as lab:
        sent, received = ping_replies(lab, "h1", "h2", 80, 0.15)
        log = (lab.workdir / "gw1" / "gateway.log").read_text()
        (ike,) = ctl(lab, "gw1", "list-ike-sas")
        (sa,) = lab.node("gw2").launcher.charon.list_sas()
    assert (sent, received) == (80, 80), log[-3000:]
    assert log.count("rekeyed (replaces") >= 3, log[-3000:]  # child SAs, 3 s apart
    assert not ike["initiator"] and ike["rekeys"] >= 1, ike  # charon's IKE SA rekeys
    assert (sa["initiator-spi"], sa["responder-spi"]) == tuple(ike["name"][i:i + 16]
                                                              for i in (0, 16)), (sa, ike)
    assert "Traceback" not in log


@needs_charon
def test_ours_responds_to_strongswan_both_ways_and_ctl(tmp_path: Path) -> None:
    gateways = {
        "gw1": GatewaySpec("ipseclab", (CONFIGS / "gw1.swanctl.conf",)),
        "gw2": GatewaySpec("strongswan", (CONFIGS / "gw2.swanctl.conf",), {"initiate": ["net"]}),
    }
    with Lab("site-to-site", tmp_path / "lab", gateways) as lab:
        assert ping_replies(lab, "h1", "h2", 3, 0.2) == (3, 3)
        assert ping_replies(lab, "h2", "h1", 3, 0.2) == (3, 3)
        (ike,) = ctl(lab, "gw1", "list-ike-sas")
        assert not ike["initiator"] and ike["state"] == "ESTABLISHED"
        (child,) = ike["children"]
        assert {s["direction"] for s in child["sas"]} == {"in", "out"}
        assert all(s["encap"] == "espinudp 4500 4500" and s["packets"] >= 6
                   for s in child["sas"]), child
        sock = str(control(lab, "gw1"))

        def run_ctl(*args: str) -> str:
            proc = subprocess.run([sys.executable, "-m", "ipseclab", "ctl", "--socket", sock,
                                   *args], capture_output=True, text=True, timeout=20)
            assert proc.returncode == 0, proc.stderr
            return proc.stdout

        text = run_ctl("list-sas")
        assert "site-to-site: #1, ESTABLISHED, IKEv2" in text and "TUNNEL-in-UDP" in text, text
        assert "remote 'gw2.lab.example' @ 192.0.2.2[4500]" in text, text
        assert "start trap" in run_ctl("list-conns")
        # terminate the IKE SA: its child SA goes, the trap comes back and the next ping
        # brings a new tunnel up from our side.
        assert "terminating" in run_ctl("terminate", "site-to-site")
        assert wait_until(lambda: not ctl(lab, "gw1", "list-ike-sas"), 10) is not None
        policies = ctl(lab, "gw1", "list-policies")
        assert len(policies) == 1 and policies[0]["direction"] == "out", policies
        assert ping_replies(lab, "h1", "h2", 3, 0.3)[1] >= 2  # the first may wait for IKE
        (ike,) = ctl(lab, "gw1", "list-ike-sas")
        assert ike["initiator"]


@pytest.mark.parametrize("esp", ["aes128gcm16-esn", "aes128-sha256-esn"])
def test_two_ipseclab_gateways_with_esn(esp: str, tmp_path: Path) -> None:
    """Extended sequence numbers through both gateways (strongSwan's kernel-libipsec has
    none, so only ipseclab can be the peer here): the high half sits in the AAD or the ICV
    (RFC 4303 §2.2.1, RFC 4106 §5), and both sides must agree on it for a single ping."""
    gateways = ipseclab_gateways(tmp_path, "start_action = start", swap=(
        "esp_proposals = aes128gcm16", f"esp_proposals = {esp}"))
    with Lab("site-to-site", tmp_path / "lab", gateways) as lab:
        up = wait_until(lambda: len(ctl(lab, "gw1", "list-sas")) == 2, 10)
        assert up is not None, (lab.workdir / "gw1" / "gateway.log").read_text()
        assert ping_replies(lab, "h1", "h2", 5, 0.05) == (5, 5)
        for gw in ("gw1", "gw2"):
            sas = ctl(lab, gw, "list-sas")
            assert len(sas) == 2 and all(sa["esn"] for sa in sas), sas
            assert all(sa["packets"] >= 5 and sa["auth_failed"] == 0 for sa in sas), sas


def test_inactivity_closes_an_idle_child_and_the_trap_reopens_it(tmp_path: Path) -> None:
    """swanctl's inactivity: no packet either way for 1.5 s closes the child SA (with a
    Delete, §1.4.1); its trap stays, so the next packet brings a new child SA up."""
    gateways = ipseclab_gateways(tmp_path, "start_action = trap\n        inactivity = 1.5s")
    with Lab("site-to-site", tmp_path / "lab", gateways) as lab:
        assert ping_replies(lab, "h1", "h2", 4, 0.2)[1] >= 3  # the first may wait for IKE
        first = {sa["spi"] for sa in ctl(lab, "gw1", "list-sas")}
        assert len(first) == 2
        gone = wait_until(lambda: not ctl(lab, "gw1", "list-sas"), 6)
        log = (lab.workdir / "gw1" / "gateway.log").read_text()
        assert gone is not None and gone >= 1.0, log
        assert "idle for 1.5s (inactivity): closing" in log
        assert not ctl(lab, "gw2", "list-sas")  # the peer deleted its half too
        assert ping_replies(lab, "h1", "h2", 4, 0.2)[1] >= 3
        second = {sa["spi"] for sa in ctl(lab, "gw1", "list-sas")}
        assert len(second) == 2 and not first & second


def test_keyingtries_starts_again_until_the_peer_answers(tmp_path: Path) -> None:
    """swanctl's keyingtries = 0: gw1 starts before gw2 exists; each retransmission sequence
    of IKE_SA_INIT goes unanswered (§2.1, §2.4) and a new one starts, until gw2 is up."""
    ours = tmp_path / "gw1.swanctl.conf"
    ours.write_text(conf(1, "keyingtries = 0", "start_action = start"))
    theirs = tmp_path / "gw2.swanctl.conf"
    theirs.write_text(conf(2))
    gateways = {
        "gw1": GatewaySpec("ipseclab", (ours,), {"args": ["--ike-retransmit-base", "0.2",
                                                           "--ike-retransmit-tries", "1"]}),
        "gw2": GatewaySpec("ipseclab", (theirs,), {}),
    }
    with Lab("site-to-site", tmp_path / "lab", gateways, start_gateways=False) as lab:
        lab.start_gateway("gw1")
        time.sleep(1.5)  # two or three sequences of 0.2 + 0.4 s without an answer
        lab.start_gateway("gw2")
        up = wait_until(lambda: any(i["children"] for i in ctl(lab, "gw1", "list-ike-sas")),
                        10)
        log = (lab.workdir / "gw1" / "gateway.log").read_text()
        assert up is not None, log
        assert "keyingtries: attempt 2 of no limit" in log
        assert ping_replies(lab, "h1", "h2", 3, 0.1) == (3, 3)


@needs_charon
def test_ours_reauthenticates_strongswan_without_loss(tmp_path: Path) -> None:
    """reauth_time (RFC 7296 §2.8.3), make-before-break: a new IKE SA and child SA from
    scratch every 4-5 s while h1 pings h2; the old IKE SA goes only after, so the child SA's
    reqid, policies and traffic carry on; charon sees a new IKE SA each time."""
    with against_charon(tmp_path, ("rekey_time = 0s\n    reauth_time = 5s",
                                   "start_action = start"), ("", "")) as lab:
        (first,) = ctl(lab, "gw1", "list-ike-sas")
        sent, received = ping_replies(lab, "h1", "h2", 110, 0.1)
        log = (lab.workdir / "gw1" / "gateway.log").read_text()
        reauths = re.findall(r"established .*, reauthenticating ([0-9a-f]{32})", log)
        assert len(reauths) >= 2 and reauths[0] == first["name"], log
        assert log.count("deleted: reauthenticated") >= 2, log
        # A reply charon sends on its new child SA before our IKE_AUTH response is read can
        # be lost (charon sends on a new child SA at once); one per reauthentication at most.
        assert sent == 110 and received >= sent - len(reauths), (sent, received, log)
        print(f"\n{received} of {sent} pings answered across {len(reauths)} reauthentications")
        (ike,) = ctl(lab, "gw1", "list-ike-sas")
        assert ike["initiator"] and ike["name"] != first["name"]
        assert len(ike["children"]) == 1
        assert "Traceback" not in log
        assert ping_replies(lab, "h2", "h1", 3, 0.2) == (3, 3)


@needs_charon
def test_strongswan_reauthenticates_us_as_our_auth_lifetime_asks(tmp_path: Path) -> None:
    """Our reauth_time as responder goes to charon as AUTH_LIFETIME (RFC 4478); charon (the
    initiator) reauthenticates before it runs out, and the tunnel carries on."""
    with against_charon(tmp_path, ("rekey_time = 0s\n    reauth_time = 30s", ""),
                        ("rekey_time = 0s\n    over_time = 26s", "start_action = start"),
                        initiator="gw2") as lab:
        (first,) = ctl(lab, "gw1", "list-ike-sas")
        assert not first["initiator"]
        # AUTH_LIFETIME 30 s minus charon's over_time 26 s: charon reauthenticates at ~4 s.
        changed = wait_until(lambda: [i["name"] for i in ctl(lab, "gw1", "list-ike-sas")
                                      if i["children"]] not in ([], [first["name"]]), 15)
        log = (lab.workdir / "gw1" / "gateway.log").read_text()
        assert changed is not None and changed < 10, log
        charon = next(lab.workdir.joinpath("gw2").rglob("charon*.log")).read_text()
        assert "received AUTH_LIFETIME of 30s" in charon, charon[-3000:]
        assert wait_until(lambda: len(ctl(lab, "gw1", "list-ike-sas")) == 1, 10) is not None
        assert ping_replies(lab, "h1", "h2", 5, 0.2)[1] >= 4
        # Now we reauthenticate the IKE SA charon began (ctl reauth): we initiate the new one.
        (theirs_,) = ctl(lab, "gw1", "list-ike-sas")
        assert ctl(lab, "gw1", "reauth", target="s2s") == {"reauthenticating": ["s2s"]}
        ours_ = wait_until(lambda: [i["initiator"] for i in ctl(lab, "gw1", "list-ike-sas")]
                           == [True], 10)
        log = (lab.workdir / "gw1" / "gateway.log").read_text()
        assert ours_ is not None, log
        assert f"reauthenticating {theirs_['name']}" in log
        assert ping_replies(lab, "h1", "h2", 5, 0.2) == (5, 5)
        with pytest.raises(IpsecLabError, match="no established IKE SA or connection named 'x'"):
            ctl(lab, "gw1", "reauth", target="x")
        assert "Traceback" not in log


def test_volume_limits_rekey_and_tfc_padding_between_two_ipseclab_gateways(
        tmp_path: Path) -> None:
    """rekey_packets = 40 on gw1: each child SA is rekeyed after at most 40 packets in one
    direction (RFC 4301 §4.4.2.1), with no ping lost; tfc_padding = 1000 pads every ESP
    packet gw1 sends to at least 1000 octets of payload (RFC 4303 §2.7), gw2's are not."""
    from ipseclab.capture.pcap import ip_payload, read_capture

    gateways = ipseclab_gateways(tmp_path, "start_action = start\n        rekey_packets = 40\n"
                                           "        tfc_padding = 1000")
    with Lab("site-to-site", tmp_path / "lab", gateways) as lab:
        up = wait_until(lambda: len(ctl(lab, "gw1", "list-sas")) == 2, 10)
        assert up is not None, (lab.workdir / "gw1" / "gateway.log").read_text()
        with lab.capture("wan") as pcap:
            sent, received = ping_replies(lab, "h1", "h2", 100, 0.05)
        log = (lab.workdir / "gw1" / "gateway.log").read_text()
        assert (sent, received) == (100, 100), log
        assert log.count("soft volume limit reached: rekeying") >= 2, log
        assert log.count("rekeyed (replaces") >= 2, log
        sizes: dict[str, list[int]] = {"192.0.2.1": [], "192.0.2.2": []}
        for frame in read_capture(pcap):
            packet = ip_payload(frame.linktype, frame.data)
            if packet and packet[0] >> 4 == 4 and packet[9] == 50:
                sizes[".".join(str(b) for b in packet[12:16])].append(len(packet))
        assert len(sizes["192.0.2.1"]) >= 100 and len(sizes["192.0.2.2"]) >= 100
        assert min(sizes["192.0.2.1"]) >= 20 + 8 + 8 + 1000 + 16, sorted(sizes["192.0.2.1"])[:5]
        assert max(sizes["192.0.2.2"]) < 200  # 84-octet pings, unpadded


def test_updown_scripts_run_as_child_sas_come_and_go(tmp_path: Path) -> None:
    """swanctl's updown (as strongSwan's updown plugin): up-client when the child SA is
    established, down-client when it is deleted (here by ctl terminate on gw1) or when the
    gateway stops (gw2, at the end of the lab), with strongSwan's PLUTO_* environment."""
    script = tmp_path / "updown.sh"
    script.write_text("#!/bin/sh\necho \"$1 $PLUTO_VERB $PLUTO_CONNECTION $PLUTO_REQID"
                      " $PLUTO_ME $PLUTO_PEER $PLUTO_MY_CLIENT $PLUTO_PEER_CLIENT\""
                      f" >> {tmp_path}/$1.log\n")
    script.chmod(0o755)
    gateways = ipseclab_gateways(tmp_path, f"start_action = start\n        updown = {script} gw1",
                                 f"updown = {script} gw2")
    with Lab("site-to-site", tmp_path / "lab", gateways) as lab:
        up = wait_until(lambda: (tmp_path / "gw2.log").exists()
                        and (tmp_path / "gw1.log").exists(), 10)
        assert up is not None, (lab.workdir / "gw1" / "gateway.log").read_text()
        assert ping_replies(lab, "h1", "h2", 2, 0.1) == (2, 2)
        request_gateway(control(lab, "gw1"), {"command": "terminate", "target": "s2s"})
        assert wait_until(lambda: "down" in (tmp_path / "gw1.log").read_text(), 10) is not None
        # up again; this time the lab's end stops the gateways with the child SA still up
        request_gateway(control(lab, "gw1"), {"command": "initiate", "target": "net"})
        assert wait_until(lambda: (tmp_path / "gw1.log").read_text().count("up-") == 2,
                          10) is not None
        log = (lab.workdir / "gw1" / "gateway.log").read_text()
        assert "Traceback" not in log
    first = "net 1 192.0.2.1 192.0.2.2 10.1.0.0/24 10.2.0.0/24"
    second = first.replace("net 1", "net 2")
    gw1 = (tmp_path / "gw1.log").read_text().splitlines()
    assert gw1 == [f"gw1 up-client {first}", f"gw1 down-client {first}",
                   f"gw1 up-client {second}", f"gw1 down-client {second}"], gw1
    gw2 = (tmp_path / "gw2.log").read_text().splitlines()
    assert [line.split()[1] for line in gw2] == ["up-client", "down-client"] * 2, gw2
    assert gw2[0].endswith("192.0.2.2 192.0.2.1 10.2.0.0/24 10.1.0.0/24")


@needs_charon
@pytest.mark.parametrize("forcing", ["ours", "charon"])
def test_childless_ike_sas_with_strongswan(forcing: str, tmp_path: Path) -> None:
    """RFC 6023 with ``childless = force`` on the initiating side, ours or charon's: IKE_AUTH
    without a child SA, the child SA by CREATE_CHILD_SA; the responder announced support in
    IKE_SA_INIT (ipseclab and charon both do by default)."""
    forcing_side = ("childless = force", "start_action = start")
    with against_charon(tmp_path, forcing_side if forcing == "ours" else ("", ""),
                        forcing_side if forcing == "charon" else ("", ""),
                        initiator="gw1" if forcing == "ours" else "gw2") as lab:
        log = (lab.workdir / "gw1" / "gateway.log").read_text()
        request = "sent to" if forcing == "ours" else "received from"
        auth = re.search(rf"{request} 192\.0\.2\.2\[\d+\]: IKE_AUTH #1 request from"
                         r" initiator: SK\{IDi, [^}]*\}", log)
        assert auth and "AUTH" in auth[0] and "TSi" not in auth[0], log  # no SA, TSi, TSr
        assert re.search(r"CREATE_CHILD_SA #2 request from initiator: SK\{SA, Ni, (KE, )?TSi, TSr",
                         log), log
        assert ping_replies(lab, "h1", "h2", 3, 0.2) == (3, 3)
        assert "Traceback" not in log


def test_an_ah_child_sa_between_two_ipseclab_gateways(tmp_path: Path) -> None:
    """ah_proposals = sha256 on both: IKEv2 negotiates an AH child SA (RFC 4302; protocol 2
    in the SA payload), and the WAN carries AH (IP protocol 51) instead of ESP. strongSwan's
    kernel-libipsec has no AH, so only ipseclab can be the peer here."""

    gateways = ipseclab_gateways(tmp_path, "start_action = start", swap=(
        "esp_proposals = aes128gcm16", "ah_proposals = sha256"))
    with Lab("site-to-site", tmp_path / "lab", gateways) as lab:
        up = wait_until(lambda: len(ctl(lab, "gw1", "list-sas")) == 2, 10)
        assert up is not None, (lab.workdir / "gw1" / "gateway.log").read_text()
        with lab.capture("wan") as pcap:
            assert ping_replies(lab, "h1", "h2", 5, 0.05) == (5, 5)
        sas = ctl(lab, "gw1", "list-sas")
        assert {sa["protocol"] for sa in sas} == {"ah"}, sas
        proc = subprocess.run([sys.executable, "-m", "ipseclab", "ctl", "--socket",
                               str(control(lab, "gw1")), "list-sas"], capture_output=True,
                              text=True, timeout=20)
        assert "INSTALLED, TUNNEL, AH:sha256" in proc.stdout, proc.stdout + proc.stderr
        assert all(sa["packets"] >= 5 and sa["auth_failed"] == 0 for sa in sas), sas
        protos = [f.proto for f in frames(pcap) if f.kind == "ipv4" and f.proto != 17]
        assert protos.count(51) >= 10 and 50 not in protos, protos


def test_no_weak_ike_check_fails_on_a_weak_responder(tmp_path: Path) -> None:
    """The same scenario check against a gw2 that still accepts modp1024 beside x25519: the
    probe from gw1 names it (RFC 8247 §2.4: SHOULD NOT), and the check fails."""
    weak = tmp_path / "gw2.swanctl.conf"
    weak.write_text((CONFIGS / "gw2.swanctl.conf").read_text().replace(
        "proposals = aes128gcm16-prfsha256-x25519",
        "proposals = aes128gcm16-prfsha256-x25519, aes128-sha1-modp1024"))
    scenario = tmp_path / "weak.yaml"
    scenario.write_text(f"""\
topology: {TOPOLOGY_DIR / "site-to-site.yaml"}
gateways:
  gw1: {{impl: ipseclab, config: {CONFIGS / "gw1.swanctl.conf"}}}
  gw2: {{impl: ipseclab, config: {weak}}}
steps:
  - start
checks:
  - no_weak_ike: {{from: gw1, to: gw2}}
""")
    result = run_scenario(scenario, tmp_path / "out")
    (check,) = result.checks
    assert check.status == FAIL and not result.passed
    assert check.detail == "192.0.2.2 accepts modp1024 (SHOULD NOT)", check.detail


@pytest.mark.parametrize("peer", ["ipseclab", pytest.param("strongswan", marks=needs_charon)])
def test_the_gateways_own_traffic_to_the_remote_lan_is_protected(peer: str,
                                                                 tmp_path: Path) -> None:
    """gw1's TUN route to 10.2.0.0/24 has gw1's LAN address 10.1.0.1 as its source (as
    strongSwan installs its routes), so gw1's own ping to h2 matches the policy and crosses
    the WAN in ESP; with the WAN address as source it matched no policy and crossed the WAN
    in the clear."""
    gateways = {
        "gw1": GatewaySpec("ipseclab", (CONFIGS / "gw1.swanctl.conf",)),
        "gw2": GatewaySpec(peer, (CONFIGS / "gw2.swanctl.conf",),
                           {"initiate": ["net"]} if peer == "strongswan" else {}),
    }
    with Lab("site-to-site", tmp_path / "lab", gateways) as lab:
        assert ping_replies(lab, "h1", "h2", 2, 0.2)[1] >= 1  # the tunnel is up
        with lab.capture("wan") as pcap:
            assert ping_replies(lab, "gw1", "h2", 3, 0.2) == (3, 3)
        route = lab.cmd("gw1", "ip", "route", "show", "table", "485")
    wan = [f for f in frames(pcap) if f.kind == "ipv4" and not f.link_control]
    assert wan and all(f.is_ipsec for f in wan), [f.describe() for f in wan if not f.is_ipsec]
    assert "10.2.0.0/24 dev ipsec0" in route and "src 10.1.0.1" in route, route


def test_the_delete_of_a_stopping_gateway_is_logged(tmp_path: Path) -> None:
    """``ctl stop`` deletes each IKE SA (RFC 7296 §1.4.1) and logs that message as it logs
    every other: the last IKE line of the log is the INFORMATIONAL with the Delete."""
    gateways = {f"gw{i}": GatewaySpec("ipseclab", (CONFIGS / f"gw{i}.swanctl.conf",))
                for i in (1, 2)}
    with Lab("site-to-site", tmp_path / "lab", gateways) as lab:
        assert ping_replies(lab, "h1", "h2", 2, 0.2)[1] >= 1
        lab.stop_gateway("gw1")
    log = (tmp_path / "lab" / "gw1" / "gateway.log").read_text()
    after_stop = log[log.rindex("stopping"):]
    assert re.search(r"sent to 192\.0\.2\.2\[500\]: INFORMATIONAL #\d+ request from initiator:"
                     r" SK\{DELETE\}", after_stop), after_stop


def test_list_sas_names_the_inbound_sa_a_rekey_retires(tmp_path: Path) -> None:
    """After a child SA rekey the old inbound SA stays 5 s for packets in flight (RFC 7296
    §2.8); ``ctl list-sas`` shows it as that child's retiring SA, not as a manual SA."""
    from ipseclab.drivers.cli_gateway import format_ike_sas

    gateways = {f"gw{i}": GatewaySpec("ipseclab", (CONFIGS / f"gw{i}.swanctl.conf",))
                for i in (1, 2)}
    with Lab("site-to-site", tmp_path / "lab", gateways) as lab:
        assert ping_replies(lab, "h1", "h2", 2, 0.2)[1] >= 1
        assert ctl(lab, "gw1", "rekey", target="net")["rekeyed"] == ["net{1}"]
        log = tmp_path / "lab" / "gw1" / "gateway.log"
        assert wait_until(lambda: "deleted (rekeyed)" in log.read_text(), 5) is not None
        sas = ctl(lab, "gw1", "list-sas")
        ike_sas = ctl(lab, "gw1", "list-ike-sas")
    retiring = [s for s in sas if s.get("retiring")]
    assert len(retiring) == 1 and retiring[0]["child"] == "net", sas
    text = format_ike_sas(ike_sas, sas)
    assert "net: rekeyed, its old inbound SA" in text and "manual{" not in text, text
