"""``ipseclab encap`` and ``ipseclab decode``, checked against tshark as the reference decoder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Raw
from scapy.utils import wrpcap

from ipseclab.capture.decode import DecodedFrame, KeyRing, decode_capture
from ipseclab.cli import main
from ipseclab.config import xfrm
from ipseclab.crypto import transforms
from ipseclab.ipsec.verdict import Status
from ipseclab.keylog import read_esp_sa

# What tshark 4.0 can decrypt, with the integrity algorithm used beside it.
TSHARK_ALGS = [("null", "sha1"), ("aes128", "sha256"), ("aes192", "sha384"),
               ("aes256", "sha512"), ("aes128ctr", "md5"), ("aes256ctr", "sha1"),
               ("aes128gcm8", None), ("aes128gcm12", None), ("aes128gcm16", None),
               ("aes256gcm16", None), ("3des", "sha1")]
OTHER_ALGS = [("aes128ccm16", None), ("aes256ccm8", None), ("chacha20poly1305", None),
              ("aes128gmac", None), ("aes128", "aesxcbc"), ("aes128", "aescmac")]
ADDR = {4: ("192.0.2.1", "192.0.2.2", "10.1.0.10", "10.2.0.10"),
        6: ("2001:db8::1", "2001:db8::2", "fd01::10", "fd02::10")}


def _kernel_key(alg, key: bytes) -> str:
    return "0x" + key.hex() if key else "''"


def xfrm_text(family: int, algs: list[tuple[str, str | None]]) -> str:
    """One SA and one policy per (algorithm, mode), told apart by the UDP destination port."""
    gw1, gw2, h1, h2 = ADDR[family]
    lines = []
    n = 0
    for enc_kw, integ_kw in algs:
        for mode in ("transport", "tunnel"):
            n += 1
            enc = transforms.encryption(enc_kw)
            spec = ""
            ekey = os.urandom(enc.keymat_size)
            if enc.aead:
                spec = f"aead '{enc.kernel_name}' {_kernel_key(enc, ekey)} {enc.icv_size * 8}"
            else:
                spec = f"enc '{enc.kernel_name}' {_kernel_key(enc, ekey)}"
            if integ_kw:
                integ = transforms.integrity(integ_kw)
                spec += (f" auth-trunc '{integ.kernel_name}' 0x{os.urandom(integ.key_size).hex()}"
                         f" {integ.icv_size * 8}")
            lines.append(f"ip xfrm state add src {gw1} dst {gw2} proto esp spi {0x1000 + n} "
                         f"reqid {n} mode {mode} {spec}")
            src, dst = (h1, h2) if mode == "tunnel" else (gw1, gw2)
            tmpl = f"tmpl src {gw1} dst {gw2} proto esp reqid {n} mode {mode}"
            lines.append(f"ip xfrm policy add src {src} dst {dst} proto udp dport {50000 + n} "
                         f"dir out {tmpl}")
    return "\n".join(lines) + "\n"


def plaintext(family: int, count: int) -> list:
    gw1, gw2, h1, h2 = ADDR[family]
    l3 = IP if family == 4 else IPv6
    pkts = []
    for n in range(1, count + 1):
        src, dst = (h1, h2) if n % 2 == 0 else (gw1, gw2)  # even n: tunnel SAs, odd: transport
        pkts.append(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
                    / l3(src=src, dst=dst) / UDP(sport=40000, dport=50000 + n)
                    / Raw(f"payload number {n:03d}".encode()))
    return pkts


@pytest.fixture(params=[4, 6], ids=["ipv4", "ipv6"])
def protected(request, tmp_path):
    family = request.param
    sa_file = tmp_path / "sas.xfrm"
    sa_file.write_text(xfrm_text(family, TSHARK_ALGS + OTHER_ALGS))
    pkts = plaintext(family, 2 * len(TSHARK_ALGS + OTHER_ALGS))
    wrpcap(str(tmp_path / "plain.pcap"), pkts)
    keylog = tmp_path / "wireshark" / "esp_sa"
    rc = main(["encap", str(sa_file), str(tmp_path / "plain.pcap"), str(tmp_path / "esp.pcap"),
               "--esp-sa", str(keylog)])
    assert rc == 0
    return family, tmp_path, pkts


def test_our_decoder_recovers_every_packet(protected) -> None:
    _family, tmp_path, pkts = protected
    ring = KeyRing(read_esp_sa(tmp_path / "wireshark" / "esp_sa"))
    frames = list(decode_capture(tmp_path / "esp.pcap", ring))
    assert len(frames) == len(pkts)
    for frame, original in zip(frames, pkts, strict=True):
        assert frame.proto == "esp" and frame.status == "ok", frame
        assert frame.inner_bytes == bytes(original.payload)
        assert frame.mode == ("tunnel" if frame.frame % 2 == 0 else "transport")
        assert bytes(frame.inner[UDP].payload) == bytes(original[UDP].payload)


@pytest.mark.interop
@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_tshark_decrypts_what_encap_wrote(protected) -> None:
    _family, tmp_path, pkts = protected
    out = subprocess.run(
        ["tshark", "-r", str(tmp_path / "esp.pcap"), "-o", "esp.enable_encryption_decode:TRUE",
         "-o", "esp.enable_authentication_check:TRUE", "-T", "fields", "-E", "separator=|",
         "-e", "frame.number", "-e", "udp.dstport", "-e", "data.data", "-e", "esp.icv_good"],
        env={**os.environ, "XDG_CONFIG_HOME": str(tmp_path)}, capture_output=True, text=True,
        check=True, timeout=60).stdout
    rows = {int(r.split("|")[0]): r.split("|")[1:] for r in out.strip().splitlines()}
    checked = 0
    for n, original in enumerate(pkts, 1):
        if (n - 1) // 2 >= len(TSHARK_ALGS):
            continue  # algorithms tshark 4.0 does not have
        port, data, icv_good = rows[n]
        assert port == str(50000 + n), f"frame {n}: {rows[n]}"
        assert bytes.fromhex(data) == bytes(original[UDP].payload)
        assert icv_good == "1"
        checked += 1
    assert checked == 2 * len(TSHARK_ALGS)


def test_decode_json_reports_every_frame(protected, capsys) -> None:
    _family, tmp_path, pkts = protected
    assert main(["decode", str(tmp_path / "esp.pcap"), "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["frame"] for r in rows] == list(range(1, len(pkts) + 1))
    assert {r["status"] for r in rows} == {"no_sa"}  # no key given
    assert main(["decode", str(tmp_path / "esp.pcap"), "--json",
                 "--esp-sa", str(tmp_path / "wireshark" / "esp_sa")]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert all(r["status"] == "ok" and r["proto"] == "esp" for r in rows)
    assert rows[1]["inner"] == bytes(pkts[1].payload).hex()
    assert rows[0]["next_header"] == 17 and rows[1]["next_header"] in (4, 41)
    from ipseclab.capture.pcap import read_capture

    wire = [len(f.data) for f in read_capture(tmp_path / "esp.pcap")]
    assert [r["length"] for r in rows] == wire  # raw IP links: the frame is the packet


def test_tampered_and_replayed_frames_are_reported(tmp_path) -> None:
    sa_file = tmp_path / "sas.xfrm"
    sa_file.write_text(xfrm_text(4, [("aes128gcm16", None)]))
    pkts = plaintext(4, 2)
    wrpcap(str(tmp_path / "plain.pcap"), pkts)
    assert main(["encap", str(sa_file), str(tmp_path / "plain.pcap"),
                 str(tmp_path / "esp.pcap")]) == 0
    from ipseclab.capture.pcap import read_capture

    first, second = (f.data for f in read_capture(tmp_path / "esp.pcap"))
    bad = bytearray(second)
    bad[-1] ^= 0x80
    wrpcap(str(tmp_path / "mixed.pcap"), [IP(first), IP(bytes(bad)), IP(first), IP(second),
                                          Raw(b"\x45garbage")])
    ring = KeyRing(sas=xfrm.load(sa_file).states)
    statuses = [f.status for f in decode_capture(tmp_path / "mixed.pcap", ring)]
    assert statuses == ["ok", "auth_failed", "replay", "ok", "malformed"]


def test_bad_inputs_are_one_line_errors(tmp_path, capsys) -> None:
    (tmp_path / "bad.xfrm").write_text("ip xfrm state add src 1.2.3.4 dst nowhere\n")
    wrpcap(str(tmp_path / "p.pcap"), plaintext(4, 1))
    assert main(["encap", str(tmp_path / "bad.xfrm"), str(tmp_path / "p.pcap"),
                 str(tmp_path / "o.pcap")]) == 2
    err = capsys.readouterr().err
    assert "bad.xfrm:1" in err and "nowhere" in err and "Traceback" not in err
    (tmp_path / "junk.pcap").write_bytes(b"not a capture at all")
    assert main(["decode", str(tmp_path / "junk.pcap")]) == 2
    assert "junk.pcap" in capsys.readouterr().err


def test_json_line_is_the_json_encoding_of_every_real_frame(protected) -> None:
    _family, tmp_path, _pkts = protected
    for keys in (KeyRing(), KeyRing(read_esp_sa(tmp_path / "wireshark" / "esp_sa"))):
        for frame in decode_capture(tmp_path / "esp.pcap", keys):
            assert frame.json_line() == json.dumps(frame.to_json())


texts = st.none() | st.text(max_size=20)
ints = st.none() | st.integers(0, 2**64)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10**7), st.floats(0, 2e9, allow_nan=False), st.sampled_from(
       ["esp", "ah", "other"]), st.sampled_from([s.value for s in Status]), texts, texts, ints,
       ints, ints, st.sampled_from([None, "tunnel", "transport"]), st.booleans(),
       st.none() | st.binary(max_size=40), st.text(max_size=30), st.integers(0, 65535))
def test_json_line_matches_the_json_module(number, time, proto, status, src, dst, spi, seq,
                                           nh, mode, udp, inner, detail, length) -> None:
    """Quotes, backslashes, control and non-ASCII characters in the text fields included."""
    frame = DecodedFrame(number, time, proto, status, src, dst, spi, seq, nh, mode, udp, inner,
                         detail, length=length)
    assert frame.json_line() == json.dumps(frame.to_json())


def test_decoders_fast_path_reports_what_the_general_path_reports(tmp_path, monkeypatch) -> None:
    """Several packets per SA (so the fast path runs once an SA settled), both modes, with
    tampered, replayed, cut and unknown-SPI frames in between."""
    from ipseclab.capture import decode
    from ipseclab.capture.pcap import read_capture

    sa_file = tmp_path / "sas.xfrm"
    sa_file.write_text(xfrm_text(4, [("aes128gcm16", None), ("aes128", "sha256")]))
    pkts = [p for _ in range(3) for p in plaintext(4, 4)]
    wrpcap(str(tmp_path / "plain.pcap"), pkts)
    keylog = tmp_path / "esp_sa"
    assert main(["encap", str(sa_file), str(tmp_path / "plain.pcap"), str(tmp_path / "esp.pcap"),
                 "--esp-sa", str(keylog)]) == 0
    wire = [f.data for f in read_capture(tmp_path / "esp.pcap")]
    flipped = bytearray(wire[6])
    flipped[40] ^= 1
    unknown = bytearray(wire[6])
    unknown[23] ^= 0xFF
    mixed = [*wire[:6], bytes(flipped), wire[2], wire[7][:30], bytes(unknown), *wire[6:]]
    wrpcap(str(tmp_path / "mixed.pcap"), [IP(p) for p in mixed])

    def lines(ring_of) -> list[str]:
        return [f.json_line() for f in decode_capture(tmp_path / "mixed.pcap", ring_of())]

    for ring_of in (lambda: KeyRing(read_esp_sa(keylog)),
                    lambda: KeyRing(sas=xfrm.load(sa_file).states)):
        fast = lines(ring_of)
        with monkeypatch.context() as m:
            m.setattr(decode, "_esp_over_ipv4", lambda *args: None)
            general = lines(ring_of)
        assert fast == general
        statuses = [json.loads(line)["status"] for line in fast]
        assert statuses.count("ok") == len(wire)
        assert {"auth_failed", "replay", "malformed", "no_sa"} <= set(statuses)
