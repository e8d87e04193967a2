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
    "ChildSaOutboundReady",
    "ChildSaRekeyed",
    "Event",
    "IkeSaDeleted",
    "IkeSaEstablished",
    "IkeSaKeysDerived",
    "IkeSaRekeyFailed",
    "IkeSaRekeyed",
    "NegotiationFailed",
    "PeerUnreachable",
]


@dataclass
class Event:
    ike_sa: str
    time: float = field(kw_only=True, default=0.0)


@dataclass
class IkeSaKeysDerived(Event):
    """IKE_SA_INIT is done and the SK_* keys exist (RFC 7296 §2.14); IKE_AUTH comes next.

    Reported before authentication, as strongSwan logs its keys, so that a key log written
    now opens the IKE_AUTH exchange in a capture even when AUTH then fails (a wrong PSK:
    AUTHENTICATION_FAILED is inside the encrypted response). Only an engine built with
    ``report_keys=True`` reports it. :class:`IkeSaEstablished` follows if AUTH succeeds.
    """

    connection: str
    initiator: bool
    spi_i: bytes
    spi_r: bytes
    proposal: str
    sk_ei: bytes = field(repr=False)
    sk_er: bytes = field(repr=False)
    sk_ai: bytes = field(repr=False)
    sk_ar: bytes = field(repr=False)
    encryption_name: str = ""
    integrity_name: str = ""
    sk_d: bytes = field(default=b"", repr=False)  # the rest of §2.14's seven keys, for the
    sk_pi: bytes = field(default=b"", repr=False)  # teaching code that recomputes AUTH
    sk_pr: bytes = field(default=b"", repr=False)

    def keylog_entry(self):  # -> ipseclab.keylog.IkeSaEntry
        """This SA as one line of Wireshark's ``ikev2_decryption_table``."""
        from ipseclab.keylog import IkeSaEntry

        return IkeSaEntry(self.spi_i, self.spi_r, self.sk_ei, self.sk_er, self.encryption_name,
                          self.sk_ai, self.sk_ar, self.integrity_name)


@dataclass
class IkeSaEstablished(Event):
    """IKE_AUTH completed: both peers are authenticated (RFC 7296 §1.2).

    The keys are what Wireshark's ``ikev2_decryption_table`` needs (SK_e* with the salt of
    an AEAD, RFC 5282 §7.1); ``encryption_name``/``integrity_name`` are Wireshark's names.

    Virtual IPs (the configuration payload, RFC 7296 §2.19): a road warrior finds in
    ``virtual_ips`` the address the gateway gave it (to add to its interface, the source of
    its tunnelled traffic); the gateway finds in ``remote_virtual_ips`` the pool address it
    leased to the peer (routed into the tunnel), leased until the IKE SA is deleted.
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
    local_auth: str = "psk"  # how each side authenticated: psk or pubkey
    remote_auth: str = "psk"
    peer_certificate: str = ""  # subject DN of the peer's certificate (pubkey)
    virtual_ips: list[str] = field(default_factory=list)  # ours, assigned by the peer (CP)
    remote_virtual_ips: list[str] = field(default_factory=list)  # what we gave the peer
    dns_servers: list[str] = field(default_factory=list)  # INTERNAL_IP4/6_DNS we received
    reauthenticates: str = ""  # the IKE SA this one replaces from scratch (§2.8.3), if any

    def keylog_entry(self):  # -> ipseclab.keylog.IkeSaEntry
        """This SA as one line of Wireshark's ``ikev2_decryption_table``."""
        from ipseclab.keylog import IkeSaEntry

        return IkeSaEntry(self.spi_i, self.spi_r, self.sk_ei, self.sk_er, self.encryption_name,
                          self.sk_ai, self.sk_ar, self.integrity_name)


@dataclass
class IkeSaRekeyed(IkeSaEstablished):
    """A new IKE SA made by rekeying ``old_ike_sa`` (RFC 7296 §1.3.2, §2.18), with its keys
    for the ``ikev2_decryption_table``. The child SAs move over to it; the old IKE SA's
    :class:`IkeSaDeleted` (``rekeyed=True``) follows. Its SKEYSEED is
    prf(SK_d (old), g^ir (new) | Ni | Nr).
    """

    old_ike_sa: str = ""


@dataclass
class IkeSaRekeyFailed(Event):
    """Our IKE SA rekey was refused (``notify``); the old IKE SA stays and we try again."""

    notify: int
    reason: str = ""


@dataclass
class ChildSaEstablished(Event):
    """A child SA pair, ready to go into the SAD (RFC 7296 §2.17).

    ``inbound``/``outbound`` are complete :class:`SecurityAssociation` objects, ``selectors``
    the negotiated (local, remote) pairs for the SPD, ``reqid`` links both. ``local_ts`` and
    ``remote_ts`` are the narrowed TS lists as they went over the wire.

    Install ``inbound`` now; install ``outbound`` now only if ``outbound_ready`` (else wait
    for :class:`ChildSaOutboundReady`). ``rekeys`` is (SPI in, SPI out) of the child SA this
    one replaces (RFC 7296 §2.8), None for a new child SA; a rekeyed child SA keeps its
    ``reqid``, and the SAD's newest outbound SA of a reqid is the one used.
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
    rekeys: tuple[int, int] | None = None
    outbound_ready: bool = True


@dataclass
class ChildSaRekeyed(ChildSaEstablished):
    """A child SA made by a rekey (RFC 7296 §1.3.3, §2.8): make before break.

    The old pair (``rekeys``) stays installed until its :class:`ChildSaDeleted`. The rekey
    initiator gets ``outbound_ready=True``. The responder gets False: the initiator installs
    its inbound SA only when our response arrives, so we keep sending on the old SA until
    the old one is deleted (:class:`ChildSaOutboundReady` then says so). The loser of a rekey
    collision (§2.8.1) also gets False for the redundant SA it deletes right away.
    """


@dataclass
class ChildSaOutboundReady(Event):
    """Start sending on ``outbound`` (add it to the SAD): the SA it replaces is going."""

    child: str
    reqid: int
    spi_in: int
    spi_out: int
    outbound: SecurityAssociation


@dataclass
class ChildSaFailed(Event):
    """The IKE SA stands but its child SA could not be made (RFC 7296 §2.21.3).

    When we refused the peer's request (NO_PROPOSAL_CHOSEN, TS_UNACCEPTABLE), ``received``
    is what it asked for and ``configured`` what our child configs allow, in swanctl's
    words (proposals, selectors), for the log.
    """

    child: str
    notify: int
    reason: str = ""
    received: str = ""
    configured: str = ""


@dataclass
class ChildSaDeleted(Event):
    """A child SA pair is gone (DELETE, RFC 7296 §1.4.1): remove both SAs from the SAD."""

    child: str
    reqid: int
    spi_in: int
    spi_out: int
    by_peer: bool = False
    rekeyed: bool = False  # an SA replaced by a rekey (or a redundant one of a collision)


@dataclass
class IkeSaDeleted(Event):
    """The IKE SA is gone, and with it every child SA it made (RFC 7296 §1.4.1).

    ``rekeyed``: it was replaced by a rekeyed IKE SA (§2.18); its child SAs moved to the new
    IKE SA and are not deleted.
    """

    reason: str = ""
    by_peer: bool = False
    rekeyed: bool = False
    connection: str = ""  # the connection it was made for ("" if none was chosen yet)


@dataclass
class AuthenticationFailed(Event):
    """The peer's AUTH did not verify, or the peer rejected ours (AUTHENTICATION_FAILED).

    ``by_peer``: the peer told us (AUTHENTICATION_FAILED in IKE_AUTH or INFORMATIONAL).
    """

    connection: str
    reason: str = ""
    by_peer: bool = False


@dataclass
class NegotiationFailed(Event):
    """An exchange failed with an error ``notify`` (RFC 7296 §3.10.1), ours or the peer's.

    For a NO_PROPOSAL_CHOSEN we answered, ``received`` holds the peer's proposals and
    ``configured`` ours (strongSwan proposal syntax), for the log.
    """

    notify: int
    reason: str = ""
    by_peer: bool = False
    received: str = ""
    configured: str = ""


@dataclass
class PeerUnreachable(Event):
    """A request was retransmitted until we gave up (RFC 7296 §2.1, §2.4)."""

    exchange: int
    message_id: int
