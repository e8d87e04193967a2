"""A small lab PKI written in strongSwan's swanctl layout, for tests, topologies, notebooks.

``make_lab_pki(directory)`` writes (by default; other key kinds: :data:`KEY_KINDS`)::

    x509ca/caCert.pem        root CA, RSA-3072, "C=CH, O=ipseclab, CN=ipseclab Root CA"
    private/caKey.pem
    x509/moonCert.pem        gateway, RSA-3072, SAN moon.ipseclab.test, 192.0.2.1
    private/moonKey.pem
    x509/sunCert.pem         gateway, ECDSA P-256, SAN sun.ipseclab.test, 198.51.100.1
    private/sunKey.pem
    x509/carolCert.pem       road warrior, ECDSA P-256, SAN carol@ipseclab.test
    private/carolKey.pem

so a swanctl.conf beside them can say ``certs = moonCert.pem``. Keys are unencrypted PEM
(PKCS#8) as ``pki --gen`` leaves them. These are lab credentials: never use them elsewhere.
:func:`revoke` writes ``x509crl/caCrl.pem``, the CA's CRL listing some of the hosts (as
``pki --signcrl``), which a gateway checks the peer's certificate against (RFC 5280 §5).
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["KEY_KINDS", "HostSpec", "LabPki", "generate_key", "issue_certificate", "issue_crl",
           "make_lab_pki", "name", "revoke"]

DEFAULT_START = datetime.datetime(2024, 1, 1, tzinfo=datetime.UTC)
_LABELS = {"C": NameOID.COUNTRY_NAME, "ST": NameOID.STATE_OR_PROVINCE_NAME,
           "L": NameOID.LOCALITY_NAME, "O": NameOID.ORGANIZATION_NAME,
           "OU": NameOID.ORGANIZATIONAL_UNIT_NAME, "CN": NameOID.COMMON_NAME,
           "E": NameOID.EMAIL_ADDRESS}


def name(dn: str) -> x509.Name:
    """An x509.Name from strongSwan's ``C=CH, O=ipseclab, CN=moon`` (first RDN first)."""
    attrs = []
    for part in dn.split(","):
        label, _, value = part.strip().partition("=")
        attrs.append(x509.NameAttribute(_LABELS[label.strip()], value.strip()))
    return x509.Name(attrs)


PrivateKey = (rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
              | ed448.Ed448PrivateKey)
KEY_KINDS = ("rsa2048", "rsa3072", "rsa4096", "ecdsa256", "ecdsa384", "ecdsa521", "ed25519",
             "ed448")


def generate_key(kind: str) -> PrivateKey:
    """A new private key of one of :data:`KEY_KINDS` (``pki --gen --type ... --size ...``)."""
    if kind not in KEY_KINDS:
        raise ValueError(f"unknown key kind {kind!r}; known: {', '.join(KEY_KINDS)}")
    if kind.startswith("rsa"):
        return rsa.generate_private_key(65537, int(kind[3:]))
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    if kind == "ed448":
        return ed448.Ed448PrivateKey.generate()
    curves = {"ecdsa256": ec.SECP256R1(), "ecdsa384": ec.SECP384R1(), "ecdsa521": ec.SECP521R1()}
    return ec.generate_private_key(curves[kind])


def issue_certificate(issuer: x509.Certificate | None, issuer_key: object, subject: str,
                      public_key: object, *, sans: list[str] = (),  # type: ignore[assignment]
                      ca: bool = False, not_before: datetime.datetime = DEFAULT_START,
                      days: int = 3650, key_usage: bool = True, serial: int | None = None
                      ) -> x509.Certificate:
    """A certificate for ``subject``; ``issuer`` None makes it self-signed.

    ``sans`` entries: ``user@host`` (rfc822Name), an address (iPAddress), else dNSName.
    Key usage is keyCertSign/cRLSign for CAs, digitalSignature otherwise (as ``pki --issue``);
    ``key_usage=False`` leaves the extension out.
    """
    subject_name = name(subject)
    builder = (x509.CertificateBuilder()
               .subject_name(subject_name)
               .issuer_name(issuer.subject if issuer is not None else subject_name)
               .public_key(public_key)  # type: ignore[arg-type]
               .serial_number(serial or x509.random_serial_number())
               .not_valid_before(not_before)
               .not_valid_after(not_before + datetime.timedelta(days=days))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=ca)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),  # type: ignore
                              critical=False))
    if key_usage:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=not ca, content_commitment=False, key_encipherment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
            encipher_only=False, decipher_only=False), critical=False)
    if not ca:
        builder = builder.add_extension(x509.ExtendedKeyUsage(
            [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.IPSEC_IKE]), critical=False)
    if sans:
        general: list[x509.GeneralName] = []
        for san in sans:
            try:
                general.append(x509.IPAddress(ipaddress.ip_address(san)))
            except ValueError:
                general.append(x509.RFC822Name(san) if "@" in san else x509.DNSName(san))
        builder = builder.add_extension(x509.SubjectAlternativeName(general), critical=False)
    if issuer is not None:
        builder = builder.add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
            issuer.public_key()), critical=False)  # type: ignore[arg-type]
    # EdDSA signs the certificate itself, without a separate hash (RFC 8410 §6).
    digest = None if isinstance(issuer_key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey) \
        else hashes.SHA256()
    return builder.sign(issuer_key, digest)  # type: ignore[arg-type]


@dataclass(frozen=True)
class HostSpec:
    """One end entity: file stem (``moon`` -> moonCert.pem), key kind, DN, SANs."""

    stem: str
    key: str
    subject: str
    sans: tuple[str, ...]


DEFAULT_HOSTS = (
    HostSpec("moon", "rsa3072", "C=CH, O=ipseclab, CN=moon.ipseclab.test",
             ("moon.ipseclab.test", "192.0.2.1")),
    HostSpec("sun", "ecdsa256", "C=CH, O=ipseclab, CN=sun.ipseclab.test",
             ("sun.ipseclab.test", "198.51.100.1")),
    HostSpec("carol", "ecdsa256", "C=CH, O=ipseclab, CN=carol@ipseclab.test",
             ("carol@ipseclab.test",)),
)


@dataclass
class LabPki:
    """Paths of what :func:`make_lab_pki` wrote, and the objects themselves."""

    directory: Path
    ca_cert_path: Path
    ca_key_path: Path
    ca_cert: x509.Certificate
    ca_key: object = field(repr=False)
    certs: dict[str, Path] = field(default_factory=dict)
    keys: dict[str, Path] = field(default_factory=dict)
    ids: dict[str, str] = field(default_factory=dict)  # stem -> its DN


def _write_key(path: Path, key: object) -> None:
    path.write_bytes(key.private_bytes(  # type: ignore[attr-defined]
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    path.chmod(0o600)


def make_lab_pki(directory: str | Path, hosts: tuple[HostSpec, ...] = DEFAULT_HOSTS, *,
                 ca_subject: str = "C=CH, O=ipseclab, CN=ipseclab Root CA",
                 ca_key: str = "rsa3072", not_before: datetime.datetime = DEFAULT_START,
                 days: int = 3650) -> LabPki:
    """Create the CA and ``hosts`` under ``directory`` in the swanctl layout (see module)."""
    base = Path(directory)
    for sub in ("x509ca", "x509", "private"):
        (base / sub).mkdir(parents=True, exist_ok=True)
    key = generate_key(ca_key)
    ca = issue_certificate(None, key, ca_subject, key.public_key(), ca=True,
                           not_before=not_before, days=days)
    pki = LabPki(base, base / "x509ca" / "caCert.pem", base / "private" / "caKey.pem", ca, key)
    pki.ca_cert_path.write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    _write_key(pki.ca_key_path, key)
    for host in hosts:
        host_key = generate_key(host.key)
        cert = issue_certificate(ca, key, host.subject, host_key.public_key(),
                                 sans=list(host.sans), not_before=not_before, days=days)
        pki.certs[host.stem] = base / "x509" / f"{host.stem}Cert.pem"
        pki.keys[host.stem] = base / "private" / f"{host.stem}Key.pem"
        pki.certs[host.stem].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(pki.keys[host.stem], host_key)
        pki.ids[host.stem] = host.subject
    return pki


def issue_crl(ca: x509.Certificate, ca_key: object, revoked: list[x509.Certificate], *,
              last_update: datetime.datetime, days: int = 15,
              reason: x509.ReasonFlags = x509.ReasonFlags.key_compromise
              ) -> x509.CertificateRevocationList:
    """The CA's CRL listing ``revoked`` (revoked at ``last_update``, with ``reason``), valid
    for ``days`` (nextUpdate), signed with SHA-256 (RFC 5280 §5)."""
    builder = (x509.CertificateRevocationListBuilder().issuer_name(ca.subject)
               .last_update(last_update)
               .next_update(last_update + datetime.timedelta(days=days)))
    for cert in revoked:
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(cert.serial_number)
            .revocation_date(last_update)
            .add_extension(x509.CRLReason(reason), critical=False).build())
    return builder.sign(ca_key, hashes.SHA256())  # type: ignore[arg-type]


def revoke(directory: str | Path, stems: list[str], *, last_update: datetime.datetime,
           days: int = 15) -> Path:
    """Write the CA's CRL listing the certificates of ``stems`` (``x509/<stem>Cert.pem``)
    to ``x509crl/caCrl.pem`` in a directory :func:`make_lab_pki` made; its path."""
    base = Path(directory)
    ca = x509.load_pem_x509_certificate((base / "x509ca" / "caCert.pem").read_bytes())
    ca_key = serialization.load_pem_private_key((base / "private" / "caKey.pem").read_bytes(),
                                                None)
    certs = [x509.load_pem_x509_certificate((base / "x509" / f"{stem}Cert.pem").read_bytes())
             for stem in stems]
    crl = issue_crl(ca, ca_key, certs, last_update=last_update, days=days)
    path = base / "x509crl" / "caCrl.pem"
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(crl.public_bytes(serialization.Encoding.PEM))
    return path
