"""IKE_AUTH with X.509 certificates, mixed PSK/pubkey, and virtual IPs from a pool.

In-memory handshakes (an initiator engine talking to a responder engine) with the lab PKI of
:mod:`ipseclab.ike.testpki`: RSA and ECDSA with RFC 7427 signatures (method 14) and the
classic methods 1 and 9; DN, FQDN and RFC822 identities against the certificate's subject and
subjectAltNames; untrusted, expired and mismatching certificates; AUTHENTICATION_FAILED from
the initiator in an INFORMATIONAL (RFC 7296 §2.21.2); INVALID_IKE_SPI (§2.21.4); the
configuration payload (§2.19) with leases from a pool; a swanctl.conf with certificates.
"""

from __future__ import annotations

import datetime
import random
import textwrap

import pytest

from ipseclab.config.swanctl import load_swanctl
from ipseclab.ike import events, negotiation, testpki
from ipseclab.ike.config import AddressPool, ChildConfig, IkeConfig
from ipseclab.ike.constants import AuthMethod, ExchangeType, HeaderFlag, IdType, NotifyType
from ipseclab.ike.engine import IkeEngine
from ipseclab.ike.message import Message, parse_message
from ipseclab.ike.payloads import IDi, Notify

NOW = datetime.datetime(2025, 6, 1, tzinfo=datetime.UTC).timestamp()
MOON, SUN, CAROL, DAVE = "192.0.2.1", "198.51.100.1", "203.0.113.5", "203.0.113.6"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    hosts = (*testpki.DEFAULT_HOSTS[1:],
             testpki.HostSpec("moon", "rsa2048", "C=CH, O=ipseclab, CN=moon.ipseclab.test",
                              ("moon.ipseclab.test", "192.0.2.1")),
             testpki.HostSpec("dave", "ecdsa256", "C=CH, O=ipseclab, CN=dave@ipseclab.test",
                              ("dave@ipseclab.test",)))
    return testpki.make_lab_pki(tmp_path_factory.mktemp("pki"), hosts, ca_key="rsa2048")


def creds(pki, stem):
    from ipseclab.ike.certs import load_certificate, load_private_key

    return load_certificate(pki.certs[stem]), load_private_key(pki.keys[stem])


def conn(pki, stem, local, remote, *, initiator, local_id="", remote_id="%any",
         local_ts="10.1.0.0/24", remote_ts="10.2.0.0/24", **kw):
    cert, key = creds(pki, stem)
    args = dict(local_certs=[cert], private_key=key, remote_cacerts=[pki.ca_cert])
    args.update(kw)
    return IkeConfig(
        "c", local_addrs=[local], remote_addrs=[remote] if initiator else ["%any"],
        proposals="aes128gcm16-prfsha256-x25519", local_id=local_id, remote_id=remote_id,
        local_auth=args.pop("local_auth", "pubkey"), remote_auth=args.pop("remote_auth",
                                                                          "pubkey"),
        children=[ChildConfig("net", local_ts=[local_ts], remote_ts=[remote_ts],
                              esp_proposals="aes128gcm16")], **args)


def run(i: IkeEngine, r: IkeEngine, now: float = NOW, rounds: int = 10) -> None:
    for _ in range(rounds):
        moved = False
        for data, src, dst in i.datagrams_to_send():
            r.receive_datagram(data, src, dst, now)
            moved = True
        for data, src, dst in r.datagrams_to_send():
            i.receive_datagram(data, src, dst, now)
            moved = True
        if not moved:
            return


def drain(engine: IkeEngine) -> list[events.Event]:
    out = []
    while (event := engine.next_event()) is not None:
        out.append(event)
    return out


def handshake(ci: IkeConfig, cr: IkeConfig | list[IkeConfig], now: float = NOW, **kw):
    i = IkeEngine(ci, rng=random.Random(1).randbytes, **kw)
    r = IkeEngine(cr, rng=random.Random(2).randbytes, **kw)
    i.initiate("c", now)
    run(i, r, now)
    assert not i.internal_errors and not r.internal_errors
    return i, r, drain(i), drain(r)


def established(evs):
    return next(e for e in evs if isinstance(e, events.IkeSaEstablished))


def kinds(evs):
    return [type(e).__name__ for e in evs]


# -- signatures ---------------------------------------------------------------------------------


@pytest.mark.parametrize("classic", [False, True], ids=["rfc7427", "classic"])
def test_rsa_initiator_ecdsa_responder(pki, classic):
    """moon (RSA) and sun (ECDSA P-256) with default IDs: their subject DNs."""
    ci = conn(pki, "moon", MOON, SUN, initiator=True, signature_authentication=not classic)
    cr = conn(pki, "sun", SUN, MOON, initiator=False, signature_authentication=not classic,
              local_ts="10.2.0.0/24", remote_ts="10.1.0.0/24")
    i, r, ei, er = handshake(ci, cr)
    assert "ChildSaEstablished" in kinds(ei) and "ChildSaEstablished" in kinds(er)
    a, b = established(ei), established(er)
    assert a.local_auth == a.remote_auth == "pubkey"
    assert a.peer_certificate == pki.ids["sun"] and b.peer_certificate == pki.ids["moon"]
    assert a.local_id == pki.ids["moon"] and b.remote_id == pki.ids["moon"]
    sa_i, sa_r = i.ike_sas[0], r.ike_sas[0]
    if classic:
        assert sa_i.peer_hashes is None and sa_r.peer_hashes is None
        assert sa_r.peer_auth_method == AuthMethod.RSA  # PKCS#1 v1.5 with SHA-1
        assert sa_i.peer_auth_method == AuthMethod.ECDSA_SHA256_P256
    else:
        assert sa_r.peer_auth_method == sa_i.peer_auth_method == AuthMethod.DIGITAL_SIGNATURE
        assert sa_i.peer_hashes and sa_r.peer_hashes


def test_ecdsa_initiator_rsa_pss_responder(pki):
    ci = conn(pki, "sun", SUN, MOON, initiator=True)
    cr = conn(pki, "moon", MOON, SUN, initiator=False, local_auth="rsa/pss",
              local_ts="10.2.0.0/24", remote_ts="10.1.0.0/24")
    assert cr.rsa_pss and cr.local_auth == "pubkey"
    _, _, ei, er = handshake(ci, cr)
    assert established(ei).peer_certificate == pki.ids["moon"]
    assert "ChildSaEstablished" in kinds(er)


@pytest.mark.parametrize("stem,local_id,id_type", [
    ("moon", "moon.ipseclab.test", IdType.ID_FQDN),
    ("moon", "@moon.ipseclab.test", IdType.ID_FQDN),
    ("moon", "192.0.2.1", IdType.ID_IPV4_ADDR),
    ("carol", "carol@ipseclab.test", IdType.ID_RFC822_ADDR),
    ("carol", "C=CH, O=ipseclab, CN=carol@ipseclab.test", IdType.ID_DER_ASN1_DN),
])
def test_identities_against_subject_and_san(pki, stem, local_id, id_type):
    assert negotiation.identification(local_id, MOON, IDi).id_type == id_type  # on the wire
    ci = conn(pki, stem, MOON, SUN, initiator=True, local_id=local_id,
              remote_id="sun.ipseclab.test")
    cr = conn(pki, "sun", SUN, MOON, initiator=False, remote_id=local_id,
              local_id="@sun.ipseclab.test", local_ts="10.2.0.0/24", remote_ts="10.1.0.0/24")
    _, _, ei, er = handshake(ci, cr)
    assert "IkeSaEstablished" in kinds(ei), [getattr(e, "reason", "") for e in ei + er]
    assert "IkeSaEstablished" in kinds(er)
    assert established(er).remote_id == local_id.lstrip("@")
    assert established(ei).remote_id == "sun.ipseclab.test"


def test_responder_picks_connection_by_certificate(pki):
    """Two connections for the same addresses: the remote id in the certificate decides."""
    ci = conn(pki, "carol", CAROL, SUN, initiator=True)
    other = conn(pki, "sun", SUN, MOON, initiator=False, remote_id="dave@ipseclab.test")
    other.name = "dave"
    mine = conn(pki, "sun", SUN, MOON, initiator=False, remote_id="carol@ipseclab.test",
                local_ts="10.2.0.0/24", remote_ts="10.1.0.0/24")
    _, _, _, er = handshake(ci, [other, mine])
    assert established(er).connection == "c"
    assert established(er).remote_id == pki.ids["carol"]


# -- refusals ----------------------------------------------------------------------------------


def _refused(ei, er, reason_part):
    failed = [e for e in er if isinstance(e, events.AuthenticationFailed)]
    assert failed and reason_part in failed[0].reason, failed
    assert "IkeSaEstablished" not in kinds(er)
    told = [e for e in ei if isinstance(e, events.AuthenticationFailed)]
    assert told and told[0].by_peer
    assert "IkeSaEstablished" not in kinds(ei)


def test_untrusted_ca(pki, tmp_path):
    other = testpki.make_lab_pki(tmp_path, (testpki.DEFAULT_HOSTS[1],), ca_key="ecdsa256",
                                 ca_subject="C=CH, O=elsewhere, CN=Other CA")
    ci = conn(pki, "moon", MOON, SUN, initiator=True)
    cr = conn(pki, "sun", SUN, MOON, initiator=False, remote_cacerts=[other.ca_cert])
    i, r, ei, er = handshake(ci, cr)
    _refused(ei, er, "no trusted CA")
    assert not i.ike_sas and not r.ike_sas


@pytest.mark.parametrize("kind", testpki.KEY_KINDS)
def test_lab_pki_of_every_key_kind_verifies(kind, tmp_path):
    """The lab PKI issues end entities of each key kind (EdDSA ones too, RFC 8410) whose
    chain our verifier accepts; an EdDSA CA signs without a separate hash."""
    from ipseclab.ike.certs import load_certificate, verify_chain

    for ca_key in ("rsa2048", "ed25519") if kind in ("ed25519", "ecdsa256") else ("rsa2048",):
        made = testpki.make_lab_pki(tmp_path / ca_key / kind, (testpki.HostSpec(
            "h", kind, "C=CH, O=ipseclab, CN=h.ipseclab.test", ("h.ipseclab.test",)),),
            ca_key=ca_key)
        leaf = load_certificate(made.certs["h"])
        chain = verify_chain(leaf, [], [made.ca_cert], datetime.datetime(2025, 1, 1,
                                                                         tzinfo=datetime.UTC))
        assert chain[0] == leaf and chain[-1] == made.ca_cert
    with pytest.raises(ValueError, match="known"):
        testpki.generate_key("dsa1024")


def test_expired_certificate(pki):
    from ipseclab.ike.certs import load_private_key

    key = testpki.generate_key("ecdsa256")
    old = testpki.issue_certificate(pki.ca_cert, load_private_key(pki.ca_key_path),
                                    "C=CH, O=ipseclab, CN=old.ipseclab.test", key.public_key(),
                                    sans=["old.ipseclab.test"],
                                    not_before=datetime.datetime(2024, 1, 1,
                                                                 tzinfo=datetime.UTC),
                                    days=30)
    ci = conn(pki, "moon", MOON, SUN, initiator=True, local_certs=[old], private_key=key)
    cr = conn(pki, "sun", SUN, MOON, initiator=False)
    _, _, ei, er = handshake(ci, cr)
    _refused(ei, er, "expired")
    # the same certificate at a time when it was valid (wall_clock maps now to UNIX time)
    start = datetime.datetime(2024, 1, 10, tzinfo=datetime.UTC).timestamp()
    _, _, ei, er = handshake(ci, cr, now=5.0, wall_clock=lambda now: start + now)
    assert "IkeSaEstablished" in kinds(er)


def test_id_not_in_certificate(pki):
    ci = conn(pki, "moon", MOON, SUN, initiator=True, local_id="@sun.ipseclab.test")
    cr = conn(pki, "sun", SUN, MOON, initiator=False)
    _, _, ei, er = handshake(ci, cr)
    _refused(ei, er, "not confirmed by certificate")


def test_certificate_not_matching_remote_id(pki):
    ci = conn(pki, "carol", CAROL, SUN, initiator=True)
    cr = conn(pki, "sun", SUN, MOON, initiator=False, remote_id="@*.ipseclab.test")
    _, _, ei, er = handshake(ci, cr)
    _refused(ei, er, "no connection accepts")


def test_initiator_refuses_responder_and_says_so(pki, tmp_path):
    """§2.21.2: the responder had established; the initiator's INFORMATIONAL ends it."""
    other = testpki.make_lab_pki(tmp_path, (testpki.DEFAULT_HOSTS[1],), ca_key="ecdsa256",
                                 ca_subject="C=CH, O=elsewhere, CN=Other CA")
    ci = conn(pki, "moon", MOON, SUN, initiator=True, remote_cacerts=[other.ca_cert])
    cr = conn(pki, "sun", SUN, MOON, initiator=False, local_ts="10.2.0.0/24",
              remote_ts="10.1.0.0/24")
    i, r, ei, er = handshake(ci, cr)
    mine = [e for e in ei if isinstance(e, events.AuthenticationFailed)]
    assert mine and not mine[0].by_peer and "no trusted CA" in mine[0].reason
    theirs = [e for e in er if isinstance(e, events.AuthenticationFailed)]
    assert theirs and theirs[0].by_peer
    assert kinds(er)[-1] == "IkeSaDeleted" and "ChildSaDeleted" in kinds(er)
    assert not i.ike_sas and not r.ike_sas


def test_signature_from_wrong_key(pki):
    _, other_key = creds(pki, "sun")
    ci = conn(pki, "carol", CAROL, SUN, initiator=True, private_key=other_key)
    cr = conn(pki, "sun", SUN, MOON, initiator=False)
    _, _, ei, er = handshake(ci, cr)
    _refused(ei, er, "does not verify")


# -- mixed authentication ----------------------------------------------------------------------


def test_mixed_psk_and_pubkey(pki):
    """The initiator proves itself with a PSK, the responder with its certificate."""
    ci = conn(pki, "moon", MOON, SUN, initiator=True, local_auth="psk", psk=b"lab",
              local_id="@moon.psk", local_certs=[], private_key=None)
    cr = conn(pki, "sun", SUN, MOON, initiator=False, remote_auth="psk", psk=b"lab",
              remote_id="@moon.psk", remote_cacerts=[], local_ts="10.2.0.0/24",
              remote_ts="10.1.0.0/24")
    _, r, ei, er = handshake(ci, cr)
    a, b = established(ei), established(er)
    assert (a.local_auth, a.remote_auth) == ("psk", "pubkey")
    assert (b.local_auth, b.remote_auth) == ("pubkey", "psk")
    assert a.peer_certificate == pki.ids["sun"]
    assert r.ike_sas[0].peer_auth_method == AuthMethod.PSK
    # and a PSK where a signature is wanted is refused
    cr.remote_auth = "pubkey"
    cr.remote_cacerts = [pki.ca_cert]
    _, _, ei, er = handshake(ci, cr)
    _refused(ei, er, "we want a signature")


def test_config_checks(pki):
    from ipseclab.errors import ConfigError

    with pytest.raises(ConfigError, match="private key"):
        conn(pki, "moon", MOON, SUN, initiator=True, private_key=None).check()
    with pytest.raises(ConfigError, match="CA certificate"):
        conn(pki, "moon", MOON, SUN, initiator=True, remote_cacerts=[]).check()
    with pytest.raises(ConfigError, match="eap"):
        IkeConfig("x", local_auth="eap-mschapv2")
    with pytest.raises(ConfigError, match="subnet or a range"):
        AddressPool("p", "10.3.0.0/33")


# -- the configuration payload (§2.19) --------------------------------------------------------


def rw_configs(pki, pool: AddressPool):
    gateway = conn(pki, "moon", MOON, "%any", initiator=False, local_ts="10.1.0.0/16",
                   remote_ts="dynamic", pools=[pool])
    clients = []
    for stem, addr in (("carol", CAROL), ("dave", DAVE)):
        clients.append(conn(pki, stem, addr, MOON, initiator=True, local_ts="dynamic",
                            remote_ts="10.1.0.0/16", vips=["0.0.0.0"]))
    return gateway, clients


def test_virtual_ips_from_pool(pki):
    pool = AddressPool("rw", "10.3.0.0/24", ("10.1.0.53",))
    assert list(pool.addresses())[:2] == ["10.3.0.1", "10.3.0.2"] and "10.3.0.255" not in pool
    gateway, clients = rw_configs(pki, pool)
    r = IkeEngine(gateway, rng=random.Random(9).randbytes)
    got = {}
    engines = []
    for n, client in enumerate(clients):
        i = IkeEngine(client, rng=random.Random(n).randbytes)
        i.initiate("c", NOW)
        run(i, r)
        ei, er = drain(i), drain(r)
        mine, theirs = established(ei), established(er)
        assert mine.virtual_ips == theirs.remote_virtual_ips
        assert mine.dns_servers == ["10.1.0.53"]
        child_i = next(e for e in ei if isinstance(e, events.ChildSaEstablished))
        child_r = next(e for e in er if isinstance(e, events.ChildSaEstablished))
        vip = mine.virtual_ips[0]
        assert [str(ts) for ts in child_i.local_ts] == [f"{vip}/32"]
        assert [str(ts) for ts in child_r.remote_ts] == [f"{vip}/32"]
        assert str(child_i.outbound.src) == (CAROL, DAVE)[n]  # the tunnel: IKE addresses
        got[client.local_certs[0].subject] = vip
        engines.append(i)
    assert sorted(got.values()) == ["10.3.0.1", "10.3.0.2"]
    assert set(r.leases("rw")) == {"10.3.0.1", "10.3.0.2"}
    # carol leaves: her address goes back to the pool, and the next client gets it
    carol = engines[0]
    carol.delete_ike_sa(carol.ike_sas[0].name, NOW + 1)
    run(carol, r, NOW + 1)
    assert set(r.leases("rw")) == {"10.3.0.2"}
    drain(r)
    again = IkeEngine(clients[0], rng=random.Random(7).randbytes)
    again.initiate("c", NOW + 2)
    run(again, r, NOW + 2)
    assert established(drain(again)).virtual_ips == ["10.3.0.1"]


def test_pool_exhausted(pki):
    gateway, clients = rw_configs(pki, AddressPool("tiny", "10.3.0.7-10.3.0.7"))
    r = IkeEngine(gateway, rng=random.Random(9).randbytes)
    for n, client in enumerate(clients):
        i = IkeEngine(client, rng=random.Random(n).randbytes)
        i.initiate("c", NOW)
        run(i, r)
        ei = drain(i)
        if n == 0:
            assert established(ei).virtual_ips == ["10.3.0.7"]
        else:
            failed = [e for e in ei if isinstance(e, events.ChildSaFailed)]
            assert failed and failed[0].notify == NotifyType.INTERNAL_ADDRESS_FAILURE
            assert established(ei).virtual_ips == []


def test_rekeyed_ike_sa_keeps_the_lease(pki):
    gateway, clients = rw_configs(pki, AddressPool("rw", "10.3.0.0/24"))
    r = IkeEngine(gateway, rng=random.Random(9).randbytes)
    i = IkeEngine(clients[0], rng=random.Random(3).randbytes)
    i.initiate("c", NOW)
    run(i, r)
    drain(i)
    drain(r)
    assert i.rekey_ike_sa(i.ike_sas[0].name, NOW + 1)
    run(i, r, NOW + 1)
    rekeyed = [e for e in drain(r) if isinstance(e, events.IkeSaRekeyed)]
    assert rekeyed and rekeyed[0].remote_virtual_ips == ["10.3.0.1"]
    assert r.leases("rw") == {"10.3.0.1": rekeyed[0].ike_sa}


@pytest.mark.parametrize("who", ["client", "gateway"])
def test_reauthenticated_ike_sa_keeps_the_virtual_ip(pki, who):
    """Make-before-break: the new IKE SA asks for the address the old one has, and the pool
    gives it to the same identity although the old IKE SA still holds it (§2.8.3, §2.19).

    The gateway cannot do it itself (only an initiator asks for an address): its
    reauth_time goes to the client as AUTH_LIFETIME (RFC 4478), and the client does it."""
    pool = AddressPool("rw", "10.3.0.0/24")
    gateway, clients = rw_configs(pki, pool)
    if who == "gateway":
        gateway.reauth_time = 100.0
    r = IkeEngine(gateway, rng=random.Random(9).randbytes)
    i = IkeEngine(clients[0], rng=random.Random(3).randbytes)
    i.initiate("c", NOW)
    run(i, r)
    old = established(drain(i))
    drain(r)
    assert old.virtual_ips == ["10.3.0.1"]
    dave = IkeEngine(clients[1], rng=random.Random(4).randbytes)  # holds 10.3.0.2 meanwhile
    dave.initiate("c", NOW)
    run(dave, r)
    drain(r)
    if who == "client":
        assert i.reauthenticate_ike_sa(old.ike_sa, NOW + 1)
        now = NOW + 1
    else:
        assert not r.reauthenticate_ike_sa(old.ike_sa, NOW + 1)
        # AUTH_LIFETIME 100 s, minus over_time (10% of the client's 4 h rekey_time: more
        # than half of 100 s, so half of it)
        now = i.get_timer()
        assert now == pytest.approx(NOW + 50.0)
        i.handle_timer(now)
    run(i, r, now)
    ei, er = drain(i), drain(r)
    [new] = [e for e in ei if isinstance(e, events.IkeSaEstablished)]
    assert new.ike_sa != old.ike_sa and new.virtual_ips == ["10.3.0.1"]
    assert [e.ike_sa for e in ei if isinstance(e, events.IkeSaDeleted)] == [old.ike_sa]
    assert [sa.name for sa in i.ike_sas] == [new.ike_sa]
    assert r.leases("rw") == {"10.3.0.1": new.ike_sa, "10.3.0.2": dave.ike_sas[0].name}
    assert not [e for e in er if isinstance(e, events.ChildSaFailed)]


# -- INVALID_IKE_SPI (§2.21.4) -----------------------------------------------------------------


def test_invalid_ike_spi_is_answered_rate_limited(pki):
    r = IkeEngine(conn(pki, "sun", SUN, MOON, initiator=False), rng=random.Random(2).randbytes)
    request = Message(bytes(range(1, 9)), bytes(range(9, 17)), ExchangeType.INFORMATIONAL,
                      HeaderFlag.I, 5, []).to_bytes()
    r.receive_datagram(request, (MOON, 500), (SUN, 500), 100.0)
    out = r.datagrams_to_send()
    assert len(out) == 1 and out[0][2] == (MOON, 500)
    answer = parse_message(out[0][0])
    assert answer.is_response and not answer.is_initiator and answer.message_id == 5
    assert answer.spi_i == bytes(range(1, 9)) and answer.spi_r == bytes(range(9, 17))
    notify = answer.find(Notify)
    assert notify is not None and notify.notify_type == NotifyType.INVALID_IKE_SPI
    r.receive_datagram(request, (MOON, 500), (SUN, 500), 100.5)
    assert r.datagrams_to_send() == []  # rate-limited
    response = Message(bytes(range(1, 9)), bytes(range(9, 17)), ExchangeType.INFORMATIONAL,
                       HeaderFlag.I | HeaderFlag.R, 5, []).to_bytes()
    r.receive_datagram(response, (DAVE, 500), (SUN, 500), 200.0)
    assert r.datagrams_to_send() == []  # never answer a response
    r.receive_datagram(request, (MOON, 500), (SUN, 500), 102.0)
    assert len(r.datagrams_to_send()) == 1


# -- swanctl.conf with certificates -----------------------------------------------------------


GATEWAY_CONF = """\
connections {
   rw {
      local_addrs = 192.0.2.1
      pools = rw_pool
      local {
         auth = pubkey
         certs = moonCert.pem
         id = moon.ipseclab.test
      }
      remote {
         auth = pubkey
      }
      children {
         net {
            local_ts = 10.1.0.0/16
            esp_proposals = aes128gcm16
         }
      }
   }
}
pools {
   rw_pool {
      addrs = 10.3.0.0/24
      dns = 10.1.0.53
   }
}
"""

CLIENT_CONF = """\
connections {
   home {
      remote_addrs = 192.0.2.1
      vips = 0.0.0.0
      local {
         auth = pubkey
         certs = carolCert.pem
         id = carol@ipseclab.test
      }
      remote {
         auth = pubkey
         id = moon.ipseclab.test
         cacerts = caCert.pem
      }
      children {
         home {
            remote_ts = 10.1.0.0/16
            esp_proposals = aes128gcm16
         }
      }
   }
}
secrets {
   private-carol {
      file = carolKey.pem
   }
}
"""


def test_swanctl_road_warrior_in_memory(pki):
    base = pki.directory
    (base / "gateway.conf").write_text(textwrap.dedent(GATEWAY_CONF))
    (base / "client.conf").write_text(textwrap.dedent(CLIENT_CONF))
    gw = load_swanctl(base / "gateway.conf")
    cl = load_swanctl(base / "client.conf")
    rw, home = gw.connections["rw"], cl.connections["home"]
    assert rw.private_key is not None and rw.remote_cacerts and rw.pools[0].addrs == "10.3.0.0/24"
    assert home.vips == ["0.0.0.0"] and home.certificate.subject.rfc4514_string().endswith(
        "C=CH")
    r = IkeEngine([rw], rng=random.Random(2).randbytes)
    i = IkeEngine([home], local_addr=CAROL, rng=random.Random(1).randbytes)
    i.initiate("home", NOW)
    run(i, r)
    ei, er = drain(i), drain(r)
    assert established(ei).virtual_ips == ["10.3.0.1"]
    assert established(ei).remote_id == "moon.ipseclab.test"
    assert established(er).remote_id == "carol@ipseclab.test"
    child = next(e for e in er if isinstance(e, events.ChildSaEstablished))
    assert [str(t) for t in child.remote_ts] == ["10.3.0.1/32"]
