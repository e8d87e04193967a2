"""AH child SAs negotiated by IKEv2 (swanctl ``ah_proposals``; RFC 7296 §3.3.1, RFC 4302).

The SA payload's proposals carry protocol 2 (AH) and only integrity (and ESN, and a KE
group for PFS); KEYMAT holds no encryption keys (§2.17); REKEY_SA and Delete name AH.
"""

from __future__ import annotations

import dataclasses
import random

import pytest
from test_ike_engine import configs, drain, exchange, of, ping

from ipseclab.ike import events
from ipseclab.ike.constants import NotifyType, ProtocolId
from ipseclab.ike.engine import IkeEngine
from ipseclab.ike.message import parse_message
from ipseclab.ike.payloads import Delete, Notify, SecurityAssociation
from ipseclab.ipsec import ah
from ipseclab.ipsec.sa import Protocol
from ipseclab.ipsec.verdict import Status


def ah_pair(ah_i: str = "sha256", ah_r: str | None = None, mode: str = "tunnel"):
    ci, cr = configs(mode=mode)
    ci = dataclasses.replace(ci, children=[dataclasses.replace(ci.children[0],
                                                               ah_proposals=ah_i)])
    cr = dataclasses.replace(cr, children=[dataclasses.replace(cr.children[0],
                                                               ah_proposals=ah_r or ah_i)])
    i = IkeEngine(ci, rng=random.Random(1).randbytes)
    r = IkeEngine(cr, rng=random.Random(2).randbytes)
    i.initiate("site", 0.0)
    seen = exchange(i, r)
    return i, r, drain(i), drain(r), seen


@pytest.mark.parametrize("mode", ["tunnel", "transport"])
def test_an_ah_child_sa_protects_traffic_both_ways(mode: str) -> None:
    _, _, ev_i, ev_r, seen = ah_pair("sha256-sha1", "sha1", mode=mode)
    auth = parse_message(seen[2][1])
    assert auth.exchange_type.name == "IKE_AUTH"
    (child_i,), (child_r,) = of(ev_i, events.ChildSaEstablished), of(ev_r,
                                                                     events.ChildSaEstablished)
    assert child_i.proposal == child_r.proposal == "sha1"  # the responder's only one
    assert child_i.outbound.protocol is Protocol.AH and child_i.outbound.encryption is None
    assert child_i.outbound.integrity_key == child_r.inbound.integrity_key
    assert len(child_i.outbound.integrity_key) == 20  # HMAC-SHA1-96 takes a 160-bit key
    a = ping("10.1.0.5", "10.2.0.7") if mode == "tunnel" else ping("192.0.2.1", "192.0.2.2")
    result = ah.decapsulate(child_r.inbound, ah.encapsulate(child_i.outbound, a))
    assert result.status is Status.OK
    b = ping("10.2.0.7", "10.1.0.5") if mode == "tunnel" else ping("192.0.2.2", "192.0.2.1")
    assert ah.decapsulate(child_i.inbound, ah.encapsulate(child_r.outbound, b)).status \
        is Status.OK


def test_an_ah_child_sa_is_rekeyed_and_deleted_as_ah() -> None:
    i, r, ev_i, _, _ = ah_pair()
    (child,) = of(ev_i, events.ChildSaEstablished)

    def opened(engine: IkeEngine, data: bytes) -> list:
        """The payloads of a message ``engine`` received (its IKE SA's keys)."""
        return engine.ike_sas[0].sk_in.open(data, parse_message(data))

    assert r.rekey_child_sa(child.reqid, 5.0)
    seen = exchange(i, r, 5.0)
    request = opened(i, next(d for who, d in seen if who == "r"))
    (rekey_sa,) = [p for p in request if isinstance(p, Notify)
                   and p.notify_type == NotifyType.REKEY_SA]
    assert rekey_sa.protocol_id == ProtocolId.AH
    sa = next(p for p in request if isinstance(p, SecurityAssociation))
    assert all(proposal.protocol_id == ProtocolId.AH for proposal in sa.proposals)
    (rekeyed,) = of(drain(i), events.ChildSaRekeyed)
    assert rekeyed.inbound.protocol is Protocol.AH
    assert i.delete_child_sa(child.reqid, 6.0)
    seen = exchange(i, r, 6.0)
    deletes = [p for p in opened(r, next(d for who, d in seen if who == "i"))
               if isinstance(p, Delete)]
    assert deletes and all(d.protocol_id == ProtocolId.AH for d in deletes)
    assert not i.ike_sas[0].children and not r.ike_sas[0].children


def test_ah_against_esp_is_no_proposal_chosen() -> None:
    ci, cr = configs()
    ci = dataclasses.replace(ci, children=[dataclasses.replace(ci.children[0],
                                                               ah_proposals="sha256")])
    i = IkeEngine(ci, rng=random.Random(1).randbytes)
    r = IkeEngine(cr, rng=random.Random(2).randbytes)
    i.initiate("site", 0.0)
    exchange(i, r)
    (failed,) = of(drain(r), events.ChildSaFailed)
    assert failed.notify == NotifyType.NO_PROPOSAL_CHOSEN
    assert "AH proposals sha256" in failed.received and "esp_proposals" in failed.configured
    assert of(drain(i), events.IkeSaEstablished)  # the IKE SA stays (§2.21.3)
