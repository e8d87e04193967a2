"""The UDP driver of the IKE engine, and the parsers of strongSwan's log and vici output.

No root needed: two engines talk over loopback on an unprivileged port, which takes the
NAT-T framing (non-ESP marker, RFC 3948 §2.2) because it is not port 500.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from ipseclab.drivers.ike_udp import (
    NON_ESP_MARKER,
    IkeUdpDriver,
    classify_4500,
    config_from_dict,
    event_to_dict,
    load_configs,
)
from ipseclab.ike.config import ChildConfig, IkeConfig
from ipseclab.ike.engine import IkeEngine
from ipseclab.lab.strongswan import parse_log_keys, parse_vici_raw


def test_classify_4500() -> None:
    ike = bytes(range(1, 29))
    assert classify_4500(NON_ESP_MARKER + ike) == ("ike", ike)
    assert classify_4500(b"\xff") == ("keepalive", b"")
    assert classify_4500(b"\x00\x00\x10\x00" + bytes(20))[0] == "esp"
    assert classify_4500(b"\x00\x00\x00")[0] == "short"


PORT = 15500


def pair(psk_b: str = "s3cret") -> tuple[IkeConfig, IkeConfig]:
    def conf(local: str, remote: str, lts: str, rts: str, psk: str) -> IkeConfig:
        return IkeConfig("t", [local], [remote], "aes128gcm16-prfsha256-x25519",
                         local_id=local, remote_id=remote, psk=psk.encode(), local_port=PORT,
                         remote_port=PORT,
                         children=[ChildConfig("c", [lts], [rts], esp_proposals="aes128gcm16")])
    return (conf("127.0.0.1", "127.0.0.2", "10.1.0.0/24", "10.2.0.0/24", "s3cret"),
            conf("127.0.0.2", "127.0.0.1", "10.2.0.0/24", "10.1.0.0/24", psk_b))


async def negotiate(psk_b: str) -> tuple[IkeUdpDriver, IkeUdpDriver]:
    a_conf, b_conf = pair(psk_b)
    seen: list[str] = []
    a = IkeUdpDriver(IkeEngine(a_conf), "127.0.0.1", ports=(PORT,))
    b = IkeUdpDriver(IkeEngine(b_conf), "127.0.0.2", ports=(PORT,),
                     on_event=lambda e: seen.append(type(e).__name__))
    async with a, b:
        a.initiate("t")
        ends = {"ChildSaEstablished", "AuthenticationFailed", "NegotiationFailed"}
        assert await a.wait_for(ends, 5.0) is not None
        await asyncio.sleep(0.05)
    assert seen == [type(e).__name__ for e in b.events]
    return a, b


def test_two_engines_over_loopback() -> None:
    a, b = asyncio.run(negotiate("s3cret"))
    names = [type(e).__name__ for e in a.events]
    assert names == ["IkeSaEstablished", "ChildSaEstablished"], a.events
    assert [type(e).__name__ for e in b.events] == names
    out, inb = a.events[1].outbound, b.events[1].inbound  # type: ignore[attr-defined]
    assert out.spi == inb.spi and out.encryption_key == inb.encryption_key
    assert a.errors == b.errors == [] and a.engine.internal_errors == []
    data = json.loads(json.dumps(event_to_dict(a.events[1])))
    assert data["event"] == "ChildSaEstablished"
    assert data["outbound"]["encryption_key"] == out.encryption_key.hex()


def test_wrong_psk_over_loopback() -> None:
    a, b = asyncio.run(negotiate("other"))
    for side in (a, b):
        names = [type(e).__name__ for e in side.events]
        assert names[0] == "AuthenticationFailed" and "IkeSaEstablished" not in names, names


def test_config_from_dict() -> None:
    conf = config_from_dict({"name": "x", "psk": "k", "proposals": "aes256-sha256-modp2048",
                             "children": [{"name": "c", "esp_proposals": "aes256-sha256"}]})
    assert conf.psk == b"k" and conf.child("c").esp_proposals == "aes256-sha256"
    with pytest.raises(Exception, match="bad connection"):
        config_from_dict({"name": "x", "psk": "k", "no_such_field": 1})


def test_load_configs_reads_a_swanctl_conf_or_json(tmp_path) -> None:
    from pathlib import Path

    from ipseclab.errors import IpsecLabError

    gw1 = Path(__file__).resolve().parents[1] / "topologies/configs/site-to-site/gw1.swanctl.conf"
    (conf,) = load_configs(gw1)
    assert conf.name == "site-to-site" and conf.psk == b"ipseclab site-to-site lab secret"
    assert conf.child("net").remote_ts == ["10.2.0.0/24"]
    path = tmp_path / "c.json"
    path.write_text(json.dumps([{"name": "a", "psk": "k"}, {"name": "b", "psk": "k"}]))
    assert [c.name for c in load_configs(path)] == ["a", "b"]
    path.write_text("connections { }")
    with pytest.raises(IpsecLabError, match="not JSON"):
        load_configs(path)


LOG = """\
00[DMN] Starting IKE charon daemon (strongSwan 5.9.8, Linux 6.1.0, x86_64)
11[IKE] <1> Sk_ei secret => 20 bytes @ 0x7f8300008820
11[IKE] <1>    0: C4 B1 58 9B 78 32 CE 3C 72 A9 E3 F9 4A 82 D1 66  ..X.x2.<r...J..f
11[IKE] <1>   16: 46 C9 83 63                                      F..c
14[IKE] <t|2> initiating IKE_SA t[2] to 192.0.2.2
11[IKE] <1> Sk_er secret => 4 bytes @ 0x7f8300008824
11[IKE] <1>    0: 01 02 03 04                                      ....
12[CHD] <t|1> encryption initiator key => 4 bytes @ 0x7f830000aad0
12[CHD] <t|1>    0: AA BB CC DD                                      ....
12[CHD] <t|1> encryption responder key => 4 bytes @ 0x7f830000aad0
12[CHD] <t|1>    0: 11 22 33 44                                      ...D
12[IKE] <t|1> CHILD_SA c{1} established with SPIs 4063b907_i 47a0fd28_o and TS 10.2.0.0/24 \
=== 10.1.0.0/24
"""


def test_parse_log_keys_responder() -> None:
    keys = parse_log_keys(LOG)
    assert list(keys) == [1]  # SA 2 logged no keys
    sa = keys[1]
    assert sa.name == "t" and not sa.initiator
    assert sa.sk_ei == bytes.fromhex("C4B1589B7832CE3C72A9E3F94A82D16646C98363")
    assert sa.sk_er == b"\x01\x02\x03\x04" and sa.sk_ai == b""
    (child,) = sa.children
    assert (child.spi_in, child.spi_out) == (0x4063B907, 0x47A0FD28)
    # a responder receives with the initiator's keys (RFC 7296 §2.17)
    assert child.enc_in == bytes.fromhex("AABBCCDD") and child.enc_out == bytes.fromhex("11223344")


REKEY_LOG = """\
10[IKE] <1> Sk_ei secret => 2 bytes @ 0x1
10[IKE] <1>    0: 0A 0A                                            ..
10[IKE] <t|1> IKE_SA t[1] established between 192.0.2.2[gw2]...192.0.2.1[gw1]
08[ENC] <t|1> parsed CREATE_CHILD_SA request 2 [ N(REKEY_SA) SA No TSi TSr ]
08[CHD] <t|1> encryption initiator key => 2 bytes @ 0x2
08[CHD] <t|1>    0: 1E 1E                                            ..
08[CHD] <t|1> encryption responder key => 2 bytes @ 0x3
08[CHD] <t|1>    0: 2E 2E                                            ..
08[IKE] <t|1> CHILD_SA c{2} established with SPIs 0000aaaa_i 0000bbbb_o and TS 10.2.0.0/24 \
=== 10.1.0.0/24
03[ENC] <t|1> generating CREATE_CHILD_SA request 3 [ N(REKEY_SA) SA No TSi TSr ]
03[CHD] <t|1> encryption initiator key => 2 bytes @ 0x4
03[CHD] <t|1>    0: 3E 3E                                            ..
03[CHD] <t|1> encryption responder key => 2 bytes @ 0x5
03[CHD] <t|1>    0: 4E 4E                                            ..
03[IKE] <t|1> CHILD_SA c{3} established with SPIs 0000cccc_i 0000dddd_o and TS 10.2.0.0/24 \
=== 10.1.0.0/24
03[IKE] <t|1> initiating IKE_SA t[2] to 192.0.2.1
03[IKE] <t|1> IKE_SA t[2] state change: CREATED => CONNECTING
03[ENC] <t|1> generating CREATE_CHILD_SA request 4 [ SA No KE ]
16[IKE] <t|1> Sk_ei secret => 2 bytes @ 0x6
16[IKE] <t|1>    0: 5E 5E                                            ..
16[IKE] <t|1> IKE_SA t[2] state change: CONNECTING => ESTABLISHED
16[IKE] <t|1> IKE_SA t[2] rekeyed between 192.0.2.2[gw2]...192.0.2.1[gw1]
"""


def test_parse_log_keys_follows_rekeys_either_side_begins() -> None:
    """A child SA rekey the peer begins has the peer's keys first, one charon begins its own
    (§2.17), whichever side began the IKE SA; an IKE SA rekey charon begins is logged in the
    old SA's context but makes keys of the new one (§2.18)."""
    keys = parse_log_keys(REKEY_LOG)
    old, new = keys[1], keys[2]
    assert not old.initiator and old.sk_ei == b"\x0a\x0a"
    assert new.initiator and new.sk_ei == b"\x5e\x5e"
    by_peer, by_charon = old.children
    assert (by_peer.spi_in, by_peer.enc_in, by_peer.enc_out) == (0xAAAA, b"\x1e\x1e", b"\x2e\x2e")
    assert (by_charon.spi_in, by_charon.enc_in, by_charon.enc_out) == (0xCCCC, b"\x4e\x4e",
                                                                       b"\x3e\x3e")


def test_parse_vici_raw() -> None:
    line = ("list-sa event {t {uniqueid=1 state=ESTABLISHED initiator-spi=2b67aa4c72a397dc "
            "child-sas {c-1 {name=c spi-in=47a0fd28 local-ts=[10.1.0.0/24 10.3.0.0/24]}} "
            "tasks-active=[]}}\nlist-sas reply {}\n")
    first, reply = parse_vici_raw(line)
    sa = first["t"]
    assert sa["initiator-spi"] == "2b67aa4c72a397dc" and sa["tasks-active"] == []
    assert sa["child-sas"]["c-1"]["local-ts"] == ["10.1.0.0/24", "10.3.0.0/24"]
    assert reply == {}


def test_parse_vici_raw_keeps_spaces_in_values_and_brackets_in_list_items() -> None:
    """--raw prints a DN identity unquoted and a traffic selector with its [proto/port]."""
    line = ("list-sa event {c {state=ESTABLISHED local-id=C=CH, O=ipseclab, CN=sun "
            "remote-id=moon.example remote-host=192.0.2.1 child-sas {net-1 {name=net "
            "local-ts=[10.2.0.0/24[tcp/http] 10.3.0.0/24] remote-ts=[10.1.0.0/24[icmp/8]]}} "
            "tasks-passive=[]}}")
    (msg,) = parse_vici_raw(line)
    sa = msg["c"]
    assert sa["local-id"] == "C=CH, O=ipseclab, CN=sun" and sa["remote-id"] == "moon.example"
    assert sa["remote-host"] == "192.0.2.1" and sa["tasks-passive"] == []
    child = sa["child-sas"]["net-1"]
    assert child["local-ts"] == ["10.2.0.0/24[tcp/http]", "10.3.0.0/24"]
    assert child["remote-ts"] == ["10.1.0.0/24[icmp/8]"]
