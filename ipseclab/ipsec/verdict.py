"""What processing a protected packet can conclude, as data a test or a notebook can read."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING

from ipseclab.errors import IpsecLabError

if TYPE_CHECKING:
    from ipseclab.ipsec.sa import SecurityAssociation


class Status(StrEnum):
    """The verdict on one inbound packet; the values are what ``decode --json`` prints."""

    OK = "ok"
    DUMMY = "dummy"  # next header 59: a dummy packet for traffic flow confidentiality
    KEEPALIVE = "keepalive"  # NAT-keepalive, RFC 3948 §2.3
    AUTH_FAILED = "auth_failed"
    REPLAY = "replay"
    TOO_OLD = "too_old"
    BAD_PADDING = "bad_padding"
    MALFORMED = "malformed"
    NO_SA = "no_sa"
    POLICY_MISMATCH = "policy_mismatch"
    EXPIRED = "expired"
    UNVERIFIED = "unverified"  # AH read without its key: readable, but nothing was checked

    def __str__(self) -> str:
        return self.value


@dataclass(slots=True)
class Unprotected:
    """The outcome of ESP/AH inbound processing.

    ``payload`` is what followed the ESP/AH header (an inner IP packet in tunnel mode, a
    transport-layer segment in transport mode); ``inner`` is the IP packet the receiver
    delivers: the inner packet in tunnel mode, the original packet rebuilt in transport mode.
    """

    status: Status
    spi: int | None = None
    seq: int | None = None
    next_header: int | None = None
    payload: bytes | None = None
    inner: bytes | None = None
    sa: SecurityAssociation | None = None
    detail: str = ""

    @property
    def ok(self) -> bool:
        return self.status is Status.OK


class ProtectError(IpsecLabError):
    """An outbound packet that cannot be protected (sequence overflow, fragment, ...)."""


class SequenceOverflow(ProtectError):
    """RFC 4303 §3.3.3: the counter must not cycle; the SA has to be rekeyed."""
