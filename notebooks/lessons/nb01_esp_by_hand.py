"""Lesson 01, ESP by hand: an ESP packet (RFC 4303) built field by field, its AEAD call
and byte map, checked against the library, Scapy and ``ipseclab decode``.
"""

from __future__ import annotations

from .cells import SETUP, cleanup, code, md

CELLS = [
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

    An ESP packet is protected by a **Security Association** (SA, RFC 4301 §4.1): one
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

    AES-GCM is an **AEAD** (authenticated encryption with associated data): it encrypts
    and authenticates in one call. Its inputs:

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

    Reading `ipseclab/ipsec/esp.py` alongside? Each function opens with a shortcut for the
    common case: the same steps in C (`ipseclab/ipsec/_espfast.c`, for speed) or fused in
    Python, then the general path, which is the one written to be read. `fastpath.status()`
    says whether the C code is in use; SAs built inside `with fastpath.pure_python():` never
    use it, so a debugger steps through the Python. Both give the same bytes.
    """),
    code("""
    from ipseclab.ipsec import esp, fastpath

    sender = xfrm.parse(XFRM).states[0]
    wire = esp.encapsulate(sender, inner)
    print("identical:", wire == by_hand)
    assert wire == by_hand
    print("ESP path:", fastpath.status())
    with fastpath.pure_python():
        python_only = xfrm.parse(XFRM).states[0]
    assert esp.encapsulate(python_only, inner) == by_hand
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
    cleanup("work"),
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
