"""Signatures (RFC 7427, RFC 4754, RFC 7296 §2.15), X.509 chains and the lab PKI."""

from __future__ import annotations

import datetime
import shutil
import subprocess
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa

from ipseclab.crypto.prf import prf
from ipseclab.ike import auth, certs, testpki
from ipseclab.ike.constants import AuthMethod, CertEncoding, HashAlgorithm
from ipseclab.ike.negotiation import psk_auth
from ipseclab.ike.payloads import Authentication, Certificate, CertificateRequest, IDi

NOW = datetime.datetime(2025, 6, 1, tzinfo=datetime.UTC)
OCTETS = b"IKE_SA_INIT message" + bytes(range(32)) + b"maced id"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> testpki.LabPki:
    return testpki.make_lab_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def keys() -> dict[str, object]:
    return {"rsa": rsa.generate_private_key(65537, 2048),
            "p256": ec.generate_private_key(ec.SECP256R1()),
            "p384": ec.generate_private_key(ec.SECP384R1()),
            "p521": ec.generate_private_key(ec.SECP521R1()),
            "ed25519": ed25519.Ed25519PrivateKey.generate()}


SIG14 = [("rsa", HashAlgorithm.SHA2_256, False), ("rsa", HashAlgorithm.SHA2_384, False),
         ("rsa", HashAlgorithm.SHA2_512, False), ("rsa", HashAlgorithm.SHA2_256, True),
         ("rsa", HashAlgorithm.SHA2_512, True), ("p256", HashAlgorithm.SHA2_256, False),
         ("p384", HashAlgorithm.SHA2_384, False), ("p256", HashAlgorithm.SHA2_512, False),
         ("ed25519", HashAlgorithm.IDENTITY, False)]
CLASSIC = [("rsa", AuthMethod.RSA), ("p256", AuthMethod.ECDSA_SHA256_P256),
           ("p384", AuthMethod.ECDSA_SHA384_P384), ("p521", AuthMethod.ECDSA_SHA512_P521)]


# -- signatures ------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "hash_alg", "pss"), SIG14)
def test_digital_signature_round_trip_and_tamper(keys, key, hash_alg, pss):
    private = keys[key]
    data = auth.sign(private, AuthMethod.DIGITAL_SIGNATURE, hash_alg, OCTETS, pss=pss)
    scheme, _ = auth.parse_signature_auth(data)
    assert data[0] == len(scheme.algorithm_identifier())
    assert (scheme.hash_alg, scheme.pss) == (hash_alg, pss)
    public = private.public_key()
    assert auth.verify(public, AuthMethod.DIGITAL_SIGNATURE, data, OCTETS)
    assert not auth.verify(public, AuthMethod.DIGITAL_SIGNATURE, data, OCTETS[:-1] + b"X")
    broken = bytearray(data)
    broken[-1] ^= 1
    assert not auth.verify(public, AuthMethod.DIGITAL_SIGNATURE, bytes(broken), OCTETS)
    other = keys["p256" if key != "p256" else "p384"].public_key()
    assert not auth.verify(other, AuthMethod.DIGITAL_SIGNATURE, data, OCTETS)


@pytest.mark.parametrize(("key", "method"), CLASSIC)
def test_classic_methods(keys, key, method):
    private = keys[key]
    data = auth.sign(private, method, None, OCTETS)
    if method != AuthMethod.RSA:  # RFC 4754: r | s, each the size of the curve
        assert len(data) == 2 * ((private.curve.key_size + 7) // 8)
    assert auth.verify(private.public_key(), method, data, OCTETS)
    assert not auth.verify(private.public_key(), method, data, OCTETS + b"\0")
    assert not auth.verify(keys["ed25519"].public_key(), method, data, OCTETS)
    assert auth.auth_method_for_key(private, None) == method


def test_rfc7427_algorithm_identifiers():
    # RFC 7427 Appendix A: the length octet is 0x0f for sha256WithRSAEncryption,
    # 0x0c for ecdsa-with-SHA256 and 0x43 for RSASSA-PSS with SHA-256
    cases = [(auth.SignatureScheme(auth.KeyType.RSA, HashAlgorithm.SHA2_256),
              "300d06092a864886f70d01010b0500"),
             (auth.SignatureScheme(auth.KeyType.ECDSA, HashAlgorithm.SHA2_256),
              "300a06082a8648ce3d040302"),
             (auth.SignatureScheme(auth.KeyType.ECDSA, HashAlgorithm.SHA2_512),
              "300a06082a8648ce3d040304")]
    for scheme, hexed in cases:
        assert scheme.algorithm_identifier().hex() == hexed
    pss = auth.SignatureScheme(auth.KeyType.RSA, HashAlgorithm.SHA2_256, True)
    assert len(pss.algorithm_identifier()) == 0x43
    assert pss.algorithm_identifier().startswith(bytes.fromhex("304106092a864886f70d01010a"))


def test_verify_never_raises_on_garbage(keys):
    public = keys["rsa"].public_key()
    for data in (b"", b"\x00", b"\xff" * 3, b"\x0f" + b"\x30" * 15, bytes(300)):
        for method in (1, 2, 9, 14, 200):
            assert auth.verify(public, method, data, OCTETS) is False


def test_hash_restriction_and_key_mismatch(keys):
    data = auth.sign(keys["rsa"], 14, HashAlgorithm.SHA2_384, OCTETS)
    public = keys["rsa"].public_key()
    assert not auth.verify(public, 14, data, OCTETS, allowed_hashes=[HashAlgorithm.SHA2_256])
    assert auth.verify(public, 14, data, OCTETS, allowed_hashes=[HashAlgorithm.SHA2_384])
    with pytest.raises(Exception, match="ECDSA key on secp384r1"):
        auth.sign(keys["p256"], AuthMethod.ECDSA_SHA384_P384, None, OCTETS)
    with pytest.raises(Exception, match="RSA key"):
        auth.sign(keys["p256"], AuthMethod.RSA, None, OCTETS)


def test_choose_signature_hash(keys):
    ours = auth.DEFAULT_SIGNATURE_HASHES
    assert auth.choose_signature_hash(ours, [4, 3]) == HashAlgorithm.SHA2_384
    assert auth.choose_signature_hash([4, 2], [2, 3, 4]) == HashAlgorithm.SHA2_512
    assert auth.choose_signature_hash(ours, [1]) is None
    assert auth.choose_signature_hash(ours, [2, 5], keys["ed25519"]) == HashAlgorithm.IDENTITY
    assert auth.choose_signature_hash([5, 2], [2, 5], keys["rsa"]) == HashAlgorithm.SHA2_256


def test_signed_octets_and_psk_reuse():
    prf_sha256 = prf("prfsha256")
    id_body = IDi.fqdn("moon.strongswan.org").to_bytes()
    octets = auth.signed_octets(prf_sha256, b"msg1", b"nonceR", b"k" * 32, id_body)
    assert octets == b"msg1nonceR" + prf_sha256.prf(b"k" * 32, id_body)
    expected = prf_sha256.prf(prf_sha256.prf(b"secret", b"Key Pad for IKEv2"), octets)
    assert auth.psk_auth is psk_auth
    assert psk_auth(prf_sha256, b"secret", b"msg1", b"nonceR", b"k" * 32, id_body) == expected


def test_openssl_made_signatures_verify(tmp_path, keys):
    """A signature from another implementation: openssl's pkeyutl over the same octets."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl not installed")
    (tmp_path / "data").write_bytes(OCTETS)
    for key_name, extra, scheme in (
            ("rsa", [], auth.SignatureScheme(auth.KeyType.RSA, HashAlgorithm.SHA2_256)),
            ("rsa", ["-sigopt", "rsa_padding_mode:pss", "-sigopt", "rsa_pss_saltlen:32",
                     "-sigopt", "rsa_mgf1_md:sha256"],
             auth.SignatureScheme(auth.KeyType.RSA, HashAlgorithm.SHA2_256, True)),
            ("p256", [], auth.SignatureScheme(auth.KeyType.ECDSA, HashAlgorithm.SHA2_256))):
        key_path = tmp_path / f"{key_name}.pem"
        key_path.write_bytes(keys[key_name].private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(key_path), *extra,
                              str(tmp_path / "data")], capture_output=True, check=True).stdout
        ident = scheme.algorithm_identifier()
        data = bytes([len(ident)]) + ident + sig
        public = keys[key_name].public_key()
        assert auth.verify(public, AuthMethod.DIGITAL_SIGNATURE, data, OCTETS)


def test_our_pss_signature_verifies_with_cryptography_directly(keys):
    data = auth.sign(keys["rsa"], 14, HashAlgorithm.SHA2_256, OCTETS, pss=True)
    _, sig = auth.parse_signature_auth(data)
    keys["rsa"].public_key().verify(sig, OCTETS, padding.PSS(padding.MGF1(hashes.SHA256()), 32),
                                    hashes.SHA256())


# -- certificates ------------------------------------------------------------------------------


def test_lab_pki_layout_and_chain(pki):
    for sub in ("x509ca/caCert.pem", "private/caKey.pem", "x509/moonCert.pem",
                "private/sunKey.pem", "x509/carolCert.pem"):
        assert (pki.directory / sub).is_file()
    moon = certs.load_certificate(pki.certs["moon"])
    ca = certs.load_certificate(pki.ca_cert_path)
    assert certs.dn_string(moon.subject) == "C=CH, O=ipseclab, CN=moon.ipseclab.test"
    assert certs.verify_chain(moon, [], [ca], NOW) == [moon, ca]
    assert isinstance(moon.public_key(), rsa.RSAPublicKey) and moon.public_key().key_size == 3072
    sun_key = certs.load_private_key(pki.keys["sun"])
    assert isinstance(sun_key, ec.EllipticCurvePrivateKey)
    # DER loads as well as PEM
    assert certs.load_certificate(moon.public_bytes(serialization.Encoding.DER)) == moon


def test_sign_with_lab_key_verify_with_cert(pki):
    for stem in ("moon", "sun"):
        key = certs.load_private_key(pki.keys[stem])
        cert = certs.load_certificate(pki.certs[stem])
        data = auth.sign(key, 14, HashAlgorithm.SHA2_256, OCTETS)
        assert auth.verify(cert, 14, data, OCTETS)
        other = certs.load_certificate(pki.certs["carol" if stem == "sun" else "sun"])
        assert not auth.verify(other, 14, data, OCTETS)


def test_expired_unknown_ca_and_not_yet_valid(pki):
    ca = certs.load_certificate(pki.ca_cert_path)
    moon = certs.load_certificate(pki.certs["moon"])
    with pytest.raises(certs.CertificateRejected, match="expired on 2033"):
        certs.verify_chain(moon, [], [ca], datetime.datetime(2040, 1, 1, tzinfo=datetime.UTC))
    with pytest.raises(certs.CertificateRejected, match="not valid before"):
        certs.verify_chain(moon, [], [ca], datetime.datetime(2020, 1, 1).timestamp())
    other_key = testpki.generate_key("ecdsa256")
    other_ca = testpki.issue_certificate(None, other_key, "C=US, O=Other, CN=Other CA",
                                         other_key.public_key(), ca=True)
    with pytest.raises(certs.CertificateRejected, match=r"issuer .* is unknown"):
        certs.verify_chain(moon, [], [other_ca], NOW)
    # same name as our CA, different key: the signature check must catch it
    fake = testpki.issue_certificate(None, other_key, "C=CH, O=ipseclab, CN=ipseclab Root CA",
                                     other_key.public_key(), ca=True)
    with pytest.raises(certs.CertificateRejected, match="does not verify"):
        certs.verify_chain(moon, [], [fake], NOW)


def test_intermediate_must_be_ca(pki):
    ca = certs.load_certificate(pki.ca_cert_path)
    ca_key = certs.load_private_key(pki.ca_key_path)
    mid_key = testpki.generate_key("ecdsa256")
    mid = testpki.issue_certificate(ca, ca_key, "C=CH, O=ipseclab, CN=Intermediate",
                                    mid_key.public_key(), ca=True)
    leaf_key = testpki.generate_key("ecdsa256")
    leaf = testpki.issue_certificate(mid, mid_key, "C=CH, O=ipseclab, CN=leaf",
                                     leaf_key.public_key(), sans=["leaf.ipseclab.test"])
    assert certs.verify_chain(leaf, [mid], [ca], NOW) == [leaf, mid, ca]
    with pytest.raises(certs.CertificateRejected, match="unknown"):
        certs.verify_chain(leaf, [], [ca], NOW)
    not_ca = testpki.issue_certificate(ca, ca_key, "C=CH, O=ipseclab, CN=Intermediate",
                                       mid_key.public_key(), ca=False)
    with pytest.raises(certs.CertificateRejected, match="is not a CA"):
        certs.verify_chain(leaf, [not_ca], [ca], NOW)


def test_peer_id_against_certificate(pki):
    moon = certs.load_certificate(pki.certs["moon"])
    carol = certs.load_certificate(pki.certs["carol"])
    assert certs.cert_matches_id(moon, 2, b"moon.ipseclab.test")
    assert certs.cert_matches_id(moon, 1, bytes([192, 0, 2, 1]))
    assert certs.cert_matches_id(moon, 9, moon.subject.public_bytes())
    assert certs.cert_matches_id(carol, 3, b"carol@ipseclab.test")
    assert not certs.cert_matches_id(moon, 2, b"sun.ipseclab.test")
    assert not certs.cert_matches_id(moon, 1, bytes([192, 0, 2, 2]))
    assert not certs.cert_matches_id(moon, 9, carol.subject.public_bytes())
    assert not certs.cert_matches_id(moon, 9, b"\x30\x05junk")
    assert certs.cert_matches_identity(moon, "C=CH, O=ipseclab, CN=moon.ipseclab.test")
    assert certs.cert_matches_identity(moon, "moon.ipseclab.test")
    assert certs.cert_matches_identity(moon, "*.ipseclab.test")
    assert certs.cert_matches_identity(moon, "192.0.2.1")
    assert certs.cert_matches_identity(carol, "carol@ipseclab.test")
    assert not certs.cert_matches_identity(carol, "dave@ipseclab.test")
    assert not certs.cert_matches_identity(moon, "C=CH, O=ipseclab, CN=sun.ipseclab.test")


def test_certreq_and_payloads(pki):
    ca = certs.load_certificate(pki.ca_cert_path)
    moon = certs.load_certificate(pki.certs["moon"])
    req = CertificateRequest(CertEncoding.X509_SIGNATURE, certs.certreq_authority([ca]))
    parsed = CertificateRequest.parse(req.to_bytes())
    assert parsed.ca_key_hashes == [certs.certreq_hash(ca)]
    assert certs.trusted_by_certreq(parsed.ca_key_hashes, [ca, moon]) == [ca]
    cert_payload = Certificate(CertEncoding.X509_SIGNATURE,
                               moon.public_bytes(serialization.Encoding.DER))
    assert certs.load_certificate(Certificate.parse(cert_payload.to_bytes()).data) == moon
    data = auth.sign(certs.load_private_key(pki.keys["moon"]), 14, 2, OCTETS)
    payload = Authentication.parse(Authentication(AuthMethod.DIGITAL_SIGNATURE, data).to_bytes())
    assert auth.verify(moon, payload.method, payload.data, OCTETS)


# -- interop with strongSwan's pki tool -------------------------------------------------------

PKI = shutil.which("pki")
needs_pki = pytest.mark.skipif(PKI is None, reason="strongSwan's pki (strongswan-pki) missing")


def _pki(*args: str, cwd: Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([PKI, *args], cwd=cwd, capture_output=True, timeout=60)  # type: ignore


@needs_pki
def test_pki_verifies_lab_certificates(pki):
    for stem in ("moon", "sun", "carol"):
        result = _pki("--verify", "--in", str(pki.certs[stem]), "--cacert",
                      str(pki.ca_cert_path), cwd=pki.directory)
        assert result.returncode == 0, result.stdout + result.stderr


@needs_pki
def test_certreq_hash_is_pki_keyid(pki):
    out = _pki("--keyid", "--type", "x509", "--in", str(pki.ca_cert_path),
               cwd=pki.directory).stdout.decode()
    lines = out.splitlines()
    index = next(i for i, line in enumerate(lines) if "subjectPublicKeyInfo" in line)
    keyid = bytes.fromhex(lines[index + 1].strip().replace(":", ""))
    assert keyid == certs.certreq_hash(certs.load_certificate(pki.ca_cert_path))


@needs_pki
def test_certificates_made_by_pki_are_accepted(tmp_path):
    for args in (["--type", "ecdsa", "--size", "256"], ["--type", "rsa", "--size", "2048"]):
        ca_key = _pki("--gen", *args, "--outform", "pem", cwd=tmp_path).stdout
        (tmp_path / "ca.pem").write_bytes(ca_key)
        ca_cert = _pki("--self", "--ca", "--in", "ca.pem", "--dn", "C=CH, O=pki, CN=pki CA",
                       "--outform", "pem", cwd=tmp_path).stdout
        (tmp_path / "caCert.pem").write_bytes(ca_cert)
        key = _pki("--gen", *args, "--outform", "pem", cwd=tmp_path).stdout
        (tmp_path / "key.pem").write_bytes(key)
        pub = _pki("--pub", "--in", "key.pem", cwd=tmp_path).stdout
        (tmp_path / "pub.der").write_bytes(pub)
        cert = _pki("--issue", "--in", "pub.der", "--cacert", "caCert.pem", "--cakey", "ca.pem",
                    "--dn", "C=CH, O=pki, CN=gw.pki.test", "--san", "gw.pki.test",
                    "--flag", "serverAuth", "--outform", "der", cwd=tmp_path).stdout
        leaf = certs.load_certificate(cert)
        ca = certs.load_certificate(ca_cert)
        assert certs.verify_chain(leaf, [], [ca], datetime.datetime.now(datetime.UTC))
        assert certs.cert_matches_id(leaf, 2, b"gw.pki.test")
        assert certs.dn_string(leaf.subject) == "C=CH, O=pki, CN=gw.pki.test"
        private = certs.load_private_key(key)
        data = auth.sign(private, 14, HashAlgorithm.SHA2_256, OCTETS)
        assert auth.verify(leaf, 14, data, OCTETS)
        assert isinstance(leaf, x509.Certificate)
