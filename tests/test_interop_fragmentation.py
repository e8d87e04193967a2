"""IKEv2 fragmentation (RFC 7383) against strongSwan 5.9.8, with RSA-3072 certificates.

Two network namespaces of the test's own (``iplfr-*``, one veth): charon-systemd with
``fragmentation = yes`` in one, our engine (the ike_udp driver, configured from a swanctl.conf)
in the other. Both send their certificates, so each IKE_AUTH message is about 2 kB: larger than
strongSwan's and our default ``fragment_size`` of 1280. Checked from a capture of the veth: every
IKE_AUTH message went as SKF fragments of at most 1280 octets of IP, no IP fragment crossed the
link, and the SAs came up on both sides; charon's log confirms it reassembled our fragments.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import peer_namespaces
from ipseclab.capture.pcap import ip_payload, read_capture
from ipseclab.ike import testpki
from ipseclab.ike.constants import ExchangeType, NotifyType
from ipseclab.ike.message import parse_message
from ipseclab.ike.payloads import EncryptedFragment
from ipseclab.ipsec import ip
from ipseclab.lab import strongswan
from ipseclab.lab.strongswan import Charon

pytestmark = [
    pytest.mark.root,
    pytest.mark.interop,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces"),
    pytest.mark.skipif(not strongswan.available(), reason="charon-systemd is not installed"),
]

ROOT = Path(__file__).resolve().parents[1]
OURS, THEIRS = "192.0.2.1", "192.0.2.2"
OURS_DN = "C=CH, O=ipseclab, CN=ours.ipseclab.test"
THEIRS_DN = "C=CH, O=ipseclab, CN=theirs.ipseclab.test"

CONF = """\
connections {{
  frag {{
    local_addrs = {local}
    remote_addrs = {remote}
    proposals = aes256-sha256-modp2048
    fragmentation = yes
    send_cert = always
    local {{
      auth = pubkey
      certs = {cert}
      id = "{local_id}"
    }}
    remote {{
      auth = pubkey
      id = "{remote_id}"
    }}
    children {{
      net {{
        local_ts = {local_ts}
        remote_ts = {remote_ts}
        esp_proposals = aes128gcm16
      }}
    }}
  }}
}}
"""

# Our side: the ike_udp driver with connections from a swanctl.conf; events as JSON lines.
RUNNER = textwrap.dedent("""\
    import asyncio, json, sys, time
    from ipseclab.config.swanctl import load_swanctl
    from ipseclab.drivers.ike_udp import IkeUdpDriver, event_to_dict
    from ipseclab.ike.engine import IkeEngine

    conf, address, initiate = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
    loaded = load_swanctl(conf)

    def say(data):
        sys.stdout.write(json.dumps(data) + "\\n")
        sys.stdout.flush()

    async def main():
        engine = IkeEngine(list(loaded.connections.values()), local_addr=address,
                           wall_clock=lambda now: now + (time.time() - time.monotonic()))
        async with IkeUdpDriver(engine, address, on_event=lambda e: say(event_to_dict(e))
                                ) as driver:
            say({"event": "Listening"})
            if initiate:
                driver.initiate("frag")
            await driver.wait_for({"ChildSaEstablished", "ChildSaFailed", "NegotiationFailed",
                                   "AuthenticationFailed", "PeerUnreachable"}, 10)
            await asyncio.sleep(0.3)
            say({"event": "Exit", "internal_errors": engine.internal_errors})

    asyncio.run(main())
""")


@pytest.fixture(scope="module")
def namespaces() -> Iterator[tuple[str, str]]:
    """Ours and strongSwan's namespaces, joined by a veth."""
    with peer_namespaces("iplfr", OURS, THEIRS) as pair:
        yield pair


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> testpki.LabPki:
    hosts = (testpki.HostSpec("ours", "rsa3072", OURS_DN, ("ours.ipseclab.test", OURS)),
             testpki.HostSpec("theirs", "rsa3072", THEIRS_DN, ("theirs.ipseclab.test", THEIRS)))
    return testpki.make_lab_pki(tmp_path_factory.mktemp("pki"), hosts)


@pytest.fixture(scope="module")
def charon(namespaces: tuple[str, str], pki: testpki.LabPki,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Charon]:
    ns = namespaces[1]
    conf = pki.directory / "theirs.swanctl.conf"
    conf.write_text(CONF.format(local=THEIRS, remote=OURS, cert="theirsCert.pem",
                                local_id=THEIRS_DN, remote_id=OURS_DN, local_ts="10.2.0.0/24",
                                remote_ts="10.1.0.0/24"))
    daemon = Charon(tmp_path_factory.mktemp("charon"),
                    lambda args, **kw: subprocess.Popen(["ip", "netns", "exec", ns, *args], **kw))
    daemon.install_config(conf)
    daemon.start()
    try:
        daemon.load_all()
        yield daemon
    finally:
        daemon.stop()


def our_conf(pki: testpki.LabPki) -> Path:
    conf = pki.directory / "swanctl.conf"
    conf.write_text(CONF.format(local=OURS, remote=THEIRS, cert="oursCert.pem",
                                local_id=OURS_DN, remote_id=THEIRS_DN, local_ts="10.1.0.0/24",
                                remote_ts="10.2.0.0/24"))
    return conf


def ike_messages(pcap: Path) -> tuple[list[tuple[str, bytes]], int]:
    """(sender address, IKE message) of every IKE datagram, and the number of IP fragments."""
    messages, ip_fragments = [], 0
    for frame in read_capture(pcap):
        packet = ip_payload(frame.linktype, frame.data)
        if packet is None:
            continue
        hdr = ip.parse_header(packet)
        flags_fragment = int.from_bytes(packet[6:8], "big")
        if flags_fragment & 0x3FFF:  # MF set or a fragment offset
            ip_fragments += 1
            continue
        if hdr.next_header != ip.PROTO_UDP:
            continue
        udp = packet[hdr.header_length:hdr.total_length]
        ports = int.from_bytes(udp[0:2], "big"), int.from_bytes(udp[2:4], "big")
        payload = udp[8:]
        if 4500 in ports:
            if payload[:4] != bytes(4):
                continue  # ESP in UDP
            payload = payload[4:]
        elif 500 not in ports:
            continue
        assert len(packet) <= 1280, len(packet)
        messages.append((str(hdr.src), payload))
    return messages, ip_fragments


@pytest.mark.parametrize("we_initiate", [True, False], ids=["ours-initiates", "charon-initiates"])
def test_fragmented_ike_auth_with_strongswan(charon: Charon, namespaces: tuple[str, str],
                                             pki: testpki.LabPki, tmp_path: Path,
                                             we_initiate: bool) -> None:
    ns = namespaces[0]
    charon.terminate_all()
    log_start = len(charon.log_text())
    pcap = tmp_path / "wan.pcap"
    dump = subprocess.Popen(["ip", "netns", "exec", ns, "tcpdump", "-i", "wan0", "-U",
                             "--immediate-mode", "-w", str(pcap), "ip"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    try:
        assert b"listening on" in dump.stderr.readline()  # type: ignore[union-attr]
        ours = subprocess.Popen(
            ["ip", "netns", "exec", ns, sys.executable, "-c", RUNNER, str(our_conf(pki)), OURS,
             "1" if we_initiate else "0"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            cwd=ROOT, text=True)
        try:
            assert '"Listening"' in ours.stdout.readline()  # type: ignore[union-attr]
            if not we_initiate:
                assert charon.initiate("net", "frag", timeout=8)
            out, err = ours.communicate(timeout=20)
        finally:
            if ours.poll() is None:
                ours.kill()
                ours.wait()
    finally:
        time.sleep(0.1)
        dump.terminate()
        dump.wait(5)
    evs = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    names = [e["event"] for e in evs]
    assert "IkeSaEstablished" in names and "ChildSaEstablished" in names, (names, err)
    assert evs[-1]["event"] == "Exit" and evs[-1]["internal_errors"] == [], evs[-1]
    ike_up = next(e for e in evs if e["event"] == "IkeSaEstablished")
    assert ike_up["peer_certificate"] == THEIRS_DN
    sas = [s for s in charon.list_sas() if s.get("initiator-spi") == ike_up["spi_i"]]
    assert sas and sas[0]["state"] == "ESTABLISHED", charon.list_sas()
    assert any(c["state"] == "INSTALLED" for c in sas[0]["child-sas"].values())

    messages, ip_fragments = ike_messages(pcap)
    assert ip_fragments == 0
    parsed = [(src, parse_message(data)) for src, data in messages]
    init = [m for _, m in parsed if m.exchange_type == ExchangeType.IKE_SA_INIT]
    assert len(init) == 2 and all(m.notifies(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED)
                                  for m in init)
    auth = [(src, m) for src, m in parsed if m.exchange_type == ExchangeType.IKE_AUTH]
    assert auth and all(isinstance(m.payloads[-1], EncryptedFragment) for _, m in auth)
    for sender in (OURS, THEIRS):  # both directions went in at least two fragments
        frags = [m.payloads[-1] for src, m in auth if src == sender]
        assert len(frags) >= 2 and frags[0].total_fragments >= 2
        assert {f.fragment_number for f in frags} == set(range(1, frags[0].total_fragments + 1))
    log = charon.log_text()[log_start:]
    assert "received fragment #" in log and "reassembled fragmented IKE message" in log, log[-3000:]
