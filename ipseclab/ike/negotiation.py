"""The pieces of IKE_SA_INIT and IKE_AUTH that are plain functions of their inputs.

Proposals between the wire form (:mod:`.sa_payload`) and strongSwan-style proposals
(:mod:`ipseclab.crypto.proposals`), NAT detection hashes (§2.23), the PSK AUTH value
(§2.15), identities (§3.5), traffic selectors between the wire form and
:mod:`ipseclab.ipsec.selectors`, and Diffie-Hellman keys drawn from an injectable RNG.
The state machine in :mod:`.ike_sa` calls these; tests call them directly.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import os
import struct
from collections.abc import Callable, Iterable

from cryptography import x509

from ipseclab.crypto.dh import DhGroup, DhPrivate, EcpGroup, ModpGroup, MontgomeryGroup
from ipseclab.crypto.prf import PrfAlgorithm
from ipseclab.crypto.proposals import Proposal, select_proposal
from ipseclab.errors import ConfigError, IpsecLabError
from ipseclab.ike import sa_payload, ts_payload
from ipseclab.ike.constants import IdType, ProtocolId
from ipseclab.ike.payloads import Identification, SecurityAssociation
from ipseclab.ipsec.pad import _DN_NAMES, _DN_SPLIT  # strongSwan's DN labels, one place
from ipseclab.ipsec.selectors import SelectorError, TrafficSelector

Rng = Callable[[int], bytes]

__all__ = [
    "choose_proposal",
    "collision_lost",
    "dn_der",
    "generate_dh",
    "identification",
    "natd_hash",
    "psk_auth",
    "read_proposals",
    "sa_payload_for",
    "selectors_from_wire",
    "selectors_to_wire",
    "without_dh",
]


# -- proposals (RFC 7296 §2.7, §3.3) --------------------------------------------------------

_PROTOCOL_NAMES = {ProtocolId.IKE: "ike", ProtocolId.ESP: "esp", ProtocolId.AH: "ah"}


def sa_payload_for(proposals: Iterable[Proposal], protocol_id: int, spi: bytes = b"",
                   numbers: Iterable[int] | None = None) -> SecurityAssociation:
    """An SA payload offering ``proposals`` (numbered from 1 unless ``numbers`` is given)."""
    proposals = list(proposals)
    numbers = list(numbers) if numbers is not None else list(range(1, len(proposals) + 1))
    wire = [sa_payload.Proposal(number, protocol_id, spi,
                                [sa_payload.Transform.of(*t) for t in proposal.transforms()])
            for number, proposal in zip(numbers, proposals, strict=True)]
    return SecurityAssociation(wire)


def read_proposals(payload: SecurityAssociation, protocol_id: int
                   ) -> list[tuple[sa_payload.Proposal, Proposal]]:
    """The peer's proposals for ``protocol_id`` we can read, each with its wire form.

    A proposal naming only algorithms we lack is skipped: we could never choose it.
    """
    out = []
    for wire in payload.proposals:
        if wire.protocol_id != protocol_id:
            continue
        transforms = [(t.transform_type, t.transform_id, t.key_length) for t in wire.transforms]
        try:
            out.append((wire, Proposal.from_transforms(_PROTOCOL_NAMES[protocol_id],
                                                       transforms)))
        except (IpsecLabError, KeyError, TypeError):
            continue
    return out


def describe_offer(payload: SecurityAssociation, protocol_id: int) -> str:
    """The peer's proposals in strongSwan syntax, for logs; unknown algorithms by number."""
    readable = {id(w): str(p) for w, p in read_proposals(payload, protocol_id)}
    out = []
    for wire in payload.proposals:
        if wire.protocol_id != protocol_id:
            continue
        out.append(readable.get(id(wire)) or "unknown(" + "-".join(
            f"{t.transform_type}:{t.transform_id}" for t in wire.transforms) + ")")
    return ", ".join(out) or "none"


def choose_proposal(ours: list[Proposal], theirs: list[tuple[sa_payload.Proposal, Proposal]],
                    prefer_group: int | None = None
                    ) -> tuple[sa_payload.Proposal, Proposal] | None:
    """The responder's choice (§2.7): the first acceptable proposal of the initiator.

    With ``prefer_group`` (the group of the initiator's KE payload) a proposal that can use
    that group wins, so no INVALID_KE_PAYLOAD round trip is needed when avoidable (§1.2).
    """
    if prefer_group is not None:
        for wire, proposal in theirs:
            same = [g for g in proposal.dh if g.iana_id == prefer_group]
            if same:
                trial = Proposal(proposal.protocol, proposal.encryption, proposal.integrity,
                                 proposal.prf, same, proposal.esn)
                chosen = select_proposal(ours, [trial])
                if chosen is not None:
                    return wire, chosen
    for wire, proposal in theirs:
        chosen = select_proposal(ours, [proposal])
        if chosen is not None:
            return wire, chosen
    return None


def accept_choice(ours: list[Proposal], payload: SecurityAssociation, protocol_id: int
                  ) -> tuple[sa_payload.Proposal, Proposal] | None:
    """The initiator's check of the responder's SA payload: exactly one proposal, one
    algorithm of each type, all of them among what we offered (§2.7, §3.3.6)."""
    if len(payload.proposals) != 1:
        return None
    read = read_proposals(payload, protocol_id)
    if len(read) != 1:
        return None
    wire, proposal = read[0]
    for kind in ("encryption", "integrity", "prf", "dh", "esn"):
        if len(getattr(proposal, kind)) > 1:
            return None
    chosen = select_proposal(ours, [proposal])
    return (wire, chosen) if chosen is not None else None


def without_dh(proposals: Iterable[Proposal]) -> list[Proposal]:
    """The child SA proposals of IKE_AUTH: no DH groups, as IKE_AUTH carries no KE (§1.2).

    A PFS group in ``esp_proposals`` applies to CREATE_CHILD_SA only (as in strongSwan).
    """
    return [Proposal(p.protocol, p.encryption, p.integrity, p.prf, [], p.esn) for p in proposals]


def collision_lost(ours: tuple[bytes, bytes], theirs: tuple[bytes, bytes]) -> bool:
    """Whether our exchange made the redundant SA of a rekey collision (§2.8.1, §2.8.2).

    The SA made with the lowest of the four nonces goes; "lowest" compares octet by octet,
    a nonce that is a prefix of another being the lower: exactly Python's order of bytes.
    """
    return min(ours) < min(theirs)


def jitter(rng: Rng | None, span: float) -> float:
    """A random time in [0, span] (strongSwan's rand_time), from the injectable RNG."""
    raw = rng(4) if rng is not None else os.urandom(4)
    return span * int.from_bytes(raw, "big") / 0xFFFFFFFF


# -- Diffie-Hellman keys from an injectable RNG ---------------------------------------------


def generate_dh(group: DhGroup, rng: Rng | None) -> DhPrivate:
    """A fresh private key of ``group``; from ``rng`` when given, so tests repeat exactly."""
    if rng is None:
        return group.generate()
    if isinstance(group, MontgomeryGroup):
        return group.generate(rng(group.size))
    if isinstance(group, EcpGroup):
        bits = group.curve.key_size
        number = int.from_bytes(rng((bits + 7) // 8 + 8), "big")
        return group.generate(1 + number % ((1 << (bits - 1)) - 1))
    if isinstance(group, ModpGroup):
        number = int.from_bytes(rng(group.public_size + 8), "big")
        if group.q is not None:
            return group.generate(1 + number % (group.q - 2))
        bits = group.exponent_bits or group.p.bit_length() - 1
        return group.generate(2 + number % min(1 << bits, group.p - 4))
    return group.generate()


# -- NAT detection (§2.23) ---------------------------------------------------------------


@functools.lru_cache(maxsize=256)
def _packed(address: str) -> bytes:
    return ipaddress.ip_address(address).packed


def natd_hash(spi_i: bytes, spi_r: bytes, address: str, port: int) -> bytes:
    """SHA-1(SPIi | SPIr | IP | Port): data of NAT_DETECTION_SOURCE/DESTINATION_IP."""
    packed = _packed(address)
    return hashlib.sha1(spi_i + spi_r + packed + struct.pack("!H", port)).digest()


# -- identities (§3.5) and PSK authentication (§2.15) ----------------------------------------


def identification(text: str, default_address: str, cls: type[Identification]
                   ) -> Identification:
    """An IDi/IDr payload from a swanctl identity (``@fqdn``, ``user@host``, an address).

    Empty means the IKE address. ``@#hex`` is a KEY_ID. ``C=CH, O=Org, CN=host`` is an
    ID_DER_ASN1_DN (first RDN first, strongSwan's order), DER-encoded by :func:`dn_der`.
    """
    spec = text.strip() or default_address
    if spec.startswith("@#"):
        return cls.key_id(bytes.fromhex(spec[2:]))
    if spec.startswith("@"):
        return cls.fqdn(spec[1:])
    try:
        return cls.ip(spec)
    except ValueError:
        pass
    if "=" in spec:
        return cls.der_dn(dn_der(spec))
    if "@" in spec:
        return cls.rfc822(spec)
    return cls.fqdn(spec)


def dn_der(text: str) -> bytes:
    """The DER of a DN written as strongSwan writes it (``C=CH, O=Org, CN=host``)."""
    parts = [p.strip() for p in _DN_SPLIT.split(text)]
    try:
        name = x509.Name.from_rfc4514_string(",".join(reversed(parts)), _DN_NAMES)
    except ValueError:
        raise ConfigError("not a distinguished name like 'C=CH, O=Org, CN=host'",
                          token=text) from None
    return name.public_bytes()


def id_type_name(id_type: int) -> str:
    try:
        return IdType(id_type).name
    except ValueError:
        return str(id_type)


def psk_auth(prf: PrfAlgorithm, psk: bytes, signed_message: bytes, peer_nonce: bytes,
             sk_p: bytes, id_body: bytes) -> bytes:
    """AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <SignedOctets>) (§2.15).

    SignedOctets = the sender's IKE_SA_INIT message | the peer's nonce | prf(SK_p, ID body),
    where the ID body is the ID payload without its generic header.
    """
    maced_id = prf.prf(sk_p, id_body)
    key = prf.prf(psk, b"Key Pad for IKEv2")
    return prf.prf(key, signed_message + peer_nonce + maced_id)


def auth_equal(a: bytes, b: bytes) -> bool:
    return hmac.compare_digest(a, b)


# -- traffic selectors (§2.9, §3.13) ------------------------------------------------------


def selectors_from_wire(selectors: Iterable[object]) -> list[TrafficSelector]:
    """The address-range selectors of a TS payload; other types are left out."""
    out = []
    for ts in selectors:
        if not isinstance(ts, ts_payload.TrafficSelector):
            continue
        try:
            out.append(TrafficSelector.from_ike((ts.ts_type, ts.ip_protocol, ts.start_port,
                                                 ts.end_port, ts.start_address.packed,
                                                 ts.end_address.packed)))
        except (SelectorError, ValueError):
            continue
    return out


def selectors_to_wire(selectors: Iterable[TrafficSelector]) -> list[ts_payload.TrafficSelector]:
    out = []
    for ts in selectors:
        fields = ts.to_ike()
        out.append(ts_payload.TrafficSelector(
            ts_payload.address_from_packed(fields.start_addr),
            ts_payload.address_from_packed(fields.end_addr),
            fields.proto, fields.start_port, fields.end_port))
    return out
