"""The IKE_AUTH exchange (RFC 7296 §1.2, §2.15, §2.19): who the peers are, and the first
child SA. A mixin of :class:`ipseclab.ike.ike_sa.IkeSa`; its table names these handlers.

    initiator --> HDR, SK {IDi, [CERT+], [N(INITIAL_CONTACT)], [CERTREQ+], [IDr], AUTH,
                           [CP(CFG_REQUEST)], [N(USE_TRANSPORT_MODE)], SAi2, TSi, TSr}
    responder <-- HDR, SK {IDr, [CERT+], AUTH, [CP(CFG_REPLY)], [N(USE_TRANSPORT_MODE)],
                           SAr2, TSi, TSr}

Each direction authenticates on its own (swanctl's ``local { auth }`` and ``remote { auth }``):
a PSK MAC (§2.15) or a signature. A signer uses RFC 7427's method 14 when the peer announced
SIGNATURE_HASH_ALGORITHMS in IKE_SA_INIT, else the classic method of its key (1 for RSA,
9/10/11 for ECDSA). A verifier takes the peer's end-entity certificate from the first CERT
payload, checks the chain up to a CA it trusts at the current wall-clock time, checks that
the certificate names the IDi/IDr (subject DN or a subjectAltName) and the configured
``remote_id``, then verifies the AUTH signature with its key (:mod:`.auth`, :mod:`.certs`).

A road warrior that asks for a virtual IP (``vips = 0.0.0.0``) sends CP(CFG_REQUEST) with an
empty INTERNAL_IP4_ADDRESS; a gateway with ``pools`` leases an address, answers CP(CFG_REPLY)
and narrows the client's TSi to that address (§2.19). The lease ends with the IKE SA.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from ipseclab.errors import ConfigError
from ipseclab.ike import auth as signatures
from ipseclab.ike import certs, events, negotiation
from ipseclab.ike.config import IkeConfig
from ipseclab.ike.constants import (
    AuthMethod,
    CertEncoding,
    CfgType,
    ConfigAttributeType,
    ExchangeType,
    IdType,
    NotifyType,
)
from ipseclab.ike.message import Message
from ipseclab.ike.payload_base import MalformedMessage, Payload
from ipseclab.ike.payloads import (
    Authentication,
    Certificate,
    CertificateRequest,
    ConfigAttribute,
    Configuration,
    Identification,
    IDi,
    IDr,
    Notify,
    SecurityAssociation,
    TSi,
    TSr,
)
from ipseclab.ike.sa_common import State
from ipseclab.ike.sa_common import find_payload as _find
from ipseclab.ike.sa_common import notify_name as _notify_name
from ipseclab.ipsec.pad import parse_der_dn

if TYPE_CHECKING:
    from ipseclab.ike.ike_sa import IkeSa

__all__ = ["IkeAuthExchange", "describe_id", "read_sa_init_extras", "sa_init_extras"]

_ADDRESS_ATTRS = {ConfigAttributeType.INTERNAL_IP4_ADDRESS: 4,
                  ConfigAttributeType.INTERNAL_IP6_ADDRESS: 6}
_DNS_ATTRS = {4: ConfigAttributeType.INTERNAL_IP4_DNS, 6: ConfigAttributeType.INTERNAL_IP6_DNS}
_OID_LABELS = {"2.5.4.6": "C", "2.5.4.8": "ST", "2.5.4.7": "L", "2.5.4.10": "O",
               "2.5.4.11": "OU", "2.5.4.3": "CN", "1.2.840.113549.1.9.1": "E",
               "2.5.4.4": "SN", "2.5.4.42": "GN", "2.5.4.5": "serialNumber",
               "0.9.2342.19200300.100.1.25": "DC"}


def describe_id(payload: Identification) -> str:
    """An IDi/IDr as a person (and swanctl.conf) writes it; a DN as ``C=CH, O=.., CN=..``."""
    if payload.id_type == IdType.ID_DER_ASN1_DN:
        rdns = parse_der_dn(payload.data)
        if rdns is not None:
            return ", ".join(f"{_OID_LABELS.get(oid, oid)}={value}"
                             for rdn in rdns for oid, value in rdn)
    return payload.describe()


# -- IKE_SA_INIT additions (RFC 7427 §4, RFC 7296 §3.7) -------------------------------------


def sa_init_extras(configs: Iterable[IkeConfig], *, certreq: bool = True) -> list[Payload]:
    """CERTREQ (the CAs we trust, for a peer that signs) and SIGNATURE_HASH_ALGORITHMS,
    for our IKE_SA_INIT message; ``configs`` are the connections it may turn out to be.

    ``certreq=False`` for the initiator: CERTREQ belongs in the IKE_SA_INIT *response* and
    the IKE_AUTH *request* (RFC 7296 §3.7); strongSwan refuses an IKE_SA_INIT request that
    carries one ("payload type CERTREQ was not encrypted")."""
    configs = list(configs)
    cas: list[x509.Certificate] = []
    for config in configs:
        if certreq and config.remote_auth == "pubkey" and config.send_certreq:
            cas += [ca for ca in config.remote_cacerts if ca not in cas]
    out: list[Payload] = []
    if cas:
        out.append(CertificateRequest(CertEncoding.X509_SIGNATURE,
                                      certs.certreq_authority(cas)))
    if any(c.signature_authentication for c in configs):
        out.append(Notify.signature_hash_algorithms(signatures.DEFAULT_SIGNATURE_HASHES))
    return out


def read_sa_init_extras(payloads: Iterable[Payload]
                        ) -> tuple[list[int] | None, list[bytes] | None]:
    """(the peer's signature hashes or None if it announced none, the CA key hashes of its
    CERTREQs or None if it sent no CERTREQ). Malformed ones count as not sent."""
    hashes: list[int] | None = None
    requested: list[bytes] | None = None
    for payload in payloads:
        try:
            if (isinstance(payload, Notify)
                    and payload.notify_type == NotifyType.SIGNATURE_HASH_ALGORITHMS):
                hashes = (hashes or []) + [int(h) for h in payload.hash_algorithms()]
            elif (isinstance(payload, CertificateRequest)
                  and payload.encoding == CertEncoding.X509_SIGNATURE):
                requested = (requested or []) + payload.ca_key_hashes
        except MalformedMessage:
            continue
    return hashes, requested


class IkeAuthExchange:
    """IKE_AUTH for both roles; mixed into :class:`IkeSa` (which holds the state)."""

    # -- what we send about ourselves -------------------------------------------------------

    def _own_id(self: IkeSa, cls: type[Identification]) -> Identification:
        """Our IDi/IDr: ``local_id``, else our certificate's subject DN (strongSwan's
        default), else our IKE address."""
        config = self.config
        assert config is not None
        if not config.local_id and config.local_auth == "pubkey" and config.certificate:
            return cls.der_dn(config.certificate.subject.public_bytes())
        return negotiation.identification(config.local_id, self.local[0], cls)

    def _cert_payloads(self: IkeSa) -> list[Payload]:
        """CERT payloads, end entity first (§3.6), when ``send_cert`` says so."""
        config = self.config
        assert config is not None
        if config.local_auth != "pubkey" or config.send_cert == "never":
            return []
        if config.send_cert == "ifasked" and self.peer_certreq is None:
            return []
        return [Certificate(CertEncoding.X509_SIGNATURE, cert.public_bytes(
            Encoding.DER)) for cert in config.local_certs]

    def _certreq_payloads(self: IkeSa, config: IkeConfig) -> list[Payload]:
        if config.remote_auth != "pubkey" or not config.send_certreq or not config.remote_cacerts:
            return []
        return [CertificateRequest(CertEncoding.X509_SIGNATURE,
                                   certs.certreq_authority(config.remote_cacerts))]

    def _own_auth(self: IkeSa, id_payload: Identification, sa_init: bytes, peer_nonce: bytes,
                  sk_p: bytes) -> Authentication:
        """Our AUTH payload (§2.15): a PSK MAC, or a signature (RFC 7427 or classic)."""
        config = self.config
        assert config is not None and self.suite is not None
        if config.local_auth == "psk":
            return Authentication(AuthMethod.PSK, negotiation.psk_auth(
                self.suite.prf, config.psk, sa_init, peer_nonce, sk_p, id_payload.to_bytes()))
        key = config.private_key
        octets = signatures.signed_octets(self.suite.prf, sa_init, peer_nonce, sk_p,
                                          id_payload.to_bytes())
        method = signatures.auth_method_for_key(key, self.peer_hashes)
        hash_alg = None
        if method == AuthMethod.DIGITAL_SIGNATURE:
            hash_alg = signatures.choose_signature_hash(signatures.DEFAULT_SIGNATURE_HASHES,
                                                        self.peer_hashes or (), key)
            if hash_alg is None:
                raise ConfigError("the peer announced no signature hash we can use with our"
                                  " key (SIGNATURE_HASH_ALGORITHMS)")
        return Authentication(method, signatures.sign(key, method, hash_alg,  # type: ignore
                                                      octets, pss=config.rsa_pss))

    # -- checking the peer ----------------------------------------------------------------------

    def _peer_certificate(self: IkeSa, config: IkeConfig, id_payload: Identification,
                          cert_payloads: Sequence[Certificate], now: float
                          ) -> x509.Certificate | str:
        """The peer's end-entity certificate, checked up to a trusted CA; or why not."""
        x509s = [c for c in cert_payloads if c.encoding == CertEncoding.X509_SIGNATURE]
        if not x509s:
            pinned = [c for c in config.remote_certs
                      if certs.cert_matches_id(c, id_payload.id_type, id_payload.data)]
            if pinned:
                return pinned[0]
            return f"{describe_id(id_payload)} sent no certificate (CERT) and none is" \
                   " configured for it"
        try:
            end_entity = certs.load_certificate(x509s[0].data)
            others = [certs.load_certificate(c.data) for c in x509s[1:]]
        except ConfigError:
            return f"{describe_id(id_payload)} sent a CERT that is not an X.509 certificate"
        if end_entity in config.remote_certs:
            return end_entity
        if not config.remote_cacerts:
            return f"certificate '{certs.dn_string(end_entity.subject)}' is not one of the" \
                   " configured peer certificates"
        try:
            certs.verify_chain(end_entity, others, config.remote_cacerts,
                               self.engine.wall_time(now), crls=config.remote_crls,
                               revocation=config.revocation)
        except certs.CertificateRejected as error:
            if self.engine.wall_clock is None and now < 1e9:
                return f"{error} (checked at UNIX time {now:.0f}: the driver's clock is not" \
                       " wall-clock time; pass IkeEngine(wall_clock=...))"
            return str(error)
        return end_entity

    def _check_peer_auth(self: IkeSa, config: IkeConfig, id_payload: Identification,
                         auth: Authentication, cert_payloads: Sequence[Certificate],
                         peer_sa_init: bytes, own_nonce: bytes, sk_p: bytes, now: float
                         ) -> str:
        """Why the peer's AUTH is refused, or "" if it proves ``id_payload`` (§2.15)."""
        assert self.suite is not None
        who = describe_id(id_payload)
        if config.remote_auth == "psk":
            if auth.method != AuthMethod.PSK:
                return f"{who} uses auth method {_method_name(auth.method)}, we want PSK"
            expected = negotiation.psk_auth(self.suite.prf, config.psk, peer_sa_init,
                                            own_nonce, sk_p, id_payload.to_bytes())
            if not negotiation.auth_equal(auth.data, expected):
                return f"AUTH of {who} does not verify (wrong PSK?)"
            self.peer_auth_method = int(auth.method)
            return ""
        if auth.method == AuthMethod.PSK:
            return f"{who} uses a PSK, we want a signature (auth pubkey)"
        cert = self._peer_certificate(config, id_payload, cert_payloads, now)
        if isinstance(cert, str):
            return cert
        subject = certs.dn_string(cert.subject)
        if not certs.cert_matches_id(cert, id_payload.id_type, id_payload.data):
            return f"identity {who} is not confirmed by certificate '{subject}'"
        if not certs.cert_matches_identity(cert, config.remote_id or "%any"):
            return f"certificate '{subject}' does not match remote id '{config.remote_id}'"
        octets = signatures.signed_octets(self.suite.prf, peer_sa_init, own_nonce, sk_p,
                                          id_payload.to_bytes())
        if not signatures.verify(cert, auth.method, auth.data, octets,
                                 allowed_hashes=signatures.DEFAULT_SIGNATURE_HASHES):
            return f"the {_method_name(auth.method)} signature of {who} does not verify" \
                   f" with the key of '{subject}'"
        self.peer_certificate = subject
        self.peer_auth_method = int(auth.method)
        return ""

    # -- initiator ------------------------------------------------------------------------------

    def _send_auth(self: IkeSa, now: float) -> None:
        config = self.config
        assert config is not None
        if config.childless == "force":
            # RFC 6023: IKE_AUTH without a child SA; the first comes by CREATE_CHILD_SA
            # (with its own DH exchange when its proposals name a group).
            if not self.peer_childless:
                self._fail(now, NotifyType.NO_PROPOSAL_CHOSEN, "childless = force, but the"
                           " responder does not announce childless IKE SAs (RFC 6023)")
                return
            self._after_auth, self.child_config = self.child_config, None
        try:
            idi = self._own_id(IDi)
            auth = self._own_auth(idi, self.init_request, self.nr, self.sk_pi)
        except ConfigError as error:
            self._fail(now, NotifyType.AUTHENTICATION_FAILED,
                       f"cannot authenticate ourselves: {_fail_reason(error)}")
            return
        self.local_id = describe_id(idi)
        inner: list[Payload] = [idi, *self._cert_payloads()]
        if (config.send_initial_contact and self._reauth_of is None
                and not self.engine._in_contact(self)):
            # §2.4: only when we have no other IKE SA with this peer, which the peer would
            # drop (and not when reauthenticating: the old SAs live until we delete them).
            inner.append(Notify(NotifyType.INITIAL_CONTACT))
        inner += self._certreq_payloads(config)
        if config.remote_id and config.remote_id != "%any":
            with contextlib.suppress(ConfigError):  # a wildcard id names no one: no IDr
                inner.append(negotiation.identification(config.remote_id, self.remote[0], IDr))
        inner.append(auth)
        if config.vips:
            # A reauthentication asks for the addresses it has, to keep them.
            old = self._reauth_of
            wishes = old.virtual_ips if old is not None and old.virtual_ips else config.vips
            inner.append(Configuration(CfgType.CFG_REQUEST, [_vip_request(v) for v in wishes]))
        inner += self._child_offer()
        self.state = State.AUTH_SENT
        self.request(ExchangeType.IKE_AUTH, inner, now, None)

    def _on_auth_response(self: IkeSa, message: Message, inner: list[Payload],
                          now: float) -> None:
        config = self.config
        assert config is not None
        self._request_done(now)
        notifies = [p for p in inner if isinstance(p, Notify)]
        if any(n.notify_type == NotifyType.AUTHENTICATION_FAILED for n in notifies):
            self._event(events.AuthenticationFailed, now, connection=config.name,
                        reason="the responder rejected our AUTH (AUTHENTICATION_FAILED)",
                        by_peer=True)
            self._delete(now, "authentication failed", by_peer=True)
            return
        idr = _find(inner, IDr)
        auth = _find(inner, Authentication)
        if idr is None or auth is None:
            errors = [n for n in notifies if n.is_error]
            notify = errors[0].notify_type if errors else NotifyType.INVALID_SYNTAX
            self._fail(now, notify, f"IKE_AUTH failed: {_notify_name(notify)}", by_peer=True)
            return
        reason = ""
        if not config.remote_id_matcher.matches(idr.id_type, idr.data):
            cert_named = (config.remote_auth == "pubkey"
                          and idr.id_type == IdType.ID_DER_ASN1_DN)
            if not cert_named:
                reason = f"responder identity {describe_id(idr)} is not {config.remote_id}"
        if not reason:
            cert_payloads = [p for p in inner if isinstance(p, Certificate)]
            reason = self._check_peer_auth(config, idr, auth, cert_payloads,
                                           self.init_response, self.ni, self.sk_pr, now)
        if reason:
            self._event(events.AuthenticationFailed, now, connection=config.name,
                        reason=reason)
            # §2.21.2: tell the responder in an INFORMATIONAL of its own, then forget.
            self.request(ExchangeType.INFORMATIONAL,
                         [Notify(NotifyType.AUTHENTICATION_FAILED)], now, None)
            self._delete(now, "authentication failed")
            return
        self.remote_id = describe_id(idr)
        self._read_cp_reply(inner)
        self._established(now)
        self._read_auth_lifetime(notifies, now)
        if self.child_config is not None:
            self._finish_child_initiator(inner, notifies, now)
        if self._after_auth is not None:
            self.create_child(self._after_auth, now)
            self._after_auth = None
        if self._reauth_of is not None:
            self._reauth_established(now)

    def _read_cp_reply(self: IkeSa, inner: list[Payload]) -> None:
        for cp in (p for p in inner if isinstance(p, Configuration)):
            if cp.cfg_type != CfgType.CFG_REPLY:
                continue
            for attr in cp.attributes:
                address = attr.as_address()
                if address is None:
                    continue
                if attr.attribute_type in _ADDRESS_ATTRS:
                    self.virtual_ips.append(str(address))
                elif attr.attribute_type in _DNS_ATTRS.values():
                    self.dns_servers.append(str(address))

    # -- responder ------------------------------------------------------------------------------

    def _select_config(self: IkeSa, idi: Identification, auth: Authentication,
                       cert_payloads: Sequence[Certificate]) -> IkeConfig | None:
        """The first candidate whose remote id fits IDi (or, for pubkey, the certificate
        that came with it) and whose remote auth is the kind the initiator used."""
        end_entity = None
        for payload in cert_payloads[:1]:
            try:
                end_entity = certs.load_certificate(payload.data)
            except ConfigError:
                end_entity = None
        psk = auth.method == AuthMethod.PSK
        fitting = []
        for config in self.candidates:
            by_cert = (config.remote_auth == "pubkey" and end_entity is not None
                       and certs.cert_matches_id(end_entity, idi.id_type, idi.data)
                       and certs.cert_matches_identity(end_entity, config.remote_id or "%any"))
            if by_cert or config.remote_id_matcher.matches(idi.id_type, idi.data):
                fitting.append(config)
        same_kind = [c for c in fitting if (c.remote_auth == "psk") == psk]
        return (same_kind or fitting or [None])[0]

    def _on_auth_request(self: IkeSa, message: Message, inner: list[Payload],
                         now: float) -> None:
        idi = _find(inner, IDi)
        auth = _find(inner, Authentication)
        if idi is None or auth is None:
            self._respond(message, [Notify(NotifyType.INVALID_SYNTAX)])
            self._fail(now, NotifyType.INVALID_SYNTAX, "IKE_AUTH request lacks IDi or AUTH")
            return
        _, requested = read_sa_init_extras(inner)
        if requested is not None:
            self.peer_certreq = (self.peer_certreq or []) + requested
        cert_payloads = [p for p in inner if isinstance(p, Certificate)]
        config = self._select_config(idi, auth, cert_payloads)
        if config is None:
            reason = f"no connection accepts identity {describe_id(idi)}"
        else:
            reason = self._check_peer_auth(config, idi, auth, cert_payloads, self.init_request,
                                           self.nr, self.sk_pi, now)
        reply: list[Payload] = []
        if not reason:
            assert config is not None
            self.config = config
            try:
                idr = self._own_id(IDr)
                reply = [idr, *self._cert_payloads(),
                         self._own_auth(idr, self.init_response, self.ni, self.sk_pr)]
            except ConfigError as error:
                reason = f"cannot authenticate ourselves: {_fail_reason(error)}"
        if reason:
            self._respond(message, [Notify(NotifyType.AUTHENTICATION_FAILED)])
            name = config.name if config else (self.candidates[0].name
                                               if self.candidates else "")
            self._event(events.AuthenticationFailed, now, connection=name, reason=reason)
            self._delete(now, "authentication failed")
            return
        assert config is not None
        self.remote_id = describe_id(idi)
        self.local_id = describe_id(reply[0])  # type: ignore[arg-type]
        if config.unique == "keep" and self._refused_by_keep(message, now):
            return
        if config.childless == "never" and all(
                _find(inner, cls) is None for cls in (SecurityAssociation, TSi, TSr)):
            # We did not announce RFC 6023, so IKE_AUTH must carry SA, TSi and TSr (§1.2).
            self._respond(message, [Notify(NotifyType.INVALID_SYNTAX)])
            self._fail(now, NotifyType.INVALID_SYNTAX,
                       "IKE_AUTH without a child SA, and childless = never")
            return
        notifies = [p for p in inner if isinstance(p, Notify)]
        if (any(n.notify_type == NotifyType.INITIAL_CONTACT for n in notifies)
                and config.unique != "never"):
            self.engine._initial_contact(self, now)  # first: it frees the old leases
        elif config.unique == "replace":
            self.engine._unique_replace(self, now)
        cp_reply, cp_failed = self._answer_cp(inner)
        reply += cp_reply
        if cp_failed:
            child_reply: list[Payload] = [Notify(NotifyType.INTERNAL_ADDRESS_FAILURE)]
            child_result: tuple | int | None = NotifyType.INTERNAL_ADDRESS_FAILURE
        else:
            child_reply, child_result = self._negotiate_child(inner, notifies)
        reply += child_reply
        reply += self._auth_lifetime_notify()
        self._respond(message, reply)
        self._established(now)
        if child_result is not None:
            if isinstance(child_result, tuple):
                self._install_child(*child_result, now=now)
            else:
                self._event(events.ChildSaFailed, now, notify=child_result,
                            reason=f"we answered {_notify_name(child_result)}",
                            **self._child_refusal(inner, only=None, ike_auth=True))

    def _refused_by_keep(self: IkeSa, message: Message, now: float) -> bool:
        """swanctl's ``unique = keep``: an identity that has an IKE SA from another address
        gets no second one (AUTHENTICATION_FAILED, as strongSwan answers); from the same
        address it may be a reauthentication (§2.8.3), which goes ahead."""
        kept = [o for o in self.engine._older_duplicates(self) if o.remote[0] != self.remote[0]]
        if not kept:
            return False
        self._respond(message, [Notify(NotifyType.AUTHENTICATION_FAILED)])
        config = self.config
        assert config is not None
        self._event(events.AuthenticationFailed, now, connection=config.name,
                    reason=f"unique = keep: {self.remote_id} already has IKE SA"
                           f" {kept[0].name} from {kept[0].remote[0]}")
        self._delete(now, "refused by unique = keep")
        return True

    def _answer_cp(self: IkeSa, inner: list[Payload]) -> tuple[list[Payload], bool]:
        """CP(CFG_REPLY) for a CP(CFG_REQUEST) (§2.19): addresses leased from our pools.
        (payloads, failed): failed when addresses were asked for and none could be given."""
        config = self.config
        assert config is not None
        request = next((p for p in inner if isinstance(p, Configuration)
                        and p.cfg_type == CfgType.CFG_REQUEST), None)
        if request is None or not config.pools:
            return [], False
        attributes: list[ConfigAttribute] = []
        asked = [a for a in request.attributes if a.attribute_type in _ADDRESS_ATTRS]
        for attr in asked:
            version = _ADDRESS_ATTRS[attr.attribute_type]  # type: ignore[index]
            wish = attr.as_address()
            wanted = str(wish) if wish is not None and not wish.is_unspecified else None
            for pool in (p for p in config.pools if p.version == version):
                address = self.engine._lease(pool, self, wanted)
                if address is None:
                    continue
                self.remote_virtual_ips.append(address)
                value = address + "/128" if version == 6 else address
                attributes.append(ConfigAttribute.address(attr.attribute_type, value))
                attributes += [ConfigAttribute.address(_DNS_ATTRS[version], dns)
                               for pool_dns in [pool.dns] for dns in pool_dns
                               if ipaddress.ip_address(dns).version == version]
                break
        if asked and not self.remote_virtual_ips:
            return [], True
        return [Configuration(CfgType.CFG_REPLY, attributes)] if attributes else [], False


def _vip_request(vip: str) -> ConfigAttribute:
    """INTERNAL_IP4/6_ADDRESS, empty for ``0.0.0.0``/``::`` (any address), else a wish."""
    address = ipaddress.ip_address(vip)
    kind = (ConfigAttributeType.INTERNAL_IP4_ADDRESS if address.version == 4
            else ConfigAttributeType.INTERNAL_IP6_ADDRESS)
    if address.is_unspecified:
        return ConfigAttribute(kind)
    return ConfigAttribute.address(kind, f"{address}/128" if address.version == 6
                                   else str(address))




def _fail_reason(error: ConfigError) -> str:
    return getattr(error, "message", None) or str(error)


def _method_name(method: int) -> str:
    try:
        return AuthMethod(method).name
    except ValueError:
        return f"auth method {method}"
