"""Child SAs: what an IKE SA knows of each pair, and their keys (RFC 7296 §1.3, §2.9, §2.17).

The initiator offers ESP proposals with its inbound SPI and two TS lists (in IKE_AUTH or a
CREATE_CHILD_SA exchange); the responder picks one proposal, narrows the selectors to its own
policy and answers with its SPI. Both then take KEYMAT from SK_d, the nonces and, with PFS,
the new g^ir, and build the two SAs of the pair.

A child SA's life (the ``state`` field)::

    installed --our rekey request out--> rekeying --response--> rekeyed --Delete--> gone
    installed --peer rekeyed it--> (still installed; its successor waits) --Delete--> gone
    installed --our Delete out--> deleting --response--> gone

A child SA that duplicates one of another IKE SA with the same peer (a reauthentication,
RFC 7296 §2.8.3) takes that one's ``reqid``, so the SPD's entries stay as they are; as with
a rekey, its responder sends on it only once the duplicated one is gone (``waits_for``),
or after :data:`DUPLICATE_WAIT` seconds: the duplicate may also come from a peer that lost
its state and will never delete the old one.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass, field

from ipseclab.crypto.dh import DhPrivate
from ipseclab.crypto.prf import PrfAlgorithm
from ipseclab.crypto.proposals import Proposal
from ipseclab.errors import ConfigError
from ipseclab.ike.config import ChildConfig
from ipseclab.ike.keys import child_keys
from ipseclab.ipsec.lifetime import Lifetime
from ipseclab.ipsec.sa import Mode, SecurityAssociation, UdpEncap
from ipseclab.ipsec.selectors import Selector, TrafficSelector

__all__ = ["DUPLICATE_WAIT", "ChildRequest", "ChildSa", "build_child_sas"]

DUPLICATE_WAIT = 2.0  # seconds a duplicate's responder keeps sending on the old pair at most


@dataclass
class ChildSa:
    """One negotiated child SA pair as the IKE SA keeps track of it."""

    config: ChildConfig
    reqid: int
    spi_in: int
    spi_out: int
    proposal: Proposal
    mode: str
    local_ts: list[TrafficSelector]
    remote_ts: list[TrafficSelector]
    inbound: SecurityAssociation | None = field(default=None, repr=False)
    outbound: SecurityAssociation | None = field(default=None, repr=False)
    state: str = "installed"  # installed | rekeying | rekeyed | deleting
    outbound_ready: bool = True
    initiated: bool = True  # we sent the request that made it
    nonces: tuple[bytes, bytes] = (b"", b"")  # (Ni, Nr) of that exchange, for §2.8.1
    replaces: ChildSa | None = field(default=None, repr=False)
    replaced_by: ChildSa | None = field(default=None, repr=False)
    rekey_at: float | None = None
    expire_at: float | None = None
    waits_for: ChildSa | None = field(default=None, repr=False)  # outbound after it goes
    wait_ends: float | None = None  # ... or at this time

    @property
    def selectors(self) -> list[Selector]:
        return Selector.from_ts_lists(self.local_ts, self.remote_ts)


@dataclass
class ChildRequest:
    """Our CREATE_CHILD_SA request for a new or a rekeyed child SA, kept for its response.

    ``collision`` is the child SA we made as responder to the peer's rekey of the same old
    child SA while this request was out (RFC 7296 §2.8.1).
    """

    config: ChildConfig
    spi_in: int
    ni: bytes
    dh: DhPrivate | None
    local_ts: list[TrafficSelector]
    remote_ts: list[TrafficSelector]
    old: ChildSa | None = None
    retries: int = 0
    collision: ChildSa | None = None


def build_child_sas(child: ChildSa, *, initiator: bool, prf: PrfAlgorithm, sk_d: bytes,
                    ni: bytes, nr: bytes, local: tuple[str, int], remote: tuple[str, int],
                    nat: bool, g_ir: bytes | None = None, lifetime: Lifetime | None = None,
                    tfc_padding: int = 0) -> None:
    """Fill ``child.inbound``/``child.outbound`` from KEYMAT (§2.17).

    The initiator's outbound SA takes the first (initiator-to-responder) keys; ``g_ir`` is the
    new shared secret of a CREATE_CHILD_SA exchange with PFS. ``lifetime`` (byte and packet
    limits) goes to both SAs, ``tfc_padding`` to the outbound one (RFC 4303 §2.7).
    """
    proposal = child.proposal
    encryption = proposal.encryption[0] if proposal.encryption else None  # None: AH
    integrity = proposal.integrity[0] if proposal.integrity else None
    keys = child_keys(prf, sk_d, ni, nr, encryption, integrity, g_ir)
    i_to_r = (keys.encr_i, keys.integ_i)
    r_to_i = (keys.encr_r, keys.integ_r)
    out_keys, in_keys = (i_to_r, r_to_i) if initiator else (r_to_i, i_to_r)
    pairs = child.selectors
    selector = pairs[0] if len(pairs) == 1 else None
    esn = bool(proposal.esn and proposal.esn[0])
    mode = Mode(child.mode)
    protocol = child.config.protocol
    if protocol == "ah" and nat:
        raise ConfigError(f"child {child.config.name}: AH cannot cross the NAT found between"
                          " the peers (its ICV covers the addresses; RFC 3948 is for ESP)")
    common = dict(protocol=protocol, mode=mode, encryption=encryption, integrity=integrity,
                  replay_window=child.config.replay_window, esn=esn, reqid=child.reqid,
                  selector=selector, lifetime=lifetime)
    here, there = _address(local[0]), _address(remote[0])
    child.outbound = SecurityAssociation(
        child.spi_out, here, there, encryption_key=out_keys[0],
        integrity_key=out_keys[1], encap=UdpEncap(local[1], remote[1]) if nat else None,
        tfc_padding=tfc_padding if mode is Mode.TUNNEL and protocol == "esp" else 0,
        **common)
    child.inbound = SecurityAssociation(
        child.spi_in, there, here, encryption_key=in_keys[0],
        integrity_key=in_keys[1], encap=UdpEncap(remote[1], local[1]) if nat else None,
        **common)


@functools.lru_cache(maxsize=1024)
def _address(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """An IKE endpoint as an address object, parsed once: addresses are immutable, and every
    child SA of a peer has the same two."""
    return ipaddress.ip_address(text)
