"""``ipseclab probe``: which IKE SA algorithms a responder accepts, one IKE_SA_INIT each.

In memory against our own IKE engine as the responder (what it accepts is its proposals,
so every answer can be checked), the COOKIE round trip, a silent address, stray replies;
then the command line, and in namespaces against strongSwan's charon.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipseclab.cli import main
from ipseclab.crypto.guidance import ike_level, is_weak
from ipseclab.drivers.ike_probe import format_report, report_json, weak
from ipseclab.ike.config import ChildConfig, IkeConfig
from ipseclab.ike.engine import IkeEngine
from ipseclab.ike.message import parse_message
from ipseclab.ike.payloads import KeyExchange, SecurityAssociation
from ipseclab.ike.probe import DECOY_GROUP, Prober, candidates, degenerate_shares

ROOT = Path(__file__).resolve().parents[1]
US, THEM = ("192.0.2.1", 500), ("192.0.2.2", 500)


def responder(proposals: str, **kw) -> IkeEngine:
    config = IkeConfig("gw", local_addrs=[THEM[0]], remote_addrs=["%any"], proposals=proposals,
                       local_id="@gw", remote_id="%any", psk=b"secret",
                       children=[ChildConfig("net", local_ts=["10.2.0.0/24"],
                                             remote_ts=["10.1.0.0/24"])])
    return IkeEngine(config, rng=random.Random(2).randbytes, **kw)


def run(prober: Prober, engine: IkeEngine | None, *, reply=None) -> list[bytes]:
    """Drive ``prober`` against ``engine`` on a simulated clock; return what it sent."""
    now, sent = 0.0, []
    for _ in range(10_000):
        data, wake = prober.poll(now)
        if wake is None:
            return sent
        if data is None:
            now = wake
            continue
        sent.append(data)
        if reply is not None:
            for answer in reply(data):
                prober.receive(answer, now)
        elif engine is not None:
            engine.receive_datagram(data, US, THEM, now)
            for answer, _, _ in engine.datagrams_to_send():
                prober.receive(answer, now)
    raise AssertionError("the probe never ended")


def accepted(prober: Prober, kind: str) -> set[str]:
    return {a.candidate.keyword for a in prober.answers
            if a.candidate.kind == kind and a.verdict == "accepted"}


PROPOSALS = "aes256-sha256-modp2048,aes128gcm16-prfsha384-ecp256"


def test_finds_exactly_what_the_responder_accepts() -> None:
    engine = responder(PROPOSALS)
    prober = Prober(rng=random.Random(1).randbytes)
    run(prober, engine)
    assert accepted(prober, "encryption") == {"aes256", "aes128gcm16"}
    assert accepted(prober, "integrity") == {"sha256"}
    assert accepted(prober, "prf") == {"prfsha256", "prfsha384"}
    assert accepted(prober, "dh") == {"modp2048", "ecp256"}
    others = {a.verdict for a in prober.answers if a.candidate.keyword not in
              {"aes256", "aes128gcm16", "sha256", "prfsha256", "prfsha384", "modp2048", "ecp256"}}
    assert others == {"refused"}
    assert len(prober.answers) == len(candidates()) and not prober.stopped
    # The real offer: the responder chooses among what it accepted.
    full = prober.full_answer
    assert full is not None and full.verdict == "answered"
    assert full.proposal in ("aes256-sha256-prfsha256-modp2048", "aes128gcm16-prfsha384-ecp256")
    assert "IKEV2_FRAGMENTATION_SUPPORTED" in full.notifies
    # Only the real offer made a (half-open) IKE SA: every question was answered statelessly.
    assert len(engine.ike_sas) == 1 and not engine.internal_errors


def test_questions_leave_no_state_without_the_full_offer() -> None:
    engine = responder(PROPOSALS)
    prober = Prober(candidates(["dh"]), full=False, rng=random.Random(1).randbytes)
    run(prober, engine)
    assert accepted(prober, "dh") == {"modp2048", "ecp256"}
    assert engine.ike_sas == [] and engine.half_open_count() == 0
    assert prober.full_answer is None


def test_each_question_offers_the_decoy_group_and_its_ke() -> None:
    """RFC 7296 §3.4: the KE group must be one the SA payload offers: the decoy is."""
    prober = Prober(candidates(["encryption"])[:3], full=False, rng=random.Random(1).randbytes)
    sent = run(prober, responder(PROPOSALS))
    for data in sent:
        message = parse_message(data)
        ke = message.find(KeyExchange)
        assert ke is not None and ke.group == DECOY_GROUP
        for proposal in message.find(SecurityAssociation).proposals:
            groups = [t.transform_id for t in proposal.transforms if t.transform_type == 4]
            assert DECOY_GROUP in groups
            encryption = [t for t in proposal.transforms if t.transform_type == 1]
            assert len(encryption) == 1  # the one encryption algorithm asked about


def test_weak_algorithms_named_with_rfc8247_levels() -> None:
    engine = responder("aes128-sha256-md5-prfsha256-modp1024-modp2048")
    prober = Prober(full=False, rng=random.Random(1).randbytes)
    run(prober, engine)
    assert weak(prober) == ["md5 (MUST NOT)", "modp1024 (SHOULD NOT)"]
    text = format_report(prober, "gw")
    assert "weak:       md5 (MUST NOT), modp1024 (SHOULD NOT)" in text
    assert "accepts aes128 (MUST)" in text
    data = report_json(prober, "gw")
    assert {a["keyword"] for a in data["answers"] if a["weak"]} == {"md5", "modp1024"}
    json.dumps(data)  # JSON-ready


def test_rfc8247_levels() -> None:
    assert ike_level("dh", "modp2048") == "MUST" and ike_level("dh", "modp768") == "MUST NOT"
    assert ike_level("encryption", "aes256gcm16") == "SHOULD"
    assert ike_level("prf", "prfsha384") == ""  # not in RFC 8247's table
    assert is_weak("integrity", "md5") and not is_weak("integrity", "sha1")


def test_degenerate_key_shares_refused_by_a_checking_responder() -> None:
    """RFC 6989: ipseclab refuses 1 and p-1 (MODP) and an off-curve point (ECP) with
    INVALID_SYNTAX and keeps no state for them."""
    engine = responder(PROPOSALS)
    prober = Prober(candidates(["dh"]), full=False, rng=random.Random(1).randbytes)
    run(prober, engine)
    checks = [(c.group, c.value, c.verdict, c.detail) for c in prober.share_checks]
    assert checks == [
        ("modp2048", "1", "refused", "INVALID_SYNTAX"),
        ("modp2048", "p-1", "refused", "INVALID_SYNTAX"),
        ("ecp256", "the point (0, 0), not on the curve", "refused", "INVALID_SYNTAX")]
    assert engine.ike_sas == [] and weak(prober) == []
    assert "key shares: refuses 1, p-1 (modp2048); the point (0, 0), not on the curve" \
        " (ecp256)" in format_report(prober, "gw")


def test_degenerate_key_share_accepted_by_a_responder_without_checks() -> None:
    """The unchecked-dh attack's broken peer (lab only) takes 1 as a key share: the probe
    says so, and counts it as weak."""
    from ipseclab.attacks.unchecked_dh import unchecked

    engine = responder("aes128gcm16-prfsha256-modp2048")
    prober = Prober(candidates(["dh"]), full=False, rng=random.Random(1).randbytes)
    with unchecked():
        run(prober, engine)
    verdicts = {c.value: c.verdict for c in prober.share_checks}
    assert verdicts == {"1": "accepted", "p-1": "accepted"}
    assert "opened with keys from the degenerate secret" in prober.share_checks[0].detail
    assert weak(prober) == ["modp2048 key share 1 (RFC 6989)",
                            "modp2048 key share p-1 (RFC 6989)"]
    assert [a["value"] for a in report_json(prober, "gw")["share_checks"]] == ["1", "p-1"]


def test_share_checks_inconclusive_when_the_group_alone_is_refused() -> None:
    """Each group's share checks follow a stateless control (the group alone, the decoy's
    KE): if that is refused, a refused share would prove nothing, and the probe says so."""
    from ipseclab.ike.constants import ExchangeType, HeaderFlag, NotifyType
    from ipseclab.ike.message import Message
    from ipseclab.ike.payloads import Notify

    engine = responder(PROPOSALS)
    prober = Prober(candidates(["dh"]), full=False, rng=random.Random(1).randbytes)

    def reply(data: bytes) -> list[bytes]:
        message = parse_message(data)
        if len(prober.answers) == len(prober.candidates) \
                and message.find(KeyExchange).group == DECOY_GROUP:
            return [Message(message.spi_i, bytes(8), ExchangeType.IKE_SA_INIT, HeaderFlag.R, 0,
                            [Notify(NotifyType.NO_PROPOSAL_CHOSEN)]).to_bytes()]
        engine.receive_datagram(data, US, THEM, 0.0)
        return [d for d, _, _ in engine.datagrams_to_send()]

    sent = run(prober, None, reply=reply)
    assert {c.verdict for c in prober.share_checks} == {"inconclusive"}
    assert prober.share_checks[0].detail == "an offer of modp2048 alone got NO_PROPOSAL_CHOSEN"
    assert len(sent) == len(candidates(["dh"])) + 2  # two controls, no degenerate share sent


def test_degenerate_shares_per_group_kind() -> None:
    from ipseclab.crypto.dh import dh_group

    p = dh_group("modp1024").p
    (_, one, one_secrets), (_, minus, minus_secrets) = degenerate_shares(dh_group("modp1024"))
    assert int.from_bytes(one, "big") == 1 and len(one) == 128 and one_secrets == [one]
    assert int.from_bytes(minus, "big") == p - 1 and minus_secrets == [one, minus]
    # (p-1)^x is 1 for an even x and p-1 for an odd one: both are tried.
    assert {pow(p - 1, x, p) for x in (2, 3)} == {1, p - 1}
    [(_, zero, secrets)] = degenerate_shares(dh_group("x25519"))
    assert zero == bytes(32) and secrets == [bytes(32)]
    [(_, origin, secrets)] = degenerate_shares(dh_group("ecp384"))
    assert origin == bytes(96) and secrets == []


def test_cookie_demanded_and_answered() -> None:
    """§2.6: a responder under load demands a COOKIE before it answers at all."""
    engine = responder(PROPOSALS, cookie_threshold=0)
    prober = Prober(candidates(["dh"]), rng=random.Random(1).randbytes)
    run(prober, engine)
    assert prober.cookie_demanded
    assert accepted(prober, "dh") == {"modp2048", "ecp256"}
    assert prober.full_answer is not None and prober.full_answer.verdict == "answered"


def test_silent_address_stops_after_the_first_question() -> None:
    prober = Prober(timeout=1.0, tries=3, rng=random.Random(1).randbytes)
    sent = run(prober, None)
    assert len(sent) == 3  # one question, sent three times
    assert [a.verdict for a in prober.answers] == ["no answer"]
    assert "no IKE responder" in prober.stopped and prober.full_answer is None


def test_stray_and_malformed_replies_are_ignored() -> None:
    engine = responder(PROPOSALS)

    def reply(data: bytes) -> list[bytes]:
        engine.receive_datagram(data, US, THEM, 0.0)
        real = [d for d, _, _ in engine.datagrams_to_send()]
        stray = bytearray(real[0])
        stray[0] ^= 1  # another initiator SPI: not an answer to us
        return [b"\x00" * 10, os.urandom(40), bytes(stray), *real]

    prober = Prober(candidates(["dh"]), full=False, rng=random.Random(1).randbytes)
    run(prober, None, reply=reply)
    assert accepted(prober, "dh") == {"modp2048", "ecp256"}
    assert {a.verdict for a in prober.answers} == {"accepted", "refused"}


def test_cli_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "192.0.2.250", "--only", "ciphers"]) == 2
    assert "unknown kind 'ciphers'" in capsys.readouterr().err
    assert main(["probe", "gateway.example"]) == 2
    assert "not an IP address" in capsys.readouterr().err
    assert main(["probe", "192.0.2.250", "--tries", "0"]) == 2
    assert "--tries" in capsys.readouterr().err


# -- against strongSwan in namespaces ------------------------------------------------------

root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for network namespaces")

SWANCTL = """\
connections {
  gw {
    local_addrs = 192.0.2.2
    proposals = aes256-sha256-modp2048, aes128gcm16-prfsha384-ecp256-x25519, 3des-md5-modp1024
    local { auth = psk
            id = 192.0.2.2 }
    remote { auth = psk }
    children { net { local_ts = 10.2.0.0/24 } }
  }
}
secrets { ike-any { secret = "probe-test-secret-0123456789" } }
"""


@pytest.fixture(scope="module")
def charon_peer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Any]]:
    from conftest import peer_namespaces
    from ipseclab.lab import strongswan
    from ipseclab.lab.strongswan import Charon

    if not strongswan.available():
        pytest.skip("charon-systemd is not installed")
    with peer_namespaces("iplpr", US[0], THEM[0]) as (ours, theirs):
        daemon = Charon(tmp_path_factory.mktemp("charon"), lambda args, **kw: subprocess.Popen(
            ["ip", "netns", "exec", theirs, *args], **kw))
        daemon.start()
        try:
            daemon.install_config("", SWANCTL)
            daemon.load_all()
            yield ours, daemon
        finally:
            daemon.stop()


@root
@pytest.mark.root
@pytest.mark.interop
def test_probe_strongswan(charon_peer: tuple[str, Any]) -> None:
    ns, charon = charon_peer
    out = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "ipseclab",
                          "probe", THEM[0], "--json", "--timeout", "0.5"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    ok = {(a["kind"], a["keyword"]) for a in data["answers"] if a["verdict"] == "accepted"}
    assert ok == {("encryption", "aes256"), ("encryption", "aes128gcm16"),
                  ("encryption", "3des"), ("integrity", "sha256"), ("integrity", "md5"),
                  ("prf", "prfsha256"), ("prf", "prfsha384"), ("prf", "prfmd5"),
                  ("dh", "modp2048"), ("dh", "ecp256"), ("dh", "modp1024"), ("dh", "x25519")}
    assert {a["verdict"] for a in data["answers"]} == {"accepted", "refused"}
    assert {a["keyword"] for a in data["answers"] if a["weak"]} == {"md5", "prfmd5", "modp1024"}
    # RFC 6989: charon refuses 1 and p-1 in both MODP groups and a point off its curve.
    shares = {(c["group"], c["value"], c["verdict"], c["detail"]) for c in data["share_checks"]}
    print(shares)
    assert {(g, v) for g, v, _, _ in shares} == {
        ("modp1024", "1"), ("modp1024", "p-1"), ("modp2048", "1"), ("modp2048", "p-1"),
        ("ecp256", "the point (0, 0), not on the curve"), ("x25519", "u = 0, a low-order point")}
    assert {verdict for _, _, verdict, _ in shares} == {"refused"}
    # charon answers u = 0 in IKE_SA_INIT and refuses when it derives the keys: its log says
    # "CURVE_25519 shared secret computation failed", "key derivation failed".
    [x25519] = [d for g, _, _, d in shares if g == "x25519"]
    assert "when deriving keys" in x25519
    log = charon.log_text()
    assert "CURVE_25519 shared secret computation failed" in log
    assert "key derivation failed" in log
    full = data["full"]
    assert full["verdict"] == "answered"
    assert full["proposal"] == "aes256-sha256-prfsha256-modp2048"  # charon's first proposal
    assert "IKEV2_FRAGMENTATION_SUPPORTED" in full["notifies"]
    text = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "ipseclab",
                           "probe", THEM[0], "--only", "dh", "--no-full"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert text.returncode == 0, text.stderr
    print(text.stdout)
    assert "DH group:   accepts modp1024 (SHOULD NOT), modp2048 (MUST), ecp256 (SHOULD)," \
        " x25519 (SHOULD)" in text.stdout
    assert "weak:       modp1024 (SHOULD NOT)" in text.stdout
    # Port 4500: the same questions behind the non-ESP marker (RFC 3948 §2.2).
    nat = subprocess.run(["ip", "netns", "exec", ns, sys.executable, "-m", "ipseclab",
                          "probe", THEM[0], "--port", "4500", "--only", "dh", "--no-full",
                          "--no-share-checks", "--json"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert nat.returncode == 0, nat.stderr
    assert {a["keyword"] for a in json.loads(nat.stdout)["answers"]
            if a["verdict"] == "accepted"} == {"modp1024", "modp2048", "ecp256", "x25519"}


def test_real_offer_follows_invalid_ke_payload() -> None:
    """§1.3: when the responder wants another group of the real offer, the probe sends the
    offer again with a key share of that group."""
    from ipseclab.ike.constants import ExchangeType, HeaderFlag
    from ipseclab.ike.message import Message
    from ipseclab.ike.payloads import Notify

    engine = responder(PROPOSALS)
    wanted = []

    def reply(data: bytes) -> list[bytes]:
        message = parse_message(data)
        group = message.find(KeyExchange).group
        if group != DECOY_GROUP and not wanted:
            wanted.append(group)
            other = 19 if group != 19 else 14
            return [Message(message.spi_i, bytes(8), ExchangeType.IKE_SA_INIT, HeaderFlag.R, 0,
                            [Notify.invalid_ke_payload(other)]).to_bytes()]
        engine.receive_datagram(data, US, THEM, 0.0)
        return [d for d, _, _ in engine.datagrams_to_send()]

    prober = Prober(candidates(["dh"]), share_checks=False, rng=random.Random(1).randbytes)
    sent = run(prober, None, reply=reply)
    last = parse_message(sent[-1]).find(KeyExchange).group
    assert wanted and last != wanted[0] and last in (14, 19)
    assert prober.full_answer is not None and prober.full_answer.verdict == "answered"
    assert prober.full_answer.proposal.endswith("ecp256" if last == 19 else "modp2048")


def test_cli_against_a_closed_port_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    """Loopback, a port nobody listens on: every request unanswered (or refused by ICMP),
    the probe stops after the first question and exits 1 with its report."""
    assert main(["probe", "127.0.0.1", "--port", "9", "--timeout", "0.05", "--tries", "2"]) == 1
    out = capsys.readouterr().out
    assert "stopped:" in out and "no IKE responder" in out


def test_cli_over_ipv6(capsys: pytest.CaptureFixture[str]) -> None:
    """The same over IPv6 loopback: the driver opens an IPv6 socket for an IPv6 address."""
    assert main(["probe", "::1", "--port", "9", "--timeout", "0.05", "--tries", "1",
                 "--json"]) == 1
    data = json.loads(capsys.readouterr().out)
    assert data["target"] == "::1 port 9" and data["answers"][0]["verdict"] == "no answer"


@settings(max_examples=300, deadline=None)
@given(st.data())
def test_any_reply_gives_a_verdict_never_an_exception(data) -> None:
    """Whatever comes back (random octets, or a real answer with octets flipped), receive()
    judges it or ignores it; the probe goes on and ends."""
    engine = responder(PROPOSALS)

    def reply(request: bytes) -> list[bytes]:
        engine.receive_datagram(request, US, THEM, 0.0)
        out = []
        for answer, _, _ in engine.datagrams_to_send():
            if data.draw(st.booleans()):
                flip = data.draw(st.integers(0, len(answer) * 8 - 1))
                answer = bytearray(answer)
                answer[flip // 8] ^= 1 << (flip % 8)
            out.append(bytes(answer))
        if data.draw(st.booleans()):
            out.append(data.draw(st.binary(max_size=64)))
        return out

    prober = Prober(candidates(["dh"])[:4], tries=1, rng=random.Random(1).randbytes)
    run(prober, None, reply=reply)
    assert prober.done and len(prober.answers) >= 1
