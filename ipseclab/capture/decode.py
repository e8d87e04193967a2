"""Decode a capture: every frame, in order, with ESP and AH checked and opened where keys allow.

This is ``ipseclab decode``. Keys come from Wireshark's ``esp_sa`` file (what the lab
writes beside its captures) and/or from an ``ip xfrm`` file of manual SAs. AH needs no key
to be read (it encrypts nothing): without one its frames say ``unverified``.

IKE messages (UDP 500, and UDP 4500 behind the non-ESP marker, RFC 3948 §2.2) are parsed,
and their SK payloads (RFC 7296 §3.14) opened with the keys of Wireshark's
``ikev2_decryption_table``: the frame names the exchange, the Message ID and every payload.

The per-frame work uses bytes and :mod:`struct` only; a Scapy packet is built when
:attr:`DecodedFrame.inner` is asked for, so decoding a large capture stays fast.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from ipaddress import ip_address
from json.encoder import encode_basestring_ascii  # type: ignore[attr-defined]

from ipseclab.capture.ike_decode import IkeKeys, IkeView, view_message
from ipseclab.capture.keys import sa_from_entry
from ipseclab.capture.pcap import IP_LINKTYPES, ip_payload, read_capture
from ipseclab.ipsec import ah, esp, ip
from ipseclab.ipsec.sa import Mode, Protocol, SecurityAssociation
from ipseclab.ipsec.udpencap import IKE_PORT, NAT_T_PORT, Udp4500Kind, classify, parse_udp
from ipseclab.ipsec.verdict import Status, Unprotected
from ipseclab.keylog import EspSaEntry, IkeSaEntry

# A decoder sees both old and new packets of a capture; a wide window still flags a replay.
DECODE_REPLAY_WINDOW = 4096


@dataclass(slots=True)
class DecodedFrame:
    """One frame of a capture as ``decode`` reports it (``frame`` counts from 1, as Wireshark).

    For IKE (``proto`` "ike") ``ike`` holds the message's view; ``exchange``, ``message_id``,
    ``payloads`` and the other IKE properties read from it (None for other frames).
    """

    frame: int
    time: float
    proto: str  # esp, ah, ike, other
    status: str
    src: str | None = None
    dst: str | None = None
    spi: int | None = None
    seq: int | None = None
    next_header: int | None = None
    mode: str | None = None
    udp_encap: bool = False
    inner_bytes: bytes | None = None
    detail: str = ""
    ike: IkeView | None = None
    length: int = 0  # octets of the captured IP packet (0: not an IP packet)
    _scapy: object | None = field(default=None, repr=False)

    @property
    def exchange(self) -> str | None:
        return self.ike.exchange if self.ike else None

    @property
    def message_id(self) -> int | None:
        return self.ike.message_id if self.ike else None

    @property
    def from_initiator(self) -> bool | None:
        """The I flag: sent by the original initiator of the IKE SA (RFC 7296 §3.1)."""
        return self.ike.initiator if self.ike else None

    @property
    def response(self) -> bool | None:
        return self.ike.response if self.ike else None

    @property
    def payloads(self) -> list[str] | None:
        """Outer payload names, SK with its decrypted contents in braces."""
        return self.ike.shown_payloads if self.ike else None

    @property
    def inner_payloads(self) -> list[str] | None:
        """Names of the payloads inside SK (None: not decrypted, or no SK)."""
        return self.ike.inner if self.ike else None

    @property
    def inner(self):
        """The recovered IP packet as a Scapy packet (built on first use), or None."""
        if self._scapy is None and self.inner_bytes is not None:
            from scapy.layers.inet import IP
            from scapy.layers.inet6 import IPv6

            self._scapy = (IP if self.inner_bytes[0] >> 4 == 4 else IPv6)(self.inner_bytes)
        return self._scapy

    def to_json(self) -> dict:
        """The fields of ``decode --json``, one object per frame."""
        return {
            "frame": self.frame, "time": round(self.time, 6), "proto": self.proto,
            "status": self.status, "src": self.src, "dst": self.dst, "spi": self.spi,
            "seq": self.seq, "next_header": self.next_header, "mode": self.mode,
            "udp_encap": self.udp_encap,
            "inner": self.inner_bytes.hex() if self.inner_bytes is not None else None,
            "detail": self.detail, "length": self.length,
            **self._ike_json(),
        }

    def json_line(self) -> str:
        """``json.dumps(self.to_json())`` without the dict: ``decode --json`` writes one per
        frame, and for a large capture the generic encoder was a third of the time."""
        if self.ike is not None:
            return _ENCODE(self.to_json())
        inner = "null" if self.inner_bytes is None else f'"{self.inner_bytes.hex()}"'
        return (f'{{"frame": {self.frame}, "time": {round(self.time, 6)!r}, '
                f'"proto": "{self.proto}", "status": "{self.status}", '
                f'"src": {_json_text(self.src)}, "dst": {_json_text(self.dst)}, '
                f'"spi": {_json_int(self.spi)}, "seq": {_json_int(self.seq)}, '
                f'"next_header": {_json_int(self.next_header)}, '
                f'"mode": {_json_text(self.mode)}, '
                f'"udp_encap": {"true" if self.udp_encap else "false"}, '
                f'"inner": {inner}, '
                f'"detail": {_json_text(self.detail)}, "length": {self.length}{_NO_IKE_JSON}')

    def _ike_json(self) -> dict:
        v = self.ike
        if v is None:
            return _NO_IKE
        return {"exchange": v.exchange, "message_id": v.message_id, "initiator": v.initiator,
                "response": v.response, "spi_i": v.spi_i.hex(), "spi_r": v.spi_r.hex(),
                "payloads": list(v.payloads), "sk_payloads": v.inner}


_NO_IKE = {"exchange": None, "message_id": None, "initiator": None, "response": None,
           "spi_i": None, "spi_r": None, "payloads": None, "sk_payloads": None}
_NO_IKE_JSON = ", " + json.dumps(_NO_IKE)[1:]
_ENCODE = json.JSONEncoder(check_circular=False).encode


def _json_text(value: str | None) -> str:
    return "null" if value is None else encode_basestring_ascii(value)


def _json_int(value: int | None) -> str:
    return "null" if value is None else str(value)


class KeyRing:
    """The SAs a decoder can use, found by protocol and SPI; and the IKE SAs' keys.

    ``ike_entries`` are ``ikev2_decryption_table`` lines (:func:`ipseclab.keylog.read_ikev2`).
    An ``esp_sa`` line does not say whether the SA used ESN, so each line gives two
    candidate SAs; the first whose ICV verifies is kept for the rest of the capture.
    """

    def __init__(self, entries: Iterable[EspSaEntry] = (),
                 sas: Iterable[SecurityAssociation] = (), *,
                 ike_entries: Iterable[IkeSaEntry] = ()) -> None:
        self.ike = IkeKeys(ike_entries)
        self._candidates: dict[tuple[Protocol, int | None], list[SecurityAssociation]] = {}
        for entry in entries:
            key = (Protocol.ESP, entry.spi)
            self._candidates.setdefault(key, []).extend(
                sa_from_entry(entry, esn=esn, replay_window=DECODE_REPLAY_WINDOW)
                for esn in (False, True))
        for sa in sas:
            # A decoder must not share state with a live SA: copy its keys, not its counters.
            clone = SecurityAssociation(
                spi=sa.spi, src=sa.src, dst=sa.dst, protocol=sa.protocol, mode=sa.mode,
                encryption=sa.encryption, encryption_key=sa.encryption_key,
                integrity=sa.integrity, integrity_key=sa.integrity_key, esn=sa.esn,
                encap=sa.encap, replay_window=DECODE_REPLAY_WINDOW, insecure=True)
            self._candidates.setdefault((sa.protocol, sa.spi), []).append(clone)

    def __len__(self) -> int:
        return len(self._candidates)

    def candidates(self, protocol: Protocol, spi: int) -> list[SecurityAssociation]:
        found = self._candidates.get((protocol, spi))
        if found is None:
            found = self._candidates.get((protocol, None), [])
        return found

    def settle(self, protocol: Protocol, spi: int, sa: SecurityAssociation) -> None:
        """Keep only the candidate that worked."""
        key = (protocol, spi) if (protocol, spi) in self._candidates else (protocol, None)
        if key[1] is not None:
            self._candidates[key] = [sa]


def _try(ring: KeyRing, protocol: Protocol, spi: int, packet: bytes,
         hdr: ip.IPHeader, start: int) -> Unprotected:
    candidates = ring.candidates(protocol, spi)
    if not candidates:
        return Unprotected(Status.NO_SA, spi, detail="no key for this SPI")
    result = Unprotected(Status.NO_SA, spi)
    for sa in candidates:
        if protocol is Protocol.ESP:
            result = esp.unprotect(sa, packet[start : hdr.total_length])
            if result.status is Status.OK:
                # The next header says the mode: an IP packet inside means tunnel mode.
                sa.mode = (Mode.TUNNEL if result.next_header in (ip.PROTO_IPV4, ip.PROTO_IPV6)
                           else Mode.TRANSPORT)
                result = esp.inner_packet(sa, result, hdr)
        else:
            sa.mode = Mode.TUNNEL if _ah_next(packet, hdr) in (4, 41) else Mode.TRANSPORT
            result = ah.decapsulate(sa, packet)
        if result.status is not Status.AUTH_FAILED:
            if result.status is Status.OK and len(candidates) > 1:
                ring.settle(protocol, spi, sa)
            return result
    return result


def _ah_next(packet: bytes, hdr: ip.IPHeader) -> int:
    start = hdr.header_length
    return packet[start] if len(packet) > start else -1


def _ah_unverified(packet: bytes) -> Unprotected:
    try:
        hdr, nh, spi, seq, length = ah.parse_ah(packet)
    except ip.MalformedIP as exc:
        return Unprotected(Status.MALFORMED, detail=str(exc))
    payload = packet[hdr.header_length + length : hdr.total_length]
    if nh in (ip.PROTO_IPV4, ip.PROTO_IPV6):
        inner = payload
    else:
        inner = ip.with_payload(hdr, nh, payload)
    return Unprotected(Status.UNVERIFIED, spi, seq, nh, payload, inner,
                       detail="AH is readable without a key; its ICV was not checked")


def _ike(frame: DecodedFrame, message: bytes, ring: KeyRing) -> DecodedFrame:
    frame.proto = "ike"
    view = view_message(message, ring.ike)
    frame.ike = view
    frame.status, frame.detail = view.status, view.detail
    return frame


_ADDRESS_TEXT: dict[bytes, str] = {}


def _text(address: bytes) -> str:
    """An address as text; a capture has few distinct ones, so they are remembered."""
    text = _ADDRESS_TEXT.get(address)
    if text is None:
        if len(_ADDRESS_TEXT) > 4096:
            _ADDRESS_TEXT.clear()
        text = _ADDRESS_TEXT[address] = str(ip_address(address))
    return text


def decode_packet(number: int, time: float, packet: bytes | None, ring: KeyRing) -> DecodedFrame:
    """Decode one IP packet (None for a frame that carries no IP)."""
    frame = _decode(number, time, packet, ring)
    frame.length = len(packet) if packet is not None else 0
    return frame


def _decode(number: int, time: float, packet: bytes | None, ring: KeyRing) -> DecodedFrame:
    if packet is None:
        return DecodedFrame(number, time, "other", "ok", detail="not an IP packet")
    if len(packet) >= 28 and packet[0] == 0x45 and packet[9] == ip.PROTO_ESP:
        frame = _esp_over_ipv4(number, time, packet, ring)
        if frame is not None:
            return frame
    try:
        hdr = ip.parse_inbound_header(packet)
    except ip.MalformedIP as exc:
        return DecodedFrame(number, time, "other", Status.MALFORMED.value, detail=str(exc))
    frame = DecodedFrame(number, time, "other", "ok", _text(hdr.src_bytes), _text(hdr.dst_bytes),
                         next_header=hdr.next_header)
    start = hdr.header_length
    proto = hdr.next_header
    if proto == ip.PROTO_UDP:
        try:
            sport, dport, payload = parse_udp(packet[start : hdr.total_length])
        except ip.MalformedIP as exc:
            frame.status, frame.detail = Status.MALFORMED.value, str(exc)
            return frame
        if NAT_T_PORT in (sport, dport):
            kind = classify(payload)
            if kind is Udp4500Kind.ESP:
                frame.udp_encap = True
                proto, start = ip.PROTO_ESP, start + 8
            elif kind is Udp4500Kind.IKE:
                frame.udp_encap = True
                return _ike(frame, payload[4:], ring)
            elif kind is Udp4500Kind.KEEPALIVE:
                frame.proto, frame.status = "esp", Status.KEEPALIVE.value
                frame.udp_encap = True
                return frame
            else:
                frame.status = Status.MALFORMED.value
                return frame
        elif IKE_PORT in (sport, dport):
            return _ike(frame, payload, ring)
        else:
            return frame
    if proto == ip.PROTO_ESP:
        frame.proto = "esp"
        if hdr.total_length - start < 8:
            frame.status = Status.MALFORMED.value
            frame.detail = "ESP header truncated"
            return frame
        spi = int.from_bytes(packet[start : start + 4], "big")
        frame.spi = spi
        frame.seq = int.from_bytes(packet[start + 4 : start + 8], "big")
        result = _try(ring, Protocol.ESP, spi, packet, hdr, start)
    elif proto == ip.PROTO_AH:
        frame.proto = "ah"
        if hdr.total_length - start < 12:
            frame.status, frame.detail = Status.MALFORMED.value, "AH header truncated"
            return frame
        spi = int.from_bytes(packet[start + 4 : start + 8], "big")
        frame.spi = spi
        frame.seq = int.from_bytes(packet[start + 8 : start + 12], "big")
        result = _try(ring, Protocol.AH, spi, packet, hdr, start)
        if result.status is Status.NO_SA:
            result = _ah_unverified(packet)
    else:
        return frame
    return _report(frame, result)


def _report(frame: DecodedFrame, result: Unprotected) -> DecodedFrame:
    """Copy what ESP/AH processing concluded into the frame."""
    frame.status = result.status.value
    frame.detail = result.detail
    if result.seq is not None:
        frame.seq = result.seq
    frame.next_header = result.next_header
    if result.inner is not None:
        frame.inner_bytes = result.inner
        frame.mode = "tunnel" if result.next_header in (ip.PROTO_IPV4, ip.PROTO_IPV6) \
            else "transport"
    return frame


def _esp_over_ipv4(number: int, time: float, packet: bytes, ring: KeyRing
                   ) -> DecodedFrame | None:
    """ESP right behind an IPv4 header without options, with one known SA: the bulk of a
    lab capture. The same steps as :func:`decode_packet` and :func:`_try` take, without
    building an IPHeader first; None leaves the frame to them."""
    total = (packet[2] << 8) | packet[3]
    if not 28 <= total <= len(packet):
        return None
    spi = int.from_bytes(packet[20:24], "big")
    candidates = ring.candidates(Protocol.ESP, spi)
    if len(candidates) != 1:
        return None
    sa = candidates[0]
    frame = DecodedFrame(number, time, "esp", "ok", _text(packet[12:16]), _text(packet[16:20]),
                         spi, int.from_bytes(packet[24:28], "big"), ip.PROTO_ESP)
    result = esp.unprotect(sa, packet[20:total])
    if result.status is Status.OK:
        if result.next_header in (ip.PROTO_IPV4, ip.PROTO_IPV6):
            sa.mode = Mode.TUNNEL
            result = esp.inner_packet(sa, result, None)
        else:
            sa.mode = Mode.TRANSPORT
            result = esp.inner_packet(sa, result, ip.parse_inbound_header(packet))
    return _report(frame, result)


def decode_capture(path: str | os.PathLike[str], ring: KeyRing | None = None
                   ) -> Iterator[DecodedFrame]:
    """Every frame of a pcap or pcapng file, decoded in order."""
    ring = ring if ring is not None else KeyRing()
    for frame in read_capture(path):
        packet = ip_payload(frame.linktype, frame.data)
        decoded = decode_packet(frame.number, frame.timestamp, packet, ring)
        if packet is None and frame.linktype not in IP_LINKTYPES:
            decoded.detail = f"link type {frame.linktype}, which ipseclab does not read"
        yield decoded
