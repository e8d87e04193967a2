"""What a failed negotiation leaves for diagnosis: the early key log and the gateway's log.

* The IKE SA's keys are reported (IkeSaKeysDerived) right after IKE_SA_INIT, before
  IKE_AUTH, so a capture of a failed IKE_AUTH (wrong PSK) still decodes: the
  AUTHENTICATION_FAILED notify is read inside the SK payload of the response.
* The gateway logs what the peer offered against what it is configured for when it answers
  NO_PROPOSAL_CHOSEN or TS_UNACCEPTABLE, names the child and the connection, and never
  logs the PSK.

In-memory engines only (the sans-IO core): no root, no sockets.
"""

from __future__ import annotations

import logging
import random

from ipseclab.capture.decode import KeyRing, decode_capture
from ipseclab.capture.ike_decode import ike_packet
from ipseclab.capture.pcap import write_pcap
from ipseclab.drivers.ike_gateway import IkeGateway
from ipseclab.ike import events
from ipseclab.ike.config import ChildConfig, IkeConfig
from ipseclab.ike.engine import IkeEngine
from ipseclab.keylog import IkeSaFile, read_ikev2

I_ADDR, R_ADDR = "192.0.2.1", "192.0.2.2"
T0 = 1_700_000_000.0
LOGGER = "ipseclab.ike"  # the IKE bridge logs as strongSwan's IKE subsystem would


def _configs(r_psk: bytes = b"lab secret", r_proposals: str = "aes128gcm16-prfsha256-x25519",
             r_remote_ts: str = "10.1.0.0/24") -> tuple[IkeConfig, IkeConfig]:
    i = IkeConfig("site", local_addrs=[I_ADDR], remote_addrs=[R_ADDR],
                  proposals="aes128gcm16-prfsha256-x25519", local_id="@moon.example",
                  remote_id="@sun.example", psk=b"lab secret",
                  children=[ChildConfig("net", local_ts=["10.1.0.0/24"],
                                        remote_ts=["10.2.0.0/24"], esp_proposals="aes128gcm16")])
    r = IkeConfig("site", local_addrs=[R_ADDR], remote_addrs=["%any"], proposals=r_proposals,
                  local_id="@sun.example", remote_id="@moon.example", psk=r_psk,
                  children=[ChildConfig("net", local_ts=["10.2.0.0/24"],
                                        remote_ts=[r_remote_ts], esp_proposals="aes128gcm16")])
    return i, r


def _drain(engine: IkeEngine) -> list[events.Event]:
    out = []
    while (e := engine.next_event()) is not None:
        out.append(e)
    return out


def _exchange(i: IkeEngine, r: IkeEngine, on_step=None) -> list[tuple[bytes, float]]:
    """gw i initiates; every datagram is delivered and kept as an IP/UDP packet."""
    packets: list[tuple[bytes, float]] = []
    now = 0.0
    i.initiate("site", now)
    for step in range(10):
        moved = False
        for sender, receiver in ((i, r), (r, i)):
            for data, src, dst in sender.datagrams_to_send():
                now += 0.01
                packets.append((ike_packet(data, src, dst, ident=len(packets)), T0 + now))
                receiver.receive_datagram(data, src, dst, now)
                moved = True
            if on_step is not None:
                on_step(step, sender)
        if not moved:
            break
    return packets


def test_keys_are_reported_after_ike_sa_init_before_ike_auth() -> None:
    ci, cr = _configs()
    i = IkeEngine(ci, rng=random.Random(1).randbytes, report_keys=True)
    r = IkeEngine(cr, rng=random.Random(2).randbytes, report_keys=True)
    i.initiate("site", 0.0)
    [(request, src, dst)] = i.datagrams_to_send()
    r.receive_datagram(request, src, dst, 0.0)
    ev_r = _drain(r)  # the responder has its keys as soon as it answers IKE_SA_INIT
    assert [type(e).__name__ for e in ev_r] == ["IkeSaKeysDerived"]
    assert not ev_r[0].initiator and ev_r[0].connection == "site"
    [(response, src, dst)] = r.datagrams_to_send()
    i.receive_datagram(response, src, dst, 0.01)
    ev_i = _drain(i)
    assert [type(e).__name__ for e in ev_i] == ["IkeSaKeysDerived"]
    [(auth_request, _, _)] = i.datagrams_to_send()  # IKE_AUTH is only now on its way
    assert auth_request[18] == 35  # exchange type IKE_AUTH (RFC 7296 §3.1)
    assert ev_i[0].keylog_entry() == ev_r[0].keylog_entry()
    assert ev_i[0].ike_sa == ev_i[0].spi_i.hex() + ev_i[0].spi_r.hex()


def test_keys_not_reported_unless_asked() -> None:
    ci, cr = _configs()
    i, r = IkeEngine(ci), IkeEngine(cr)
    _exchange(i, r)
    names = [type(e).__name__ for e in _drain(i) + _drain(r)]
    assert "IkeSaKeysDerived" not in names and "IkeSaEstablished" in names


def test_wrong_psk_capture_decodes_with_the_early_key_log(tmp_path) -> None:
    ci, cr = _configs(r_psk=b"another secret")
    i = IkeEngine(ci, rng=random.Random(3).randbytes, report_keys=True)
    r = IkeEngine(cr, rng=random.Random(4).randbytes, report_keys=True)
    packets = _exchange(i, r)
    ev_i, ev_r = _drain(i), _drain(r)
    assert not [e for e in ev_i + ev_r if isinstance(e, events.IkeSaEstablished)]
    [keys] = [e for e in ev_i if isinstance(e, events.IkeSaKeysDerived)]
    failed = [e for e in ev_i if isinstance(e, events.AuthenticationFailed)]
    assert failed and failed[0].by_peer
    assert ev_i.index(keys) < ev_i.index(failed[0])
    # the key log as the gateway writes it, then the capture as Wireshark would read it
    table = IkeSaFile(tmp_path / "ikev2_decryption_table")
    table.add(keys.keylog_entry())
    pcap = tmp_path / "wrong-psk.pcap"
    write_pcap(pcap, packets)
    frames = list(decode_capture(pcap, KeyRing(ike_entries=read_ikev2(table.path))))
    auth = [f for f in frames if f.exchange == "IKE_AUTH"]
    assert [f.response for f in auth] == [False, True]
    assert all(f.ike.status == "ok" for f in auth)
    assert auth[0].payloads[0].startswith("SK{IDi") and "AUTH" in auth[0].payloads[0]
    assert auth[1].payloads == ["SK{N(AUTHENTICATION_FAILED)}"]
    # without the key log the same response stays closed
    closed = [f for f in decode_capture(pcap, KeyRing()) if f.exchange == "IKE_AUTH"]
    assert closed[1].ike.inner is None


def _gateway_responder(caplog, cr: IkeConfig, ci: IkeConfig) -> tuple[IkeGateway, str]:
    """The gateway's engine answers an in-memory initiator; its events go through the
    gateway's handlers (logging only: no data plane is touched for these outcomes)."""
    gw = IkeGateway([cr])
    i = IkeEngine(ci, rng=random.Random(5).randbytes)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        def apply(step: int, sender: object) -> None:
            if sender is gw.engine:
                return
            for ev in _drain(gw.engine):
                if not isinstance(ev, (events.IkeSaEstablished, events.ChildSaEstablished)):
                    gw._apply(ev)
        _exchange(i, gw.engine, on_step=apply)
        apply(0, None)
    return gw, "\n".join(r.getMessage() for r in caplog.records if r.name == LOGGER)


def test_log_no_proposal_chosen_received_against_configured(caplog) -> None:
    ci, cr = _configs(r_proposals="aes256-sha256-modp2048")
    _, text = _gateway_responder(caplog, cr, ci)
    assert "failed: notify 14" in text
    assert "NO_PROPOSAL_CHOSEN: received   aes128gcm16-prfsha256-x25519" in text
    assert "NO_PROPOSAL_CHOSEN: configured site: aes256-sha256-prfsha256-modp2048" in text
    infos = [r for r in caplog.records if "received" in r.getMessage()]
    assert infos and all(r.levelno == logging.INFO for r in infos)


def test_log_ts_unacceptable_names_child_and_selectors(caplog) -> None:
    ci, cr = _configs(r_remote_ts="10.1.1.0/24")
    _, text = _gateway_responder(caplog, cr, ci)
    assert "child SA net failed: notify 38" in text  # the child's name, not empty
    assert "TSi 10.1.0.0/24; TSr 10.2.0.0/24" in text  # what gw1 proposed
    assert "configured net: esp_proposals aes128gcm16" in text
    assert "local_ts 10.2.0.0/24; remote_ts 10.1.1.0/24" in text


def test_log_wrong_psk_says_which_check_and_names_the_deleted_sa(caplog) -> None:
    ci, cr = _configs(r_psk=b"another secret")
    _, text = _gateway_responder(caplog, cr, ci)
    assert "site: authentication failed: AUTH of" in text and "does not verify" in text
    assert "site: IKE SA" in text and "deleted: authentication failed" in text
    assert "?: IKE SA" not in text
    assert "lab secret" not in text and "another secret" not in text
    assert "keys derived" in text
