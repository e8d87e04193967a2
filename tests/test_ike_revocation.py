"""Certificate revocation lists (RFC 5280 §5, §6.3) and swanctl's ``revocation`` policies.

A CRL the CA signed lists carol's certificate: the chain check refuses it, the IKE_AUTH
exchange fails, and an IKE SA set up before the revocation keeps going through rekeys
(which never look at certificates) until a reauthentication (RFC 7296 §2.8.3) fails.
"""

from __future__ import annotations

import datetime
import random

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from test_ike_certs import CAROL, MOON, NOW, conn, drain, run

from ipseclab.config.swanctl import load_swanctl
from ipseclab.errors import ConfigError
from ipseclab.ike import events, testpki
from ipseclab.ike.certs import CertificateRejected, load_certificate, load_crl, verify_chain
from ipseclab.ike.engine import IkeEngine

WHEN = datetime.datetime.fromtimestamp(NOW, datetime.UTC)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    hosts = (testpki.HostSpec("moon", "ecdsa256", "C=CH, O=ipseclab, CN=moon.ipseclab.test",
                              ("moon.ipseclab.test", MOON)),
             *[h for h in testpki.DEFAULT_HOSTS if h.stem == "carol"],
             testpki.HostSpec("dave", "ecdsa256", "C=CH, O=ipseclab, CN=dave@ipseclab.test",
                              ("dave@ipseclab.test",)))
    return testpki.make_lab_pki(tmp_path_factory.mktemp("pki"), hosts, ca_key="ecdsa256")


def crl_of(pki, stems, *, days_ago: int = 1, days: int = 15, key=None):
    certs = [load_certificate(pki.certs[s]) for s in stems]
    return testpki.issue_crl(pki.ca_cert, key or pki.ca_key, certs,
                             last_update=WHEN - datetime.timedelta(days=days_ago), days=days)


def check(pki, stem, crls, revocation="relaxed"):
    return verify_chain(load_certificate(pki.certs[stem]), [], [pki.ca_cert], NOW, crls=crls,
                        revocation=revocation)


def test_a_revoked_certificate_is_refused_and_the_others_pass(pki) -> None:
    crl = crl_of(pki, ["carol"])
    with pytest.raises(CertificateRejected, match=r"certificate 'C=CH, O=ipseclab, CN=carol"
                       r".*' was revoked on .* UTC \(keyCompromise\) \(CRL of 'C=CH, O=ipseclab,"
                       r" CN=ipseclab Root CA'\)"):
        check(pki, "carol", [crl])
    assert len(check(pki, "dave", [crl], "strict")) == 2  # a current CRL: status known
    # Revocation is for good: a CRL past its nextUpdate still says so.
    stale = crl_of(pki, ["carol"], days_ago=30)
    with pytest.raises(CertificateRejected, match="was revoked"):
        check(pki, "carol", [stale])


@pytest.mark.parametrize(("policy", "crls", "accepted"), [
    ("relaxed", "none", True),
    ("relaxed", "stale", True),
    ("strict", "none", False),
    ("strict", "stale", False),  # past its nextUpdate: the status is unknown
    ("strict", "forged", False),  # a CRL the CA did not sign is no CRL at all
    ("strict", "current", True),
    ("ifuri", "none", True),  # the certificate names no CRL location
])
def test_revocation_policies(pki, policy: str, crls: str, accepted: bool) -> None:
    other_ca = testpki.generate_key("ecdsa256")
    given = {"none": [], "stale": [crl_of(pki, [], days_ago=30)],
             "forged": [crl_of(pki, [], key=other_ca)],
             "current": [crl_of(pki, [])]}[crls]
    if accepted:
        assert check(pki, "dave", given, policy)
    else:
        with pytest.raises(CertificateRejected, match=r"no current CRL of 'C=CH, O=ipseclab,"
                                                      r" CN=ipseclab Root CA'.*strict"):
            check(pki, "dave", given, policy)


def test_ifuri_refuses_a_certificate_whose_crl_location_gave_nothing(pki) -> None:
    key = testpki.generate_key("ecdsa256")
    cert = (x509.CertificateBuilder().subject_name(testpki.name("C=CH, O=ipseclab, CN=eve"))
            .issuer_name(pki.ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(testpki.DEFAULT_START)
            .not_valid_after(testpki.DEFAULT_START + datetime.timedelta(days=3650))
            .add_extension(x509.CRLDistributionPoints([x509.DistributionPoint(
                [x509.UniformResourceIdentifier("http://crl.ipseclab.test/ca.crl")],
                None, None, None)]), critical=False)
            .sign(pki.ca_key, hashes.SHA256()))
    with pytest.raises(CertificateRejected, match="revocation = ifuri; ipseclab fetches"):
        verify_chain(cert, [], [pki.ca_cert], NOW, revocation="ifuri")
    assert verify_chain(cert, [], [pki.ca_cert], NOW, crls=[crl_of(pki, [])],
                        revocation="ifuri")


def test_ike_auth_with_a_revoked_certificate_fails(pki) -> None:
    gateway = conn(pki, "moon", MOON, "%any", initiator=False, remote_crls=[crl_of(pki,
                                                                                  ["carol"])])
    i = IkeEngine(conn(pki, "carol", CAROL, MOON, initiator=True), rng=random.Random(1).randbytes)
    r = IkeEngine(gateway, rng=random.Random(2).randbytes)
    i.initiate("c", NOW)
    run(i, r)
    [refused] = [e for e in drain(r) if isinstance(e, events.AuthenticationFailed)]
    assert "was revoked" in refused.reason
    assert not r.ike_sas and not i.ike_sas


def test_a_rekey_does_not_notice_a_revocation_a_reauthentication_does(pki) -> None:
    gateway = conn(pki, "moon", MOON, "%any", initiator=False)
    carol = conn(pki, "carol", CAROL, MOON, initiator=True)
    i = IkeEngine(carol, rng=random.Random(1).randbytes)
    r = IkeEngine(gateway, rng=random.Random(2).randbytes)
    i.initiate("c", NOW)
    run(i, r)
    drain(i), drain(r)
    gateway.remote_crls = [crl_of(pki, ["carol"])]  # what ctl load-creds does
    assert i.rekey_ike_sa(i.ike_sas[0].name, NOW + 10)
    run(i, r, NOW + 10)
    assert any(isinstance(e, events.IkeSaRekeyed) for e in drain(r))
    assert i.reauthenticate_ike_sa("c", NOW + 20)
    run(i, r, NOW + 20)
    [refused] = [e for e in drain(r) if isinstance(e, events.AuthenticationFailed)]
    assert "was revoked" in refused.reason
    assert next(e for e in drain(i) if isinstance(e, events.AuthenticationFailed)).by_peer
    assert len(i.ike_sas) == 1  # the old IKE SA, until over_time ends it


def test_swanctl_loads_x509crl_and_the_revocation_policy(pki, tmp_path) -> None:
    import shutil

    base = tmp_path / "swanctl"
    shutil.copytree(pki.directory, base)
    path = testpki.revoke(base, ["carol"], last_update=WHEN)
    assert load_crl(path).get_revoked_certificate_by_serial_number(
        load_certificate(pki.certs["carol"]).serial_number) is not None
    conf = base / "swanctl.conf"
    conf.write_text("""
connections {
  rw {
    local_addrs = 192.0.2.1
    local { auth = pubkey
      certs = moonCert.pem }
    remote { auth = pubkey
      revocation = strict }
    children { net { local_ts = 10.1.0.0/16 } }
  }
}
""")
    loaded = load_swanctl(conf)
    config = loaded.connections["rw"]
    assert config.revocation == "strict" and len(config.remote_crls) == 1
    assert any("revocation = strict: only CRLs in x509crl/ are checked" in w
               for w in loaded.warnings)
    (base / "x509crl" / "broken.crl").write_bytes(b"not a CRL")
    with pytest.raises(ConfigError, match=r"broken\.crl: not a certificate revocation list"):
        load_swanctl(conf)
