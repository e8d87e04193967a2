"""IKEv2 messages in a capture: parsed, and their SK payloads opened with a key log.

Keys come from Wireshark's ``ikev2_decryption_table`` (what ipseclab's gateway and IKE
engine write): SK_ei/SK_ai for messages the original initiator sent, SK_er/SK_ar for the
responder's (RFC 7296 §2.14). The result names the exchange and every payload, the inner
ones too, which is what a ladder diagram of the handshake needs.

Payload names follow the RFC's notation where it is unambiguous: ``Ni`` in a request and
``Nr`` in a response (§1.2, §1.3), ``N(TYPE)`` for a Notify, ``SK`` for the Encrypted
payload (§3.14) whose contents :attr:`IkeView.inner` lists, ``SKF(i/n)`` for fragment i of n
of a fragmented message (RFC 7383 §2.5). :class:`IkeKeys` also collects the fragments it
has opened, so the view of the fragment that completes a message lists the whole message's
payloads.

:func:`ike_packet` goes the other way: it wraps an IKE message into the IP/UDP packet a
capture of the wire would show (with the non-ESP marker on port 4500, RFC 3948 §2.2).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from ipseclab.crypto import transforms
from ipseclab.crypto.transforms import EncryptionAlgorithm, IntegrityAlgorithm, IntegrityCheck
from ipseclab.errors import AuthenticationFailed, IpsecLabError
from ipseclab.ike.constants import ExchangeType, IdType, NotifyType, PayloadType, ProtocolId
from ipseclab.ike.fragments import FragmentLimits, Reassembly
from ipseclab.ike.message import Message, parse_message, parse_payload_chain
from ipseclab.ike.negotiation import describe_offer, selectors_from_wire
from ipseclab.ike.payload_base import MalformedMessage, Payload
from ipseclab.ike.payloads import Encrypted, EncryptedFragment, Identification, Notify
from ipseclab.ike.sa_payload import SecurityAssociation
from ipseclab.ike.sk import SkCipher
from ipseclab.ike.ts_payload import TrafficSelectors
from ipseclab.ipsec import ip
from ipseclab.ipsec.udpencap import IKE_PORT, NON_ESP_MARKER
from ipseclab.keylog import IkeSaEntry

__all__ = ["IkeKeys", "IkeView", "ike_packet", "view_message"]

# The IKE SA's own names; tshark 4.0 has none for ChaCha20-Poly1305, so the IKE engine
# writes ipseclab's keyword there.
_ENCRYPTION_BY_NAME: dict[str, EncryptionAlgorithm] = {
    **{a.ike_wireshark_name: a for a in transforms.ENCRYPTION.values() if a.ike_wireshark_name},
    "chacha20poly1305": transforms.ENCRYPTION["chacha20poly1305"],
}
_INTEGRITY_BY_NAME: dict[str, IntegrityAlgorithm] = {
    a.ike_wireshark_name: a for a in transforms.INTEGRITY.values()
    if a.ike_wireshark_name and not a.ike_wireshark_name.startswith("ANY ")}
# Wireshark's "ANY n-bits of Authentication [No Checking]" (what an IKE SA with AES-XCBC or
# AES-CMAC gets in the key log): the ICV's length is known, the algorithm is not.
_UNCHECKED = re.compile(r"ANY (\d+)-bits of Authentication \[No Checking\]")


class _Unchecked(IntegrityCheck):
    """An ICV that is skipped, not verified: the key log did not say which MAC made it."""

    __slots__ = ()

    def verify(self, data: bytes, icv: bytes) -> bool:
        return len(icv) == self.icv_size


def _integrity(name: str) -> IntegrityAlgorithm | None:
    if name in _INTEGRITY_BY_NAME:
        return _INTEGRITY_BY_NAME[name]
    unchecked = _UNCHECKED.fullmatch(name)
    if unchecked is None or int(unchecked[1]) % 8:
        return None
    return IntegrityAlgorithm("unchecked", 0, 0, int(unchecked[1]) // 8,
                              ike_wireshark_name=name, _factory=lambda _k, i: _Unchecked(i))


def _payload_name(p: Payload, response: bool) -> str:
    if isinstance(p, EncryptedFragment):
        return f"SKF({p.fragment_number}/{p.total_fragments})"
    if isinstance(p, Notify):
        try:
            return f"N({NotifyType(p.notify_type).name})"
        except ValueError:
            return f"N({p.notify_type})"
    if p.payload_type == PayloadType.NONCE:
        return "Nr" if response else "Ni"
    try:
        return PayloadType(p.payload_type).name
    except ValueError:
        return f"payload {p.payload_type}"


@dataclass
class IkeView:
    """One IKE message as a decoder sees it.

    ``initiator``: the I flag, i.e. sent by the *original* initiator of the IKE SA (§3.1);
    ``response``: the R flag. ``inner`` lists the payloads inside SK, None when it was not
    opened (then ``status`` says why). ``message`` and ``inner_payloads`` are the parsed
    objects, for a reader who wants the values (nonces, KE data, AUTH) and not only names;
    ``data`` the message's bytes as sent (what AUTH signs for IKE_SA_INIT, §2.15).
    """

    exchange: str
    message_id: int
    initiator: bool
    response: bool
    spi_i: bytes
    spi_r: bytes
    payloads: list[str] = field(default_factory=list)
    inner: list[str] | None = None  # None: not decrypted
    status: str = "ok"  # ok, no_sa (no keys for the SK payload), auth_failed, malformed
    detail: str = ""
    message: Message | None = field(default=None, repr=False)
    inner_payloads: list[Payload] | None = field(default=None, repr=False)
    data: bytes = field(default=b"", repr=False)
    fragment: tuple[int, int] | None = None  # (Fragment Number, Total Fragments) of SKF

    @property
    def shown_payloads(self) -> list[str]:
        """The payload names with SK's contents in braces: ``['SK{IDi, AUTH, SA, TSi, TSr}']``;
        for the fragment that completed a message, the whole message's: ``SKF(2/2){IDi, ..}``."""
        shown = list(self.payloads)
        if self.inner is not None and shown and shown[-1].startswith(("SK", "SKF(")):
            shown[-1] = shown[-1] + "{" + ", ".join(self.inner) + "}"
        return shown

    def describe(self) -> str:
        """``IKE_AUTH #1 request from initiator: SK{IDi, AUTH, SA, TSi, TSr}``."""
        if self.status == "malformed" and self.message is None:
            return f"malformed IKE message: {self.detail}"
        who = "initiator" if self.initiator else "responder"
        kind = "response" if self.response else "request"
        return (f"{self.exchange} #{self.message_id} {kind} from {who}: "
                f"{', '.join(self.shown_payloads)}")

    def details(self) -> list[str]:
        """What a debug log adds to :meth:`describe`: the proposals of each SA payload in
        strongSwan's syntax, traffic selectors and identities, which is what a
        NO_PROPOSAL_CHOSEN or TS_UNACCEPTABLE is read against. Never keys, nonces, KE
        data or AUTH."""
        out = []
        for p in [*(self.message.payloads if self.message else []),
                  *(self.inner_payloads or [])]:
            if isinstance(p, SecurityAssociation) and p.proposals:
                protocol = p.proposals[0].protocol_id
                name = ProtocolId(protocol).name if protocol in ProtocolId._value2member_map_ \
                    else str(protocol)
                out.append(f"SA ({name}): {describe_offer(p, protocol)}")
            elif isinstance(p, TrafficSelectors):
                ranges = ", ".join(str(ts) for ts in selectors_from_wire(p.selectors))
                out.append(f"{type(p).__name__}: {ranges or 'none it can read'}")
            elif isinstance(p, Identification):
                try:
                    kind = IdType(p.id_type).name
                except ValueError:
                    kind = f"ID type {p.id_type}"
                out.append(f"{type(p).__name__}: {kind} {p.describe()}")
        return out

    def find(self, cls: type[Payload]) -> Payload | None:
        """The first payload of type ``cls``, outside or inside SK."""
        for p in [*(self.message.payloads if self.message else []),
                  *(self.inner_payloads or [])]:
            if isinstance(p, cls):
                return p
        return None


class IkeKeys:
    """SK payload ciphers by IKE SA SPIs, built from ``ikev2_decryption_table`` lines."""

    def __init__(self, entries: Iterable[IkeSaEntry] = ()) -> None:
        self._entries = {(e.spi_i, e.spi_r): e for e in entries}
        self._ciphers: dict[tuple[bytes, bytes, bool], SkCipher | None] = {}
        # SKF fragments opened so far, per (SPIs, sender, R flag): RFC 7383 §2.6
        self._fragments: dict[tuple[bytes, bytes, bool, bool], Reassembly] = {}

    def add(self, entry: IkeSaEntry, limit: int = 4096) -> None:
        """Learn (or replace) one IKE SA's keys; past ``limit`` SAs the oldest are forgotten
        (a gateway's message log keeps learning while it runs)."""
        key = (entry.spi_i, entry.spi_r)
        self._entries.pop(key, None)
        self._entries[key] = entry
        for direction in (True, False):
            self._ciphers.pop((*key, direction), None)
        while len(self._entries) > limit:
            old = next(iter(self._entries))
            del self._entries[old]
            for direction in (True, False):
                self._ciphers.pop((*old, direction), None)

    def reassemble(self, msg: Message, chunk: bytes) -> tuple[int, bytes] | None:
        """Keep one opened SKF fragment; (first inner type, inner chain) once the message
        is whole. Bounded like the engine's reassembly, and to 256 messages at a time."""
        skf = msg.payloads[-1]
        assert isinstance(skf, EncryptedFragment)
        key = (msg.spi_i, msg.spi_r, msg.is_initiator, msg.is_response)
        if key not in self._fragments and len(self._fragments) >= 256:
            self._fragments.pop(next(iter(self._fragments)))
        reassembly = self._fragments.setdefault(key, Reassembly(FragmentLimits(
            timeout=float("inf"))))
        return reassembly.add(msg.message_id, skf.fragment_number, skf.total_fragments,
                              skf.first_inner, chunk, 0.0)

    def __len__(self) -> int:
        return len(self._entries)

    def cipher(self, spi_i: bytes, spi_r: bytes, from_initiator: bool) -> SkCipher | None:
        """The cipher of one direction, None without an entry for this SPI pair.

        Raises :class:`IpsecLabError` for an entry whose algorithm names are unknown.
        """
        key = (spi_i, spi_r, from_initiator)
        if key not in self._ciphers:
            self._ciphers[key] = self._build(spi_i, spi_r, from_initiator)
        return self._ciphers[key]

    def _build(self, spi_i: bytes, spi_r: bytes, from_initiator: bool) -> SkCipher | None:
        entry = self._entries.get((spi_i, spi_r))
        if entry is None:
            return None
        enc = _ENCRYPTION_BY_NAME.get(entry.encryption)
        if enc is None:
            raise IpsecLabError(f"IKE key log: unknown encryption '{entry.encryption}'")
        integ = None if enc.aead else _integrity(entry.integrity)
        if not enc.aead and integ is None:
            raise IpsecLabError(f"IKE key log: unknown integrity '{entry.integrity}'")
        ek, ak = (entry.sk_ei, entry.sk_ai) if from_initiator else (entry.sk_er, entry.sk_ar)
        try:
            # An unchecked ICV takes no key (SK_a* is in the log all the same).
            checked = integ is not None and integ.keyword != "unchecked"
            return SkCipher(enc, ek, integ, ak if checked else b"")
        except (ValueError, TypeError) as exc:
            raise IpsecLabError(f"IKE key log: key does not fit {enc.keyword}: {exc}") from None


def view_message(data: bytes, keys: IkeKeys | None = None) -> IkeView:
    """Parse one IKE message (after any non-ESP marker) and open its SK payload if we can.

    Never raises on what a capture may hold: a broken message gives ``status`` malformed,
    a wrong key auth_failed, a missing (or unusable) key no_sa.
    """
    data = bytes(data)
    try:
        msg: Message = parse_message(data)
    except MalformedMessage as exc:
        return IkeView("?", 0, False, False, b"", b"", status="malformed", detail=str(exc),
                       data=data)
    try:
        exchange = ExchangeType(msg.exchange_type).name
    except ValueError:
        exchange = f"exchange {msg.exchange_type}"
    response = msg.is_response
    view = IkeView(exchange, msg.message_id, msg.is_initiator, response, msg.spi_i,
                   msg.spi_r, [_payload_name(p, response) for p in msg.payloads], message=msg,
                   data=data)
    last = msg.payloads[-1] if msg.payloads else None
    if isinstance(last, EncryptedFragment):
        view.fragment = (last.fragment_number, last.total_fragments)
    elif not isinstance(last, Encrypted):
        return view
    try:
        cipher = keys.cipher(msg.spi_i, msg.spi_r, msg.is_initiator) if keys else None
    except IpsecLabError as exc:
        view.status, view.detail = "no_sa", str(exc)
        return view
    if cipher is None:
        view.status, view.detail = "no_sa", "no IKE keys for these SPIs"
        return view
    try:
        if view.fragment is not None:
            done = keys.reassemble(msg, cipher.open_fragment(data, msg))  # type: ignore
            if done is None:
                view.detail = f"fragment {view.fragment[0]} of {view.fragment[1]}"
                return view
            inner = parse_payload_chain(*done)
            view.detail = f"reassembled from {view.fragment[1]} fragments (RFC 7383)"
        else:
            inner = cipher.open(data, msg)
    except AuthenticationFailed as exc:
        view.status, view.detail = "auth_failed", str(exc)
        return view
    except (MalformedMessage, ValueError) as exc:
        view.status, view.detail = "malformed", str(exc)
        return view
    view.inner_payloads = inner
    view.inner = [_payload_name(p, response) for p in inner]
    return view


def ike_packet(message: bytes, src: tuple[str, int], dst: tuple[str, int],
               ident: int = 0) -> bytes:
    """The IP packet that carries one IKE message from ``src`` to ``dst`` (address, port).

    Away from port 500 (on 4500 after NAT detection, RFC 7296 §2.23) the message goes behind
    the four-zero-octet non-ESP marker (RFC 3948 §2.2). The UDP checksum is computed, as a
    real stack does.
    """
    payload = message if IKE_PORT in (src[1], dst[1]) else NON_ESP_MARKER + message
    s, d = ip.as_address(src[0]), ip.as_address(dst[0])
    udp = (src[1].to_bytes(2, "big") + dst[1].to_bytes(2, "big")
           + (8 + len(payload)).to_bytes(2, "big") + b"\x00\x00" + payload)
    return ip.fix_transport_checksum(ip.ip_header(s, d, ip.PROTO_UDP, len(udp), ident=ident)
                                     + udp)
