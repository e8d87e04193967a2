"""Build the lesson notebooks from the Python source below: ``python notebooks/build.py``.

The notebooks are generated so that a change is reviewed as a diff of this file, not of
JSON. Every code cell runs without root and without a network; ``tests/test_notebooks.py``
executes them all. Each lesson: learning goals, explanations citing the RFC, exercises
("Your turn") followed by a check cell, and a summary.
"""

from __future__ import annotations

import sys
from pathlib import Path
from textwrap import dedent

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent


def md(text: str):
    return new_markdown_cell(dedent(text).strip())


def code(text: str):
    return new_code_cell(dedent(text).strip())


SETUP = code("""
    %matplotlib inline
    import matplotlib.pyplot as plt
    """)

# --------------------------------------------------------------------------------------------
NB01 = [
    md("""
    # 01: ESP by hand

    **Learning goals.** After this lesson you can

    * name every field of an ESP packet and say which RFC 4303 section defines it;
    * build an ESP packet yourself, step by step: header, IV, padding, AAD, the AEAD call;
    * check your packet byte for byte against the library (`esp.encapsulate`), against Scapy
      and against `ipseclab decode`;
    * read a *byte map*: which bytes are encrypted, which are covered by the ICV.

    Nothing here needs root or a network: we work on bytes.
    """),
    SETUP,
    md("""
    ## The SA: keys as Linux writes them

    An ESP packet is protected by a **Security Association** (SA, RFC 4301 §4.4.2): one
    direction of traffic, with an SPI, keys, algorithms, a mode and a sequence counter.
    Without IKE, an administrator types the SA in by hand with `ip xfrm state add`. ipseclab
    reads the same lines. This one is the `gw1 -> gw2` SA of `examples/site-to-site.xfrm`:
    AES-GCM with a 128-bit key and a 16-byte ICV (RFC 4106), tunnel mode.
    """),
    code("""
    from ipseclab.config import xfrm

    XFRM = ("ip xfrm state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x00001001"
            " reqid 1 mode tunnel replay-window 64"
            " aead 'rfc4106(gcm(aes))' 0x0102030405060708090a0b0c0d0e0f10a1a2a3a4 128")

    sa = xfrm.parse(XFRM, "site-to-site").states[0]
    print(sa)
    print("key and salt:", sa.encryption_key.hex(), f"({len(sa.encryption_key)} bytes)")
    """),
    md("""
    The key is 20 bytes: 16 bytes of AES key, then a 4-byte **salt** (RFC 4106 §8.1). The
    salt is secret, like the key, and goes into every nonce.

    ## The packet to protect

    Host `10.1.0.1` pings `10.2.0.1` on the other site. We build the inner packet with Scapy.
    """),
    code("""
    from scapy.layers.inet import ICMP, IP

    inner = bytes(IP(src="10.1.0.1", dst="10.2.0.1", id=1) / ICMP(id=7, seq=1) / b"hello, IPsec")
    print(len(inner), "bytes:", inner.hex(" "))
    """),
    md("""
    ## Step 1: the ESP header (RFC 4303 §2.1, §2.2)

    Eight bytes in the clear: the **SPI** (which SA) and the **sequence number** (the first
    packet of an SA carries 1, §2.2; it is never 0 and never wraps).
    """),
    code("""
    import struct

    seq = 1
    header = struct.pack("!II", sa.spi, seq)
    print("ESP header:", header.hex(" "))
    """),
    md("""
    ## Step 2: the IV (RFC 4303 §2.3, RFC 4106 §3.1)

    GCM breaks completely if a nonce repeats under one key. The nonce is `salt || IV`; the
    8-byte IV travels in the packet. RFC 4106 §3.1 only asks that it never repeats; Linux and
    ipseclab use the sequence number, which never repeats within an SA.
    """),
    code("""
    iv = seq.to_bytes(8, "big")
    print("IV:", iv.hex(" "))
    """),
    md("""
    ## Step 3: padding, pad length, next header (RFC 4303 §2.4 to §2.6)

    What gets encrypted is `payload || padding || pad length || next header`. The padding
    makes the length a multiple of the cipher's block size (GCM is a stream mode: 4 bytes,
    to align the ICV) and is filled with 1, 2, 3, ... (§2.4). The **next header** says what
    the payload is: 4 means "an IPv4 packet", that is, **tunnel mode** (RFC 4303 §3.1.2).
    """),
    code("""
    next_header = 4  # IPv4: the whole inner packet is the payload (tunnel mode)
    block = sa.encryption.block_size
    pad_len = -(len(inner) + 2) % block
    padding = bytes(range(1, pad_len + 1))
    plaintext = inner + padding + bytes([pad_len, next_header])
    print(f"block {block}, padding {pad_len} bytes, plaintext {len(plaintext)} bytes")
    """),
    md("""
    ## Step 4: AAD and the AEAD call (RFC 4106 §4, §5)

    AES-GCM encrypts and authenticates in one call. Its inputs:

    * key: the first 16 bytes of the key material;
    * nonce: `salt || IV` (12 bytes, RFC 4106 §4);
    * **AAD** (additional authenticated data): the ESP header, SPI and sequence number
      (RFC 4106 §5). They stay readable, but changing them breaks the ICV;
    * plaintext.

    The output is the ciphertext followed by the 16-byte tag, which ESP calls the **ICV**
    (RFC 4303 §2.8).
    """),
    code("""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    key, salt = sa.encryption_key[:16], sa.encryption_key[16:]
    aad = header
    sealed = AESGCM(key).encrypt(salt + iv, plaintext, aad)
    ciphertext, icv = sealed[:-16], sealed[-16:]
    print("ciphertext:", len(ciphertext), "bytes;  ICV:", icv.hex(" "))

    # The library's own cipher object (built once per SA) makes the same call:
    assert sa.encryption.new(sa.encryption_key).encrypt(iv, plaintext, aad) == sealed
    """),
    md("""
    ## Step 5: the outer IP header (RFC 4301 §5.1.2, RFC 4303 §3.1.2)

    In tunnel mode the gateway puts a new IP header in front, from itself (192.0.2.1) to the
    other gateway (192.0.2.2), protocol 50 (ESP).
    """),
    code("""
    from ipseclab.ipsec import ip

    datagram = header + iv + sealed
    outer = ip.ip_header(sa.src, sa.dst, ip.PROTO_ESP, len(datagram), ident=1)
    by_hand = outer + datagram
    print(len(by_hand), "bytes on the wire")
    """),
    md("""
    ## Same as the library?

    `esp.encapsulate` does all of the above for a whole packet. We give it a fresh copy of
    the SA (it advances the SA's sequence number) and compare byte for byte. Because the GCM
    IV comes from the sequence number, the two packets must be identical.
    """),
    code("""
    from ipseclab.ipsec import esp

    sender = xfrm.parse(XFRM).states[0]
    wire = esp.encapsulate(sender, inner)
    print("identical:", wire == by_hand)
    assert wire == by_hand
    """),
    md("""
    ## What Scapy sees

    Scapy dissects the ESP header but the rest is opaque `data`: it has no key. Given the key,
    Scapy's own, independent ESP code decrypts our packet: two implementations agree.
    """),
    code("""
    from scapy.layers.ipsec import ESP
    from scapy.layers.ipsec import SecurityAssociation as ScapySA

    IP(wire).show()
    scapy_sa = ScapySA(ESP, spi=sa.spi, crypt_algo="AES-GCM", crypt_key=sa.encryption_key,
                       tunnel_header=IP(src="192.0.2.1", dst="192.0.2.2"))
    opened = scapy_sa.decrypt(IP(wire))
    print(opened.summary())
    assert bytes(opened) == inner
    """),
    md("""
    ## What `ipseclab decode` sees

    We write the packet into a capture file and the SA into an `ip xfrm` file, and run the
    same decoder as the command line `ipseclab decode capture.pcap --sa-file keys.xfrm`.
    """),
    code("""
    import tempfile
    from pathlib import Path

    from ipseclab.capture.decode import KeyRing, decode_capture
    from ipseclab.capture.pcap import write_pcap
    from ipseclab.cli import main as ipseclab

    work = Path(tempfile.mkdtemp(prefix="nb01-"))
    write_pcap(work / "esp.pcap", [wire])
    (work / "keys.xfrm").write_text(XFRM + "\\n")
    ipseclab(["decode", str(work / "esp.pcap"), "--sa-file", str(work / "keys.xfrm")])

    frame = next(decode_capture(work / "esp.pcap", KeyRing(sas=[sa])))
    frame.inner.show()
    """),
    md("""
    ## The byte map

    Which byte is what? `byte_map` cuts the packet into fields; with the SA it decrypts and
    labels the trailer. A red line over a byte: encrypted. A black line under it: covered by
    the ICV. Note that the outer IP header is neither.
    """),
    code("""
    from ipseclab.teaching.bytemap import byte_map, plot_byte_map

    receiver = xfrm.parse(XFRM).states[0]
    m = byte_map(wire, receiver)
    print(m.table(decrypted=True))
    plot_byte_map(m)
    plt.show()
    """),
    md("""
    `explain` says the same in words, field by field, with the RFC section for each.
    """),
    code("""
    from ipseclab.teaching.explain import explain

    print(explain(wire, receiver))
    """),
    md("""
    ## Your turn 1: padding with a block cipher

    AES-CBC (`aes128-sha256`) has a 16-byte block (RFC 3602). A transport-mode SA protects a
    UDP datagram of **61 bytes**. How many padding bytes does ESP add? Write the number (or
    the formula) in `my_padding`.
    """),
    code("""
    my_padding = -(61 + 2) % 16  # your answer here
    """),
    code("""
    # Check: encrypt a real 61-byte UDP datagram and count the padding in its byte map.
    from ipseclab.teaching.demo import demo_pair, udp_packet

    tx, rx = demo_pair("aes128-sha256", "transport")
    packet = esp.encapsulate(tx, udp_packet(61 - 8))  # 8-byte UDP header + 53 bytes
    actual = byte_map(packet, rx).length_of("padding")
    assert my_padding == actual, f"not quite: ESP added {actual} bytes of padding"
    print("correct:", actual, "bytes of padding")
    """),
    md("""
    ## Your turn 2: flip one bit

    An attacker flips one bit of the ciphertext on the way. What does the receiver's
    `esp.decapsulate` answer? Choose from `"ok"`, `"auth_failed"`, `"bad_padding"`,
    `"replay"` and put it in `my_status`.
    """),
    code("""
    my_status = "auth_failed"  # your answer here
    """),
    code("""
    tampered = bytearray(wire)
    tampered[60] ^= 0x01  # a byte inside the ciphertext
    result = esp.decapsulate(xfrm.parse(XFRM).states[0], bytes(tampered))
    assert my_status == result.status, f"the receiver said {result.status}"
    print("correct:", result.status, "-", result.detail)
    """),
    md("""
    ## Summary

    * An ESP packet is: SPI and sequence number (clear, authenticated), IV (clear), then
      payload, padding, pad length and next header (all encrypted), then the ICV
      (RFC 4303 §2).
    * With AES-GCM the IV is the sequence number, the nonce is `salt || IV`, and the ESP
      header is the AAD (RFC 4106 §3.1, §4, §5).
    * In tunnel mode the whole inner packet is the payload and next header is 4 (IPv4).
    * The outer IP header is neither encrypted nor covered by the ESP ICV.
    * Any change to a covered byte makes the receiver drop the packet before it decrypts.
    """),
]

# --------------------------------------------------------------------------------------------
NB02 = [
    md("""
    # 02: Transport mode and tunnel mode

    **Learning goals.** After this lesson you can

    * say what transport mode and tunnel mode put where (RFC 4301 §4.1, RFC 4303 §3.1);
    * see in a byte map which addresses an observer learns in each mode;
    * measure the bytes each mode and algorithm adds, and find the packet size at which a
      1500-byte link forces fragmentation.

    This first half works on bytes and needs no root. The second half, with two sites in
    Mininet, is marked at the end.
    """),
    SETUP,
    md("""
    ## One packet, two modes

    **Transport mode** (RFC 4303 §3.1.1) keeps the packet's own IP header and puts ESP
    between it and the upper-layer protocol: hosts protect their own traffic.
    **Tunnel mode** (§3.1.2) encrypts the whole packet, header included, and adds a new outer
    header between the two gateways. We protect the same UDP packet both ways, with the same
    algorithm.
    """),
    code("""
    from ipseclab.ipsec import esp
    from ipseclab.teaching.bytemap import byte_map, plot_byte_map
    from ipseclab.teaching.demo import demo_pair, udp_packet

    inner = udp_packet(24)
    maps = {}
    for mode in ("transport", "tunnel"):
        tx, rx = demo_pair("aes128gcm16", mode)
        wire = esp.encapsulate(tx, inner)
        maps[mode] = byte_map(wire, rx)
        print(f"{mode:9}: {len(inner)} -> {len(wire)} bytes")

    fig, axes = plt.subplots(1, 2, figsize=(15, 6))
    for ax, (mode, m) in zip(axes, maps.items(), strict=True):
        plot_byte_map(m, ax=ax, title=f"{mode} mode, {len(m.packet)} bytes")
    plt.tight_layout()
    plt.show()
    """),
    md("""
    Look at the addresses in the first row of each map. In transport mode the outer header
    *is* the host's header: an observer sees `10.1.0.1 -> 10.2.0.1`. In tunnel mode it sees
    only the gateways, `192.0.2.1 -> 192.0.2.2`; the hosts' addresses are inside the
    ciphertext.
    """),
    code("""
    from ipseclab.ipsec import ip

    for mode, m in maps.items():
        hdr = ip.parse_header(m.packet)
        print(f"{mode:9}: an observer sees {hdr.src} -> {hdr.dst},"
              f" {m.encrypted_length} bytes encrypted, next header inside = {m.next_header}")
    """),
    md("""
    ## What each mode costs

    `overhead.measure` encapsulates real packets of every size and records the lengths.
    The sawtooth comes from padding: CBC pads to 16 bytes, GCM and ChaCha20-Poly1305 to 4
    (RFC 4303 §2.4). Tunnel mode adds one more IP header, 20 bytes for IPv4.
    """),
    code("""
    from ipseclab.teaching import overhead

    rows = overhead.measure(("aes128gcm16", "aes128-sha256", "aes256-sha512"),
                            sizes=range(0, 1473, 4))
    print(overhead.summary(rows))
    overhead.plot_overhead(rows, mtu=1500)
    plt.show()
    """),
    md("""
    ## Where fragmentation starts

    A link with a 1500-byte MTU carries the *protected* packet. `largest_inner` finds, by
    encapsulating real packets, the largest inner packet that still fits. One byte more and
    the gateway must fragment, or drop the packet and tell the sender with ICMP "packet too
    big" so it can lower its path MTU (RFC 4301 §8).
    """),
    code("""
    for proposal in ("aes128gcm16", "aes128-sha256"):
        for mode in ("transport", "tunnel"):
            for udp in (False, True):
                n = overhead.largest_inner(proposal, mode, 1500, udp=udp)
                print(f"{proposal:14} {mode:9} {'ESP in UDP' if udp else 'ESP':10}: {n} bytes")
    """),
    md("""
    ## Your turn

    A site-to-site tunnel uses `aes128gcm16` in tunnel mode behind a NAT (ESP in UDP,
    RFC 3948). How many bytes does it add to a 100-byte packet? Count: outer IPv4 header,
    UDP header, SPI and sequence number, IV, padding and trailer, ICV.
    """),
    code("""
    my_overhead = 20 + 8 + 8 + 8 + (-(100 + 2) % 4 + 2) + 16  # your answer here
    """),
    code("""
    from ipseclab.teaching.demo import demo_sa

    sa = demo_sa("aes128gcm16", "tunnel", udp=True)
    real = len(esp.encapsulate(sa, udp_packet(100 - 28))) - 100
    assert my_overhead == real, f"the real packet grew by {real} bytes"
    print("correct:", real, "bytes added")
    """),
    md("""
    ## Second half (needs root): two sites in Mininet

    *To be added once the gateways running ipseclab's own stack are ready.* The plan:
    `with Lab("site-to-site") as lab:` start the two-site topology, ping `h1 -> h2`, capture
    the WAN link in transport and in tunnel mode, decode the capture with the key log the lab
    writes, and draw the byte maps of the captured packets next to the ones above.

    ## Summary

    * Transport mode protects the payload of a packet; its own IP header stays in front
      (RFC 4303 §3.1.1). Tunnel mode protects the whole packet and adds an outer header
      (§3.1.2); observers see only the gateways.
    * The overhead depends on the algorithm (IV, ICV, block size) and the mode (20 or 40
      bytes more for tunnel mode), plus 8 bytes for UDP encapsulation.
    * Overhead moves the point where a packet no longer fits the MTU: plan the inner MTU.
    """),
]

# --------------------------------------------------------------------------------------------
NB03 = [
    md("""
    # 03: AH versus ESP

    **Learning goals.** After this lesson you can

    * tell integrity (AH, RFC 4302) from confidentiality (ESP, RFC 4303);
    * say which bytes AH covers, including the IP header, and which IP fields it counts as
      zero because routers change them (RFC 4302 §3.3.3.1);
    * explain, and show, why AH cannot cross a NAT while ESP in UDP can (RFC 3715 §2.1,
      RFC 3948).
    """),
    SETUP,
    md("""
    ## The same packet under AH and under ESP

    AH (RFC 4302) authenticates but encrypts nothing; ESP with AES-GCM does both.
    """),
    code("""
    from ipseclab.ipsec import ah, esp
    from ipseclab.teaching.bytemap import byte_map, plot_byte_map
    from ipseclab.teaching.demo import demo_pair, udp_packet

    secret = b"PIN=1234 " * 3
    inner = udp_packet(secret)
    ah_tx, ah_rx = demo_pair("sha256", "transport", protocol="ah")
    esp_tx, esp_rx = demo_pair("aes128gcm16", "transport")
    ah_wire = ah.encapsulate(ah_tx, inner)
    esp_wire = esp.encapsulate(esp_tx, inner)
    print("AH: ", secret in ah_wire, "- the secret is readable on the wire")
    print("ESP:", secret in esp_wire, "- the secret is not")
    """),
    md("""
    ## Which bytes does AH cover?

    All of them. The AH ICV covers the IP header, the AH header and the payload
    (RFC 4302 §3.3.3). But some IP header fields change on the way: TOS (routers may set
    DSCP/ECN), flags and fragment offset, TTL (decremented at every hop) and therefore the
    header checksum. They count as **zero** when the ICV is computed (§3.3.3.1), hatched in
    the map. So does the ICV field itself.
    """),
    code("""
    m = byte_map(ah_wire, ah_rx)
    print(m.table())
    plot_byte_map(m)
    plt.show()
    """),
    code("""
    m_esp = byte_map(esp_wire, esp_rx)
    plot_byte_map(m_esp)
    plt.show()
    print(f"AH:  {m.authenticated_length} of {len(ah_wire)} bytes authenticated,"
          f" {m.encrypted_length} encrypted")
    print(f"ESP: {m_esp.authenticated_length} of {len(esp_wire)} bytes authenticated,"
          f" {m_esp.encrypted_length} encrypted")
    """),
    md("""
    ## A router on the way: TTL changes, AH still verifies

    A router decrements the TTL and fixes the checksum. Both are mutable fields, so the
    receiver's ICV still matches.
    """),
    code("""
    import struct

    from ipseclab.ipsec import ip


    def route(packet: bytes) -> bytes:
        \"\"\"What a router does: TTL - 1, new header checksum.\"\"\"
        p = bytearray(packet)
        p[8] -= 1
        p[10:12] = b"\\x00\\x00"
        struct.pack_into("!H", p, 10, ip.checksum(bytes(p[:20])))
        return bytes(p)


    print(ah.decapsulate(demo_pair("sha256", "transport", protocol="ah")[1], route(ah_wire)).status)
    """),
    md("""
    ## A NAT on the way: the address changes, AH fails

    A NAT rewrites the source address (and fixes the checksum). The source address is *not*
    mutable for AH: it is exactly what AH authenticates. The receiver's ICV no longer
    matches, and the packet is dropped. That is the incompatibility of RFC 3715 §2.1.
    """),
    code("""
    def nat(packet: bytes, new_src: str = "203.0.113.7") -> bytes:
        \"\"\"What a source NAT does to the IP header: new source address, new checksum.\"\"\"
        p = bytearray(packet)
        p[12:16] = ip.as_address(new_src).packed
        p[10:12] = b"\\x00\\x00"
        struct.pack_into("!H", p, 10, ip.checksum(bytes(p[:20])))
        return bytes(p)


    receiver = demo_pair("sha256", "transport", protocol="ah")[1]
    result = ah.decapsulate(receiver, nat(ah_wire))
    print(result.status, "-", result.detail)
    """),
    md("""
    ## ESP in UDP survives the NAT

    ESP's ICV does not cover the outer IP header (RFC 4303 §3.1), and in tunnel mode the
    inner addresses are inside the ciphertext. A NAT also needs ports to tell hosts apart,
    which bare ESP lacks: so NAT traversal puts ESP into UDP port 4500 (RFC 3948 §2.1). The
    NAT may rewrite the outer address *and* the UDP source port; the receiver still opens
    the packet.
    """),
    code("""
    tx, rx = demo_pair("aes128gcm16", "tunnel", udp=True)
    wire = esp.encapsulate(tx, inner)
    natted = bytearray(nat(wire))
    natted[20:22] = (31337).to_bytes(2, "big")  # the NAT picks another source port too
    result = esp.decapsulate(rx, bytes(natted))
    print(result.status, "- inner packet:", ip.parse_header(result.inner).src, "->",
          ip.parse_header(result.inner).dst)
    """),
    md("""
    ## Your turn 1: which bytes does AH zero?

    List the byte offsets of an IPv4 header (without options) that count as zero for the AH
    ICV. Offsets: TOS is byte 1, flags and fragment offset bytes 6-7, TTL byte 8, protocol
    byte 9, checksum bytes 10-11, addresses 12-19.
    """),
    code("""
    my_zeroed = {1, 6, 7, 8, 10, 11}  # your answer here
    """),
    code("""
    header_bytes = {i for i in m.zeroed_offsets() if i < 20}
    assert my_zeroed == header_bytes, f"the map says {sorted(header_bytes)}"
    print("correct:", sorted(header_bytes))
    """),
    md("""
    ## Your turn 2: does AH survive a DSCP change?

    A router re-marks the packet's DSCP (the TOS byte) to 0x20. Does the receiver accept the
    AH packet? Set `my_answer` to `"ok"` or `"auth_failed"`.
    """),
    code("""
    my_answer = "ok"  # your answer here
    """),
    code("""
    p = bytearray(ah_wire)
    p[1] = 0x20
    p[10:12] = b"\\x00\\x00"
    struct.pack_into("!H", p, 10, ip.checksum(bytes(p[:20])))
    status = ah.decapsulate(demo_pair("sha256", "transport", protocol="ah")[1], bytes(p)).status
    assert my_answer == status, f"the receiver said {status}"
    print("correct:", status)
    """),
    md("""
    ## Summary

    * AH gives integrity and origin authentication, no confidentiality: the payload is
      readable (RFC 4302 §1). ESP can give both.
    * AH covers the IP header too, except the mutable fields (TOS, flags, fragment offset,
      TTL, checksum for IPv4), which count as zero (RFC 4302 §3.3.3.1).
    * A NAT rewrites an address AH covers, so AH breaks behind a NAT (RFC 3715 §2.1). ESP in
      UDP on port 4500 (RFC 3948) crosses NATs: its ICV leaves the outer header alone.
    """),
]

# --------------------------------------------------------------------------------------------
NB04 = [
    md("""
    # 04: Anti-replay

    **Learning goals.** After this lesson you can

    * explain why ESP and AH carry a sequence number (RFC 4303 §2.2, §3.4.3);
    * draw the receiver's replay window as packets arrive out of order;
    * tell a replay from a packet that is too old;
    * explain Extended Sequence Numbers: what happens at 2^32, and why the high bits are in
      the ICV even though they are never sent (RFC 4303 §2.2.1).
    """),
    SETUP,
    md("""
    ## Why a window?

    An attacker can record a valid ESP packet and send it again later: the ICV is still
    right. So the sender numbers packets 1, 2, 3, ... and the receiver remembers which
    numbers it has accepted. Networks reorder packets, so a receiver accepts numbers a little
    below the highest one seen: within a **window** of W numbers (RFC 4303 §3.4.3, Appendix
    A). Below the window a packet is **too old**; inside it, a number already seen is a
    **replay**.
    """),
    code("""
    from ipseclab.ipsec.replay import ReplayWindow

    W = 16
    window = ReplayWindow(W)
    arrivals = [1, 2, 4, 3, 8, 5, 5, 20, 12, 9, 3, 21, 19, 30, 14, 25]
    history = []
    for seq in arrivals:
        check = window.check(seq)
        if check.ok:
            window.update(check.seq64)  # a real receiver does this after the ICV verified
        history.append((seq, check.verdict.value, window.highest,
                        [window.seen(n) for n in range(1, 33)]))
        print(f"seq {seq:3}: {check.verdict.value:8}  highest now {window.highest}")
    """),
    md("""
    ## The window as a picture

    One row per arriving packet (top to bottom), one column per sequence number. Dark:
    accepted and remembered. The frame on each row is the window: `W` numbers ending at the
    highest one seen. Red crosses mark the packet that just arrived and was dropped.
    """),
    code("""
    import numpy as np
    from matplotlib.patches import Rectangle

    grid = np.array([row for *_, row in history], dtype=float)
    fig, ax = plt.subplots(figsize=(11, 6))
    ax.imshow(grid, cmap="Blues", vmin=0, vmax=1.4, aspect="auto",
              extent=(0.5, 32.5, len(history) - 0.5, -0.5))
    for i, (seq, verdict, highest, _) in enumerate(history):
        ax.add_patch(Rectangle((highest - W + 0.5, i - 0.5), W, 1, fill=False,
                               edgecolor="black", linewidth=1))
        mark = "o" if verdict == "ok" else "x"
        ax.plot(seq, i, mark, color="green" if verdict == "ok" else "red", markersize=8)
    ax.set_yticks(range(len(history)), [f"{s} ({v})" for s, v, *_ in history], fontsize=8)
    ax.set_xlim(0.5, 32.5)
    ax.set_xlabel("sequence number")
    ax.set_ylabel("packet arriving (verdict)")
    ax.set_title(f"Replay window, W = {W}")
    plt.show()
    """),
    md("""
    ## With real packets

    The window above is the one inside every SA. Here a sender SA protects 40 packets; we
    deliver some out of order, one twice, and one very late, to a receiver with a 32-number
    window.
    """),
    code("""
    from ipseclab.ipsec import esp
    from ipseclab.teaching.demo import demo_pair, udp_packet

    tx, rx = demo_pair("aes128gcm16", "transport", replay_window=32)
    sent = [esp.encapsulate(tx, udp_packet(16)) for _ in range(40)]
    order = [1, 3, 2, 5, 5, 4, 40, 7, 6, 9]  # 5 twice; 7 arrives after 40
    for n in order:
        r = esp.decapsulate(rx, sent[n - 1])
        print(f"packet {n:2}: {r.status}")
    print(rx.counters)
    """),
    md("""
    ## Extended Sequence Numbers (RFC 4303 §2.2.1)

    A 32-bit counter runs out after 2^32 packets: at 10 Gbit/s and small packets, in
    minutes, and the SA must then be rekeyed (§3.3.3). With **ESN** the counter has 64 bits,
    but only the low 32 travel in the packet. The receiver infers the high bits from its
    window (Appendix A2.2), and the sender puts the high bits into the ICV computation, so a
    wrong guess fails the ICV instead of going unnoticed.

    Let's start an SA just below 2^32 and cross the boundary.
    """),
    code("""
    tx, rx = demo_pair("aes128-sha256", "transport", esn=True, replay_window=64)
    tx.seq = 2**32 - 3  # pretend the sender has already sent that many packets ...
    rx.replay.update(2**32 - 3)  # ... and the receiver has accepted them
    for _ in range(5):
        wire = esp.encapsulate(tx, udp_packet(8))
        low = int.from_bytes(wire[24:28], "big")
        r = esp.decapsulate(rx, wire)
        print(f"sent seq {tx.seq:>11} = 0x{tx.seq:010x}; on the wire 0x{low:08x};"
              f" receiver: {r.status}, seq {r.seq}")
    last = wire
    """),
    md("""
    The last packet carries `0x00000002` on the wire, yet the receiver knew it was
    `2^32 + 2`. Now a receiver **without** ESN (same keys): it takes the number as 2 and
    leaves the high bits out of the ICV. The ICV, computed by the sender over the high bits
    `00000001`, does not match:
    """),
    code("""
    no_esn = demo_pair("aes128-sha256", "transport", esn=False)[1]
    r = esp.decapsulate(no_esn, last)
    print(r.status, "-", r.detail)
    """),
    md("""
    ## Your turn

    A receiver with a window of 32 has accepted packets up to number 100 (and nothing else
    is missing). Predict the verdict for arrivals 100, 69, 68 and 101, in that order. Use
    `"ok"`, `"replay"` or `"too old"`.
    """),
    code("""
    my_verdicts = ["replay", "replay", "too old", "ok"]  # your answer here
    """),
    code("""
    w = ReplayWindow(32)
    for n in range(1, 101):
        w.update(n)
    actual = []
    for n in (100, 69, 68, 101):
        check = w.check(n)
        actual.append(check.verdict.value)
        if check.ok:
            w.update(check.seq64)
    assert my_verdicts == actual, f"the window said {actual}"
    print("correct:", actual)
    """),
    md("""
    ## Summary

    * The sequence number lets the receiver drop replays; the window of W numbers tolerates
      reordering (RFC 4303 §3.4.3).
    * Numbers below the window are too old, numbers seen inside it are replays; the window
      moves only after the ICV verified, so a forgery cannot move it.
    * ESN extends the counter to 64 bits; the high half is never sent but is covered by the
      ICV, so sender and receiver must agree on it (RFC 4303 §2.2.1).
    """),
]

NOTEBOOKS = {
    "01-esp-by-hand.ipynb": NB01,
    "02-transport-vs-tunnel.ipynb": NB02,
    "03-ah-vs-esp.ipynb": NB03,
    "04-anti-replay.ipynb": NB04,
}


def build(directory: Path = HERE) -> list[Path]:
    written = []
    for name, cells in NOTEBOOKS.items():
        nb = new_notebook(cells=cells, metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"}})
        for i, cell in enumerate(nb.cells):
            cell["id"] = f"cell-{i:02d}"  # stable ids keep rebuilt notebooks diff-free
        path = directory / name
        nbformat.write(nb, path)
        written.append(path)
    return written


if __name__ == "__main__":
    for p in build(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(p)
