"""What every IKEv2 payload shares: the error a parser raises, and the Payload base class.

Each payload is a dataclass whose ``parse(body)`` reads the bytes after the generic payload
header (RFC 7296 §3.2) and whose ``to_bytes()`` writes them back. The generic header itself
(Next Payload, critical bit, Payload Length) belongs to the chain and is handled in
:mod:`ipseclab.ike.message`, because the Next Payload field describes the *following* payload.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Self

from ipseclab.errors import IpsecLabError
from ipseclab.ike.constants import NotifyType


class MalformedMessage(IpsecLabError):
    """A received IKE message or payload that breaks the encoding rules of RFC 7296 §3.

    ``notify`` is the error a responder would report (RFC 7296 §3.10.1): INVALID_SYNTAX by
    default, UNSUPPORTED_CRITICAL_PAYLOAD for an unknown critical payload, whose one-octet
    payload type is then in ``data`` (RFC 7296 §2.5).
    """

    def __init__(
        self,
        message: str,
        *,
        notify: NotifyType = NotifyType.INVALID_SYNTAX,
        data: bytes = b"",
    ) -> None:
        self.notify = notify
        self.data = data
        super().__init__(message)


def require(condition: bool, message: str) -> None:
    """Raise :class:`MalformedMessage` with ``message`` unless ``condition`` holds."""
    if not condition:
        raise MalformedMessage(message)


@dataclass
class Payload:
    """Base of all payloads. ``critical`` is the C bit of the generic header (RFC 7296 §3.2).

    A sender sets the bit on a payload the receiver must understand; for the payload types
    of RFC 7296 it is sent as zero and ignored on receipt. The codec keeps it as received.
    """

    payload_type: ClassVar[int]
    critical: bool = field(default=False, kw_only=True)

    @classmethod
    def parse(cls, body: bytes) -> Self:
        """Read the payload body (the bytes after the generic header)."""
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Write the payload body (without the generic header)."""
        raise NotImplementedError
