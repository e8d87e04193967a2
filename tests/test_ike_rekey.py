"""CREATE_CHILD_SA: more child SAs, child SA and IKE SA rekeys, collisions, timers, DPD.

Two in-memory engines talk to each other; each has a small "gateway" that installs and
removes SAs in an :class:`IpsecEngine` exactly as the events say, so a packet stream can
check that a rekey is make-before-break (RFC 7296 §1.3, §2.8, §2.8.1, §2.17, §2.18, §2.25).
"""

from __future__ import annotations

import ipaddress
import random
import struct
from collections import deque

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from ipseclab.crypto import kdf
from ipseclab.crypto.dh import dh_group
from ipseclab.ike import events
from ipseclab.ike.config import ChildConfig, IkeConfig
from ipseclab.ike.constants import ExchangeType, HeaderFlag, NotifyType, ProtocolId
from ipseclab.ike.engine import IkeEngine
from ipseclab.ike.ike_sa import State
from ipseclab.ike.message import Message, build_payload_chain, parse_message, parse_payload_chain
from ipseclab.ike.payload_base import MalformedMessage
from ipseclab.ike.payloads import (
    Delete,
    KeyExchange,
    Nonce,
    Notify,
    SecurityAssociation,
    TSi,
    TSr,
)
from ipseclab.ike.sa_payload import Proposal, Transform
from ipseclab.ike.ts_payload import TrafficSelector
from ipseclab.ipsec import esp
from ipseclab.ipsec.engine import IpsecEngine
from ipseclab.ipsec.selectors import Selector
from ipseclab.ipsec.spd import Policy, PolicyAction, Template
from ipseclab.ipsec.verdict import Status

I_ADDR, R_ADDR = "192.0.2.1", "192.0.2.2"
MATRIX = [("aes128gcm16-prfsha256-x25519", "aes128gcm16", "x25519"),
          ("aes256-sha256-modp2048", "aes256-sha256", "modp2048")]


def configs(ike: str = "aes128gcm16-prfsha256-x25519", esp_i: str = "aes128gcm16",
            esp_r: str | None = None, net2_i: str | None = None, net2_r: str | None = None,
            r_net2_ts: tuple = ("10.2.1.0/24", "10.1.1.0/24"), **child_kw):
    def side(local, remote, lid, rid, esp_proposals, ts, net2, net2_ts):
        children = [ChildConfig("net", local_ts=[ts[0]], remote_ts=[ts[1]],
                                esp_proposals=esp_proposals, **child_kw)]
        if net2:
            children.append(ChildConfig("net2", local_ts=[net2_ts[0]], remote_ts=[net2_ts[1]],
                                        esp_proposals=net2))
        return IkeConfig("site", local_addrs=[local], remote_addrs=[remote], proposals=ike,
                         local_id=lid, remote_id=rid, psk=b"lab secret", children=children)

    ci = side(I_ADDR, R_ADDR, "@moon.example", "@sun.example", esp_i,
              ("10.1.0.0/24", "10.2.0.0/24"), net2_i, ("10.1.1.0/24", "10.2.1.0/24"))
    cr = side(R_ADDR, "%any", "@sun.example", "@moon.example", esp_r or esp_i,
              ("10.2.0.0/24", "10.1.0.0/24"), net2_r if net2_r is not None else net2_i,
              r_net2_ts)
    return ci, cr


def ping(src: str, dst: str, n: int = 0) -> bytes:
    payload = b"\x08\x00\x00\x00\x12\x34" + struct.pack("!H", n & 0xFFFF) + b"ipseclab" * 4
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), n & 0xFFFF, 0, 64, 1, 0,
                         ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed)
    return header + payload


class Gateway:
    """What a gateway driver does with the events: SAD entries in, SAD entries out."""

    def __init__(self, engine: IkeEngine, local: str, remote: str) -> None:
        self.engine, self.local, self.remote = engine, local, remote
        self.dp = IpsecEngine()
        # What a gateway installs beside the SAs: decrypted tunnel traffic from the peer is
        # allowed in (without an in/fwd policy the data plane refuses it, as Linux does).
        self.dp.spd.add(Policy(Selector.any(), "fwd", PolicyAction.PROTECT,
                               templates=[Template("esp", "tunnel", remote, local)]))
        self.events: list[events.Event] = []

    def pump(self) -> list[events.Event]:
        new = []
        while (event := self.engine.next_event()) is not None:
            new.append(event)
            if isinstance(event, events.ChildSaEstablished):
                self.dp.sad.add(event.inbound)
                if event.outbound_ready:
                    self.dp.sad.add(event.outbound)
            elif isinstance(event, events.ChildSaOutboundReady):
                self.dp.sad.add(event.outbound)
            elif isinstance(event, events.ChildSaDeleted):
                for sa in list(self.dp.sad):
                    if ((sa.spi, str(sa.dst)) in ((event.spi_in, self.local),
                                                  (event.spi_out, self.remote))):
                        self.dp.sad.remove(sa)
        self.events += new
        return new

    def send(self, packet: bytes, reqid: int) -> bytes:
        sa = self.dp.sad.lookup_outbound("esp", reqid=reqid,
                                         dst=ipaddress.ip_address(self.remote))
        assert sa is not None, "no outbound SA"
        return esp.encapsulate(sa, packet)

    def of(self, cls: type) -> list:
        return [e for e in self.events if isinstance(e, cls)]


class Pair:
    """Initiator and responder engines and gateways, and a wire between them."""

    def __init__(self, ci: IkeConfig, cr: IkeConfig, seed: int = 1) -> None:
        self.i = IkeEngine(ci, rng=random.Random(seed).randbytes)
        self.r = IkeEngine(cr, rng=random.Random(seed + 1000).randbytes)
        self.gi = Gateway(self.i, I_ADDR, R_ADDR)
        self.gr = Gateway(self.r, R_ADDR, I_ADDR)
        self.queue_i: deque = deque()  # datagrams from i, not yet delivered
        self.queue_r: deque = deque()

    def establish(self) -> None:
        self.i.initiate("site", 0.0)
        self.run(0.0)
        assert self.reqid("i") is not None

    def collect(self) -> None:
        self.queue_i += self.i.datagrams_to_send()
        self.queue_r += self.r.datagrams_to_send()

    def step(self, now: float, prefer: str = "i") -> bool:
        """Deliver one IKE datagram (alternating sides); False if none was waiting."""
        self.collect()
        order = [(self.queue_i, self.r), (self.queue_r, self.i)]
        if prefer == "r":
            order.reverse()
        for queue, receiver in order:
            if queue:
                data, src, dst = queue.popleft()
                receiver.receive_datagram(data, src, dst, now)
                self.gi.pump()
                self.gr.pump()
                return True
        return False

    def run(self, now: float, limit: int = 60) -> None:
        prefer = "i"
        for _ in range(limit):
            if not self.step(now, prefer):
                break
            prefer = "r" if prefer == "i" else "i"
        self.gi.pump()
        self.gr.pump()
        assert not self.i.internal_errors and not self.r.internal_errors

    def run_with_traffic(self, now: float, reqid: int, limit: int = 60) -> int:
        """Deliver IKE datagrams one by one while both sides send a packet at every step;
        data packets arrive one step late, after the next IKE datagram is handled."""
        in_flight: list[tuple[Gateway, bytes, bytes]] = []
        sent = 0
        prefer = "i"
        for _ in range(limit):
            moved = self.step(now, prefer)
            prefer = "r" if prefer == "i" else "i"
            for gateway, wire, packet in in_flight:
                result = gateway.dp.inbound(wire)
                assert result.status is Status.OK, (result.status, result.detail)
                assert result.inner == packet
            a, b = ping("10.1.0.5", "10.2.0.7", sent), ping("10.2.0.7", "10.1.0.5", sent)
            in_flight = [(self.gr, self.gi.send(a, reqid), a), (self.gi, self.gr.send(b, reqid), b)]
            sent += 2
            if not moved:
                break
        for gateway, wire, packet in in_flight:
            assert gateway.dp.inbound(wire).inner == packet
        assert not self.i.internal_errors and not self.r.internal_errors
        return sent

    def reqid(self, side: str) -> int | None:
        gw = self.gi if side == "i" else self.gr
        found = gw.of(events.ChildSaEstablished)
        return found[0].reqid if found else None

    def ike(self, side: str):
        engine = self.i if side == "i" else self.r
        [sa] = engine.ike_sas
        return sa

    def traffic_ok(self, reqid_i: int, reqid_r: int, src="10.1.0.5", dst="10.2.0.7") -> None:
        a, b = ping(src, dst, 7), ping(dst, src, 8)
        assert self.gr.dp.inbound(self.gi.send(a, reqid_i)).inner == a
        assert self.gi.dp.inbound(self.gr.send(b, reqid_r)).inner == b

    def timers(self, until: float, lose_from_r: bool = False) -> None:
        """Advance time from timer to timer, exchanging what the timers make."""
        while True:
            times = [t for t in (self.i.get_timer(), self.r.get_timer()) if t is not None]
            if not times or min(times) > until:
                return
            now = min(times)
            self.i.handle_timer(now)
            self.r.handle_timer(now)
            if lose_from_r:
                self.i.datagrams_to_send()
            self.run(now)


# -- a second child SA over the IKE SA (§1.3.1) --------------------------------------------


@pytest.mark.parametrize("pfs", [False, True])
@pytest.mark.parametrize(("ike", "esp_proposal", "group"), MATRIX)
def test_second_child_sa(ike: str, esp_proposal: str, group: str, pfs: bool) -> None:
    net2 = f"{esp_proposal}-{group}" if pfs else esp_proposal
    pair = Pair(*configs(ike, esp_proposal, net2_i=net2))
    pair.establish()
    assert pair.i.create_child("site", "net2", 1.0)
    pair.run(1.0)
    [ci] = [e for e in pair.gi.of(events.ChildSaEstablished) if e.child == "net2"]
    [cr] = [e for e in pair.gr.of(events.ChildSaEstablished) if e.child == "net2"]
    assert ci.rekeys is None and ci.outbound_ready and cr.outbound_ready
    name = str(dh_group(group))
    assert (name in ci.proposal) is pfs and (name in cr.proposal) is pfs
    assert ci.reqid != pair.reqid("i")
    assert ci.outbound.spi == cr.inbound.spi and cr.outbound.spi == ci.inbound.spi
    assert ci.outbound.encryption_key == cr.inbound.encryption_key
    assert ci.inbound.encryption_key == cr.outbound.encryption_key
    assert [str(t) for t in ci.remote_ts] == ["10.2.1.0/24"]
    pair.traffic_ok(ci.reqid, cr.reqid, "10.1.1.9", "10.2.1.9")
    pair.traffic_ok(pair.reqid("i"), pair.reqid("r"))  # the first child SA still works
    # KEYMAT (§2.17): with PFS the new g^ir goes in front of the nonces.
    sa_i = pair.ike("i")
    child = next(c for c in sa_i.children if c.config.name == "net2")
    plain = kdf.child_keymat(sa_i.suite.prf, sa_i.sk_d, *child.nonces, None, length=16)
    assert (plain != ci.outbound.encryption_key[:16]) is pfs


def test_responder_can_create_a_child_sa_too() -> None:
    pair = Pair(*configs(net2_i="aes128gcm16-x25519"))
    pair.establish()
    pair.r.configs["site"].children[1].local_ts = ["10.2.1.0/24"]
    assert pair.r.create_child(pair.ike("r").name, "net2", 1.0)
    pair.run(1.0)
    [cr] = [e for e in pair.gr.of(events.ChildSaEstablished) if e.child == "net2"]
    [ci] = [e for e in pair.gi.of(events.ChildSaEstablished) if e.child == "net2"]
    pair.traffic_ok(ci.reqid, cr.reqid, "10.1.1.9", "10.2.1.9")


@pytest.mark.parametrize(("case", "notify"), [
    ("proposal", NotifyType.NO_PROPOSAL_CHOSEN),
    ("pfs-mismatch", NotifyType.NO_PROPOSAL_CHOSEN),
    ("selectors", NotifyType.TS_UNACCEPTABLE),
])
def test_child_sa_errors_leave_the_ike_sa_alone(case: str, notify: int) -> None:
    kw = {"proposal": dict(net2_i="aes128gcm16", net2_r="aes256gcm16"),
          "pfs-mismatch": dict(net2_i="aes128gcm16-x25519", net2_r="aes128gcm16"),
          "selectors": dict(net2_i="aes128gcm16", r_net2_ts=("10.9.0.0/24", "10.8.0.0/24")),
          }[case]
    pair = Pair(*configs(**kw))
    pair.establish()
    assert pair.i.create_child("site", "net2", 1.0)
    pair.run(1.0)
    [failed] = pair.gi.of(events.ChildSaFailed)
    assert failed.notify == notify and failed.child == "net2"
    assert pair.gr.of(events.ChildSaFailed)[0].notify == notify
    assert pair.ike("i").state is State.ESTABLISHED and pair.ike("r").state is State.ESTABLISHED
    assert not pair.gi.of(events.IkeSaDeleted) and len(pair.ike("i").children) == 1
    pair.traffic_ok(pair.reqid("i"), pair.reqid("r"))
    assert pair.i.check_liveness(pair.ike("i").name, 2.0)  # the IKE SA still talks
    pair.run(2.0)
    assert pair.ike("i")._pending is None


def test_invalid_ke_payload_retry_with_the_group_asked_for() -> None:
    pair = Pair(*configs(net2_i="aes128gcm16-x25519-ecp256", net2_r="aes128gcm16-ecp256"))
    pair.establish()
    pair.i.create_child("site", "net2", 1.0)
    pair.collect()
    requests = len(pair.queue_i)
    pair.run(1.0)
    assert requests == 1
    [ci] = [e for e in pair.gi.of(events.ChildSaEstablished) if e.child == "net2"]
    assert "ecp256" in ci.proposal and not pair.gi.of(events.ChildSaFailed)
    assert pair.ike("i").next_request_id == 4  # INIT, AUTH, the refused try, the retry


def test_ike_auth_proposals_carry_no_dh_group() -> None:
    """§1.2: a PFS group in esp_proposals does not stop the IKE_AUTH child SA."""
    pair = Pair(*configs(esp_i="aes128gcm16-x25519"))
    pair.establish()
    [ci] = pair.gi.of(events.ChildSaEstablished)
    assert "x25519" not in ci.proposal


# -- child SA rekey (§1.3.3, §2.8) ---------------------------------------------------------


@pytest.mark.parametrize("who", ["i", "r"])
@pytest.mark.parametrize(("ike", "esp_proposal", "group"), MATRIX)
def test_child_rekey_loses_no_packet(who: str, ike: str, esp_proposal: str, group: str) -> None:
    pair = Pair(*configs(ike, f"{esp_proposal}-{group}"))
    pair.establish()
    reqid = pair.reqid("i")
    assert reqid == pair.reqid("r")
    old_in = pair.gi.of(events.ChildSaEstablished)[0].inbound.spi
    engine = pair.i if who == "i" else pair.r
    assert engine.rekey_child_sa(reqid, 5.0)
    sent = pair.run_with_traffic(5.0, reqid)
    assert sent >= 10
    for gw, mine in ((pair.gi, who == "i"), (pair.gr, who == "r")):
        [rekeyed] = gw.of(events.ChildSaRekeyed)
        assert rekeyed.reqid == reqid and rekeyed.outbound_ready is mine
        assert str(dh_group(group)) in rekeyed.proposal  # PFS in the rekey
        assert len(gw.of(events.ChildSaOutboundReady)) == (0 if mine else 1)
        [gone] = gw.of(events.ChildSaDeleted)
        assert gone.rekeyed and gone.by_peer is not mine
        assert (gone.spi_in, gone.spi_out) == rekeyed.rekeys
        assert len(gw.dp.sad) == 2  # only the new pair
    [child_i], [child_r] = pair.ike("i").children, pair.ike("r").children
    assert child_i.spi_in == child_r.spi_out != old_in
    assert child_i.state == child_r.state == "installed"
    pair.traffic_ok(reqid, reqid)


def test_child_rekey_collision_keeps_one_sa() -> None:
    winners = set()
    for seed in range(8):
        pair = Pair(*configs(), seed=seed)
        pair.establish()
        reqid = pair.reqid("i")
        assert pair.i.rekey_child_sa(reqid, 5.0) and pair.r.rekey_child_sa(reqid, 5.0)
        pair.run_with_traffic(5.0, reqid)
        [child_i], [child_r] = pair.ike("i").children, pair.ike("r").children
        assert child_i.spi_in == child_r.spi_out and child_i.spi_out == child_r.spi_in
        assert child_i.outbound_ready and child_r.outbound_ready
        assert child_i.initiated != child_r.initiated
        # §2.8.1: the surviving SA is the one whose exchange has the higher lowest nonce.
        assert len(pair.gi.dp.sad) == len(pair.gr.dp.sad) == 2
        assert len(pair.gi.of(events.ChildSaDeleted)) == 2  # the old and a redundant one
        winners.add("i" if child_i.initiated else "r")
        pair.traffic_ok(reqid, reqid)
        assert not pair.ike("i")._deleting and not pair.ike("r")._deleting
    assert winners == {"i", "r"}


def test_rekey_colliding_with_delete() -> None:
    """§2.25.1: the rekey is refused with TEMPORARY_FAILURE; the child SA is gone on both."""
    pair = Pair(*configs())
    pair.establish()
    reqid = pair.reqid("i")
    assert pair.i.rekey_child_sa(reqid, 5.0)
    assert pair.r.delete_child_sa(reqid, 5.0)
    pair.run(5.0)
    assert not pair.ike("i").children and not pair.ike("r").children
    assert len(pair.gi.dp.sad) == len(pair.gr.dp.sad) == 0
    assert pair.gi.of(events.ChildSaFailed)[0].notify == NotifyType.TEMPORARY_FAILURE
    assert pair.ike("i").state is State.ESTABLISHED
    assert pair.i.get_timer() > 100  # nothing left to retry


def test_delete_colliding_with_delete() -> None:
    pair = Pair(*configs())
    pair.establish()
    reqid = pair.reqid("i")
    assert pair.i.delete_child_sa(reqid, 5.0) and pair.r.delete_child_sa(reqid, 5.0)
    pair.run(5.0)
    assert len(pair.gi.of(events.ChildSaDeleted)) == len(pair.gr.of(events.ChildSaDeleted)) == 1
    assert not pair.gi.dp.sad and not pair.gr.dp.sad


# -- IKE SA rekey (§1.3.2, §2.18) ----------------------------------------------------------


def test_ike_rekey_by_connection_name() -> None:
    """``ctl rekey CONN`` as ``ctl reauth CONN``: the connection's newest IKE SA."""
    pair = Pair(*configs())
    pair.establish()
    old = pair.ike("i").name
    assert not pair.i.rekey_ike_sa("no-such-connection", 10.0)
    assert pair.i.rekey_ike_sa("site", 10.0)
    pair.run_with_traffic(10.0, pair.reqid("i"))
    assert pair.ike("i").name != old and [e.old_ike_sa for e in
                                          pair.gi.of(events.IkeSaRekeyed)] == [old]


@pytest.mark.parametrize(("ike", "esp_proposal", "group"), MATRIX)
@pytest.mark.parametrize("who", ["i", "r"])
def test_ike_rekey_keeps_children(ike: str, esp_proposal: str, group: str, who: str) -> None:
    pair = Pair(*configs(ike, esp_proposal))
    pair.establish()
    old_i = pair.ike("i")
    old_name, old_sk_d, old_prf = old_i.name, old_i.sk_d, old_i.suite.prf
    old_keys = pair.gi.of(events.IkeSaEstablished)[0]
    reqid = pair.reqid("i")
    assert (pair.i if who == "i" else pair.r).rekey_ike_sa(old_name, 10.0)
    pair.run_with_traffic(10.0, reqid)
    new_i, new_r = pair.ike("i"), pair.ike("r")
    assert new_i.name == new_r.name != old_name
    assert new_i.initiator is (who == "i")  # the rekey's initiator initiates the new SA
    [rk_i], [rk_r] = pair.gi.of(events.IkeSaRekeyed), pair.gr.of(events.IkeSaRekeyed)
    assert rk_i.old_ike_sa == rk_r.old_ike_sa == old_name and rk_i.ike_sa == new_i.name
    assert rk_i.sk_ei == rk_r.sk_ei and rk_i.sk_ei != old_keys.sk_ei
    assert rk_i.keylog_entry().spi_i == new_i.spi_i
    for gw in (pair.gi, pair.gr):
        [gone] = gw.of(events.IkeSaDeleted)
        assert gone.ike_sa == old_name and gone.rekeyed
        assert not gw.of(events.ChildSaDeleted)
    assert len(new_i.children) == len(new_r.children) == 1
    # SKEYSEED = prf(SK_d (old), g^ir (new) | Ni | Nr) with the old PRF (§2.18).
    g_ir = new_i.dh.exchange(new_r.dh.public_bytes())
    seed = kdf.skeyseed_rekey(old_prf, old_sk_d, g_ir, new_i.ni, new_i.nr)
    keys = kdf.ike_keys(new_i.suite.prf, seed, new_i.ni, new_i.nr, new_i.spi_i, new_i.spi_r,
                        new_i.suite.key_sizes)
    assert keys.SK_d == new_i.sk_d == new_r.sk_d
    # The child SAs work over the new IKE SA: rekey one there.
    assert pair.r.rekey_child_sa(reqid, 20.0)
    pair.run_with_traffic(20.0, reqid)
    assert len(pair.gi.of(events.ChildSaRekeyed)) == 1 and len(pair.gi.dp.sad) == 2
    assert pair.i.create_child("site", "net", 21.0)
    pair.run(21.0)
    assert len(pair.ike("r").children) == 2


def test_ike_rekey_collision_keeps_one_ike_sa() -> None:
    winners = set()
    for seed in range(8):
        pair = Pair(*configs(), seed=seed)
        pair.establish()
        old = pair.ike("i").name
        reqid = pair.reqid("i")
        assert pair.i.rekey_ike_sa(old, 10.0) and pair.r.rekey_ike_sa(old, 10.0)
        pair.run_with_traffic(10.0, reqid)
        new_i, new_r = pair.ike("i"), pair.ike("r")  # exactly one IKE SA on each side
        assert new_i.name == new_r.name != old
        assert new_i.state is new_r.state is State.ESTABLISHED
        assert len(new_i.children) == len(new_r.children) == 1
        assert len(pair.gi.of(events.IkeSaRekeyed)) == 2  # the survivor and the redundant
        assert len(pair.gi.of(events.IkeSaDeleted)) == 2
        assert not pair.gi.of(events.ChildSaDeleted) and not pair.gr.of(events.ChildSaDeleted)
        winners.add("i" if new_i.initiator else "r")
        pair.traffic_ok(reqid, reqid)
        assert pair.r.rekey_child_sa(reqid, 11.0)
        pair.run_with_traffic(11.0, reqid)
        assert len(pair.ike("i").children) == 1
    assert winners == {"i", "r"}


# -- timers: rekey_time, life_time, dpd_delay ------------------------------------------------


def test_timers_rekey_child_and_ike_sas() -> None:
    ci, cr = configs(rekey_time=100.0, life_time=130.0)
    for config in (ci, cr):
        config.rekey_time = 300.0
    pair = Pair(ci, cr)
    pair.establish()
    reqid = pair.reqid("i")
    pair.timers(until=700.0)
    rekeys = pair.gi.of(events.ChildSaRekeyed)
    times = [e.time for e in rekeys]
    assert len(times) >= 6
    gaps = [b - a for a, b in zip([0.0, *times], times, strict=False)]
    assert all(80.0 <= g <= 100.0 for g in gaps), gaps  # rekey_time minus up to 10%
    ike_rekeys = pair.gi.of(events.IkeSaRekeyed)
    assert len(ike_rekeys) == 2 and 270.0 <= ike_rekeys[0].time <= 300.0
    assert all(e.rekeyed for e in pair.gi.of(events.ChildSaDeleted))  # nothing expired
    assert not pair.gi.of(events.ChildSaFailed)
    assert len(pair.ike("i").children) == len(pair.ike("r").children) == 1
    assert len(pair.gi.dp.sad) == len(pair.gr.dp.sad) == 2
    pair.traffic_ok(reqid, reqid)


def test_life_time_deletes_a_child_sa_that_is_not_rekeyed() -> None:
    ci, cr = configs(rekey_time=0.0, life_time=50.0)
    cr.children[0].life_time = 0.0
    pair = Pair(ci, cr)
    pair.establish()
    pair.timers(until=100.0)
    [gone_i], [gone_r] = pair.gi.of(events.ChildSaDeleted), pair.gr.of(events.ChildSaDeleted)
    assert gone_i.time == 50.0 and gone_r.by_peer and not gone_i.rekeyed
    assert not pair.gi.dp.sad and not pair.gr.dp.sad


def test_dpd_failure_tears_everything_down() -> None:
    ci, cr = configs()
    ci.dpd_delay = 30.0
    pair = Pair(ci, cr)
    pair.establish()
    name = pair.ike("i").name
    pair.timers(until=500.0, lose_from_r=True)  # the responder's answers are lost
    [unreachable] = pair.gi.of(events.PeerUnreachable)
    assert unreachable.exchange == ExchangeType.INFORMATIONAL and unreachable.ike_sa == name
    assert 30.0 + 31.0 <= unreachable.time <= 30.0 + 63.0
    [gone] = pair.gi.of(events.ChildSaDeleted)
    assert gone.time == unreachable.time
    [ike_gone] = pair.gi.of(events.IkeSaDeleted)
    assert ike_gone.time == unreachable.time and not ike_gone.by_peer
    assert not pair.i.ike_sas and not pair.gi.dp.sad


# -- fuzzing CREATE_CHILD_SA ------------------------------------------------------------------


def _sealed(sender, receiver_expect_id: int, exchange: int, inner: list, response: bool) -> bytes:
    flags = (HeaderFlag.I if sender.initiator else HeaderFlag(0))
    if response:
        flags |= HeaderFlag.R
    header = Message(sender.spi_i, sender.spi_r, exchange, flags, receiver_expect_id)
    return sender.sk_out.seal(header, inner)


_ESP_ID = int(ProtocolId.ESP)
transforms = st.builds(Transform, st.sampled_from([1, 2, 3, 4, 5]),
                       st.sampled_from([0, 2, 3, 12, 14, 19, 20, 31, 1024]),
                       st.one_of(st.none(), st.sampled_from([128, 256, 7])))
proposals = st.builds(Proposal, st.integers(1, 3), st.sampled_from([1, 2, 3, 9]),
                      st.binary(max_size=9), st.lists(transforms, max_size=5))
addresses = st.sampled_from([ipaddress.ip_address(a) for a in
                             ("10.1.0.0", "10.1.0.255", "10.2.0.0", "10.2.0.255", "0.0.0.0")])
selectors = st.builds(TrafficSelector, addresses, addresses, st.sampled_from([0, 6, 17]),
                      st.integers(0, 65535), st.integers(0, 65535))
payloads = st.one_of(
    st.builds(SecurityAssociation, st.lists(proposals, min_size=1, max_size=3)),
    st.builds(Nonce, st.binary(min_size=16, max_size=40)),
    st.builds(KeyExchange, st.sampled_from([14, 19, 31, 5]), st.binary(max_size=300)),
    st.builds(TSi, st.lists(selectors, min_size=1, max_size=2)),
    st.builds(TSr, st.lists(selectors, min_size=1, max_size=2)),
    st.builds(Notify, st.sampled_from([16393, 16391, 17, 14, 43, 44, 35]), st.binary(max_size=4),
              st.sampled_from([0, 1, _ESP_ID]), st.binary(max_size=8)),
    st.builds(Delete.child_sas, st.just(_ESP_ID), st.lists(st.binary(min_size=4, max_size=4),
                                                            max_size=2)),
)


def _valid_or_skip(inner: list) -> bytes | None:
    try:
        first, chain = build_payload_chain(inner)
        parse_payload_chain(first, chain)
    except (MalformedMessage, ValueError, TypeError, struct.error):
        return None
    return chain


def _base_pair() -> Pair:
    pair = Pair(*configs(net2_i="aes128gcm16-x25519"))
    pair.establish()
    return pair


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(inner=st.lists(payloads, max_size=7), as_response=st.booleans(),
       use_real=st.booleans(), flips=st.lists(st.tuples(st.integers(0, 600),
                                                       st.integers(1, 255)), max_size=3))
def test_fuzzed_create_child_sa_never_raises(inner: list, as_response: bool, use_real: bool,
                                             flips: list) -> None:
    pair = _base_pair()
    sa_i, sa_r = pair.ike("i"), pair.ike("r")
    if use_real:
        # A real request (rekey with PFS), its plaintext payloads mutated and sealed again.
        pair.i.rekey_child_sa(pair.reqid("i"), 1.0)
        [(data, _, _)] = pair.i.datagrams_to_send()
        real = sa_r.sk_in.open(data, parse_message(data))
        first, chain = build_payload_chain(real)
        chain = bytearray(chain)
        for position, mask in flips:
            chain[position % len(chain)] ^= mask
        try:
            inner = parse_payload_chain(first, bytes(chain))
        except MalformedMessage:
            event("mutation no longer parses")
            return
    elif _valid_or_skip(inner) is None:
        event("payloads do not encode")
        return
    event(f"delivered as {'response' if as_response else 'request'}")
    if as_response:
        # The answer to a real request of ours.
        if not use_real:
            pair.i.create_child("site", "net2", 1.0)
            pair.i.datagrams_to_send()
        message_id = sa_i._pending.message_id
        wire = _sealed(sa_r, message_id, ExchangeType.CREATE_CHILD_SA, inner, response=True)
        pair.i.receive_datagram(wire, (R_ADDR, 500), (I_ADDR, 500), 1.0)
    else:
        wire = _sealed(sa_i, sa_r.expected_request_id, ExchangeType.CREATE_CHILD_SA, inner,
                       response=False)
        pair.r.receive_datagram(wire, (I_ADDR, 500), (R_ADDR, 500), 1.0)
    pair.gi.pump()
    pair.gr.pump()
    assert not pair.i.internal_errors and not pair.r.internal_errors
    assert sa_i.state is State.ESTABLISHED or pair.gi.of(events.IkeSaDeleted)
    pair.run(2.0)  # whatever happened, the engines stay consistent
    assert not pair.i.internal_errors and not pair.r.internal_errors


# -- volume limits: rekey_bytes/rekey_packets, life_* (RFC 4301 §4.4.2.1) -------------------


def test_volume_limits_reach_the_child_sas_and_rekey_or_delete_them() -> None:
    ci, cr = configs(rekey_packets=100, life_packets=110, rekey_bytes=1 << 20,
                     tfc_padding=300)
    pair = Pair(ci, cr)
    pair.establish()
    [child] = pair.ike("i").children
    for sa in (child.inbound, child.outbound):
        life = sa.lifetime
        # the soft limits less a random part of up to the difference to the hard ones
        assert 90 <= life.soft_packets <= 100 and life.hard_packets == 110
        assert (1 << 20) * 0.9 <= life.soft_bytes <= 1 << 20
        assert life.hard_bytes == (1 << 20) + (1 << 20) // 10  # strongSwan's default life
    assert child.outbound.tfc_padding == 300 and child.inbound.tfc_padding == 0
    reqid = child.reqid
    # the data plane says the outbound SA reached its soft limit: the pair is rekeyed
    assert pair.i.child_sa_expiring(child.spi_out, False, False, 5.0)
    pair.run_with_traffic(5.0, reqid)
    [rekeyed] = pair.gi.of(events.ChildSaRekeyed)
    assert rekeyed.rekeys == (child.spi_in, child.spi_out)
    # the old pair's SAs still count packets for a moment: no second rekey from them
    assert not pair.i.child_sa_expiring(child.spi_in, True, False, 5.5)
    [new] = pair.ike("i").children
    assert not pair.i.child_sa_expiring(new.spi_in, False, False, 5.5)  # wrong direction
    # the new pair's hard limit: it is deleted (§1.4.1)
    assert pair.i.child_sa_expiring(new.spi_in, True, True, 6.0)
    assert not pair.i.child_sa_expiring(new.spi_in, True, True, 6.0)  # once
    pair.run(6.0)
    assert not pair.ike("i").children and not pair.ike("r").children
    assert pair.gr.of(events.ChildSaDeleted)[-1].spi_out == new.spi_in


def test_tfc_padding_mtu_pads_to_the_engines_mtu() -> None:
    ci, cr = configs(tfc_padding="mtu")
    pair = Pair(ci, cr)
    pair.i = IkeEngine(ci, rng=random.Random(3).randbytes, mtu=1280)
    pair.gi.engine = pair.i
    pair.establish()
    [child] = pair.ike("i").children
    assert child.outbound.tfc_padding == 1280
    wire = pair.gi.send(ping("10.1.0.5", "10.2.0.7"), child.reqid)
    assert len(wire) >= 20 + 8 + 8 + 1280 + 16  # outer IP, ESP header, IV, padded, ICV
    result = pair.gr.dp.inbound(wire)
    assert result.status is Status.OK and result.inner == ping("10.1.0.5", "10.2.0.7")
