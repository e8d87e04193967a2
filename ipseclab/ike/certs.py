"""X.509 for IKEv2 authentication: loading, chain checks, identities, CERTREQ hashes.

What the IKE_AUTH exchange needs from certificates (RFC 7296 §3.6, §3.7, §2.15; RFC 4945
for the PKI profile): the peer's end-entity certificate and intermediates arrive in CERT
payloads (encoding 4, X.509 Certificate - Signature, DER); we check them up to a CA we
trust at the time ``now`` given by the caller, check that the identity in IDi/IDr is the
certificate's subject or one of its subjectAltNames, and then verify the AUTH signature
with the certificate's public key (:mod:`.auth`). CERTREQ carries SHA-1 hashes of the
SubjectPublicKeyInfo of the CAs a side trusts, so the peer can pick a matching chain.
Revocation: certificate revocation lists (RFC 5280 §5) a CA signed, checked as strongSwan's
``revocation`` setting says (relaxed, ifuri, strict); nothing is fetched.

DNs are written the way strongSwan writes them, first RDN first: ``C=CH, O=strongSwan,
CN=moon.strongswan.org``. Pure functions: no clock, no files except in the ``load_*`` ones.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import itertools
from collections.abc import Iterable, Sequence
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
    CertificatePublicKeyTypes,
)
from cryptography.x509.oid import ExtensionOID, NameOID

from ipseclab.errors import ConfigError, IpsecLabError
from ipseclab.ike.constants import IdType
from ipseclab.ipsec.pad import IdentityMatcher, parse_der_dn

__all__ = [
    "CertificateRejected",
    "cert_matches_id",
    "cert_matches_identity",
    "certreq_authority",
    "certreq_hash",
    "dn_string",
    "load_certificate",
    "load_crl",
    "load_private_key",
    "load_public_key",
    "trusted_by_certreq",
    "verify_chain",
]

REVOCATION_POLICIES = ("relaxed", "ifuri", "strict")

MAX_CHAIN = 8


class CertificateRejected(IpsecLabError):
    """A peer certificate (chain) we do not accept; ``str()`` says why in one line."""


# -- loading ----------------------------------------------------------------------------------


def _read(source: str | Path | bytes, what: str) -> bytes:
    if isinstance(source, bytes):
        return source
    try:
        return Path(source).read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read {what}: {exc.strerror}", file=str(source)) from None


def load_certificate(source: str | Path | bytes) -> x509.Certificate:
    """An X.509 certificate from a PEM or DER file (or its bytes)."""
    data = _read(source, "certificate")
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        where = None if isinstance(source, bytes) else str(source)
        raise ConfigError("not an X.509 certificate (PEM or DER)", file=where) from None


def load_crl(source: str | Path | bytes) -> x509.CertificateRevocationList:
    """A CRL from PEM or DER (strongSwan's ``x509crl/`` holds either)."""
    data = _read(source, "CRL")
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_crl(data)
        return x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise ConfigError(f"not a certificate revocation list (PEM or DER): {exc}") from None


def load_private_key(source: str | Path | bytes, passphrase: bytes | None = None
                     ) -> CertificateIssuerPrivateKeyTypes:
    """A private key (PKCS#1, SEC1 or PKCS#8; PEM or DER), as in strongSwan's private/."""
    data = _read(source, "private key")
    where = None if isinstance(source, bytes) else str(source)
    try:
        if b"-----BEGIN" in data:
            key = serialization.load_pem_private_key(data, passphrase)
        else:
            key = serialization.load_der_private_key(data, passphrase)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"cannot load private key: {exc}", file=where) from None
    return key  # type: ignore[return-value]


def load_public_key(source: str | Path | bytes | x509.Certificate) -> CertificatePublicKeyTypes:
    """A public key from a certificate, a PEM/DER SubjectPublicKeyInfo, or a cert file."""
    if isinstance(source, x509.Certificate):
        return source.public_key()
    data = _read(source, "public key")
    try:
        if b"CERTIFICATE-----" in data:
            return x509.load_pem_x509_certificate(data).public_key()
        if b"-----BEGIN" in data:
            return serialization.load_pem_public_key(data)  # type: ignore[return-value]
        try:
            return serialization.load_der_public_key(data)  # type: ignore[return-value]
        except ValueError:
            return x509.load_der_x509_certificate(data).public_key()
    except ValueError:
        where = None if isinstance(source, bytes) else str(source)
        raise ConfigError("not a public key or certificate", file=where) from None


# -- names and identities ---------------------------------------------------------------------

_DN_LABELS = {NameOID.COUNTRY_NAME: "C", NameOID.STATE_OR_PROVINCE_NAME: "ST",
              NameOID.LOCALITY_NAME: "L", NameOID.ORGANIZATION_NAME: "O",
              NameOID.ORGANIZATIONAL_UNIT_NAME: "OU", NameOID.COMMON_NAME: "CN",
              NameOID.EMAIL_ADDRESS: "E", NameOID.SURNAME: "SN", NameOID.GIVEN_NAME: "GN",
              NameOID.SERIAL_NUMBER: "serialNumber", NameOID.DOMAIN_COMPONENT: "DC"}


def dn_string(name: x509.Name) -> str:
    """``C=CH, O=strongSwan, CN=moon.strongswan.org``: strongSwan's form, first RDN first."""
    parts = []
    for rdn in name.rdns:
        for attr in rdn:
            label = _DN_LABELS.get(attr.oid, attr.oid.dotted_string)
            parts.append(f"{label}={attr.value}")
    return ", ".join(parts)


def _san(cert: x509.Certificate) -> x509.SubjectAlternativeName | None:
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None


def cert_matches_id(cert: x509.Certificate, id_type: int, id_data: bytes) -> bool:
    """Is the IDi/IDr (type and body as on the wire, §3.5) this certificate's subject or
    one of its subjectAltNames? Never raises on malformed input."""
    try:
        if id_type == IdType.ID_DER_ASN1_DN:
            theirs = parse_der_dn(id_data)
            return theirs is not None and theirs == parse_der_dn(cert.subject.public_bytes())
        san = _san(cert)
        if san is None:
            return False
        if id_type == IdType.ID_FQDN:
            name = id_data.decode("ascii").lower().rstrip(".")
            return any(d.lower().rstrip(".") == name for d in san.get_values_for_type(
                x509.DNSName))
        if id_type == IdType.ID_RFC822_ADDR:
            email = id_data.decode("ascii").lower()
            return any(e.lower() == email for e in san.get_values_for_type(x509.RFC822Name))
        if id_type in (IdType.ID_IPV4_ADDR, IdType.ID_IPV6_ADDR):
            addr = ipaddress.ip_address(id_data)
            return addr in san.get_values_for_type(x509.IPAddress)
    except (ValueError, UnicodeDecodeError, ConfigError):
        return False
    return False


def cert_matches_identity(cert: x509.Certificate, identity: str) -> bool:
    """Does a swanctl ``id`` (``moon.strongswan.org``, ``@*.example.org``, ``C=CH, ...``,
    ``carol@example.org``, an address, ``%any``) fit this certificate, as strongSwan
    checks a configured remote id against the peer's certificate?"""
    try:
        matcher = IdentityMatcher.parse(identity)
    except ConfigError:
        return False
    if matcher.id_type is None:
        return True
    if matcher.matches(9, cert.subject):
        return True
    san = _san(cert)
    if san is None:
        return False
    values: Iterable[object] = ()
    if matcher.id_type == 2:
        values = san.get_values_for_type(x509.DNSName)
    elif matcher.id_type == 3:
        values = san.get_values_for_type(x509.RFC822Name)
    elif matcher.id_type in (1, 5):
        values = (str(a) for a in san.get_values_for_type(x509.IPAddress))
    return any(matcher.matches(matcher.id_type, str(v)) for v in values)


# -- CERTREQ (RFC 7296 §3.7) --------------------------------------------------------------------


def certreq_hash(ca: x509.Certificate) -> bytes:
    """SHA-1 of the CA's SubjectPublicKeyInfo (DER), the unit of a CERTREQ for encoding 4."""
    spki = ca.public_key().public_bytes(serialization.Encoding.DER,
                                        serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha1(spki).digest()


def certreq_authority(cas: Iterable[x509.Certificate]) -> bytes:
    """The Certification Authority field of one CERTREQ payload: the hashes concatenated."""
    return b"".join(certreq_hash(ca) for ca in cas)


def trusted_by_certreq(hashes: Iterable[bytes], trusted: Iterable[x509.Certificate]
                       ) -> list[x509.Certificate]:
    """Which of our CA certificates the peer asked for (to choose what to send in CERT)."""
    wanted = set(hashes)
    return [ca for ca in trusted if certreq_hash(ca) in wanted]


# -- chain validation -----------------------------------------------------------------------------


def _as_datetime(now: datetime.datetime | float) -> datetime.datetime:
    if isinstance(now, datetime.datetime):
        return now if now.tzinfo else now.replace(tzinfo=datetime.UTC)
    return datetime.datetime.fromtimestamp(now, datetime.UTC)


def _check_validity(cert: x509.Certificate, now: datetime.datetime, role: str) -> None:
    if now < cert.not_valid_before_utc:
        raise CertificateRejected(f"{role} certificate '{dn_string(cert.subject)}' is not valid"
                                  f" before {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC")
    if now > cert.not_valid_after_utc:
        raise CertificateRejected(f"{role} certificate '{dn_string(cert.subject)}' expired on"
                                  f" {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC")


def _key_usage(cert: x509.Certificate) -> x509.KeyUsage | None:
    try:
        return cert.extensions.get_extension_for_oid(ExtensionOID.KEY_USAGE).value  # type: ignore
    except x509.ExtensionNotFound:
        return None


def _check_ca(cert: x509.Certificate, role: str) -> None:
    name = dn_string(cert.subject)
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        basic = None
    if basic is None or not basic.ca:
        raise CertificateRejected(f"{role} certificate '{name}' is not a CA"
                                  " (basicConstraints CA:TRUE missing)")
    usage = _key_usage(cert)
    if usage is not None and not usage.key_cert_sign:
        raise CertificateRejected(f"{role} certificate '{name}' may not sign certificates"
                                  " (keyUsage without keyCertSign)")


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
        return True
    except (ValueError, TypeError, InvalidSignature):
        return False


def _check_revocation(cert: x509.Certificate, issuer: x509.Certificate,
                      crls: Sequence[x509.CertificateRevocationList], when: datetime.datetime,
                      policy: str) -> None:
    """``cert`` against the CRLs its ``issuer`` signed (RFC 5280 §6.3).

    Listed in any of them: revoked (revocation is for good, so a CRL past its nextUpdate
    still says so). Otherwise the status is known only from a CRL current at ``when``;
    without one, ``relaxed`` accepts, ``ifuri`` refuses a certificate that names a CRL or
    OCSP location (the information should exist; ipseclab fetches nothing), ``strict``
    refuses, as strongSwan's ``revocation`` setting does.
    """
    name = dn_string(cert.subject)
    current = False
    for crl in crls:
        if crl.issuer != issuer.subject or not crl.is_signature_valid(
                issuer.public_key()):  # type: ignore[arg-type]
            continue
        revoked = crl.get_revoked_certificate_by_serial_number(cert.serial_number)
        if revoked is not None:
            try:
                reason = revoked.extensions.get_extension_for_class(x509.CRLReason).value
                why = f" ({reason.reason.value})"
            except x509.ExtensionNotFound:
                why = ""
            raise CertificateRejected(f"certificate '{name}' was revoked on"
                                      f" {revoked.revocation_date_utc:%Y-%m-%d %H:%M:%S} UTC"
                                      f"{why} (CRL of '{dn_string(issuer.subject)}')")
        next_update = crl.next_update_utc
        if crl.last_update_utc <= when and (next_update is None or when <= next_update):
            current = True
    if current or policy == "relaxed":
        return
    if policy == "strict":
        raise CertificateRejected(f"no current CRL of '{dn_string(issuer.subject)}' to check"
                                  f" certificate '{name}' (revocation = strict)")
    locations = (ExtensionOID.CRL_DISTRIBUTION_POINTS, ExtensionOID.AUTHORITY_INFORMATION_ACCESS)
    if any(ext.oid in locations for ext in cert.extensions):
        raise CertificateRejected(f"certificate '{name}' names where its revocation status is,"
                                  " but no current CRL of its issuer is loaded (revocation ="
                                  " ifuri; ipseclab fetches nothing: put the CRL in x509crl/)")


def verify_chain(end_entity: x509.Certificate, intermediates: Sequence[x509.Certificate],
                 trusted: Sequence[x509.Certificate], now: datetime.datetime | float, *,
                 crls: Sequence[x509.CertificateRevocationList] = (),
                 revocation: str = "relaxed") -> list[x509.Certificate]:
    """Check a peer's certificate up to one of the ``trusted`` CAs at time ``now``.

    Every certificate must be valid at ``now`` and signed by the next; intermediates and
    the trust anchor must be CAs (basicConstraints, keyUsage keyCertSign if present); the
    end entity's keyUsage, if present, must allow digitalSignature (RFC 4945 §5.1.3.2).
    Each certificate below the trust anchor is checked against the ``crls`` its issuer
    signed, as the ``revocation`` policy (relaxed, ifuri, strict) says.
    Returns the chain, end entity first, trust anchor last. Raises
    :class:`CertificateRejected` with the reason.
    """
    when = _as_datetime(now)
    chain = _build_chain(end_entity, intermediates, trusted, when)
    for cert, issuer in itertools.pairwise(chain):
        _check_revocation(cert, issuer, crls, when, revocation)
    return chain


def _build_chain(end_entity: x509.Certificate, intermediates: Sequence[x509.Certificate],
                 trusted: Sequence[x509.Certificate], when: datetime.datetime
                 ) -> list[x509.Certificate]:
    _check_validity(end_entity, when, "peer")
    usage = _key_usage(end_entity)
    if usage is not None and not (usage.digital_signature or usage.content_commitment):
        raise CertificateRejected(f"peer certificate '{dn_string(end_entity.subject)}' may not"
                                  " sign (keyUsage without digitalSignature)")
    chain = [end_entity]
    current = end_entity
    for _ in range(MAX_CHAIN):
        for anchor in trusted:
            if anchor.subject == current.issuer and _issued_by(current, anchor):
                _check_ca(anchor, "CA")
                _check_validity(anchor, when, "CA")
                if anchor != current:
                    chain.append(anchor)
                return chain
        step = next((c for c in intermediates if c.subject == current.issuer
                     and c not in chain and _issued_by(current, c)), None)
        if step is None:
            if any(a.subject == current.issuer for a in trusted) or any(
                    c.subject == current.issuer for c in intermediates):
                raise CertificateRejected(f"the signature of '{dn_string(current.subject)}'"
                                          f" does not verify with the key of its issuer"
                                          f" '{dn_string(current.issuer)}'")
            raise CertificateRejected(f"no trusted CA for '{dn_string(current.subject)}':"
                                      f" issuer '{dn_string(current.issuer)}' is unknown")
        _check_ca(step, "intermediate")
        _check_validity(step, when, "intermediate")
        chain.append(step)
        current = step
    raise CertificateRejected(f"certificate chain longer than {MAX_CHAIN}")
