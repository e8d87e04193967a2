"""IKE in captures: decoding with a key log, the text and JSON output, ladder diagrams, tshark.

The capture is made here: an in-memory initiator and responder (the sans-IO engine) run
IKE_SA_INIT and IKE_AUTH with a PSK; every datagram goes into a pcap inside IP/UDP headers,
and a ping protected by the child SA follows. The key log is the engines' own.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import shutil
import subprocess
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipseclab.capture.decode import KeyRing, decode_capture, decode_packet
from ipseclab.capture.ike_decode import IkeKeys, ike_packet, view_message
from ipseclab.capture.keys import esp_sa_entry
from ipseclab.capture.pcap import write_pcap
from ipseclab.capture.summary import frame_line
from ipseclab.ike import events
from ipseclab.ike.config import ChildConfig, IkeConfig
from ipseclab.ike.engine import IkeEngine
from ipseclab.ipsec import esp
from ipseclab.keylog import IkeSaFile, format_esp_sa, format_ikev2, keylog_dir_layout
from ipseclab.teaching.ladder import Rung, ladder, plot_ladder

I_ADDR, R_ADDR = "192.0.2.1", "192.0.2.2"
T0 = 1_700_000_000.0


def _configs(proposals: str = "aes128gcm16-prfsha256-x25519", esp_proposals: str = "aes128gcm16"):
    i = IkeConfig("site", local_addrs=[I_ADDR], remote_addrs=[R_ADDR], proposals=proposals,
                  local_id="@moon.example", remote_id="@sun.example", psk=b"lab secret",
                  children=[ChildConfig("net", local_ts=["10.1.0.0/24"],
                                        remote_ts=["10.2.0.0/24"], esp_proposals=esp_proposals)])
    r = IkeConfig("site", local_addrs=[R_ADDR], remote_addrs=["%any"], proposals=proposals,
                  local_id="@sun.example", remote_id="@moon.example", psk=b"lab secret",
                  children=[ChildConfig("net", local_ts=["10.2.0.0/24"],
                                        remote_ts=["10.1.0.0/24"], esp_proposals=esp_proposals)])
    return i, r


def _ping(src: str, dst: str) -> bytes:
    from scapy.layers.inet import ICMP, IP

    return bytes(IP(src=src, dst=dst, id=1) / ICMP(id=7, seq=1) / b"ipseclab")


@dataclasses.dataclass
class Handshake:
    packets: list[tuple[bytes, float]]
    datagrams: list[tuple[bytes, tuple, tuple]]
    ike_entry: object
    esp_entries: list
    child_i: events.ChildSaEstablished


def handshake(proposals: str = "aes128gcm16-prfsha256-x25519",
              esp_proposals: str = "aes128gcm16", port_4500_after_init: bool = False
              ) -> Handshake:
    ci, cr = _configs(proposals, esp_proposals)
    i = IkeEngine(ci, rng=random.Random(1).randbytes)
    r = IkeEngine(cr, rng=random.Random(2).randbytes)
    now = 0.0
    i.initiate("site", now)
    packets, datagrams = [], []
    for _ in range(10):
        moved = False
        for sender, receiver in ((i, r), (r, i)):
            for data, src, dst in sender.datagrams_to_send():
                now += 0.01
                datagrams.append((data, src, dst))
                if port_4500_after_init and len(datagrams) > 2:
                    src, dst = (src[0], 4500), (dst[0], 4500)  # as after NAT detection
                packets.append((ike_packet(data, src, dst, ident=len(packets)), T0 + now))
                receiver.receive_datagram(data, src, dst, now)
                moved = True
        if not moved:
            break
    ev_i = []
    while (e := i.next_event()) is not None:
        ev_i.append(e)
    [ike] = [e for e in ev_i if isinstance(e, events.IkeSaEstablished)]
    [child] = [e for e in ev_i if isinstance(e, events.ChildSaEstablished)]
    packets.append((esp.encapsulate(child.outbound, _ping("10.1.0.5", "10.2.0.7")), T0 + 1))
    return Handshake(packets, datagrams, ike.keylog_entry(),
                     [esp_sa_entry(child.outbound), esp_sa_entry(child.inbound)], child)


@pytest.fixture(scope="module")
def hs() -> Handshake:
    return handshake()


def _capture(tmp_path: Path, hs: Handshake) -> Path:
    path = tmp_path / "ike.pcap"
    write_pcap(path, hs.packets)
    return path


NATD = {"N(NAT_DETECTION_SOURCE_IP)", "N(NAT_DETECTION_DESTINATION_IP)"}
EXPECTED = [  # exchange, Message ID, I flag, R flag, outer payloads (first ones), SK contents
    ("IKE_SA_INIT", 0, True, False, ["SA", "KE", "Ni"], None),
    ("IKE_SA_INIT", 0, False, True, ["SA", "KE", "Nr"], None),
    ("IKE_AUTH", 1, True, False, ["SK"],
     ["IDi", "N(INITIAL_CONTACT)", "IDr", "AUTH", "SA", "TSi", "TSr"]),
    ("IKE_AUTH", 1, False, True, ["SK"], ["IDr", "AUTH", "SA", "TSi", "TSr"]),
]


# -- decoding -----------------------------------------------------------------------------


@pytest.mark.parametrize("nat_t", [False, True], ids=["port500", "port4500"])
def test_decode_handshake_with_keys(tmp_path: Path, nat_t: bool) -> None:
    h = handshake(port_4500_after_init=nat_t)
    ring = KeyRing(h.esp_entries, ike_entries=[h.ike_entry])
    frames = list(decode_capture(_capture(tmp_path, h), ring))
    assert [f.proto for f in frames] == ["ike"] * 4 + ["esp"]
    assert all(f.status == "ok" for f in frames), [(f.status, f.detail) for f in frames]
    for f, (exchange, mid, from_i, resp, outer, inner) in zip(frames, EXPECTED, strict=False):
        assert (f.exchange, f.message_id, f.from_initiator, f.response) == (
            exchange, mid, from_i, resp)
        assert f.ike.payloads[:len(outer)] == outer and f.inner_payloads == inner
        if exchange == "IKE_SA_INIT":
            assert set(f.ike.payloads) >= NATD  # RFC 7296 §2.23
        else:
            assert f.ike.payloads == ["SK"]
        assert f.ike.spi_i == h.ike_entry.spi_i
        assert f.src == (I_ADDR if from_i else R_ADDR)
    assert frames[0].ike.spi_r == bytes(8) and frames[1].ike.spi_r == h.ike_entry.spi_r
    assert [f.udp_encap for f in frames[:4]] == [False, False, nat_t, nat_t]
    assert frames[2].payloads == ["SK{IDi, N(INITIAL_CONTACT), IDr, AUTH, SA, TSi, TSr}"]
    assert frames[4].inner_bytes == _ping("10.1.0.5", "10.2.0.7")


def test_inner_payload_values_are_the_engines(hs: Handshake) -> None:
    from ipseclab.ike.payloads import Identification, Nonce

    views = [view_message(d, IkeKeys([hs.ike_entry])) for d, _, _ in hs.datagrams]
    idi = views[2].find(Identification)
    assert idi is not None and idi.describe() == "moon.example"
    assert views[0].find(Nonce).data != views[1].find(Nonce).data
    assert views[3].find(Identification).describe() == "sun.example"


def test_text_line(tmp_path: Path, hs: Handshake) -> None:
    ring = KeyRing(ike_entries=[hs.ike_entry])
    lines = [frame_line(f) for f in decode_capture(_capture(tmp_path, hs), ring)]
    assert lines[2].endswith("IKE_AUTH #1 request from initiator: "
                             "SK{IDi, N(INITIAL_CONTACT), IDr, AUTH, SA, TSi, TSr}")
    assert "192.0.2.2 > 192.0.2.1" in lines[3]
    assert "IKE_AUTH #1 response from responder: SK{IDr, AUTH, SA, TSi, TSr}" in lines[3]
    assert "IKE_SA_INIT #0 request from initiator: SA, KE, Ni" in lines[0]


def test_no_keys_is_no_sa(tmp_path: Path, hs: Handshake) -> None:
    frames = list(decode_capture(_capture(tmp_path, hs)))
    assert [f.status for f in frames] == ["ok", "ok", "no_sa", "no_sa", "no_sa"]
    assert frames[2].exchange == "IKE_AUTH" and frames[2].inner_payloads is None
    assert frames[2].payloads == ["SK"]
    assert "no IKE keys" in frame_line(frames[2])


def test_wrong_keys_are_auth_failed(tmp_path: Path, hs: Handshake) -> None:
    e = hs.ike_entry
    flip = lambda k: bytes([k[0] ^ 1]) + k[1:]  # noqa: E731
    wrong = dataclasses.replace(e, sk_ei=flip(e.sk_ei), sk_er=flip(e.sk_er))
    frames = list(decode_capture(_capture(tmp_path, hs), KeyRing(ike_entries=[wrong])))
    assert [f.status for f in frames[:4]] == ["ok", "ok", "auth_failed", "auth_failed"]
    assert frames[2].inner_payloads is None


def test_wrong_keys_with_separate_integrity() -> None:
    h = handshake("aes256-sha256-modp2048", "aes256-sha256")
    e = h.ike_entry
    good = view_message(h.datagrams[2][0], IkeKeys([e]))
    assert good.status == "ok" and good.inner[0] == "IDi"
    wrong = dataclasses.replace(e, sk_ai=bytes(len(e.sk_ai)))
    assert view_message(h.datagrams[2][0], IkeKeys([wrong])).status == "auth_failed"


@pytest.mark.parametrize("proposals", [
    "aes128-aesxcbc-prfaesxcbc-modp2048", "aes256-aescmac-prfaescmac-ecp256",
    "aes128ctr-sha256-x25519", "aes256ctr-md5-prfsha1-x25519", "3des-sha512-x25519",
    "aes192ccm12-prfsha384-x25519", "chacha20poly1305-prfsha256-x25519",
])
def test_every_ike_cipher_and_mac_reaches_the_key_log_and_decodes(proposals: str) -> None:
    """The key log line the engine's event writes opens IKE_AUTH, whatever the algorithms:
    Wireshark has no AES-XCBC or AES-CMAC, so those IKE SAs log an ICV it does not check."""
    h = handshake(proposals)
    unchecked = "aesxcbc" in proposals or "aescmac" in proposals
    assert (h.ike_entry.integrity == "ANY 96-bits of Authentication [No Checking]") is unchecked
    for data, _src, _dst in h.datagrams[2:4]:
        view = view_message(data, IkeKeys([h.ike_entry]))
        assert view.status == "ok" and view.inner[0] in ("IDi", "IDr"), view


def test_an_unchecked_icv_still_needs_the_right_keys() -> None:
    h = handshake("aes128-aesxcbc-prfaesxcbc-modp2048")
    e = h.ike_entry
    wrong = dataclasses.replace(e, sk_ei=bytes(len(e.sk_ei)))
    view = view_message(h.datagrams[2][0], IkeKeys([wrong]))
    assert view.status in ("malformed", "auth_failed") and view.inner is None


def test_unknown_algorithm_in_key_log_is_no_sa(hs: Handshake) -> None:
    odd = dataclasses.replace(hs.ike_entry, encryption="Rot13 [no RFC]")
    view = view_message(hs.datagrams[2][0], IkeKeys([odd]))
    assert view.status == "no_sa" and "unknown encryption" in view.detail


@pytest.mark.parametrize("cut", [0, 3, 27, 28, 40, -1])
def test_truncated_ike_is_malformed(hs: Handshake, cut: int) -> None:
    data = hs.datagrams[2][0][:cut]
    frame = decode_packet(1, 0.0, ike_packet(data, (I_ADDR, 500), (R_ADDR, 500)),
                          KeyRing(ike_entries=[hs.ike_entry]))
    assert frame.proto == "ike" and frame.status == "malformed"
    assert frame_line(frame)  # printable
    assert frame.to_json()["status"] == "malformed"


def test_bad_chain_behind_a_good_tag_is_malformed(hs: Handshake) -> None:
    import struct

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    e = hs.ike_entry
    # The inner chain claims an IDi of 255 octets but holds 4 (RFC 7296 §3.2), sealed with
    # the right key (RFC 5282 §5: AAD = IKE header and SK header, nonce = salt | IV).
    plaintext = b"\x00\x00\x00\xff" + b"\x00"  # payload header, Pad Length 0
    iv = bytes(8)
    length = 28 + 4 + 8 + len(plaintext) + 16
    header = struct.pack("!8s8sBBBBII", e.spi_i, e.spi_r, 46, 0x20, 35, 0x08, 1, length)
    sk_header = struct.pack("!BBH", 35, 0, length - 28)
    sealed = AESGCM(e.sk_ei[:16]).encrypt(e.sk_ei[16:] + iv, plaintext, header + sk_header)
    view = view_message(header + sk_header + iv + sealed, IkeKeys([e]))
    assert view.status == "malformed" and view.exchange == "IKE_AUTH"
    assert view.describe().startswith("IKE_AUTH #1 request from initiator: SK")


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=120), st.sampled_from([500, 4500]))
def test_random_udp_payloads_never_raise(data: bytes, port: int) -> None:
    packet = ike_packet(data, (I_ADDR, port), (R_ADDR, port))
    frame = decode_packet(1, 0.0, packet, KeyRing())
    assert frame.proto in ("ike", "esp", "other")
    assert frame.status in ("ok", "no_sa", "auth_failed", "malformed", "keepalive")
    json.dumps(frame.to_json())
    frame_line(frame)


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 10_000), st.integers(0, 255))
def test_flipped_bytes_of_real_messages_never_raise(position: int, value: int) -> None:
    data = bytearray(_HS.datagrams[2 + position % 2][0])
    data[position % len(data)] = value
    view = view_message(bytes(data), IkeKeys([_HS.ike_entry]))
    assert view.status in ("ok", "auth_failed", "malformed", "no_sa")
    view.describe()


_HS = handshake()


# -- JSON ---------------------------------------------------------------------------------


def test_json_fields(tmp_path: Path, hs: Handshake) -> None:
    ring = KeyRing(hs.esp_entries, ike_entries=[hs.ike_entry])
    rows = [json.loads(json.dumps(f.to_json()))
            for f in decode_capture(_capture(tmp_path, hs), ring)]
    auth = rows[2]
    assert auth["proto"] == "ike" and auth["status"] == "ok"
    assert auth["exchange"] == "IKE_AUTH" and auth["message_id"] == 1
    assert auth["initiator"] is True and auth["response"] is False
    assert auth["payloads"] == ["SK"]
    assert auth["sk_payloads"] == ["IDi", "N(INITIAL_CONTACT)", "IDr", "AUTH", "SA", "TSi", "TSr"]
    assert auth["spi_i"] == hs.ike_entry.spi_i.hex() and auth["spi_r"] == hs.ike_entry.spi_r.hex()
    assert rows[0]["sk_payloads"] is None and rows[0]["payloads"][:3] == ["SA", "KE", "Ni"]
    esp_row = rows[4]
    assert esp_row["proto"] == "esp" and esp_row["exchange"] is None
    assert set(esp_row) == set(auth)  # one schema for every frame


# -- ladder -------------------------------------------------------------------------------


def test_ladder_rungs(tmp_path: Path, hs: Handshake) -> None:
    pcap = _capture(tmp_path, hs)
    rungs = ladder(pcap, KeyRing(hs.esp_entries, ike_entries=[hs.ike_entry]))
    assert len(rungs) == 5
    assert [(r.sender, r.receiver) for r in rungs] == [(I_ADDR, R_ADDR), (R_ADDR, I_ADDR)] * 2 \
        + [(I_ADDR, R_ADDR)]
    assert [r.kind for r in rungs] == ["ike"] * 4 + ["esp"]
    assert rungs[2].title == "IKE_AUTH #1 request"
    assert rungs[2].payloads == ("SK{IDi, N(INITIAL_CONTACT), IDr, AUTH, SA, TSi, TSr}",)
    assert rungs[3].label == "IKE_AUTH #1 response: SK{IDr, AUTH, SA, TSi, TSr}"
    assert rungs[4].title == f"ESP spi 0x{hs.child_i.outbound.spi:08x} seq 1"
    assert rungs == sorted(rungs, key=lambda r: r.time)
    assert len(ladder(pcap, [hs.ike_entry], esp=False)) == 4


def test_ladder_from_frames_and_key_log_file(tmp_path: Path, hs: Handshake) -> None:
    pcap = _capture(tmp_path, hs)
    _, ike_file = keylog_dir_layout(tmp_path / "keys")
    IkeSaFile(ike_file).add(hs.ike_entry)
    from_file = ladder(pcap, ike_file)
    from_frames = ladder(decode_capture(pcap, KeyRing(ike_entries=[hs.ike_entry])))
    assert [r.label for r in from_file[:4]] == [r.label for r in from_frames[:4]]
    unkeyed = ladder(pcap)
    assert unkeyed[2].payloads == ("SK{?}",) and unkeyed[2].status == "no_sa"


def test_plot_ladder(tmp_path: Path, hs: Handshake) -> None:
    import matplotlib.pyplot as plt

    rungs = ladder(_capture(tmp_path, hs), KeyRing(hs.esp_entries, ike_entries=[hs.ike_entry]))
    ax = plot_ladder(rungs)
    texts = [t.get_text() for t in ax.texts]
    assert "IKE_AUTH #1 request" in texts
    assert any("SK{IDi" in t for t in texts)
    assert any(t.startswith(I_ADDR) and "initiator" in t for t in texts)
    arrows = [t for t in ax.texts if getattr(t, "arrow_patch", None) is not None]
    assert len(arrows) == 5
    out = tmp_path / "ladder.png"
    ax.figure.savefig(out, dpi=60)
    plt.close(ax.figure)
    assert out.stat().st_size > 5000
    with pytest.raises(ValueError):
        plot_ladder([])


def test_rung_label_shows_failures() -> None:
    r = Rung(0.0, I_ADDR, R_ADDR, "IKE_AUTH", False, 1, ("SK{?}",), status="no_sa")
    assert r.label == "IKE_AUTH #1 request: SK{?} [no_sa]"


# -- tshark as the reference ---------------------------------------------------------------


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
@pytest.mark.parametrize("nat_t", [False, True], ids=["port500", "port4500"])
def test_tshark_decrypts_ike_with_our_key_log(tmp_path: Path, nat_t: bool) -> None:
    h = handshake(port_4500_after_init=nat_t)
    pcap = _capture(tmp_path, h)
    esp_file, ike_file = keylog_dir_layout(tmp_path / "conf")
    ike_file.parent.mkdir(parents=True)
    ike_file.write_text(format_ikev2(h.ike_entry) + "\n")
    esp_file.write_text("".join(format_esp_sa(e) + "\n" for e in h.esp_entries))
    env = dict(os.environ, XDG_CONFIG_HOME=str(tmp_path / "conf"))
    args = ["tshark", "-n", "-r", str(pcap), "-o", "esp.enable_encryption_decode:TRUE",
            "-T", "fields", "-e", "isakmp.exchangetype", "-e", "isakmp.enc.decrypted",
            "-e", "isakmp.id.type", "-e", "isakmp.auth.method", "-e", "icmp.type"]
    out = subprocess.run(args, env=env, capture_output=True, text=True, timeout=60)
    rows = [line.split("\t") for line in out.stdout.splitlines()]
    assert len(rows) == 5, out.stderr
    assert [r[0] for r in rows[:4]] == ["34", "34", "35", "35"]
    for row in rows[2:4]:
        assert row[1], "tshark did not decrypt IKE_AUTH"  # the decrypted bytes
        assert row[3] == "2"  # AUTH method: shared key message integrity code
    assert rows[2][2].startswith("2")  # IDi: ID_FQDN
    assert rows[4][4] == "8"  # the ESP packet decrypted to an ICMP echo request


def test_keys_learnt_later_replace_and_forget_the_oldest(hs: Handshake) -> None:
    """What a gateway's message log does: add keys as IKE SAs come, within a bound."""
    auth = hs.datagrams[2][0]
    keys = IkeKeys()
    assert view_message(auth, keys).status == "no_sa"
    wrong = dataclasses.replace(hs.ike_entry, sk_ei=bytes(len(hs.ike_entry.sk_ei)))
    keys.add(wrong)
    assert view_message(auth, keys).status == "auth_failed"
    keys.add(hs.ike_entry)  # the same SPIs again: the cached cipher must go too
    assert view_message(auth, keys).status == "ok" and len(keys) == 1
    for n in range(3):
        keys.add(dataclasses.replace(hs.ike_entry, spi_i=bytes([n + 1]) * 8), limit=3)
    assert len(keys) == 3 and view_message(auth, keys).status == "no_sa"


def test_details_show_offers_selectors_and_identities_but_no_secret() -> None:
    h = handshake("aes128gcm16-prfsha256-x25519, aes256-sha256-modp2048",
                  "aes128gcm16, aes256-sha256-esn")
    keys = IkeKeys([h.ike_entry])
    init, _, auth, auth_reply = (view_message(d, keys) for d, _, _ in h.datagrams[:4])
    assert init.details() == [
        "SA (IKE): aes128gcm16-prfsha256-x25519, aes256-sha256-prfsha256-modp2048"]
    assert auth.details() == ["IDi: ID_FQDN moon.example", "IDr: ID_FQDN sun.example",
                              "SA (ESP): aes128gcm16, aes256-sha256-esn",
                              "TSi: 10.1.0.0/24", "TSr: 10.2.0.0/24"]
    assert "SA (ESP): aes128gcm16" in auth_reply.details()
    shown = "\n".join(init.details() + auth.details())
    nonce = init.message.payloads[2].data  # Ni
    assert nonce.hex() not in shown and "lab secret" not in shown


def test_decode_verbose_prints_the_details_under_each_ike_frame(tmp_path: Path, hs: Handshake,
                                                                capsys) -> None:
    from ipseclab.cli import main

    keys = tmp_path / "ikev2_decryption_table"
    keys.write_text(format_ikev2(hs.ike_entry) + "\n")
    assert main(["decode", str(_capture(tmp_path, hs)), "--ikev2", str(keys), "-v"]) == 0
    out = capsys.readouterr().out.splitlines()
    auth = next(i for i, line in enumerate(out) if "IKE_AUTH #1 request" in line)
    assert out[auth + 1:auth + 6] == ["        IDi: ID_FQDN moon.example",
                                      "        IDr: ID_FQDN sun.example",
                                      "        SA (ESP): aes128gcm16",
                                      "        TSi: 10.1.0.0/24", "        TSr: 10.2.0.0/24"]
