"""Packet arithmetic the attacks need: checksums, CBC IV flips, pulling ESP out of IPv4.

The Internet checksum (RFC 1071) is a one's-complement sum of 16-bit words. Changing one
word by ``d`` and another by ``-d`` leaves the sum, and so the checksum, unchanged
(RFC 1624): an attacker who flips bits it cannot see the checksum of keeps the packet
valid by paying for every change with a compensating change elsewhere.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

MASK16 = 0xFFFF


def ones_sum(data: bytes) -> int:
    """The 16-bit one's-complement sum of ``data`` (padded with a zero byte if odd)."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & MASK16) + (total >> 16)
    return total


def checksum(data: bytes) -> int:
    """The Internet checksum of ``data`` (RFC 1071)."""
    return ~ones_sum(data) & MASK16


def ipv4_header_ok(header: bytes) -> bool:
    """A 20..60-byte IPv4 header whose checksum verifies."""
    if len(header) < 20 or header[0] >> 4 != 4:
        return False
    ihl = (header[0] & 0x0F) * 4
    return 20 <= ihl <= len(header) and ones_sum(header[:ihl]) == MASK16


def compensate(old: bytes, new: bytes, at: int) -> bytes:
    """``new`` with the 16-bit word at even offset ``at`` changed so that its one's-complement
    sum equals that of ``old``: a checksum over either stays valid (RFC 1624 arithmetic).

    The word at ``at`` must hold, in ``new``, the value it had in ``old`` (the attacker knows
    it); the bytes there are the price of the forgery.
    """
    if at % 2 or len(old) != len(new) or at + 2 > len(new):
        raise ValueError("compensate needs equal lengths and an even offset inside the data")
    word = int.from_bytes(new[at:at + 2], "big")
    # One's-complement: x - y is x + ~y.
    diff = ones_sum(old) + (~ones_sum(new) & MASK16)
    while diff >> 16:
        diff = (diff & MASK16) + (diff >> 16)
    fixed = word + diff
    while fixed >> 16:
        fixed = (fixed & MASK16) + (fixed >> 16)
    if fixed == MASK16 and word != MASK16:
        fixed = 0  # the same one's-complement value; keeps a zero word zero-looking
    return new[:at] + fixed.to_bytes(2, "big") + new[at + 2:]


def xor(a: bytes, b: bytes) -> bytes:
    """Byte-wise XOR over the shorter length."""
    return bytes(x ^ y for x, y in zip(a, b, strict=False))


def flip_iv(iv: bytes, known: bytes, wanted: bytes) -> bytes:
    """The IV that turns the first CBC plaintext block from ``known`` into ``wanted``.

    CBC decrypts the first block as P1 = D(C1) XOR IV (RFC 3602 §2), so XORing the IV with
    ``known XOR wanted`` changes exactly those bits of P1, and nothing else: without an ICV
    the receiver cannot tell (RFC 4303 §1; Bellovin 1996).
    """
    if not len(iv) == len(known) == len(wanted):
        raise ValueError("IV, known and wanted blocks must have the same length")
    return xor(iv, xor(known, wanted))


@dataclass(frozen=True)
class EspPacket:
    """ESP in an IPv4 packet as mallory sees it (RFC 4303 §2)."""

    header: bytes  # the outer IPv4 header
    spi: int
    seq: int
    body: bytes  # everything after SPI and sequence number: IV, ciphertext, ICV

    @property
    def datagram(self) -> bytes:
        return struct.pack("!II", self.spi, self.seq) + self.body

    def packet(self) -> bytes:
        """The whole IPv4 packet again (length and checksum fixed)."""
        return rebuild_ipv4(self.header, self.datagram)


def parse_esp(packet: bytes) -> EspPacket:
    ihl = (packet[0] & 0x0F) * 4
    if packet[9] != 50 or len(packet) < ihl + 8:
        raise ValueError("not an ESP packet")
    spi, seq = struct.unpack_from("!II", packet, ihl)
    return EspPacket(packet[:ihl], spi, seq, packet[ihl + 8:])


def rebuild_ipv4(header: bytes, payload: bytes) -> bytes:
    """An IPv4 packet from a header (total length and checksum recomputed) and payload."""
    h = bytearray(header)
    h[2:4] = (len(h) + len(payload)).to_bytes(2, "big")
    h[10:12] = b"\0\0"
    h[10:12] = checksum(bytes(h)).to_bytes(2, "big")
    return bytes(h) + payload


def udp_payload(packet: bytes) -> tuple[int, int, bytes] | None:
    """(source port, destination port, data) of an IPv4 UDP packet, or None."""
    if len(packet) < 28 or packet[0] >> 4 != 4 or packet[9] != 17:
        return None
    ihl = (packet[0] & 0x0F) * 4
    sport, dport, length = struct.unpack_from("!HHH", packet, ihl)
    return sport, dport, packet[ihl + 8: ihl + max(length, 8)]


def printable(data: bytes) -> str:
    return "".join(chr(b) if 32 <= b < 127 else "." for b in data)
