"""The Peer Authorization Database (RFC 4301 §4.4.3).

The PAD links the SPD to IKE: for a peer identity (the IDi/IDr payload of RFC 7296 §3.5) it
says how that peer must authenticate (pre-shared key or public key) and which child SA
selectors it may ask for. Entries are searched in order; the first whose identity matcher
accepts the peer's ID wins (RFC 4301 §4.4.3.1).

Identity matchers, written as in swanctl.conf ``id`` settings:

* an IPv4/IPv6 address, CIDR or range ``a-b`` (ID_IPV4_ADDR / ID_IPV6_ADDR);
* an FQDN, ``@host.example.org`` or ``host.example.org``; ``*.example.org`` matches any name
  below example.org (any depth), not example.org itself. Case-insensitive (ID_FQDN);
* ``user@example.org`` (ID_RFC822_ADDR), case-insensitive;
* a DN in strongSwan order, ``C=CH, O=strongSwan, CN=moon`` (ID_DER_ASN1_DN): exact match of
  the attribute types and values, whatever string type the peer's DER uses;
* ``@#0123abcd``, a KEY_ID in hex (ID_KEY_ID), exact bytes;
* ``%any``, every identity.

Secrets never appear in ``repr()`` or ``str()``.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.oid import NameOID

from ipseclab.errors import ConfigError
from ipseclab.ipsec.selectors import Selector, parse_address_range

__all__ = ["PAD", "IdType", "IdentityMatcher", "PadEntry", "parse_der_dn"]


class IdType(enum.IntEnum):
    """IKEv2 identification types (RFC 7296 §3.5)."""

    IPV4_ADDR = 1
    FQDN = 2
    RFC822_ADDR = 3
    IPV6_ADDR = 5
    DER_ASN1_DN = 9
    DER_ASN1_GN = 10
    KEY_ID = 11


IdValue = bytes | str | x509.Name
RDNs = tuple[tuple[tuple[str, str], ...], ...]  # ((oid, value), ...) per RDN, DER order

_DN_NAMES = {"E": NameOID.EMAIL_ADDRESS, "EMAILADDRESS": NameOID.EMAIL_ADDRESS,
             "SN": NameOID.SURNAME, "GN": NameOID.GIVEN_NAME, "SERIALNUMBER": NameOID.SERIAL_NUMBER}
_DN_SPLIT = re.compile(r"(?<!\\),")


@dataclass(frozen=True, slots=True)
class IdentityMatcher:
    """Which peer identities a PAD entry accepts; build it with :meth:`parse`.

    ``id_type`` is None for ``%any``. ``value`` holds the normalized form: an address range
    ``(start, end)`` as ints, a lower-case name, DN attributes, or KEY_ID bytes.
    """

    id_type: IdType | None
    value: object
    text: str

    @classmethod
    def parse(cls, text: str) -> IdentityMatcher:
        spec = text.strip()
        if not spec:
            raise ConfigError("empty identity")
        if spec.lower() == "%any":
            return cls(None, None, spec)
        if spec.startswith("@#"):
            try:
                return cls(IdType.KEY_ID, bytes.fromhex(spec[2:]), spec)
            except ValueError:
                raise ConfigError("KEY_ID must be hex after '@#'", token=spec) from None
        if spec.startswith("@"):
            return cls._fqdn(spec[1:], spec)
        if "=" in spec:
            return cls(IdType.DER_ASN1_DN, _parse_dn_text(spec), spec)
        if "@" in spec:
            return cls(IdType.RFC822_ADDR, spec.lower(), spec)
        addr_range = parse_address_range(spec)
        if addr_range is not None:
            version, start, end = addr_range
            return cls(IdType.IPV4_ADDR if version == 4 else IdType.IPV6_ADDR, (start, end), spec)
        return cls._fqdn(spec, spec)

    @classmethod
    def _fqdn(cls, name: str, text: str) -> IdentityMatcher:
        name = name.lower().rstrip(".")
        labels = name[2:] if name.startswith("*.") else name
        if not labels or "*" in labels or " " in labels:
            raise ConfigError("not an FQDN (a leading '*.' is the only wildcard)", token=text)
        return cls(IdType.FQDN, name, text)

    def matches(self, id_type: IdType | int, id_value: IdValue) -> bool:
        """Does the peer's ID (type and value as in the ID payload) fit? Never raises."""
        if self.id_type is None:
            return True
        if id_type != self.id_type:
            return False
        try:
            return self._matches_value(id_value)
        except (ValueError, UnicodeDecodeError, TypeError):
            return False

    def _matches_value(self, id_value: IdValue) -> bool:
        kind = self.id_type
        if kind in (IdType.IPV4_ADDR, IdType.IPV6_ADDR):
            if isinstance(id_value, bytes):
                if len(id_value) != (4 if kind == IdType.IPV4_ADDR else 16):
                    return False
                number = int.from_bytes(id_value, "big")
            else:
                addr = ipaddress.ip_address(str(id_value))
                if addr.version != (4 if kind == IdType.IPV4_ADDR else 6):
                    return False
                number = int(addr)
            start, end = self.value  # type: ignore[misc]
            return bool(start <= number <= end)
        if kind == IdType.DER_ASN1_DN:
            if isinstance(id_value, x509.Name):
                rdns = _rdns_of_name(id_value)
            elif isinstance(id_value, bytes):
                rdns = parse_der_dn(id_value)
            else:
                rdns = _parse_dn_text(id_value)
            return rdns == self.value
        if kind == IdType.KEY_ID:
            return isinstance(id_value, bytes) and id_value == self.value
        # FQDN and RFC822 travel as ASCII
        text = id_value.decode("ascii") if isinstance(id_value, bytes) else str(id_value)
        text = text.lower()
        if kind == IdType.FQDN:
            text = text.rstrip(".")
            pattern = str(self.value)
            if pattern.startswith("*."):
                return text.endswith(pattern[1:]) and len(text) > len(pattern) - 1
            return text == pattern
        return text == self.value

    def __str__(self) -> str:
        return self.text


@dataclass(slots=True)
class PadEntry:
    """One PAD entry (RFC 4301 §4.4.3): who, how they authenticate, what they may ask for.

    ``identity`` may be given as text (see module docstring). ``auth`` is ``psk`` or
    ``pubkey``; ``psk`` is required for ``psk`` and refused for ``pubkey`` (text is UTF-8
    encoded). ``child_selectors`` limits the child SAs this peer may negotiate
    (RFC 4301 §4.4.3.2); None means no limit from the PAD.
    """

    identity: IdentityMatcher | str
    auth: str = "psk"
    psk: bytes | None = field(default=None, repr=False)
    child_selectors: list[Selector] | None = None
    name: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.identity, str):
            self.identity = IdentityMatcher.parse(self.identity)
        if self.auth not in ("psk", "pubkey"):
            raise ConfigError("auth must be psk or pubkey", token=str(self.auth))
        if isinstance(self.psk, str):
            self.psk = self.psk.encode()
        if self.auth == "psk" and not self.psk:
            raise ConfigError(f"peer {self.identity}: auth psk needs a secret")
        if self.auth == "pubkey" and self.psk is not None:
            raise ConfigError(f"peer {self.identity}: auth pubkey takes no psk")
        if self.child_selectors is not None:
            self.child_selectors = list(self.child_selectors)

    def permits(self, selector: Selector) -> bool:
        """May this peer have a child SA for ``selector``? (it must lie inside an allowed one)"""
        if self.child_selectors is None:
            return True
        return any(allowed.covers(selector) for allowed in self.child_selectors)

    def __str__(self) -> str:
        label = f"{self.name}: " if self.name else ""
        secret = " (secret set)" if self.psk else ""
        children = ""
        if self.child_selectors is not None:
            children = " children " + ("; ".join(str(s) for s in self.child_selectors) or "none")
        return f"{label}{self.identity} auth {self.auth}{secret}{children}"


class PAD:
    """Ordered PAD entries; the first whose identity matches wins (RFC 4301 §4.4.3.1)."""

    def __init__(self, entries: list[PadEntry] | None = None) -> None:
        self._entries: list[PadEntry] = list(entries or [])

    def add(self, entry: PadEntry) -> PadEntry:
        self._entries.append(entry)
        return entry

    def remove(self, entry: PadEntry) -> None:
        self._entries.remove(entry)

    def lookup(self, id_type: IdType | int, id_value: IdValue) -> PadEntry | None:
        for entry in self._entries:
            if entry.identity.matches(id_type, id_value):  # type: ignore[union-attr]
                return entry
        return None

    def __iter__(self) -> Iterator[PadEntry]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)


# -- helpers -----------------------------------------------------------------------------------


def _parse_dn_text(text: str) -> RDNs:
    """``C=CH, O=strongSwan, CN=moon`` (first RDN first, as strongSwan writes DNs)."""
    parts = [p.strip() for p in _DN_SPLIT.split(text)]
    try:
        name = x509.Name.from_rfc4514_string(",".join(reversed(parts)), _DN_NAMES)
    except ValueError:
        raise ConfigError("not a distinguished name like 'C=CH, O=Org, CN=host'",
                          token=text) from None
    return _rdns_of_name(name)


def _rdns_of_name(name: x509.Name) -> RDNs:
    return tuple(
        tuple(sorted((a.oid.dotted_string, str(a.value)) for a in rdn)) for rdn in name.rdns
    )


_STRING_CODECS = {0x0C: "utf-8", 0x13: "ascii", 0x16: "ascii", 0x14: "latin-1",
                  0x1E: "utf-16-be", 0x1C: "utf-32-be"}


def _der_item(data: bytes, pos: int, end: int) -> tuple[int, int, int]:
    """(tag, content start, content end) of the DER item at ``pos``; ValueError if bad."""
    if pos + 2 > end:
        raise ValueError("DER item truncated")
    tag, length = data[pos], data[pos + 1]
    pos += 2
    if length & 0x80:
        count = length & 0x7F
        if count == 0 or count > 4 or pos + count > end:
            raise ValueError("bad DER length")
        length = int.from_bytes(data[pos : pos + count], "big")
        pos += count
    if pos + length > end:
        raise ValueError("DER item runs past its container")
    return tag, pos, pos + length


def _der_oid(body: bytes) -> str:
    if not body:
        raise ValueError("empty OID")
    arcs = [min(body[0] // 40, 2)]
    arcs.append(body[0] - 40 * arcs[0])
    value = 0
    for byte in body[1:]:
        value = value << 7 | (byte & 0x7F)
        if not byte & 0x80:
            arcs.append(value)
            value = 0
    return ".".join(map(str, arcs))


def parse_der_dn(der: bytes) -> RDNs | None:
    """The attributes of a DER Name (the body of an ID_DER_ASN1_DN), None if malformed.

    Only what matching needs: OID and string value of every attribute, RDN by RDN.
    """
    try:
        tag, pos, end = _der_item(der, 0, len(der))
        if tag != 0x30 or end != len(der):
            return None
        rdns = []
        while pos < end:
            tag, set_pos, set_end = _der_item(der, pos, end)
            if tag != 0x31:
                return None
            attrs = []
            while set_pos < set_end:
                tag, seq_pos, seq_end = _der_item(der, set_pos, set_end)
                if tag != 0x30:
                    return None
                tag, oid_pos, oid_end = _der_item(der, seq_pos, seq_end)
                if tag != 0x06:
                    return None
                tag, val_pos, val_end = _der_item(der, oid_end, seq_end)
                codec = _STRING_CODECS.get(tag)
                if codec is None or val_end != seq_end:
                    return None
                attrs.append((_der_oid(der[oid_pos:oid_end]), der[val_pos:val_end].decode(codec)))
                set_pos = seq_end
            rdns.append(tuple(sorted(attrs)))
            pos = set_end
        return tuple(rdns)
    except (ValueError, UnicodeDecodeError):
        return None
