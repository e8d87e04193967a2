"""The teaching layer: byte maps, overhead, explanations and Scapy dissection of real packets."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipseclab.capture.decode import KeyRing, decode_packet
from ipseclab.ipsec import ah, esp
from ipseclab.teaching import overhead
from ipseclab.teaching.bytemap import NotIpsec, byte_map, mutable_ranges, plot_byte_map
from ipseclab.teaching.demo import demo_pair, demo_sa, udp_packet
from ipseclab.teaching.explain import explain
from ipseclab.teaching.scapy_layers import dissect, enable, to_scapy

PROPOSALS = ["aes128gcm16", "aes256gcm8", "aes128ccm12", "chacha20poly1305", "aes128-sha256",
             "aes256-sha512", "3des-sha1", "aes128ctr-sha256", "null-sha256", "aes128gmac"]


def _check_cover(m, packet: bytes) -> None:
    assert m.spans[0].start == 0 and m.spans[-1].end == len(packet)
    for a, b in zip(m.spans, m.spans[1:], strict=False):
        assert a.end == b.start and a.length > 0
    assert sum(s.length for s in m.spans) == len(packet)


@pytest.mark.parametrize("proposal", PROPOSALS)
@pytest.mark.parametrize("mode", ["transport", "tunnel"])
@pytest.mark.parametrize("family,udp", [(4, False), (6, False), (4, True), (6, True)])
def test_esp_map_spans_and_ciphertext(proposal, mode, family, udp):
    tx, rx = demo_pair(proposal, mode, family=family, udp=udp)
    inner = udp_packet(45, family=family)
    wire = esp.encapsulate(tx, inner)
    m = byte_map(wire, rx)
    _check_cover(m, wire)
    enc = tx.encryption
    payload = len(inner) if mode == "tunnel" else len(inner) - (20 if family == 4 else 40)
    ciphertext = payload + (-(payload + 2) % enc.block_size) + 2
    trailer = sum(m.length_of(k) for k in ("payload", "padding", "pad-length", "next-header"))
    assert trailer == ciphertext
    assert m.encrypted_length == (ciphertext if enc.confidential else 0)
    assert m.length_of("icv") == rx.icv_size
    assert m.length_of("iv") == enc.iv_size
    assert m.length_of("udp-header") == (8 if udp else 0)
    assert m.verified is True
    assert m.mode == mode
    assert m.next_header == (4 if family == 4 else 41) if mode == "tunnel" else 17
    assert m.clear_bytes(m.spans_of("payload")[0]) == (inner if mode == "tunnel" else
                                                         inner[20 if family == 4 else 40:])
    esp_start = m.spans_of("esp-header")[0].start
    assert esp_start == (20 if family == 4 else 40) + (8 if udp else 0)
    covers = [(esp_start, len(wire) - rx.icv_size)] if rx.icv_size else []
    assert m.icv_covers == covers


@pytest.mark.parametrize("proposal", ["aes128gcm16", "aes128-sha256"])
def test_esp_map_without_key(proposal):
    tx, _ = demo_pair(proposal, "tunnel")
    wire = esp.encapsulate(tx, udp_packet(30))
    blind = byte_map(wire)
    _check_cover(blind, wire)
    assert [s.kind for s in blind.spans[-3:]] == ["esp-header", "esp-header", "encrypted"]
    assert blind.spans[-1].length == len(wire) - 28
    sized = byte_map(wire, proposal)
    _check_cover(sized, wire)
    assert sized.length_of("encrypted") == len(wire) - 20 - 8 - tx.encryption.iv_size - tx.icv_size
    assert sized.length_of("padding") == 0 and not sized.decrypted


def test_wrong_key_leaves_ciphertext_opaque():
    tx, _ = demo_pair("aes128gcm16", "tunnel")
    other = demo_sa("aes128gcm16", "tunnel", seed="someone else")
    m = byte_map(esp.encapsulate(tx, udp_packet(30)), other)
    assert m.length_of("encrypted") > 0 and m.verified is False


def test_esn_map_finds_high_bits():
    tx, rx = demo_pair("aes128-sha256", "transport", esn=True)
    tx.seq = 2**32 + 5
    rx.replay.update(2**32 + 5)
    m = byte_map(esp.encapsulate(tx, udp_packet(10)), rx)
    assert m.verified is True and m.length_of("payload") == 18


@pytest.mark.parametrize("mode", ["transport", "tunnel"])
def test_ah_map_ipv4_zeroed_fields(mode):
    tx, rx = demo_pair("sha256", mode, protocol="ah")
    wire = ah.encapsulate(tx, udp_packet(20))
    m = byte_map(wire, rx)
    _check_cover(m, wire)
    header_zeroed = {i for i in m.zeroed_offsets() if i < 20}
    assert header_zeroed == {1, 6, 7, 8, 10, 11}  # TOS, flags+fragment, TTL, checksum
    assert {i for s in m.spans_of("mutable") for i in range(s.start, s.end)} == header_zeroed
    icv = m.spans_of("ah-icv")
    assert sum(s.length for s in icv) == ah.icv_field_size(rx)
    assert m.icv_covers == [(0, len(wire))]
    assert m.encrypted_length == 0 and m.verified is True


def test_ah_map_ipv6_icv_padding_and_failure():
    tx, rx = demo_pair("sha256", "transport", protocol="ah", family=6)
    wire = bytearray(ah.encapsulate(tx, udp_packet(20, family=6)))
    m = byte_map(bytes(wire), rx)
    assert [s.label for s in m.spans_of("ah-icv")] == ["ICV", "ICV padding"]
    assert {i for i in m.zeroed_offsets() if i < 40} == {0, 1, 2, 3, 7}
    wire[8] ^= 1  # the source address: covered
    assert byte_map(bytes(wire), rx).verified is False


@settings(max_examples=60, deadline=None)
@given(st.binary(min_size=4, max_size=40))
def test_mutable_ranges_match_zero_mutable(options):
    header = bytearray(b"\x45\x12\x00\x00\x00\x00\x40\x00\x40\x01\x00\x00" + bytes(8))
    options = options[: len(options) // 4 * 4]
    header[0] = 0x40 | (5 + len(options) // 4)
    header = bytes(header) + options
    zeroed = ah.zero_mutable(header)
    positions = {i for a, b, _ in mutable_ranges(header) for i in range(a, b)}
    for i in range(len(header)):
        if i in positions:
            assert zeroed[i] == 0
        else:
            assert zeroed[i] == header[i]


def test_not_ipsec_is_one_clear_error():
    with pytest.raises(NotIpsec):
        byte_map(udp_packet(10))
    with pytest.raises(NotIpsec):
        byte_map(b"\x45\x00")


def test_keyring_opens_map():
    tx, rx = demo_pair("aes128-sha256", "tunnel", udp=True)
    m = byte_map(esp.encapsulate(tx, udp_packet(30)), KeyRing(sas=[rx]))
    assert m.decrypted and m.udp_encap and m.verified


def test_plots_render(tmp_path):
    import matplotlib.pyplot as plt

    tx, rx = demo_pair("aes128-sha256", "tunnel")
    m = byte_map(esp.encapsulate(tx, udp_packet(50)), rx)
    for style, width in (("grid", 16), ("grid", 32), ("bar", 16)):
        ax = plot_byte_map(m, width=width, style=style)
        ax.figure.savefig(tmp_path / f"{style}{width}.png")
        assert len(ax.get_legend().get_texts()) >= 5
        plt.close(ax.figure)
    rows = overhead.measure(("aes128gcm16",), sizes=range(0, 200, 50))
    ax = overhead.plot_overhead(rows, mtu=100)
    assert len(ax.get_lines()) >= 2
    plt.close(ax.figure)


def test_overhead_equals_real_lengths():
    rows = overhead.measure(("aes128gcm16", "aes128-sha256"), sizes=[0, 13, 100, 1000],
                            udp=True)
    assert len(rows) == 16
    for r in rows:
        sa = demo_sa(r.proposal, r.mode, udp=True)
        inner = udp_packet(r.inner_length - 28)
        assert r.wire_length == len(esp.encapsulate(sa, inner))
        assert r.added == r.wire_length - r.inner_length
    gcm_tunnel = [r for r in rows if r.proposal == "aes128gcm16" and r.mode == "tunnel"]
    # outer IP 20 + UDP 8 + ESP 8 + IV 8 + ICV 16 + 2..5 trailer
    assert all(62 <= r.added <= 65 for r in gcm_tunnel)


@pytest.mark.parametrize("proposal,mode", [("aes128gcm16", "tunnel"), ("aes128-sha256",
                                                                         "transport")])
def test_largest_inner_is_the_fragmentation_point(proposal, mode):
    n = overhead.largest_inner(proposal, mode, 1500)
    sa = demo_sa(proposal, mode)
    assert len(esp.encapsulate(sa, udp_packet(n - 28))) <= 1500
    assert len(esp.encapsulate(sa, udp_packet(n - 27))) > 1500


def test_explain_cites_rfc_and_values():
    tx, rx = demo_pair("aes128-sha256", "transport", spi=0xC0FFEE)
    wire = esp.encapsulate(tx, udp_packet(20))
    text = explain(wire, rx)
    assert "0x00c0ffee" in text and "RFC 4303 §2.1" in text and "RFC 4303 §2.4" in text
    assert "Pad Length = " in text and "Next Header = 17" in text
    blind = explain(wire)
    assert "0x00c0ffee" in blind and "without the key" in blind
    ah_text = explain(ah.encapsulate(demo_sa("sha256", protocol="ah"), udp_packet(8)))
    assert "RFC 4302 §3.3.3.1" in ah_text and "TTL" in ah_text
    udp_text = explain(esp.encapsulate(demo_sa(udp=True, mode="tunnel"), udp_packet(8)))
    assert "RFC 3948 §2.1" in udp_text


def test_explain_decoded_frame():
    tx, rx = demo_pair("aes128gcm16", "tunnel")
    frame = decode_packet(1, 0.0, esp.encapsulate(tx, udp_packet(8)), KeyRing(sas=[rx]))
    text = explain(frame)
    assert "0x00001001" in text and "tunnel" in text
    assert to_scapy(frame).dst == "10.2.0.1"


def test_scapy_dissects_udp_4500():
    enable()
    from scapy.layers.inet import UDP
    from scapy.layers.ipsec import ESP, NAT_KEEPALIVE, NON_ESP

    tx, _ = demo_pair("aes128gcm16", "tunnel", udp=True)
    pkt = dissect(esp.encapsulate(tx, udp_packet(8)))
    assert pkt.haslayer(UDP) and pkt[ESP].spi == 0x1001 and pkt[ESP].seq == 1
    tx6, _ = demo_pair("aes128gcm16", "tunnel", udp=True, family=6)
    assert dissect(esp.encapsulate(tx6, udp_packet(8, family=6)))[ESP].spi == 0x1001
    ike = udp_packet(b"\x00\x00\x00\x00" + bytes(8) + bytes(8) + b"\x21\x20\x22\x08"
                     + bytes(4) + (28).to_bytes(4, "big"), sport=4500, dport=4500)
    pkt = dissect(ike)
    assert pkt.haslayer(NON_ESP)
    from scapy.contrib.ikev2 import IKEv2
    assert pkt.haslayer(IKEv2) and pkt[IKEv2].exch_type == 34
    assert dissect(udp_packet(b"\xff", sport=4500, dport=4500)).haslayer(NAT_KEEPALIVE)
