"""Reauthentication (RFC 7296 §2.8.3, swanctl's reauth_time): a new IKE SA from scratch.

Two in-memory engines as in test_ike_rekey.py, with their small gateways; a packet stream
checks that make-before-break loses nothing, and the reqids show that the SPD's entries
stay as they were.
"""

from __future__ import annotations

import random

import pytest
from test_ike_rekey import I_ADDR, R_ADDR, Gateway, Pair, configs

from ipseclab.ike import events
from ipseclab.ike.engine import IkeEngine
from ipseclab.ike.ike_sa import State
from ipseclab.ike.reauth import RETRY_REAUTH


def two_children(**kw) -> Pair:
    pair = Pair(*configs(net2_i="aes128gcm16", **kw))
    pair.establish()
    assert pair.i.create_child("site", "net2", 1.0)
    pair.run(1.0)
    assert len(pair.ike("i").children) == len(pair.ike("r").children) == 2
    return pair


def reqids(pair: Pair, side: str) -> dict[str, int]:
    return {c.config.name: c.reqid for c in pair.ike(side).children}


@pytest.mark.parametrize("who", ["i", "r"])
def test_make_before_break_recreates_every_child_sa_without_loss(who: str) -> None:
    pair = two_children()
    old = pair.ike("i").name
    before = {side: reqids(pair, side) for side in "ir"}
    reauthenticating = pair.i if who == "i" else pair.r
    assert reauthenticating.reauthenticate_ike_sa(old, 10.0)
    assert not reauthenticating.reauthenticate_ike_sa(old, 10.0)  # one at a time
    pair.run_with_traffic(10.0, before["i"]["net"])  # every packet arrives (asserted inside)
    new_i, new_r = pair.ike("i"), pair.ike("r")  # exactly one IKE SA each
    assert new_i.name == new_r.name != old
    assert new_i.initiator is (who == "i")  # the side that reauthenticates initiates
    for side in "ir":
        assert reqids(pair, side) == before[side]  # the SPD's entries stay as they were
    gw, peer = (pair.gi, pair.gr) if who == "i" else (pair.gr, pair.gi)
    [new] = [e for e in gw.of(events.IkeSaEstablished) if e.ike_sa != old]
    assert new.reauthenticates == old
    [gone] = gw.of(events.IkeSaDeleted)
    assert gone.ike_sa == old and gone.reason == "reauthenticated" and not gone.by_peer
    [peer_gone] = peer.of(events.IkeSaDeleted)
    # No INITIAL_CONTACT: the peer kept the old SAs until our Delete came (§2.4).
    assert peer_gone.ike_sa == old and peer_gone.reason == "deleted by peer"
    for g in (gw, peer):
        old_children = g.of(events.ChildSaDeleted)
        assert len(old_children) == 2 and all(e.rekeyed for e in old_children)
        assert not g.of(events.ChildSaFailed)
        assert len(g.dp.sad) == 4  # two child SAs, in and out, of the new IKE SA only
    # The peer, the responder of the new child SAs, sent on the old ones until they went.
    assert len(peer.of(events.ChildSaOutboundReady)) == 2
    pair.traffic_ok(before["i"]["net"], before["r"]["net"])
    pair.traffic_ok(before["i"]["net2"], before["r"]["net2"], "10.1.1.5", "10.2.1.7")
    # The new IKE SA works as any other: rekey a child SA over it.
    assert pair.r.rekey_child_sa(before["r"]["net"], 20.0)
    pair.run_with_traffic(20.0, before["i"]["net"])


def test_break_before_make_deletes_first() -> None:
    ci, cr = configs()
    pair = Pair(ci, cr)
    pair.i = IkeEngine(ci, rng=random.Random(5).randbytes, make_before_break=False)
    pair.gi.engine = pair.i
    pair.establish()
    old = pair.ike("i").name
    assert pair.i.reauthenticate_ike_sa(old, 10.0)
    pair.run(10.0)
    kinds = [type(e).__name__ for e in pair.gi.events]
    first_delete = kinds.index("IkeSaDeleted")
    assert kinds.count("IkeSaEstablished") == 2
    assert first_delete < len(kinds) - 1 - kinds[::-1].index("IkeSaEstablished")
    new_i, new_r = pair.ike("i"), pair.ike("r")
    assert new_i.name == new_r.name != old and len(new_i.children) == 1
    assert not pair.gi.of(events.ChildSaFailed) and len(pair.gi.dp.sad) == 2
    reqid_i = new_i.children[0].reqid
    reqid_r = new_r.children[0].reqid
    pair.traffic_ok(reqid_i, reqid_r)


def test_reauth_time_fires_and_survives_ike_rekeys() -> None:
    ci, cr = configs()
    ci.rekey_time, ci.reauth_time = 60.0, 150.0
    cr.rekey_time = 0.0
    pair = Pair(ci, cr)
    pair.establish()
    reqid = pair.reqid("i")
    pair.timers(until=400.0)
    reauths = [e for e in pair.gi.of(events.IkeSaEstablished) if e.reauthenticates]
    rekeys = pair.gi.of(events.IkeSaRekeyed)
    # reauth_time minus up to 10%, counted from the last reauthentication: an IKE SA rekey
    # in between (every 54-60 s) does not postpone it.
    assert len(reauths) == 2, [e.time for e in reauths]
    assert 135.0 <= reauths[0].time <= 150.0
    assert 135.0 <= reauths[1].time - reauths[0].time <= 150.0
    assert len(rekeys) >= 4
    assert pair.ike("i").state is State.ESTABLISHED and len(pair.ike("r").children) == 1
    pair.traffic_ok(reqid, reqid)
    # over_time: the life of each IKE SA ends 10% of the longer time after the earlier one
    assert pair.ike("i").life_ends is not None


def test_a_failed_reauthentication_keeps_the_old_ike_sa_and_tries_again() -> None:
    pair = Pair(*configs())
    pair.establish()
    old = pair.ike("i").name
    reqid = pair.reqid("i")
    assert pair.i.reauthenticate_ike_sa(old, 10.0)
    pair.i.datagrams_to_send()  # the new IKE_SA_INIT is lost, and all its retransmissions
    pair.timers(until=75.0, lose_from_r=True)  # resent at 11, 13, 17, 25, 41; given up at 73
    [unreachable] = pair.gi.of(events.PeerUnreachable)
    assert unreachable.ike_sa != old
    [sa] = pair.i.ike_sas
    assert sa.name == old and sa.state is State.ESTABLISHED
    assert sa.reauth_at is not None
    assert 73.0 + RETRY_REAUTH <= sa.reauth_at <= 73.0 + 2 * RETRY_REAUTH
    pair.traffic_ok(reqid, reqid)
    pair.timers(until=100.0)  # the next try gets through
    [new] = [e for e in pair.gi.of(events.IkeSaEstablished) if e.reauthenticates == old]
    assert pair.ike("i").name == new.ike_sa
    pair.traffic_ok(reqid, reqid)


def test_a_duplicate_of_a_peer_that_lost_its_state_is_used_after_a_while() -> None:
    """Not every duplicate child SA is a reauthentication: a peer that restarted without
    INITIAL_CONTACT never deletes the old pair, so the responder stops waiting for that."""
    ci, cr = configs()
    pair = Pair(ci, cr)
    pair.establish()
    reqid_r = pair.reqid("r")
    ci.send_initial_contact = False
    pair.i = IkeEngine(ci, rng=random.Random(77).randbytes)  # the restarted initiator
    pair.gi = Gateway(pair.i, I_ADDR, R_ADDR)
    pair.i.initiate("site", 5.0)
    pair.run(5.0)
    assert len(pair.r.ike_sas) == 2
    new_child = pair.gr.of(events.ChildSaEstablished)[-1]
    assert new_child.reqid == reqid_r and not new_child.outbound_ready
    pair.timers(until=5.0 + 1.9)
    assert not pair.gr.of(events.ChildSaOutboundReady)
    pair.timers(until=8.0)
    [ready] = pair.gr.of(events.ChildSaOutboundReady)
    assert ready.spi_out == new_child.outbound.spi and ready.time == pytest.approx(7.0)
    reqid_i = pair.ike("i").children[0].reqid
    pair.traffic_ok(reqid_i, reqid_r)


def test_no_reauth_without_an_established_ike_sa() -> None:
    pair = Pair(*configs())
    pair.i.initiate("site", 0.0)
    [sa] = pair.i.ike_sas
    assert not pair.i.reauthenticate_ike_sa(sa.name, 0.0)
    assert not pair.i.reauthenticate_ike_sa("00" * 16, 0.0)
