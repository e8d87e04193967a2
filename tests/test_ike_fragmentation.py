"""IKE message fragmentation (RFC 7383) between two in-memory engines.

RSA-3072 certificates make IKE_AUTH larger than one 1280-octet datagram, so it goes as SKF
fragments. The wire between the engines is a function here, so fragments can be reordered,
duplicated, lost and forged; the reassembly limits are tried with small fragment sizes.
"""

from __future__ import annotations

import datetime
import random
import textwrap

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ipseclab.config.swanctl import load_swanctl
from ipseclab.crypto import transforms
from ipseclab.ike import testpki
from ipseclab.ike.certs import load_certificate, load_private_key
from ipseclab.ike.config import ChildConfig, IkeConfig
from ipseclab.ike.constants import ExchangeType, NotifyType, PayloadType
from ipseclab.ike.engine import IkeEngine
from ipseclab.ike.fragments import FragmentLimits, Reassembly, max_message_size
from ipseclab.ike.message import Message, build_payload_chain, parse_message
from ipseclab.ike.payload_base import MalformedMessage
from ipseclab.ike.payloads import EncryptedFragment, Nonce, Notify, VendorId
from ipseclab.ike.sk import SkCipher

NOW = datetime.datetime(2025, 6, 1, tzinfo=datetime.UTC).timestamp()
MOON, SUN = "192.0.2.1", "198.51.100.1"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    hosts = (testpki.DEFAULT_HOSTS[0],  # moon, RSA-3072
             testpki.HostSpec("sun", "rsa3072", "C=CH, O=ipseclab, CN=sun.ipseclab.test",
                              ("sun.ipseclab.test", SUN)))
    return testpki.make_lab_pki(tmp_path_factory.mktemp("pki"), hosts)  # CA RSA-3072 too


def conn(pki, stem, local, remote, *, initiator, proposals="aes128gcm16-prfsha256-x25519",
         **kw):
    cert = load_certificate(pki.certs[stem])
    return IkeConfig(
        "c", local_addrs=[local], remote_addrs=[remote] if initiator else ["%any"],
        proposals=proposals, local_auth="pubkey", remote_auth="pubkey",
        local_certs=[cert], private_key=load_private_key(pki.keys[stem]),
        remote_cacerts=[pki.ca_cert],
        children=[ChildConfig("net", local_ts=["10.1.0.0/24" if initiator else "10.2.0.0/24"],
                              remote_ts=["10.2.0.0/24" if initiator else "10.1.0.0/24"],
                              esp_proposals="aes128gcm16")], **kw)


def engines(pki, *, ci=None, cr=None, i_kw=None, r_kw=None, **conn_kw):
    ci = ci or conn(pki, "moon", MOON, SUN, initiator=True, **conn_kw)
    cr = cr or conn(pki, "sun", SUN, MOON, initiator=False, **conn_kw)
    i = IkeEngine(ci, rng=random.Random(1).randbytes, **(i_kw or {}))
    r = IkeEngine(cr, rng=random.Random(2).randbytes, **(r_kw or {}))
    return i, r


def pump(i, r, now=NOW, *, to_r=None, to_i=None, log=None, rounds=12):
    """Move datagrams both ways; ``to_r``/``to_i`` rewrite each batch (list of datagrams)."""
    for _ in range(rounds):
        moved = False
        for engine, peer, rewrite in ((i, r, to_r), (r, i, to_i)):
            batch = engine.datagrams_to_send()
            if log is not None:
                log += [d for d, _, _ in batch]
            if rewrite is not None:
                batch = rewrite(batch)
            for data, src, dst in batch:
                peer.receive_datagram(data, src, dst, now)
                moved = True
        if not moved:
            return


def kinds(engine):
    out = []
    while (event := engine.next_event()) is not None:
        out.append(type(event).__name__)
    return out


def is_fragment(data):
    msg = parse_message(data)
    return bool(msg.payloads) and isinstance(msg.payloads[-1], EncryptedFragment)


def up(i, r):
    ki, kr = kinds(i), kinds(r)
    assert not i.internal_errors and not r.internal_errors
    return "ChildSaEstablished" in ki and "ChildSaEstablished" in kr


def auth_batches(batch, exchange=ExchangeType.IKE_AUTH):
    return [d for d in batch if parse_message(d[0]).exchange_type == exchange]


# -- negotiation and sending ----------------------------------------------------------------


@pytest.mark.parametrize("proposals", ["aes128gcm16-prfsha256-x25519",
                                       "aes256-sha256-modp2048"])
def test_ike_auth_goes_as_fragments(pki, proposals):
    i, r = engines(pki, proposals=proposals)
    i.initiate("c", NOW)
    log: list[bytes] = []
    pump(i, r, log=log)
    assert up(i, r)
    init = [parse_message(d) for d in log if parse_message(d).exchange_type
            == ExchangeType.IKE_SA_INIT]
    assert len(init) == 2
    for msg in init:  # announced both ways (§2.3), never fragmented itself
        assert msg.notifies(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED)
        assert not isinstance(msg.payloads[-1], EncryptedFragment)
    auth = [d for d in log if parse_message(d).exchange_type == ExchangeType.IKE_AUTH]
    assert auth and all(is_fragment(d) for d in auth)
    limit = max_message_size(1280, (MOON, 500), (SUN, 500))
    assert limit == 1252 and all(len(d) <= limit for d in auth)
    requests = [parse_message(d) for d in auth if not parse_message(d).is_response]
    assert len(requests) >= 2 and {m.message_id for m in requests} == {1}
    frags = [m.payloads[-1] for m in requests]
    assert [f.fragment_number for f in frags] == list(range(1, len(frags) + 1))
    assert {f.total_fragments for f in frags} == {len(frags)}
    assert frags[0].first_inner == PayloadType.IDi and all(f.first_inner == 0
                                                           for f in frags[1:])
    responses = [parse_message(d) for d in auth if parse_message(d).is_response]
    assert len(responses) >= 2
    assert i.ike_sas[0].peer_fragmentation and r.ike_sas[0].peer_fragmentation


def test_fragment_size_is_configurable(pki):
    i, r = engines(pki, i_kw={"fragment_size": 576}, r_kw={"fragment_size": 800})
    i.initiate("c", NOW)
    log: list[bytes] = []
    pump(i, r, log=log)
    assert up(i, r)
    auth = [parse_message(d) for d in log if parse_message(d).exchange_type
            == ExchangeType.IKE_AUTH]
    sizes = {m.is_response: max(len(d) for d in log if parse_message(d).is_response
                                == m.is_response and parse_message(d).exchange_type
                                == ExchangeType.IKE_AUTH) for m in auth}
    assert sizes[False] <= 576 - 28 and sizes[True] <= 800 - 28
    assert sum(not m.is_response for m in auth) > sum(m.is_response for m in auth)


@pytest.mark.parametrize("mode_i,mode_r,i_sends,r_sends", [
    ("accept", "yes", False, True),
    ("yes", "accept", True, False),
    ("force", "yes", True, True),
    ("no", "yes", False, False),
    ("yes", "no", False, False),
])
def test_fragmentation_modes(pki, mode_i, mode_r, i_sends, r_sends):
    ci = conn(pki, "moon", MOON, SUN, initiator=True, fragmentation=mode_i)
    cr = conn(pki, "sun", SUN, MOON, initiator=False, fragmentation=mode_r)
    i, r = engines(pki, ci=ci, cr=cr)
    i.initiate("c", NOW)
    log: list[bytes] = []
    pump(i, r, log=log)
    assert up(i, r)
    init_response = next(parse_message(d) for d in log if parse_message(d).is_response)
    assert bool(init_response.notifies(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED)) == (
        "no" not in (mode_i, mode_r))
    auth = [parse_message(d) for d in log if parse_message(d).exchange_type
            == ExchangeType.IKE_AUTH]
    sent = {resp: any(isinstance(m.payloads[-1], EncryptedFragment)
                      for m in auth if m.is_response == resp) for resp in (False, True)}
    assert sent == {False: i_sends, True: r_sends}


def test_small_messages_stay_whole(pki):
    """INFORMATIONAL after the handshake fits one datagram: SK, not SKF (§2.5)."""
    i, r = engines(pki)
    i.initiate("c", NOW)
    pump(i, r)
    assert up(i, r)
    i.check_liveness(i.ike_sas[0].name, NOW + 1)
    log: list[bytes] = []
    pump(i, r, NOW + 1, log=log)
    assert len(log) == 2 and not any(is_fragment(d) for d in log)


def test_bad_fragmentation_setting_is_a_config_error(pki):
    from ipseclab.errors import ConfigError

    with pytest.raises(ConfigError, match="fragmentation"):
        conn(pki, "moon", MOON, SUN, initiator=True, fragmentation="maybe")


def test_swanctl_fragmentation_is_mapped(tmp_path):
    conf = tmp_path / "swanctl.conf"
    conf.write_text(textwrap.dedent("""\
        connections {
          gw {
            remote_addrs = 192.0.2.2
            fragmentation = accept
            local { auth = psk }
            remote { auth = psk }
          }
          other {
            remote_addrs = 192.0.2.3
            local { auth = psk }
            remote { auth = psk }
          }
        }
        secrets { ike-1 { secret = 0sc2VjcmV0c2VjcmV0 } }
    """))
    loaded = load_swanctl(conf)
    by_name = loaded.connections
    assert by_name["gw"].fragmentation == "accept"
    assert by_name["other"].fragmentation == "yes"
    assert not any("fragmentation" in w for w in loaded.warnings)


# -- reassembly on the wire ------------------------------------------------------------------


def test_reordered_and_duplicated_fragments(pki):
    i, r = engines(pki, i_kw={"fragment_size": 600}, r_kw={"fragment_size": 600})

    def shuffle(batch):
        auth = auth_batches(batch)
        if len(auth) < 3:
            return batch
        rest = [d for d in batch if d not in auth]
        out = []
        for d in reversed(auth):  # last fragment first; all but fragment 1 twice
            out += [d, d] if d is not auth[0] else [d]
        return rest + out

    i.initiate("c", NOW)
    pump(i, r, to_r=shuffle, to_i=shuffle)
    assert up(i, r)
    n_request = max_message_size(600, (MOON, 500), (SUN, 500))
    assert r.ike_sas[0]._reassembly[False].dropped >= 2  # the duplicates
    assert i.ike_sas[0]._reassembly[True].dropped >= 2
    assert n_request == 572


def test_lost_request_fragment_is_recovered_by_retransmission(pki):
    i, r = engines(pki)
    lost = []

    def drop_second(batch):
        auth = auth_batches(batch)
        if auth and not lost:
            lost.append(auth[1])
            return [d for d in batch if d is not auth[1]]
        return batch

    i.initiate("c", NOW)
    pump(i, r, to_r=drop_second)
    assert lost and not any(s.state == "established" for s in r.ike_sas)
    timer = i.get_timer()
    assert timer is not None and timer <= NOW + 1.0
    i.handle_timer(timer)  # §2.6.1: every fragment again
    resent = i.datagrams_to_send()
    assert len(resent) >= 2 and all(is_fragment(d) for d, _, _ in resent)
    assert lost[0][0] in [d for d, _, _ in resent]  # the same bytes, as §2.1 wants
    for data, src, dst in resent:
        r.receive_datagram(data, src, dst, timer)
    pump(i, r, timer)
    assert up(i, r)


def test_lost_response_fragment_resend_on_fragment_one_only(pki):
    i, r = engines(pki)
    state = {"dropped": False}

    def drop_response_fragment(batch):
        auth = auth_batches(batch)
        if auth and not state["dropped"]:
            state["dropped"] = True
            return [d for d in batch if d is not auth[-1]]
        return batch

    i.initiate("c", NOW)
    pump(i, r, to_i=drop_response_fragment)
    assert state["dropped"] and not any(s.state == "established" for s in i.ike_sas)
    timer = i.get_timer()
    i.handle_timer(timer)
    request = i.datagrams_to_send()
    assert len(request) >= 2
    first, *others = request
    for data, src, dst in others:  # fragments 2..n of an answered request: ignored
        r.receive_datagram(data, src, dst, timer)
    assert r.datagrams_to_send() == []
    r.receive_datagram(first[0], first[1], first[2], timer)  # fragment 1: the response again
    response = r.datagrams_to_send()
    assert len(response) >= 2 and all(is_fragment(d) for d, _, _ in response)
    for data, src, dst in response:
        i.receive_datagram(data, src, dst, timer)
    assert up(i, r)


def test_forged_fragment_is_ignored(pki):
    i, r = engines(pki)

    def forge(batch):
        auth = auth_batches(batch)
        if len(auth) < 2:
            return batch
        data, src, dst = auth[1]
        forged = data[:-5] + bytes([data[-5] ^ 1]) + data[-4:]
        rest = [d for d in batch if d not in auth]
        return [*rest, auth[0], (forged, src, dst), *auth[1:]]

    i.initiate("c", NOW)
    pump(i, r, to_r=forge, to_i=forge)
    assert up(i, r)  # the forgery was not kept as fragment 2, so the real one completed
    assert not i.internal_errors and not r.internal_errors


def test_too_many_fragments_are_refused(pki):
    i, r = engines(pki, i_kw={"fragment_size": 400},
                   r_kw={"fragment_limits": FragmentLimits(max_fragments=3)})
    log: list[bytes] = []
    i.initiate("c", NOW)
    pump(i, r, log=log)
    requests = [parse_message(d) for d in log if parse_message(d).exchange_type
                == ExchangeType.IKE_AUTH and not parse_message(d).is_response]
    assert requests[0].payloads[-1].total_fragments > 3
    assert not any(s.state == "established" for s in r.ike_sas)
    sa = r.ike_sas[0]
    assert not sa._reassembly[False].pending and sa._reassembly[False].dropped == len(requests)
    assert not r.internal_errors


def test_too_many_bytes_are_refused(pki):
    i, r = engines(pki, r_kw={"fragment_limits": FragmentLimits(max_bytes=1000)})
    i.initiate("c", NOW)
    pump(i, r)
    assert not any(s.state == "established" for s in r.ike_sas)
    assert r.ike_sas[0]._reassembly[False].dropped >= 1  # the set went when it grew too big


def test_incomplete_set_expires(pki):
    i, r = engines(pki, r_kw={"fragment_limits": FragmentLimits(timeout=5.0)})
    i.initiate("c", NOW)
    held = []

    def hold_last(batch):
        auth = auth_batches(batch)
        if auth:
            held.append(auth[-1])
            return [d for d in batch if d is not auth[-1]]
        return batch

    pump(i, r, to_r=hold_last)
    sa = r.ike_sas[0]
    assert held and sa._reassembly[False].pending
    assert r.get_timer() == pytest.approx(NOW + 5.0)
    r.handle_timer(NOW + 5.0)
    assert not sa._reassembly[False].pending
    data, src, dst = held[0]
    r.receive_datagram(data, src, dst, NOW + 6)  # the last one alone completes nothing
    assert r.datagrams_to_send() == [] and sa._reassembly[False].pending


def test_fragments_in_ike_sa_init_are_dropped(pki):
    i, r = engines(pki)
    i.initiate("c", NOW)
    pump(i, r, rounds=1)  # IKE_SA_INIT request answered
    sa = i.ike_sas[0]
    from ipseclab.ike.constants import HeaderFlag

    header = Message(sa.spi_i, r.ike_sas[0].spi_r, ExchangeType.IKE_SA_INIT, HeaderFlag.R, 0)
    fake = r.ike_sas[0].sk_out.seal_fragments(header, [Nonce(bytes(32))], 1200)
    before = sa.state
    for data in fake:
        i.receive_datagram(data, (SUN, 500), (MOON, 500), NOW)
    assert sa.state == before and not i.internal_errors


# -- the Reassembly object and the cipher on their own -----------------------------------------


def test_reassembly_rules():
    re = Reassembly(FragmentLimits(max_fragments=8, max_bytes=100, timeout=10))
    assert re.add(5, 1, 3, 35, b"aa", 0) is None
    assert re.add(5, 1, 3, 35, b"aa", 0) is None and re.dropped == 1  # duplicate
    assert re.add(5, 2, 2, 0, b"xx", 0) is None and re.dropped == 2  # smaller total: old
    assert re.add(5, 3, 3, 0, b"cc", 1) is None
    assert re.add(5, 2, 3, 0, b"bb", 2) == (35, b"aabbcc")
    assert not re.pending
    assert re.add(6, 1, 2, 41, b"a", 0) is None
    assert re.add(6, 2, 4, 0, b"b", 0) is None  # larger total: start over (§2.6)
    for n, part in ((1, b"A"), (3, b"C"), (4, b"D")):
        done = re.add(6, n, 4, 41 if n == 1 else 0, part, 0)
    assert done == (41, b"AbCD")
    assert re.add(7, 1, 9, 41, b"a", 0) is None and not re.pending  # over max_fragments
    assert re.add(8, 1, 2, 41, bytes(60), 0) is None
    assert re.add(8, 2, 2, 0, bytes(60), 0) is None and not re.pending  # over max_bytes
    assert re.add(9, 1, 2, 41, b"a", 0) is None
    assert re.add(9, 2, 2, 0, b"b", 11) is None and re.pending  # the first one expired
    with pytest.raises(MalformedMessage):
        re.add(9, 3, 2, 0, b"b", 11)


@pytest.mark.parametrize("keyword,integrity", [("aes128gcm16", None), ("aes256", "sha256"),
                                               ("aes128", "sha1")])
@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=st.integers(0, 5000), limit=st.integers(300, 1500), seed=st.integers(0, 2**32))
def test_fragments_round_trip(keyword, integrity, size, limit, seed):
    out, inn = _pair(keyword, integrity)
    inner = [VendorId(random.Random(seed).randbytes(size))] if size else [Nonce(b"n" * 16)]
    header = Message(bytes(range(8)), bytes(range(8, 16)), ExchangeType.IKE_AUTH, 0x08, 1)
    datagrams = out.seal_fragments(header, inner, limit)
    assert all(len(d) <= limit for d in datagrams)
    re = Reassembly()
    done = None
    for data in reversed(datagrams):
        msg = parse_message(data)
        skf = msg.payloads[-1]
        done = re.add(1, skf.fragment_number, skf.total_fragments, skf.first_inner,
                      inn.open_fragment(data, msg), 0) or done
    assert done == build_payload_chain(inner)


def _pair(keyword, integrity):
    enc = transforms.ENCRYPTION[keyword]
    integ = transforms.INTEGRITY[integrity] if integrity else None
    rng = random.Random(7)
    key = rng.randbytes(enc.keymat_size)
    ikey = rng.randbytes(integ.key_size) if integ else b""
    return SkCipher(enc, key, integ, ikey), SkCipher(enc, key, integ, ikey)


# -- fuzzing: nothing a peer sends raises ------------------------------------------------------


@pytest.fixture(scope="module")
def live(pki):
    i, r = engines(pki)
    i.initiate("c", NOW)
    pump(i, r)
    assert up(i, r)
    return i, r


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(number=st.integers(0, 70000), total=st.integers(0, 70000),
       message_id=st.sampled_from([0, 1, 2, 0xFFFFFFFF]), response=st.booleans(),
       first=st.integers(0, 255), body=st.binary(max_size=300),
       exchange=st.sampled_from([34, 35, 36, 37, 99]))
def test_fuzzed_skf_never_raises(live, number, total, message_id, response, first, body,
                                 exchange):
    _, r = live
    sa = r.ike_sas[0]
    flags = 0x08 | (0x20 if response else 0)
    skf = (number & 0xFFFF).to_bytes(2, "big") + (total & 0xFFFF).to_bytes(2, "big") + body
    payload = bytes([first, 0]) + (4 + len(skf)).to_bytes(2, "big") + skf
    data = (sa.spi_i + sa.spi_r + bytes([PayloadType.SKF, 0x20, exchange, flags])
            + message_id.to_bytes(4, "big") + (28 + len(payload)).to_bytes(4, "big") + payload)
    r.receive_datagram(data, (MOON, 500), (SUN, 500), NOW + 2)
    r.datagrams_to_send()
    assert not r.internal_errors
    assert sa.state == "established"


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(position=st.integers(0, 2000), value=st.integers(1, 255), data=st.data())
def test_mutated_real_fragments_never_raise(pki, live, position, value, data):
    i, r = live
    sa_i, sa_r = i.ike_sas[0], r.ike_sas[0]
    header = Message(sa_i.spi_i, sa_i.spi_r, ExchangeType.INFORMATIONAL, 0x08,
                     sa_r.expected_request_id)  # in the window: fragments are collected
    frags = sa_i.sk_out.seal_fragments(header, [Notify(NotifyType.INITIAL_CONTACT),
                                                VendorId(bytes(2000))], 600)
    victim = data.draw(st.integers(0, len(frags) - 1))
    raw = bytearray(frags[victim])
    raw[position % len(raw)] ^= value
    r.receive_datagram(bytes(raw), (MOON, 500), (SUN, 500), NOW + 3)
    r.datagrams_to_send()
    assert not r.internal_errors and sa_r.state == "established"


# -- the decoder names and reassembles fragments ------------------------------------------------


@pytest.mark.parametrize("proposals", ["aes128gcm16-prfsha256-x25519",
                                       "aes256-sha256-modp2048"])
def test_decoder_reassembles_fragments(pki, proposals):
    from ipseclab.capture.ike_decode import IkeKeys, view_message
    from ipseclab.ike import events
    from ipseclab.keylog import IkeSaEntry

    i, r = engines(pki, proposals=proposals)
    i.initiate("c", NOW)
    log: list[bytes] = []
    pump(i, r, log=log)
    ev = next(e for e in iter(i.next_event, None) if isinstance(e, events.IkeSaEstablished))
    keys = IkeKeys([IkeSaEntry(ev.spi_i, ev.spi_r, ev.sk_ei, ev.sk_er, ev.encryption_name,
                               ev.sk_ai, ev.sk_ar, ev.integrity_name)])
    views = [view_message(d, keys) for d in log]
    auth = [v for v in views if v.exchange == "IKE_AUTH"]
    assert all(v.fragment is not None and v.status == "ok" for v in auth)
    whole = [v for v in auth if v.inner is not None]
    assert len(whole) == 2  # one request, one response, each on its last fragment
    request = next(v for v in whole if not v.response)
    n = request.fragment[1]
    assert request.payloads == [f"SKF({request.fragment[0]}/{n})"]
    assert {"IDi", "CERT", "AUTH", "SA", "TSi", "TSr"} <= set(request.inner)
    assert request.shown_payloads[0].startswith(f"SKF({n}/{n}){{IDi, CERT")
    assert "fragment 1 of" in next(v for v in auth if v.inner is None).detail
    unkeyed = view_message(log[2])
    assert unkeyed.status == "no_sa" and unkeyed.fragment == (1, n)
