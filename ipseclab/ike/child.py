"""Child SA negotiation inside IKE_AUTH (RFC 7296 §1.3, §2.9, §2.17).

The initiator offers ESP proposals with its inbound SPI and two TS lists; the responder picks
one proposal, narrows the selectors to its own policy and answers with its SPI. Both then
take KEYMAT from SK_d and the nonces and build the two SAs of the pair.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ipseclab.crypto.prf import PrfAlgorithm
from ipseclab.crypto.proposals import Proposal
from ipseclab.ike.config import ChildConfig
from ipseclab.ike.keys import child_keys
from ipseclab.ipsec.sa import Mode, SecurityAssociation, UdpEncap
from ipseclab.ipsec.selectors import Selector, TrafficSelector

__all__ = ["ChildSa", "build_child_sas"]


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

    @property
    def selectors(self) -> list[Selector]:
        return Selector.from_ts_lists(self.local_ts, self.remote_ts)


def build_child_sas(child: ChildSa, *, initiator: bool, prf: PrfAlgorithm, sk_d: bytes,
                    ni: bytes, nr: bytes, local: tuple[str, int], remote: tuple[str, int],
                    nat: bool) -> None:
    """Fill ``child.inbound``/``child.outbound`` from KEYMAT (§2.17).

    The initiator's outbound SA takes the first (initiator-to-responder) keys.
    """
    proposal = child.proposal
    encryption = proposal.encryption[0]
    integrity = proposal.integrity[0] if proposal.integrity else None
    keys = child_keys(prf, sk_d, ni, nr, encryption, integrity)
    i_to_r = (keys.encr_i, keys.integ_i)
    r_to_i = (keys.encr_r, keys.integ_r)
    out_keys, in_keys = (i_to_r, r_to_i) if initiator else (r_to_i, i_to_r)
    pairs = child.selectors
    selector = pairs[0] if len(pairs) == 1 else None
    esn = bool(proposal.esn and proposal.esn[0])
    mode = Mode(child.mode)
    common = dict(protocol="esp", mode=mode, encryption=encryption, integrity=integrity,
                  replay_window=child.config.replay_window, esn=esn, reqid=child.reqid,
                  selector=selector)
    child.outbound = SecurityAssociation(
        child.spi_out, local[0], remote[0], encryption_key=out_keys[0],
        integrity_key=out_keys[1], encap=UdpEncap(local[1], remote[1]) if nat else None,
        **common)
    child.inbound = SecurityAssociation(
        child.spi_in, remote[0], local[0], encryption_key=in_keys[0],
        integrity_key=in_keys[1], encap=UdpEncap(remote[1], local[1]) if nat else None,
        **common)
