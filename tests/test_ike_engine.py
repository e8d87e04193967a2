"""The IKEv2 engine: an in-memory initiator talking to an in-memory responder.

Covers IKE_SA_INIT, IKE_AUTH with PSK and the first child SA for several proposals, the error
paths (wrong PSK, no proposal, TS_UNACCEPTABLE, RFC 6989 key shares), INVALID_KE_PAYLOAD and
COOKIE round trips, retransmission and duplicates, INFORMATIONAL, the SK payload against
RFC 7634 Appendix B, and fuzzing of real messages.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipseclab.crypto.dh import dh_group
from ipseclab.crypto.transforms import encryption, integrity
from ipseclab.errors import AuthenticationFailed
from ipseclab.ike import events
from ipseclab.ike.config import ChildConfig, IkeConfig
from ipseclab.ike.constants import ExchangeType, NotifyType
from ipseclab.ike.engine import IkeEngine
from ipseclab.ike.message import Message, parse_message
from ipseclab.ike.payloads import KeyExchange, Notify, SecurityAssociation
from ipseclab.ike.sk import SkCipher
from ipseclab.ipsec import esp
from ipseclab.ipsec.verdict import Status

DATA = Path(__file__).parent / "data"
I_ADDR, R_ADDR = "192.0.2.1", "192.0.2.2"


def configs(proposals: str = "aes128gcm16-prfsha256-x25519", *, r_proposals: str | None = None,
            esp_proposals: str = "aes128gcm16", psk_i: bytes = b"lab secret",
            psk_r: bytes = b"lab secret", i_ts: tuple = ("10.1.0.0/24", "10.2.0.0/16"),
            r_ts: tuple = ("10.2.0.0/24", "10.1.0.0/24"), mode: str = "tunnel"):
    initiator = IkeConfig(
        "site", local_addrs=[I_ADDR], remote_addrs=[R_ADDR], proposals=proposals,
        local_id="@moon.example", remote_id="@sun.example", psk=psk_i,
        children=[ChildConfig("net", local_ts=[i_ts[0]], remote_ts=[i_ts[1]], mode=mode,
                              esp_proposals=esp_proposals)])
    responder = IkeConfig(
        "site", local_addrs=[R_ADDR], remote_addrs=["%any"],
        proposals=r_proposals or proposals, local_id="@sun.example",
        remote_id="@moon.example", psk=psk_r,
        children=[ChildConfig("net", local_ts=[r_ts[0]], remote_ts=[r_ts[1]], mode=mode,
                              esp_proposals=esp_proposals)])
    return initiator, responder


def engines(ci: IkeConfig, cr: IkeConfig, **kw) -> tuple[IkeEngine, IkeEngine]:
    return (IkeEngine(ci, rng=random.Random(1).randbytes),
            IkeEngine(cr, rng=random.Random(2).randbytes, **kw))


def exchange(i: IkeEngine, r: IkeEngine, now: float = 0.0, rounds: int = 10) -> list:
    """Shuttle datagrams until both sides are quiet; return every datagram seen."""
    seen = []
    for _ in range(rounds):
        moved = False
        for data, src, dst in i.datagrams_to_send():
            seen.append(("i", data))
            r.receive_datagram(data, src, dst, now)
            moved = True
        for data, src, dst in r.datagrams_to_send():
            seen.append(("r", data))
            i.receive_datagram(data, src, dst, now)
            moved = True
        if not moved:
            break
    return seen


def drain(engine: IkeEngine) -> list[events.Event]:
    out = []
    while (event := engine.next_event()) is not None:
        out.append(event)
    return out


def of(evs: list, cls: type) -> list:
    return [e for e in evs if isinstance(e, cls)]


def establish(ci, cr, **kw):
    i, r = engines(ci, cr, **kw)
    i.initiate("site", 0.0)
    seen = exchange(i, r)
    return i, r, drain(i), drain(r), seen


def ping(src: str, dst: str) -> bytes:
    """A minimal IPv4 ICMP echo request (checksums are not checked by ESP)."""
    import ipaddress
    import struct

    payload = b"\x08\x00\x00\x00\x12\x34\x00\x01" + b"ipseclab" * 4
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, 1, 0,
                         ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed)
    return header + payload


# -- full negotiations --------------------------------------------------------------------

SUITES = [
    ("aes128gcm16-prfsha256-x25519", "aes128gcm16"),
    ("aes256-sha256-modp2048", "aes256-sha256"),
    ("chacha20poly1305-prfsha256-ecp256", "chacha20poly1305"),
    ("aes128-sha1-modp1024", "aes128-sha1"),
]


@pytest.mark.parametrize(("ike", "esp_proposal"), SUITES)
def test_handshake_and_child_sa_carry_traffic(ike: str, esp_proposal: str) -> None:
    ci, cr = configs(ike, esp_proposals=esp_proposal)
    i, r, ev_i, ev_r, seen = establish(ci, cr)
    assert not i.internal_errors and not r.internal_errors
    [ike_i], [ike_r] = of(ev_i, events.IkeSaEstablished), of(ev_r, events.IkeSaEstablished)
    assert ike_i.initiator and not ike_r.initiator
    assert ike_i.ike_sa == ike_r.ike_sa
    for key in ("sk_ei", "sk_er", "sk_ai", "sk_ar"):
        assert getattr(ike_i, key) == getattr(ike_r, key)
    assert ike_i.sk_ei != ike_i.sk_er
    assert ike_i.remote_id == "sun.example" and ike_r.remote_id == "moon.example"
    [child_i], [child_r] = of(ev_i, events.ChildSaEstablished), of(ev_r, events.ChildSaEstablished)
    assert child_i.outbound.spi == child_r.inbound.spi
    assert child_r.outbound.spi == child_i.inbound.spi
    assert child_i.outbound.encryption_key == child_r.inbound.encryption_key
    assert child_i.outbound.encryption_key != child_i.inbound.encryption_key
    # The responder narrowed 10.2.0.0/16 to its 10.2.0.0/24 (RFC 7296 §2.9).
    assert [str(ts) for ts in child_i.remote_ts] == ["10.2.0.0/24"]
    assert str(child_r.selectors[0]) == "10.2.0.0/24 === 10.1.0.0/24"
    # The child SAs work: moon -> sun and back, in tunnel mode.
    packet = ping("10.1.0.5", "10.2.0.7")
    wire = esp.encapsulate(child_i.outbound, packet)
    result = esp.decapsulate(child_r.inbound, wire)
    assert result.status is Status.OK and result.inner == packet
    back = ping("10.2.0.7", "10.1.0.5")
    result = esp.decapsulate(child_i.inbound, esp.encapsulate(child_r.outbound, back))
    assert result.status is Status.OK and result.inner == back
    # Four messages in all: IKE_SA_INIT and IKE_AUTH, nothing more.
    assert [who for who, _ in seen] == ["i", "r", "i", "r"]
    exchanges = [parse_message(d).exchange_type for _, d in seen]
    assert exchanges == [ExchangeType.IKE_SA_INIT] * 2 + [ExchangeType.IKE_AUTH] * 2


def test_keylog_entry_for_wireshark() -> None:
    ci, cr = configs("aes256-sha256-modp2048", esp_proposals="aes256-sha256")
    _, _, ev_i, _, _ = establish(ci, cr)
    entry = of(ev_i, events.IkeSaEstablished)[0].keylog_entry()
    assert entry.encryption == "AES-CBC-256 [RFC3602]"
    assert entry.integrity == "HMAC_SHA2_256_128 [RFC4868]"
    assert len(entry.sk_ei) == 32 and len(entry.sk_ai) == 32


def test_transport_mode() -> None:
    ci, cr = configs(mode="transport", i_ts=("dynamic", "dynamic"), r_ts=("dynamic", "dynamic"))
    _i, _r, ev_i, ev_r, _seen = establish(ci, cr)
    [child_i], [child_r] = of(ev_i, events.ChildSaEstablished), of(ev_r, events.ChildSaEstablished)
    assert child_i.mode == child_r.mode == "transport"
    assert str(child_i.selectors[0]) == f"{I_ADDR}/32 === {R_ADDR}/32"
    packet = ping(I_ADDR, R_ADDR)
    result = esp.decapsulate(child_r.inbound, esp.encapsulate(child_i.outbound, packet))
    assert result.status is Status.OK and result.inner[20:] == packet[20:]


# -- error paths --------------------------------------------------------------------------


def test_wrong_psk_fails_on_both_sides() -> None:
    i, r, ev_i, ev_r, _ = establish(*configs(psk_r=b"another secret"))
    assert of(ev_i, events.AuthenticationFailed) and of(ev_r, events.AuthenticationFailed)
    assert "AUTHENTICATION_FAILED" in of(ev_i, events.AuthenticationFailed)[0].reason
    assert not of(ev_i, events.IkeSaEstablished) and not of(ev_i, events.ChildSaEstablished)
    assert not of(ev_r, events.IkeSaEstablished)
    assert not i.ike_sas and not r.ike_sas


def test_disjoint_proposals() -> None:
    ci, cr = configs("aes128-sha256-modp2048", r_proposals="aes256gcm16-prfsha384-ecp384")
    _i, r, ev_i, _ev_r, seen = establish(ci, cr)
    [failed] = of(ev_i, events.NegotiationFailed)
    assert failed.notify == NotifyType.NO_PROPOSAL_CHOSEN and failed.by_peer
    assert not r.ike_sas  # the responder keeps no state for it
    assert len(seen) == 2


def test_disjoint_selectors_keep_the_ike_sa() -> None:
    ci, cr = configs(i_ts=("10.1.0.0/24", "10.9.0.0/24"))
    _i, _r, ev_i, ev_r, _ = establish(ci, cr)
    assert of(ev_i, events.IkeSaEstablished) and of(ev_r, events.IkeSaEstablished)
    [failed] = of(ev_i, events.ChildSaFailed)
    assert failed.notify == NotifyType.TS_UNACCEPTABLE
    assert not of(ev_i, events.ChildSaEstablished) and not of(ev_r, events.ChildSaEstablished)


def test_disjoint_esp_proposals() -> None:
    ci, cr = configs()
    cr.children[0] = ChildConfig("net", local_ts=["10.2.0.0/24"], remote_ts=["10.1.0.0/24"],
                                 esp_proposals="aes256-sha512")
    _, _, ev_i, _, _ = establish(ci, cr)
    assert of(ev_i, events.ChildSaFailed)[0].notify == NotifyType.NO_PROPOSAL_CHOSEN


def _with_ke(data: bytes, ke_data: bytes) -> bytes:
    message = parse_message(data)
    ke = message.find(KeyExchange)
    message.payloads[message.payloads.index(ke)] = KeyExchange(ke.group, ke_data)
    return message.to_bytes()


@pytest.mark.parametrize("which", ["one", "p-1"])
def test_invalid_modp_key_share_refused(which: str) -> None:
    ci, cr = configs("aes128-sha256-modp2048")
    i, r = engines(ci, cr)
    i.initiate("site", 0.0)
    [(data, src, dst)] = i.datagrams_to_send()
    group = dh_group("modp2048")
    value = 1 if which == "one" else group.p - 1
    r.receive_datagram(_with_ke(data, value.to_bytes(256, "big")), src, dst, 0.0)
    [(reply, _, _)] = r.datagrams_to_send()
    assert [n.notify_type for n in parse_message(reply).notifies()] == [NotifyType.INVALID_SYNTAX]
    assert not r.ike_sas and not r.internal_errors


def test_invalid_x25519_key_share_refused() -> None:
    i, r = engines(*configs())
    i.initiate("site", 0.0)
    [(data, src, dst)] = i.datagrams_to_send()
    r.receive_datagram(_with_ke(data, bytes(32)), src, dst, 0.0)  # the zero point
    [(reply, _, _)] = r.datagrams_to_send()
    assert parse_message(reply).notifies()[0].notify_type == NotifyType.INVALID_SYNTAX


def test_initiator_refuses_invalid_responder_key_share() -> None:
    i, r = engines(*configs("aes128-sha256-modp2048"))
    i.initiate("site", 0.0)
    for data, src, dst in i.datagrams_to_send():
        r.receive_datagram(data, src, dst, 0.0)
    [(reply, src, dst)] = r.datagrams_to_send()
    i.receive_datagram(_with_ke(reply, (1).to_bytes(256, "big")), src, dst, 0.0)
    [failed] = of(drain(i), events.NegotiationFailed)
    assert failed.notify == NotifyType.INVALID_SYNTAX and not i.datagrams_to_send()


def test_invalid_ke_payload_retry() -> None:
    ci, cr = configs("aes128-sha256-x25519-modp2048", r_proposals="aes128-sha256-modp2048")
    _i, _r, ev_i, _ev_r, seen = establish(ci, cr)
    assert of(ev_i, events.IkeSaEstablished) and of(ev_i, events.ChildSaEstablished)
    first_reply = parse_message(seen[1][1])
    assert first_reply.notifies()[0].notify_type == NotifyType.INVALID_KE_PAYLOAD
    assert first_reply.notifies()[0].accepted_group() == 14
    retry = parse_message(seen[2][1])
    assert retry.exchange_type == ExchangeType.IKE_SA_INIT and retry.message_id == 0
    assert retry.find(KeyExchange).group == 14
    assert "modp2048" in of(ev_i, events.IkeSaEstablished)[0].proposal


def test_cookie_flow() -> None:
    _i, _r, ev_i, ev_r, seen = establish(*configs(), cookie_threshold=0)
    cookie_reply = parse_message(seen[1][1])
    [cookie] = cookie_reply.notifies(NotifyType.COOKIE)
    assert cookie_reply.spi_r == bytes(8) and len(cookie_reply.payloads) == 1
    retry = parse_message(seen[2][1])
    assert retry.payloads[0] == cookie  # N(COOKIE) first (RFC 7296 §2.6)
    assert of(ev_i, events.ChildSaEstablished) and of(ev_r, events.ChildSaEstablished)


def test_wrong_cookie_is_answered_with_a_fresh_cookie_only() -> None:
    i, r = engines(*configs(), cookie_threshold=0)
    i.initiate("site", 0.0)
    [(data, src, dst)] = i.datagrams_to_send()
    message = parse_message(data)
    message.payloads.insert(0, Notify(NotifyType.COOKIE, b"\x00" + bytes(32)))
    r.receive_datagram(message.to_bytes(), src, dst, 0.0)
    [(reply, _, _)] = r.datagrams_to_send()
    assert parse_message(reply).find(SecurityAssociation) is None
    assert not r.ike_sas


# -- reliability -------------------------------------------------------------------------


def test_retransmission_and_duplicate_request() -> None:
    i, r = engines(*configs())
    i.initiate("site", 0.0)
    exchange(i, r, rounds=1)  # IKE_SA_INIT there and back; IKE_AUTH request now queued
    [(auth_request, src, dst)] = i.datagrams_to_send()  # ... and lost
    assert i.get_timer() == pytest.approx(1.0)
    i.handle_timer(0.5)
    assert i.datagrams_to_send() == []
    i.handle_timer(1.0)
    [(again, _, _)] = i.datagrams_to_send()
    assert again == auth_request
    assert i.get_timer() == pytest.approx(3.0)  # back-off doubles
    r.receive_datagram(again, src, dst, 1.1)
    [(response, _, _)] = r.datagrams_to_send()
    r.receive_datagram(again, src, dst, 1.2)  # a duplicate: answered from the cache
    [(cached, _, _)] = r.datagrams_to_send()
    assert cached == response
    assert len(of(drain(r), events.IkeSaEstablished)) == 1
    i.receive_datagram(response, dst, src, 1.3)
    i.receive_datagram(cached, dst, src, 1.3)  # the second copy is ignored
    assert len(of(drain(i), events.ChildSaEstablished)) == 1
    assert i.get_timer() > 3000  # no retransmission; only the child SA rekey timer


def test_duplicate_ike_sa_init_request() -> None:
    i, r = engines(*configs())
    i.initiate("site", 0.0)
    [(request, src, dst)] = i.datagrams_to_send()
    r.receive_datagram(request, src, dst, 0.0)
    r.receive_datagram(request, src, dst, 0.5)
    first, second = r.datagrams_to_send()
    assert first[0] == second[0] and len(r.ike_sas) == 1


def test_give_up_after_retransmissions() -> None:
    i, _ = engines(*configs())
    i.initiate("site", 0.0)
    sent = len(i.datagrams_to_send())
    while (timer := i.get_timer()) is not None:
        i.handle_timer(timer)
        sent += len(i.datagrams_to_send())
    assert sent == 6  # the request and five retransmissions
    evs = drain(i)
    assert of(evs, events.PeerUnreachable) and of(evs, events.IkeSaDeleted)
    assert not i.ike_sas


def test_half_open_sa_expires() -> None:
    i, r = engines(*configs())
    i.initiate("site", 0.0)
    for data, src, dst in i.datagrams_to_send():
        r.receive_datagram(data, src, dst, 0.0)
    assert r.half_open_count() == 1
    r.handle_timer(r.get_timer())
    assert r.half_open_count() == 0 and not r.ike_sas


# -- INFORMATIONAL --------------------------------------------------------------------------


def test_liveness_check_and_deletes() -> None:
    i, r, ev_i, _ev_r, _ = establish(*configs())
    name = of(ev_i, events.IkeSaEstablished)[0].ike_sa
    reqid = of(ev_i, events.ChildSaEstablished)[0].reqid
    assert i.check_liveness(name, 5.0)
    seen = exchange(i, r, 5.0)
    assert len(seen) == 2 and i.get_timer() > 3000  # answered: no retransmission
    assert i.delete_child_sa(reqid, 6.0)
    exchange(i, r, 6.0)
    [gone_i], [gone_r] = of(drain(i), events.ChildSaDeleted), of(drain(r), events.ChildSaDeleted)
    assert gone_i.spi_in == gone_r.spi_out and gone_r.by_peer
    assert r.delete_ike_sa(name, 7.0)
    exchange(i, r, 7.0)
    assert of(drain(i), events.IkeSaDeleted)[0].by_peer
    assert of(drain(r), events.IkeSaDeleted)
    assert not i.ike_sas and not r.ike_sas


def test_delete_ike_sa_reports_its_child_sas() -> None:
    i, r, ev_i, _, _ = establish(*configs())
    i.delete_ike_sa(of(ev_i, events.IkeSaEstablished)[0].ike_sa, 1.0)
    exchange(i, r, 1.0)
    ev_r = drain(r)
    assert of(ev_r, events.ChildSaDeleted) and of(ev_r, events.IkeSaDeleted)


def test_dpd_timer_sends_liveness_check() -> None:
    ci, cr = configs()
    ci.dpd_delay = 30.0
    i, _r, _, _, _ = establish(ci, cr)
    assert i.get_timer() == pytest.approx(30.0)
    i.handle_timer(30.0)
    [(data, _, _)] = i.datagrams_to_send()
    assert parse_message(data).exchange_type == ExchangeType.INFORMATIONAL


# -- the SK payload -------------------------------------------------------------------------


def _rfc7634_ike() -> dict:
    with open(DATA / "vectors" / "rfc7634_chacha20_poly1305_ipsec.json") as f:
        return next(v for v in json.load(f)["vectors"] if v["id"] == "ikev2_example")


def test_sk_rfc7634_appendix_b() -> None:
    vector = _rfc7634_ike()
    inputs, outputs = vector["inputs"], vector["outputs"]
    cipher = SkCipher(encryption("chacha20poly1305"),
                      bytes.fromhex(inputs["key"] + inputs["salt"]))
    notify = bytes.fromhex(inputs["notify_payload"])
    header = Message(bytes.fromhex(inputs["spi_i"]), bytes.fromhex(inputs["spi_r"]),
                     ExchangeType.INFORMATIONAL, 0, 9)
    sealed = cipher.seal(header, [Notify.parse(notify[4:])], iv=bytes.fromhex(inputs["iv"]))
    assert sealed.hex() == outputs["ike_message"]
    [opened] = cipher.open(sealed, parse_message(sealed))
    assert opened.notify_type == NotifyType.SET_WINDOW_SIZE and opened.data == bytes([0, 0, 0, 10])
    tampered = bytearray(sealed)
    tampered[20] ^= 1  # the Message ID is authenticated as AAD
    with pytest.raises(AuthenticationFailed):
        cipher.open(bytes(tampered), parse_message(bytes(tampered)))


@pytest.mark.parametrize(("enc", "integ"), [
    ("aes128", "sha1"), ("aes256", "sha256"), ("aes192", "sha384"), ("aes128", "sha512"),
    ("aes128gcm8", None), ("aes256gcm12", None), ("aes128gcm16", None),
    ("chacha20poly1305", None), ("aes128ctr", "sha256"), ("aes256ctr", "aesxcbc"),
    ("3des", "aescmac"), ("aes192ccm12", None),
])
def test_sk_round_trip_and_tamper(enc: str, integ: str | None) -> None:
    e = encryption(enc)
    a = integrity(integ) if integ else None
    key, akey = bytes(range(e.keymat_size)), bytes(range(a.key_size)) if a else b""
    sender = SkCipher(e, key, a, akey, rng=random.Random(3).randbytes)
    receiver = SkCipher(e, key, a, akey)
    header = Message(b"I" * 8, b"R" * 8, ExchangeType.INFORMATIONAL, 0x08, 2)
    inner = [Notify(NotifyType.INITIAL_CONTACT), Notify(NotifyType.SET_WINDOW_SIZE, b"\0\0\0\1")]
    sealed = sender.seal(header, inner)
    message = parse_message(sealed)
    body = message.payloads[-1].body
    icv = e.icv_size if e.aead else a.icv_size
    if not e.aead and not e.counter_iv:
        assert (len(body) - e.iv_size - icv) % e.block_size == 0
    assert receiver.open(sealed, message) == inner
    for position in (0, 18, 21, 40, len(sealed) - 1):
        broken = bytearray(sealed)
        broken[position] ^= 0x40
        with pytest.raises(AuthenticationFailed):
            receiver.open(bytes(broken), parse_message(bytes(broken)))


@pytest.mark.parametrize("padding", [0, 1, 2, 3, 5])
def test_aes_ctr_sk_plaintext_of_any_length_opens(padding: int) -> None:
    """AES-CTR in IKE (RFC 5930) needs no padding: strongSwan sends none, so the ciphertext
    can have any length, and a peer that pads anyway must be understood too."""
    e, a = encryption("aes128ctr"), integrity("sha256")
    key, akey = bytes(range(e.keymat_size)), bytes(range(a.key_size))
    header = Message(b"I" * 8, b"R" * 8, ExchangeType.INFORMATIONAL, 0x08, 2)
    inner = [Notify(NotifyType.INITIAL_CONTACT)]  # 8 octets: 8 + padding + 1 is odd or not
    sealed = SkCipher(e, key, a, akey).seal(header, inner, padding=padding)
    body = parse_message(sealed).payloads[-1].body
    assert len(body) - e.iv_size - a.icv_size == 8 + padding + 1
    assert SkCipher(e, key, a, akey).open(sealed, parse_message(sealed)) == inner


# -- strongSwan's messages and fuzzing -------------------------------------------------------


def _strongswan() -> list[dict]:
    with open(DATA / "ike" / "strongswan_5.9.8_capture.json") as f:
        return json.load(f)["messages"]


def test_answers_strongswan_ike_sa_init() -> None:
    request = bytes.fromhex(_strongswan()[0]["hex"])
    _, cr = configs("aes128gcm16-prfsha256-x25519")
    r = IkeEngine(cr, rng=random.Random(4).randbytes)
    r.receive_datagram(request, ("192.0.2.1", 500), (R_ADDR, 500), 0.0)
    [(reply, _, _)] = r.datagrams_to_send()
    message = parse_message(reply)
    [proposal] = message.find(SecurityAssociation).proposals
    assert proposal.number == 1  # the number of strongSwan's proposal we chose
    assert message.find(KeyExchange).group == 31
    assert message.spi_i == request[:8] and not r.internal_errors


def _real_messages() -> list[bytes]:
    ci, cr = configs("aes256-sha256-modp2048", esp_proposals="aes256-sha256")
    _, _, _, _, seen = establish(ci, cr)
    return [d for _, d in seen] + [bytes.fromhex(m["hex"]) for m in _strongswan()]


REAL = _real_messages()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(index=st.integers(0, len(REAL) - 1), cut=st.integers(0, 400),
       flips=st.lists(st.tuples(st.integers(0, 400), st.integers(1, 255)), max_size=4))
def test_mutated_messages_never_raise(index: int, cut: int, flips: list) -> None:
    data = bytearray(REAL[index])
    for position, mask in flips:
        if data:
            data[position % len(data)] ^= mask
    if cut % 3 == 0:
        data = data[:cut]
    ci, cr = configs("aes256-sha256-modp2048", esp_proposals="aes256-sha256")
    i, r = engines(ci, cr)
    i.initiate("site", 0.0)
    i.datagrams_to_send()
    for engine in (i, r):
        engine.receive_datagram(bytes(data), (I_ADDR, 500), (R_ADDR, 500), 0.0)
        engine.receive_datagram(bytes(data), (R_ADDR, 500), (I_ADDR, 500), 0.0)
        assert engine.internal_errors == []


def test_nat_detection_moves_to_port_4500_and_encapsulates() -> None:
    i, r = engines(*configs())
    i.initiate("site", 0.0)
    public = "203.0.113.9"
    ports = []
    for _ in range(3):
        for data, src, dst in i.datagrams_to_send():
            ports.append(src[1])
            # A NAT rewrites the source address and port.
            r.receive_datagram(data, (public, 40000 + src[1]), dst, 0.0)
        for data, src, dst in r.datagrams_to_send():
            assert dst[0] == public
            i.receive_datagram(data, (src[0], src[1]), (I_ADDR, ports[-1]), 0.0)
    assert ports == [500, 4500]  # IKE_AUTH went to port 4500 (RFC 7296 §2.23)
    ev_i, ev_r = drain(i), drain(r)
    assert of(ev_i, events.IkeSaEstablished)[0].nat_detected
    assert of(ev_r, events.IkeSaEstablished)[0].nat_detected
    [child_i], [child_r] = of(ev_i, events.ChildSaEstablished), of(ev_r, events.ChildSaEstablished)
    assert child_i.outbound.encap is not None and child_r.outbound.encap is not None
    assert child_r.outbound.encap.dport == 44500  # the NAT's mapping of port 4500


@pytest.mark.parametrize("side", ["initiator", "responder", "neither"])
def test_encap_yes_claims_a_nat_so_both_sides_use_udp(side: str) -> None:
    """swanctl's encap = yes: one side's NAT_DETECTION_SOURCE_IP hashes an address it does not
    have (RFC 7296 §2.23), the peer sees a NAT, IKE moves to 4500 and ESP goes in UDP."""
    import dataclasses

    ci, cr = configs()
    ci = dataclasses.replace(ci, encap=side == "initiator")
    cr = dataclasses.replace(cr, encap=side == "responder")
    *_, ev_i, ev_r, _ = establish(ci, cr)
    for evs in (ev_i, ev_r):
        (ike,) = of(evs, events.IkeSaEstablished)
        (child,) = of(evs, events.ChildSaEstablished)
        assert ike.nat_detected is (side != "neither")
        assert (child.inbound.encap is not None) is (side != "neither")
        assert (child.outbound.encap is not None) is (side != "neither")
    if side != "neither":
        assert of(ev_i, events.IkeSaEstablished)[0].local[1] == 4500


def test_a_second_ike_sa_to_the_same_peer_sends_no_initial_contact() -> None:
    """§2.4: INITIAL_CONTACT says "I have no other IKE SA with you"; a second IKE SA to a
    peer we are in contact with must not send it, or the peer would drop the first."""
    ci, cr = configs()
    i = IkeEngine(ci, rng=random.Random(1).randbytes)
    r = IkeEngine(cr, rng=random.Random(2).randbytes)
    i.initiate("site", 0.0)
    exchange(i, r, 0.0)
    (first,) = of(drain(r), events.IkeSaEstablished)
    i.initiate("site", 1.0)
    exchange(i, r, 1.0)
    later = drain(r)
    assert len(of(later, events.IkeSaEstablished)) == 1
    assert not of(later, events.IkeSaDeleted)  # the first IKE SA lives on
    assert first.ike_sa in {sa.name for sa in r.ike_sas} and len(r.ike_sas) == 2


def test_unique_keep_refuses_a_second_address_but_not_a_reauthentication() -> None:
    """``unique = keep``: moon at .3 is refused while moon at .1 has an IKE SA (even with
    INITIAL_CONTACT); moon at .1 reauthenticating itself is not (§2.8.3)."""
    import dataclasses

    ci, cr = configs()
    cr = dataclasses.replace(cr, unique="keep")
    r = IkeEngine(cr, rng=random.Random(2).randbytes)
    first = IkeEngine(ci, rng=random.Random(1).randbytes)
    second = IkeEngine(dataclasses.replace(ci, local_addrs=["192.0.2.3"]),
                       rng=random.Random(3).randbytes)
    peers = {I_ADDR: first, "192.0.2.3": second}

    def run(now: float) -> None:
        for _ in range(10):
            out = [(r, d) for e in peers.values() for d in e.datagrams_to_send()]
            out += [(peers[d[2][0]], d) for d in r.datagrams_to_send()]
            if not out:
                return
            for receiver, (data, src, dst) in out:
                receiver.receive_datagram(data, src, dst, now)

    first.initiate("site", 0.0)
    run(0.0)
    (kept,) = of(drain(r), events.IkeSaEstablished)
    second.initiate("site", 1.0)
    run(1.0)
    (refused,) = of(drain(r), events.AuthenticationFailed)
    assert "unique = keep" in refused.reason and kept.ike_sa in refused.reason
    assert of(drain(second), events.AuthenticationFailed)[0].by_peer
    assert [sa.name for sa in r.ike_sas] == [kept.ike_sa]
    assert first.reauthenticate_ike_sa("site", 2.0)
    run(2.0)
    later = drain(r)
    (new,) = of(later, events.IkeSaEstablished)
    assert [e.ike_sa for e in of(later, events.IkeSaDeleted)] == [kept.ike_sa]
    assert [sa.name for sa in r.ike_sas] == [new.ike_sa]


@pytest.mark.parametrize(("unique", "initial_contact", "old_survives", "peer_told"), [
    ("no", True, False, False),  # §2.4: the peer says it has no other SA: drop it silently
    ("no", False, True, False),  # two IKE SAs with the same identity may coexist
    ("never", True, True, False),  # even INITIAL_CONTACT is ignored
    ("replace", False, False, True),  # the older one goes, with a Delete to its peer
])
def test_unique_policy(unique: str, initial_contact: bool, old_survives: bool,
                       peer_told: bool) -> None:
    """Two initiators with one identity (moon at .1, then at .3) reach the same responder."""
    import dataclasses

    ci, cr = configs()
    ci = dataclasses.replace(ci, send_initial_contact=initial_contact)
    cr = dataclasses.replace(cr, unique=unique)
    second = dataclasses.replace(ci, local_addrs=["192.0.2.3"])
    r = IkeEngine(cr, rng=random.Random(2).randbytes)
    peers = {I_ADDR: IkeEngine(ci, rng=random.Random(1).randbytes),
             "192.0.2.3": IkeEngine(second, rng=random.Random(3).randbytes)}

    def run() -> None:
        for _ in range(10):
            moved = False
            for engine in peers.values():
                for data, src, dst in engine.datagrams_to_send():
                    r.receive_datagram(data, src, dst, 0.0)
                    moved = True
            for data, src, dst in r.datagrams_to_send():
                peers[dst[0]].receive_datagram(data, src, dst, 0.0)
                moved = True
            if not moved:
                return

    peers[I_ADDR].initiate("site", 0.0)
    run()
    (first,) = of(drain(r), events.IkeSaEstablished)
    peers["192.0.2.3"].initiate("site", 0.0)
    run()
    later = drain(r)
    assert len(of(later, events.IkeSaEstablished)) == 1
    deleted = [e.ike_sa for e in of(later, events.IkeSaDeleted)]
    assert (first.ike_sa not in deleted) is old_survives
    told = of(drain(peers[I_ADDR]), events.IkeSaDeleted)
    assert bool(told) is peer_told


# -- childless IKE SAs (RFC 6023) -------------------------------------------------------------


def test_childless_force_makes_the_first_child_sa_by_create_child_sa() -> None:
    """The responder announces CHILDLESS_IKEV2_SUPPORTED; ``childless = force`` then sends
    IKE_AUTH without SA/TSi/TSr and asks for the child SA in CREATE_CHILD_SA, with its own
    DH exchange when the ESP proposals name a group (the reason to want it)."""
    import dataclasses

    ci, cr = configs(esp_proposals="aes128gcm16-x25519")
    ci = dataclasses.replace(ci, childless="force")
    _, _, ev_i, ev_r, seen = establish(ci, cr)
    exchanges = [(who, parse_message(d).exchange_type.name) for who, d in seen]
    assert exchanges == [("i", "IKE_SA_INIT"), ("r", "IKE_SA_INIT"), ("i", "IKE_AUTH"),
                         ("r", "IKE_AUTH"), ("i", "CREATE_CHILD_SA"), ("r", "CREATE_CHILD_SA")]
    init_response = parse_message(seen[1][1])
    assert init_response.notifies(NotifyType.CHILDLESS_IKEV2_SUPPORTED)
    (child_i,), (child_r,) = of(ev_i, events.ChildSaEstablished), of(ev_r,
                                                                     events.ChildSaEstablished)
    assert child_i.outbound.encryption_key == child_r.inbound.encryption_key
    assert child_i.proposal == "aes128gcm16-x25519"  # PFS: a KE in the CREATE_CHILD_SA
    assert not of(ev_i, events.ChildSaFailed) and not of(ev_r, events.ChildSaFailed)


def test_childless_force_needs_the_responders_announcement() -> None:
    import dataclasses

    ci, cr = configs()
    ci, cr = dataclasses.replace(ci, childless="force"), dataclasses.replace(cr, childless="never")
    i, _, ev_i, _, seen = establish(ci, cr)
    assert not parse_message(seen[1][1]).notifies(NotifyType.CHILDLESS_IKEV2_SUPPORTED)
    (failed,) = of(ev_i, events.NegotiationFailed)
    assert "does not announce childless IKE SAs" in failed.reason
    assert not i.ike_sas


def test_childless_never_refuses_an_ike_auth_without_a_child_sa() -> None:
    import dataclasses

    ci, cr = configs()
    ci = dataclasses.replace(ci, children=[])  # initiated without children: childless
    cr = dataclasses.replace(cr, childless="never")
    _, r, ev_i, ev_r, _ = establish(ci, cr)
    (failed,) = of(ev_r, events.NegotiationFailed)
    assert failed.notify == NotifyType.INVALID_SYNTAX and "childless = never" in failed.reason
    assert not r.ike_sas and not of(ev_i, events.IkeSaEstablished)
    # the same with childless = allow: an IKE SA without child SAs
    ci, cr = configs()
    _, _, ev_i, _, _ = establish(dataclasses.replace(ci, children=[]), cr)
    assert of(ev_i, events.IkeSaEstablished) and not of(ev_i, events.ChildSaEstablished)
