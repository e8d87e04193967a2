"""IKE message fragmentation (RFC 7383): how large a fragment may be, and reassembly.

An IKE_AUTH message with a certificate chain is easily larger than a path's MTU; sent as one
UDP datagram it is fragmented by IP, and middleboxes often drop IP fragments. RFC 7383 lets
IKE fragment its own encrypted messages instead:

    HDR, SKF{Fragment Number = 1, Total Fragments = n, Next Payload = first inner type}
    HDR, SKF{Fragment Number = 2, Total Fragments = n, Next Payload = 0}  ...

Each fragment carries a slice of the inner payload chain, encrypted and integrity-protected
on its own (§2.5), under the message's Message ID. Support is announced with
N(IKEV2_FRAGMENTATION_SUPPORTED) in IKE_SA_INIT (§2.3); IKE_SA_INIT itself is never
fragmented. Sealing is :meth:`ipseclab.ike.sk.SkCipher.seal_fragments`; this module has the
size arithmetic and :class:`Reassembly`, the receiver's side (§2.6): fragments are checked
(ICV first, by the caller) and collected per Message ID, duplicates are ignored, memory is
bounded by :class:`FragmentLimits`, and an incomplete set is dropped after a timeout.

Sizes follow strongSwan's ``charon.fragment_size`` (default 1280): the size of the whole IP
datagram that carries one fragment, so the IP header (20 octets for IPv4, 40 for IPv6), the
UDP header (8) and the non-ESP marker on port 4500 (4, RFC 3948 §2.2) come off it.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field

from ipseclab.ike.message import HEADER_SIZE
from ipseclab.ike.payload_base import MalformedMessage

__all__ = [
    "DEFAULT_FRAGMENT_SIZE",
    "FRAGMENTATION_MODES",
    "FragmentLimits",
    "Reassembly",
    "max_message_size",
]

DEFAULT_FRAGMENT_SIZE = 1280  # strongSwan's charon.fragment_size
FRAGMENTATION_MODES = ("yes", "accept", "force", "no")  # swanctl.conf's fragmentation
SKF_OVERHEAD = 4 + 4  # generic payload header, Fragment Number and Total Fragments
_MIN_MESSAGE = 256  # below this a fragment holds too little to be worth sending


def max_message_size(fragment_size: int, local: tuple[str, int],
                     remote: tuple[str, int]) -> int:
    """The largest IKE message (header included) that fits one IP datagram of
    ``fragment_size`` octets between ``local`` and ``remote`` (address, port)."""
    ip_header = 40 if ipaddress.ip_address(remote[0]).version == 6 else 20
    marker = 4 if 500 not in (local[1], remote[1]) else 0
    return max(fragment_size - ip_header - 8 - marker, _MIN_MESSAGE)


def chunk_size(message_size: int, iv_size: int, icv_size: int, block_size: int) -> int:
    """How many octets of the inner payload chain one SKF fragment of at most
    ``message_size`` octets can carry: what is left after the IKE header, the SKF header,
    the IV and the ICV, cut down to whole cipher blocks less the Pad Length octet."""
    room = message_size - HEADER_SIZE - SKF_OVERHEAD - iv_size - icv_size
    return max(room - room % block_size - 1, 1)


@dataclass(frozen=True)
class FragmentLimits:
    """What a receiver keeps for one message being reassembled (RFC 7383 §2.6, §5: an
    authenticated peer can still send too much): at most ``max_fragments`` fragments and
    ``max_bytes`` decrypted octets, for at most ``timeout`` seconds."""

    max_fragments: int = 64
    max_bytes: int = 65535
    timeout: float = 30.0


@dataclass
class _Set:
    message_id: int
    total: int
    started: float
    first_inner: int = 0
    parts: dict[int, bytes] = field(default_factory=dict)
    size: int = 0


class Reassembly:
    """Collects the fragments of one direction's messages (requests or responses) of one
    IKE SA. Only one message is reassembled at a time: IKE's window is one message (§2.3).

    ``add`` takes a fragment whose ICV has been verified and returns (first inner payload
    type, inner payload chain) once the message is complete, else None. ``dropped`` counts
    fragments that were refused (duplicates, over the limits, stale totals)."""

    def __init__(self, limits: FragmentLimits | None = None) -> None:
        self.limits = limits or FragmentLimits()
        self._set: _Set | None = None
        self.dropped = 0

    @property
    def pending(self) -> bool:
        return self._set is not None

    def expires(self) -> float | None:
        """When the incomplete set is given up, or None."""
        return self._set.started + self.limits.timeout if self._set is not None else None

    def expire(self, now: float) -> None:
        if self._set is not None and now >= self._set.started + self.limits.timeout:
            self._set = None

    def add(self, message_id: int, number: int, total: int, first_inner: int,
            plaintext: bytes, now: float) -> tuple[int, bytes] | None:
        self.expire(now)
        if not 1 <= number <= total:
            raise MalformedMessage(f"fragment {number} of {total}")
        if total > self.limits.max_fragments:
            self.dropped += 1
            return None
        current = self._set
        if current is not None and (current.message_id != message_id or total > current.total):
            current = None  # a newer message, or resent with smaller fragments (§2.6)
        if current is not None and total < current.total:
            self.dropped += 1  # from an older transmission with larger fragments (§2.6)
            return None
        if current is None:
            current = self._set = _Set(message_id, total, now)
        if number in current.parts:
            self.dropped += 1  # a duplicate (§2.6)
            return None
        if current.size + len(plaintext) > self.limits.max_bytes:
            self.dropped += 1
            self._set = None
            return None
        current.parts[number] = plaintext
        current.size += len(plaintext)
        if number == 1:
            current.first_inner = first_inner  # the others carry 0 (§2.5)
        if len(current.parts) < current.total:
            return None
        self._set = None
        return current.first_inner, b"".join(current.parts[n] for n in range(1, total + 1))
