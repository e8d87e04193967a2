"""What the IKE engine reports to its driver: small dataclasses, read with
:meth:`ipseclab.ike.engine.IkeEngine.next_event` (the aioquic style).

An IKE SA is named by ``ike_sa``: the pair (SPIi, SPIr) as 32 hex digits, the same name
Wireshark's ``ikev2_decryption_table`` gives it. Every event carries ``time``, the ``now``
of the call that produced it, so a notebook can plot a negotiation.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ipseclab.ipsec.sa import SecurityAssociation
from ipseclab.ipsec.selectors import Selector, TrafficSelector

__all__ = [
    "AuthenticationFailed",
    "ChildSaDeleted",
    "ChildSaEstablished",
    "ChildSaFailed",
    "Event",
    "IkeSaDeleted",
    "IkeSaEstablished",
    "NegotiationFailed",
    "PeerUnreachable",
]


@dataclass
class Event:
    ike_sa: str
    time: float = field(kw_only=True, default=0.0)


@dataclass
class IkeSaEstablished(Event):
    """IKE_AUTH completed: both peers are authenticated (RFC 7296 §1.2).

    The keys are what Wireshark's ``ikev2_decryption_table`` needs (SK_e* with the salt of
    an AEAD, RFC 5282 §7.1); ``encryption_name``/``integrity_name`` are Wireshark's names.
    """

    connection: str
    initiator: bool
    spi_i: bytes
    spi_r: bytes
    local: tuple[str, int]
    remote: tuple[str, int]
    local_id: str
    remote_id: str
    proposal: str
    sk_ei: bytes = field(repr=False)
    sk_er: bytes = field(repr=False)
    sk_ai: bytes = field(repr=False)
    sk_ar: bytes = field(repr=False)
    encryption_name: str = ""
    integrity_name: str = ""
    nat_detected: bool = False

    def keylog_entry(self):  # -> ipseclab.keylog.IkeSaEntry
        """This SA as one line of Wireshark's ``ikev2_decryption_table``."""
        from ipseclab.keylog import IkeSaEntry

        return IkeSaEntry(self.spi_i, self.spi_r, self.sk_ei, self.sk_er, self.encryption_name,
                          self.sk_ai, self.sk_ar, self.integrity_name)


@dataclass
class ChildSaEstablished(Event):
    """A child SA pair, ready to go into the SAD (RFC 7296 §2.17).

    ``inbound``/``outbound`` are complete :class:`SecurityAssociation` objects, ``selectors``
    the negotiated (local, remote) pairs for the SPD, ``reqid`` links both. ``local_ts`` and
    ``remote_ts`` are the narrowed TS lists as they went over the wire.
    """

    connection: str
    child: str
    reqid: int
    mode: str
    proposal: str
    inbound: SecurityAssociation
    outbound: SecurityAssociation
    local_ts: list[TrafficSelector]
    remote_ts: list[TrafficSelector]
    selectors: list[Selector]


@dataclass
class ChildSaFailed(Event):
    """The IKE SA stands but its child SA could not be made (RFC 7296 §2.21.3)."""

    child: str
    notify: int
    reason: str = ""


@dataclass
class ChildSaDeleted(Event):
    """A child SA pair is gone (DELETE, RFC 7296 §1.4.1): remove both SAs from the SAD."""

    child: str
    reqid: int
    spi_in: int
    spi_out: int
    by_peer: bool = False


@dataclass
class IkeSaDeleted(Event):
    """The IKE SA is gone, and with it every child SA it made (RFC 7296 §1.4.1)."""

    reason: str = ""
    by_peer: bool = False


@dataclass
class AuthenticationFailed(Event):
    """The peer's AUTH did not verify, or the peer rejected ours (AUTHENTICATION_FAILED)."""

    connection: str
    reason: str = ""


@dataclass
class NegotiationFailed(Event):
    """An exchange failed with an error ``notify`` (RFC 7296 §3.10.1), ours or the peer's."""

    notify: int
    reason: str = ""
    by_peer: bool = False


@dataclass
class PeerUnreachable(Event):
    """A request was retransmitted until we gave up (RFC 7296 §2.1, §2.4)."""

    exchange: int
    message_id: int
