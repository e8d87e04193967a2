"""Build the lesson notebooks from the Python source below: ``python notebooks/build.py``.

The notebooks are generated so that a change is reviewed as a diff of this file, not of
JSON. Every code cell runs without root and without a network; ``tests/test_notebooks.py``
executes them all. Each lesson: learning goals, explanations citing the RFC, exercises
("Your turn") followed by a check cell, and a summary.
"""

from __future__ import annotations

import sys
from collections.abc import Collection
from pathlib import Path
from textwrap import dedent

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent


def md(text: str):
    return new_markdown_cell(dedent(text).strip())


def code(text: str):
    return new_code_cell(dedent(text).strip())


def root_code(text: str):
    """A code cell that needs root (a lab in network namespaces); tagged so that tests
    without root can leave it out."""
    cell = code(text)
    cell.metadata["tags"] = ["needs-root"]
    return cell


ROOT_CHECK = root_code("""
    import os


    class NeedsRoot(Exception):
        def _render_traceback_(self):  # IPython shows this line instead of a traceback
            return [str(self)]


    if os.geteuid() != 0:
        raise NeedsRoot("This part builds networks in Linux namespaces and needs root: start"
                        " JupyterLab as root ('sudo ipseclab lab'). Nothing was started.")
    print("running as root: the lab can start")
    """)


def cleanup(directory: str, root: bool = False):
    """The lesson's last code cell: its temporary directory (``tempfile.mkdtemp``) goes, once
    everything shown above has been read from it."""
    return (root_code if root else code)(f"""
    import shutil

    # Everything above has been read from {directory}: remove the lesson's temporary files
    # (captures, key logs, configs). To run cells again, run the notebook from the top.
    shutil.rmtree({directory}, ignore_errors=True)
    assert not {directory}.exists()
    print("removed", {directory})
    """)


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
    ## Second half (needs root): the same ping through two real networks

    Now the packets come from gateways running ipseclab's own stack in Mininet network
    namespaces, and we look at them the way an on-path observer does: from a capture of
    the wire. Two small networks, one after the other, each with manual SAs (AES-GCM, the
    same keys, so only the mode differs):

    * **host-to-host**: `h1 (192.0.2.10) -- h2 (192.0.2.20)`, the hosts protect their own
      traffic, **transport mode** (RFC 4301 §4.1);
    * **site-to-site**: `h1 (10.1.0.10) -- gw1 == gw2 -- h2 (10.2.0.10)`, the gateways
      protect what passes between the LANs, **tunnel mode**.

    Building namespaces needs root; the next cell stops here, with a message, if you are
    not root. Start JupyterLab as root (`sudo ipseclab lab`) to go on.
    """),
    ROOT_CHECK,
    md("""
    The manual SAs are written as `ip xfrm` lines (the format `ip xfrm state` prints), one
    file per endpoint: the SA we send on and the SA we receive on, and a policy (SPD entry,
    RFC 4301 §4.4.1) that says which traffic to protect. The transport-mode policy names the
    two hosts; the tunnel-mode files of `topologies/configs/site-to-site/` name the LANs.
    """),
    root_code("""
    import tempfile
    from pathlib import Path

    from ipseclab.lab.api import Lab
    from ipseclab.lab.topology import TOPOLOGY_DIR, GatewaySpec

    lab_dir = Path(tempfile.mkdtemp(prefix="nb02-lab-"))
    KEY_A, KEY_B = ("0102030405060708090a0b0c0d0e0f10a1a2a3a4",
                    "1112131415161718191a1b1c1d1e1f20b1b2b3b4")


    def transport_sas(me, peer, spi_out, spi_in, key_out, key_in):
        sa = ("ip xfrm state add src {} dst {} proto esp spi {:#010x} reqid 1 mode transport"
              " replay-window 64 aead 'rfc4106(gcm(aes))' 0x{} 128\\n")
        pol = ("ip xfrm policy add src {0}/32 dst {1}/32 dir {2}"
               " tmpl src {0} dst {1} proto esp reqid 1 mode transport\\n")
        return (sa.format(me, peer, spi_out, key_out) + sa.format(peer, me, spi_in, key_in)
                + pol.format(me, peer, "out") + pol.format(peer, me, "in"))


    (lab_dir / "h1.xfrm").write_text(
        transport_sas("192.0.2.10", "192.0.2.20", 0x3001, 0x4001, KEY_A, KEY_B))
    (lab_dir / "h2.xfrm").write_text(
        transport_sas("192.0.2.20", "192.0.2.10", 0x4001, 0x3001, KEY_B, KEY_A))
    print((lab_dir / "h1.xfrm").read_text())
    """),
    md("""
    Each lab lives only inside its `with` block: leaving the block, normally or with an
    error, removes every namespace, link and process it made. The capture file and the key
    log (Wireshark's `esp_sa` table, written by the gateways for every SA) stay behind.
    """),
    root_code("""
    S2S = TOPOLOGY_DIR / "configs" / "site-to-site"
    runs = {
        "transport": ("host-to-host", {"h1": GatewaySpec("ipseclab", (lab_dir / "h1.xfrm",)),
                                       "h2": GatewaySpec("ipseclab", (lab_dir / "h2.xfrm",))}),
        "tunnel": ("site-to-site", {"gw1": GatewaySpec("ipseclab", (S2S / "gw1.xfrm",)),
                                    "gw2": GatewaySpec("ipseclab", (S2S / "gw2.xfrm",))}),
    }
    captured = {}
    for mode, (topology, gateways) in runs.items():
        with Lab(topology, lab_dir / mode, gateways) as lab:
            with lab.capture("wan") as pcap:
                result = lab.ping("h1", "h2", count=3, pattern="ipseclab-secret")
            captured[mode] = (pcap, lab.workdir)
        print(f"{mode:9} ({topology}): ping h1 -> h2 {result}")
    """),
    md("""
    ## What an on-path observer sees

    We decode both captures twice: once without keys, as an eavesdropper on the WAN would,
    and once with the key log, as the endpoints can. Without keys the observer still reads
    the outer IP header (addresses, protocol 50 = ESP, lengths) and the ESP header (SPI,
    sequence number, RFC 4303 §2.1, §2.2), in both modes.
    """),
    root_code("""
    from ipseclab.capture.decode import KeyRing, decode_capture
    from ipseclab.capture.pcap import ip_payload, read_capture
    from ipseclab.keylog import keylog_dir_layout, read_esp_sa

    wire, opened = {}, {}
    for mode, (pcap, workdir) in captured.items():
        raw = {f.number: ip_payload(f.linktype, f.data) for f in read_capture(pcap)}
        ring = KeyRing(read_esp_sa(keylog_dir_layout(workdir)[0]))
        frames = [f for f in decode_capture(pcap, ring) if f.proto == "esp"]
        wire[mode] = [raw[f.frame] for f in frames]
        opened[mode] = frames
        print(f"--- {mode} mode: what the WAN carries (no keys) ---")
        for f, packet in zip(frames, wire[mode], strict=True):
            print(f"  {f.src:>10} -> {f.dst:<10} proto {packet[9]} (ESP)  {len(packet)} bytes"
                  f"  SPI {f.spi:#010x} seq {f.seq}")
        first = frames[0]
        print(f"  with the key log: inside is {first.inner.summary()}"
              f" ({len(first.inner_bytes)} bytes)")
        print("  'ipseclab-secret' readable on the wire:",
              any(b"ipseclab-secret" in p for p in wire[mode]))
    """),
    md("""
    In transport mode the observer learns **which two hosts** talk (`192.0.2.10` and
    `192.0.2.20`): the packet's own header stays in front (RFC 4303 §3.1.1). In tunnel mode
    it sees only the two **gateways**; the LAN addresses `10.1.0.10 -> 10.2.0.10` are
    inside the ciphertext (§3.1.2). In neither mode is the ping's payload readable.

    ## Byte maps of captured packets

    The same drawing as in the first half, now of the first echo request each capture
    holds. The key ring decrypts it, so the map can label padding and next header too.
    """),
    root_code("""
    captured_maps = {}
    for mode in ("transport", "tunnel"):
        pcap, workdir = captured[mode]
        ring = KeyRing(read_esp_sa(keylog_dir_layout(workdir)[0]))
        captured_maps[mode] = byte_map(wire[mode][0], ring)

    fig, axes = plt.subplots(1, 2, figsize=(15, 7))
    for ax, (mode, m) in zip(axes, captured_maps.items(), strict=True):
        plot_byte_map(m, ax=ax, title=f"captured, {mode} mode: {len(m.packet)} bytes")
    plt.tight_layout()
    plt.show()
    for mode, m in captured_maps.items():
        print(f"{mode:9}: {m.encrypted_length} bytes encrypted, next header {m.next_header}")
    """),
    md("""
    The next header inside says what was encrypted (RFC 4303 §2.6): 1 (ICMP) in transport
    mode, only the ping itself; 4 (IPv4) in tunnel mode, the whole inner packet with its
    header.

    ## Overhead, measured on the wire

    The decoder recovered each inner packet, so the capture itself tells us what each mode
    costs: the length on the wire minus the length of what went in.
    """),
    root_code("""
    measured = {}
    for mode in ("transport", "tunnel"):
        f, packet = opened[mode][0], wire[mode][0]
        measured[mode] = len(packet) - len(f.inner_bytes)
        print(f"{mode:9}: {len(f.inner_bytes)} bytes in, {len(packet)} on the wire,"
              f" {measured[mode]} added")

    fig, ax = plt.subplots(figsize=(7, 2.5))
    for row, mode in enumerate(("transport", "tunnel")):
        inner_len = len(opened[mode][0].inner_bytes)
        ax.barh(row, inner_len, color="#8fbf8f", label="the ping (84 bytes)" if row == 0 else None)
        ax.barh(row, measured[mode], left=inner_len, color="#d98c8c",
                label="added by IPsec" if row == 0 else None)
        ax.text(inner_len + measured[mode] + 2, row, f"+{measured[mode]}", va="center")
    ax.set_yticks([0, 1], ["transport", "tunnel"])
    ax.set_xlabel("bytes on the wire (captured)")
    ax.set_xlim(0, 230)
    ax.legend(loc="center right")
    plt.tight_layout()
    plt.show()
    """),
    md("""
    ## Your turn: the 20 bytes

    The captured tunnel-mode packet is longer than the transport-mode one. By how many
    bytes, and why (RFC 4303 §3.1.2)? Hint: the inner packet is the same 84-byte ping, both
    use AES-GCM, and the padding happens to be the same.
    """),
    root_code("""
    my_difference = 20  # your answer: bytes more in tunnel mode than in transport mode
    """),
    root_code("""
    real_difference = len(wire["tunnel"][0]) - len(wire["transport"][0])
    assert my_difference == real_difference, f"the capture says {real_difference} bytes"
    assert measured["tunnel"] - measured["transport"] == 20  # one IPv4 header, nothing else
    print("correct: tunnel mode adds one outer IPv4 header, 20 bytes")
    """),
    cleanup("lab_dir", root=True),
    md("""
    ## Summary

    * Transport mode protects the payload of a packet; its own IP header stays in front
      (RFC 4303 §3.1.1). Tunnel mode protects the whole packet and adds an outer header
      (§3.1.2); observers see only the gateways.
    * On a real WAN an observer without keys still reads addresses, protocol 50, SPIs,
      sequence numbers and lengths; with the key log the endpoints' view comes back.
    * The overhead depends on the algorithm (IV, ICV, block size) and the mode (20 or 40
      bytes more for tunnel mode), plus 8 bytes for UDP encapsulation; the capture confirms
      what `overhead.measure` computed.
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

# --------------------------------------------------------------------------------------------
NB05 = [
    md("""
    # 05: The IKEv2 handshake decoded

    **Learning goals.** After this lesson you can

    * name the four messages of IKE_SA_INIT and IKE_AUTH and the payloads each one carries
      (RFC 7296 §1.2), and say which of them an eavesdropper can read;
    * decrypt the IKE_AUTH messages of a capture with a Wireshark key log and draw the
      handshake as a ladder diagram;
    * recompute every key of the IKE SA from the capture, step by step: SKEYSEED and prf+
      (§2.14), the PSK's AUTH value (§2.15), and the child SA's KEYMAT (§2.17);
    * follow a packet from the handshake to the ESP SA it created.

    Two IKE engines talk to each other in memory: no root, no network, no daemons.
    """),
    SETUP,
    md("""
    ## Two peers in memory

    ipseclab's IKE engine is *sans-IO* (like aioquic): it takes datagrams and the time, and
    hands back datagrams to send and events. So two engines can negotiate by passing bytes
    to each other. `moon` (192.0.2.1) initiates, `sun` (192.0.2.2) responds. They share a
    pre-shared key (PSK) and one proposal: AES-GCM with a 128-bit key and 16-byte ICV for
    the IKE SA's own messages (RFC 5282), HMAC-SHA-256 as PRF, and Curve25519 for
    Diffie-Hellman (RFC 8031). The configuration is swanctl.conf's, written as Python.
    """),
    code("""
    import random

    from ipseclab.ike.config import ChildConfig, IkeConfig
    from ipseclab.ike.engine import IkeEngine

    MOON, SUN = "192.0.2.1", "192.0.2.2"
    PSK = b"correct horse battery staple"
    PROPOSAL = "aes128gcm16-prfsha256-x25519"

    moon_config = IkeConfig(
        "site", local_addrs=[MOON], remote_addrs=[SUN], proposals=PROPOSAL,
        local_id="@moon.example", remote_id="@sun.example", psk=PSK,
        children=[ChildConfig("net", local_ts=["10.1.0.0/24"], remote_ts=["10.2.0.0/24"],
                              esp_proposals="aes128gcm16")])
    sun_config = IkeConfig(
        "site", local_addrs=[SUN], remote_addrs=["%any"], proposals=PROPOSAL,
        local_id="@sun.example", remote_id="@moon.example", psk=PSK,
        children=[ChildConfig("net", local_ts=["10.2.0.0/24"], remote_ts=["10.1.0.0/24"],
                              esp_proposals="aes128gcm16")])

    # Seeded randomness: the same SPIs, nonces and DH keys on every run.
    # A real gateway takes them from os.urandom.
    moon = IkeEngine(moon_config, rng=random.Random(7).randbytes)
    sun = IkeEngine(sun_config, rng=random.Random(8).randbytes)
    """),
    md("""
    `initiate` makes moon's first request. Then we carry every datagram across until both
    are quiet, and keep each one with its addresses, ports and the time, as a capture on the
    link between them would.
    """),
    code("""
    moon.initiate("site", now=0.0)
    wire = []  # (IKE message, (src addr, port), (dst addr, port), time)
    now = 0.0
    while True:
        moved = False
        for sender, receiver in ((moon, sun), (sun, moon)):
            for data, src, dst in sender.datagrams_to_send():
                now += 0.005  # 5 ms across the link
                wire.append((data, src, dst, now))
                receiver.receive_datagram(data, src, dst, now)
                moved = True
        if not moved:
            break

    for data, src, dst, t in wire:
        print(f"{t:.3f}s  {src[0]}:{src[1]} -> {dst[0]}:{dst[1]}  {len(data)} bytes")
    """),
    md("""
    Four messages: two exchanges of request and response. The engines also report what
    happened, as events: the IKE SA is up, and with it the first child SA (the pair of ESP
    SAs that will carry traffic).
    """),
    code("""
    from ipseclab.ike import events


    def drain(engine):
        out = []
        while (event := engine.next_event()) is not None:
            out.append(event)
        return out


    moon_events = drain(moon)
    for event in moon_events:
        print(type(event).__name__, "on IKE SA", event.ike_sa)
    ike_up = next(e for e in moon_events if isinstance(e, events.IkeSaEstablished))
    child_up = next(e for e in moon_events if isinstance(e, events.ChildSaEstablished))
    print("NAT detected:", ike_up.nat_detected)
    """),
    md("""
    ## A capture and a key log

    On the wire, each IKE message travels in a UDP datagram, port 500 (RFC 7296 §2). If the
    NAT_DETECTION notifies of IKE_SA_INIT had revealed a NAT, both peers would have moved to
    port 4500 for everything after it, with four zero bytes (the *non-ESP marker*) in front
    of each IKE message so that the receiver can tell IKE from UDP-encapsulated ESP
    (RFC 7296 §2.23, RFC 3948 §2.2). `ike_packet` builds the IP and UDP headers and adds the
    marker when the ports say so. Here there is no NAT, so everything stays on port 500.

    Next to the capture we write the keys, in the files Wireshark reads: the IKE SA's keys
    into `ikev2_decryption_table`, the child SA's into `esp_sa`. The gateways of the lab do
    the same for every SA they make.
    """),
    code("""
    import tempfile
    from pathlib import Path

    from ipseclab.capture.ike_decode import ike_packet
    from ipseclab.capture.keys import esp_sa_entry
    from ipseclab.capture.pcap import write_pcap
    from ipseclab.keylog import EspSaFile, IkeSaFile, keylog_dir_layout

    work = Path(tempfile.mkdtemp(prefix="nb05-"))
    T0 = 1_700_000_000.0  # the capture's clock starts at a fixed date
    packets = [(ike_packet(data, src, dst, ident=n), T0 + t)
               for n, (data, src, dst, t) in enumerate(wire)]
    write_pcap(work / "ike.pcap", packets)

    esp_file, ike_file = keylog_dir_layout(work / "keys")
    IkeSaFile(ike_file).add(ike_up.keylog_entry())
    for sa in (child_up.outbound, child_up.inbound):
        EspSaFile(esp_file).add(esp_sa_entry(sa))
    print(ike_file.read_text())

    first = packets[0][0]
    print("IP header ", first[:20].hex(" "))
    print("UDP header", first[20:28].hex(" "))
    print("IKE header", first[28:56].hex(" "))
    """),
    md("""
    The IKE header (RFC 7296 §3.1) starts with the initiator's SPI (8 bytes) and a
    responder's SPI of zeros: the responder has not chosen one yet. Then Next Payload,
    version `0x20` (2.0), the exchange type (34 = IKE_SA_INIT), flags (`0x08`: I, sent by
    the original initiator), the Message ID (0) and the length.

    ## Decoding: first without keys

    `decode_capture` is what `ipseclab decode` runs. Without keys, IKE_SA_INIT is fully
    readable: proposals, public DH values, nonces. IKE_AUTH shows only an `SK` payload,
    the Encrypted payload (§3.14), and says `no_sa`: no keys for it.
    """),
    code("""
    from ipseclab.capture.decode import KeyRing, decode_capture
    from ipseclab.capture.summary import frame_line
    from ipseclab.keylog import read_esp_sa, read_ikev2

    for frame in decode_capture(work / "ike.pcap"):
        print(frame_line(frame))
    """),
    md("""
    ## With the key log

    The key log gives SK_ei and SK_er (the encryption keys of each direction, §2.14; with
    AES-GCM the 4-byte salt is part of them, RFC 5282 §7.1). The decoder opens each SK
    payload and lists the payloads inside it in braces.
    """),
    code("""
    ring = KeyRing(read_esp_sa(esp_file), ike_entries=read_ikev2(ike_file))
    frames = list(decode_capture(work / "ike.pcap", ring))
    for frame in frames:
        print(frame_line(frame))
    """),
    md("""
    The same as a ladder diagram, the way RFC 7296 §1.2 draws it: initiator on the left,
    time running down, the payloads inside SK in braces. Compare with the RFC:

    ```
    HDR, SAi1, KEi, Ni  -->
                        <--  HDR, SAr1, KEr, Nr, [CERTREQ]
    HDR, SK {IDi, [CERT,] [CERTREQ,] [IDr,] AUTH, SAi2, TSi, TSr}  -->
                        <--  HDR, SK {IDr, [CERT,] AUTH, SAr2, TSi, TSr}
    ```
    """),
    code("""
    %matplotlib inline
    import matplotlib.pyplot as plt

    from ipseclab.teaching.ladder import ladder, plot_ladder

    rungs = ladder(frames)
    for r in rungs:
        print(r.label)
    plot_ladder(rungs, title="IKEv2: IKE_SA_INIT and IKE_AUTH")
    plt.show()
    """),
    md("""
    ## Recomputing the keys (RFC 7296 §2.14)

    The key log is a shortcut. Where do its keys come from? Everything needed is in the
    capture, except one secret: the Diffie-Hellman shared value g^ir. We take the public
    values and nonces from the IKE_SA_INIT messages we just decoded.
    """),
    code("""
    from ipseclab.ike.payloads import KeyExchange, Nonce

    init_request, init_response = frames[0].ike, frames[1].ike
    ni = init_request.find(Nonce).data
    nr = init_response.find(Nonce).data
    ke_i = init_request.find(KeyExchange)
    ke_r = init_response.find(KeyExchange)
    spi_i, spi_r = init_response.spi_i, init_response.spi_r
    print("SPIi", spi_i.hex(), "  SPIr", spi_r.hex())
    print("Ni  ", ni.hex())
    print("Nr  ", nr.hex())
    print(f"KEi  group {ke_i.group}:", ke_i.data.hex())
    print(f"KEr  group {ke_r.group}:", ke_r.data.hex())
    """),
    md("""
    Group 31 is Curve25519 (RFC 8031). An eavesdropper sees both public values and cannot
    compute g^ir from them: that is the point of Diffie-Hellman. We can, because we hold
    moon's private key: the engine kept it in its IKE SA object. moon's private key and
    sun's public value *from the capture* give the shared secret (RFC 7748 §6.1).
    """),
    code("""
    moon_sa = moon.ike_sas[0]
    assert moon_sa.dh.public_bytes() == ke_i.data  # this private key is the one behind KEi
    g_ir = moon_sa.dh.exchange(ke_r.data)
    print("g^ir:", g_ir.hex())
    """),
    md("""
    **SKEYSEED = prf(Ni | Nr, g^ir)** (§2.14). The nonces are the key, the DH secret the
    data: the nonces make every IKE SA's keys fresh even if a DH value were reused.
    """),
    code("""
    from ipseclab.crypto.prf import prf

    prf_sha256 = prf("prfsha256")
    SKEYSEED = prf_sha256.prf(ni + nr, g_ir)
    print("SKEYSEED:", SKEYSEED.hex())
    """),
    md("""
    **prf+** (§2.13) stretches a PRF into as many bytes as needed:
    `T1 = prf(K, S | 0x01)`, `T2 = prf(K, T1 | S | 0x02)`, ... Then the seven keys are cut
    from **prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)** in a fixed order (§2.14):

    `{SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}`

    The sizes come from the algorithms: SK_d, SK_pi and SK_pr take the PRF's preferred key
    size (32 bytes for HMAC-SHA-256, §2.13); SK_a* are empty because AES-GCM authenticates
    by itself; SK_e* are the 16-byte AES key plus the 4-byte salt (RFC 5282 §7.1).
    """),
    code("""
    def prf_plus(key, seed, length):
        out, block, n = b"", b"", 1
        while len(out) < length:
            block = prf_sha256.prf(key, block + seed + bytes([n]))
            out += block
            n += 1
        return out[:length]


    sizes = {"SK_d": 32, "SK_ai": 0, "SK_ar": 0, "SK_ei": 16 + 4, "SK_er": 16 + 4,
             "SK_pi": 32, "SK_pr": 32}
    stream = prf_plus(SKEYSEED, ni + nr + spi_i + spi_r, sum(sizes.values()))
    keys, pos = {}, 0
    for name, size in sizes.items():
        keys[name] = stream[pos:pos + size]
        pos += size
        print(f"{name:6} {size:3} bytes  {keys[name].hex()}")
    """),
    md("""
    The key log holds four of the seven keys (those that protect SK payloads). Ours match,
    byte for byte. The library's own `kdf` module gives the other three, and agrees too.
    """),
    code("""
    from ipseclab.crypto import kdf
    from ipseclab.crypto.transforms import encryption

    [logged] = read_ikev2(ike_file)
    for name in ("sk_ei", "sk_er", "sk_ai", "sk_ar"):
        assert keys[name.replace("sk", "SK")] == getattr(logged, name), name
    print("SK_ei, SK_er, SK_ai, SK_ar equal the key log's; algorithm:", logged.encryption)

    library = kdf.ike_keys(prf_sha256, kdf.skeyseed(prf_sha256, ni, nr, g_ir), ni, nr,
                           spi_i, spi_r,
                           kdf.IkeKeySizes.for_algorithms(prf_sha256, encryption("aes128gcm16")))
    assert (library.SK_d, library.SK_pi, library.SK_pr) == (keys["SK_d"], keys["SK_pi"],
                                                             keys["SK_pr"])
    """),
    md("""
    ## AUTH with a pre-shared key (RFC 7296 §2.15)

    Diffie-Hellman alone does not say *who* is on the other side. IKE_AUTH proves it: each
    peer MACs the conversation so far, with a key derived from the PSK:

    ```
    AUTH = prf( prf(Shared Secret, "Key Pad for IKEv2"), <InitiatorSignedOctets>)
    InitiatorSignedOctets = RealMessage1 | NonceRData | prf(SK_pi, RestOfInitIDPayload)
    ```

    RealMessage1 is moon's whole IKE_SA_INIT request as sent, NonceRData sun's nonce, and
    RestOfInitIDPayload the IDi payload without its 4-byte generic header. Signing its own
    first message binds the AUTH to the proposals and DH values, so an attacker in the
    middle who changed them is caught here. IDi and AUTH are inside SK: the key log lets us
    read them.
    """),
    code("""
    from ipseclab.ike.payloads import Authentication, Identification

    auth_request = frames[2].ike
    print(auth_request.describe())
    idi = auth_request.find(Identification)
    auth_i = auth_request.find(Authentication)
    print("IDi:", idi.describe(), "  AUTH method:", auth_i.method.name)
    """),
    code("""
    real_message_1 = init_request.data
    maced_id = prf_sha256.prf(keys["SK_pi"], idi.to_bytes())
    signed_octets = real_message_1 + nr + maced_id
    pad_key = prf_sha256.prf(PSK, b"Key Pad for IKEv2")
    my_auth = prf_sha256.prf(pad_key, signed_octets)
    print("InitiatorSignedOctets:", len(signed_octets), "bytes")
    print("AUTH computed:  ", my_auth.hex())
    print("AUTH in capture:", auth_i.data.hex())
    assert my_auth == auth_i.data
    """),
    md("""
    sun proves itself the same way, with *its* first message, moon's nonce and SK_pr
    (ResponderSignedOctets, §2.15):
    """),
    code("""
    auth_response = frames[3].ike
    idr = auth_response.find(Identification)
    auth_r = auth_response.find(Authentication)
    their_auth = prf_sha256.prf(pad_key, init_response.data + ni
                                + prf_sha256.prf(keys["SK_pr"], idr.to_bytes()))
    assert their_auth == auth_r.data
    print("sun's AUTH checks too; IDr =", idr.describe())
    """),
    md("""
    ## The child SA's keys: KEYMAT (RFC 7296 §2.17)

    IKE_AUTH also created the first child SA: the SA payloads inside SK carry each side's
    ESP SPI (the SPI on which that side *receives*). Its keys come from SK_d:

    **KEYMAT = prf+(SK_d, Ni | Nr)**

    taken in order: first the keys for traffic from initiator to responder (encryption,
    then integrity), then the other direction (§2.17). With AES-GCM for ESP each direction
    needs 16 bytes of key and 4 of salt (RFC 4106 §8.1), and no integrity key.
    """),
    code("""
    from ipseclab.ike.sa_payload import SecurityAssociation as SaPayload

    spi_moon_in = int.from_bytes(auth_request.find(SaPayload).proposals[0].spi, "big")
    spi_sun_in = int.from_bytes(auth_response.find(SaPayload).proposals[0].spi, "big")
    print(f"moon receives on SPI 0x{spi_moon_in:08x}, sun on SPI 0x{spi_sun_in:08x}")

    KEYMAT = prf_plus(keys["SK_d"], ni + nr, 2 * (16 + 4))
    moon_to_sun, sun_to_moon = KEYMAT[:20], KEYMAT[20:]
    print("initiator -> responder:", moon_to_sun.hex())
    print("responder -> initiator:", sun_to_moon.hex())

    esp_keys = {e.spi: e.encryption_key for e in read_esp_sa(esp_file)}
    assert esp_keys[spi_sun_in] == moon_to_sun  # moon sends to sun's SPI
    assert esp_keys[spi_moon_in] == sun_to_moon
    print("both equal the esp_sa key log")
    """),
    md("""
    ## A ping through the new SA

    moon protects a ping from its LAN with the child SA's outbound SA (tunnel mode,
    RFC 4303 §3.1.2). We add it to the capture: the decoder opens it with the `esp_sa` key,
    and the ladder shows it as a thin arrow after the handshake.
    """),
    code("""
    from scapy.layers.inet import ICMP, IP

    from ipseclab.ipsec import esp

    ping = bytes(IP(src="10.1.0.5", dst="10.2.0.7", id=1) / ICMP(id=1, seq=1) / b"hello via IKE")
    protected = esp.encapsulate(child_up.outbound, ping)
    packets.append((protected, T0 + now + 0.5))
    write_pcap(work / "ike.pcap", packets)

    frames = list(decode_capture(work / "ike.pcap", ring))
    print(frame_line(frames[-1]))
    assert frames[-1].status == "ok" and frames[-1].inner_bytes == ping
    plot_ladder(ladder(frames), title="Handshake, then ESP")
    plt.show()
    """),
    md("""
    ## Your turn 1: what does an eavesdropper see?

    Without the key log, which payloads of moon's IKE_AUTH request stay hidden? List their
    names as the decoder writes them (`"IDi"`, `"AUTH"`, `"N(INITIAL_CONTACT)"`, ...) in
    the set `my_encrypted`. Hint: RFC 7296 §1.2 and the ladder above.
    """),
    code("""
    my_encrypted = {"IDi", "N(INITIAL_CONTACT)", "IDr", "AUTH", "SA", "TSi", "TSr"}  # your answer
    """),
    code("""
    hidden = set(frames[2].inner_payloads)
    assert my_encrypted == hidden, f"not quite: the SK payload holds {sorted(hidden)}"
    print("correct: an eavesdropper sees only the header and the SK payload;",
          "even the identities are encrypted")
    """),
    md("""
    ## Your turn 2: key sizes for another proposal

    A gateway negotiates `aes256gcm16-prfsha384-ecp384` instead. How long is **SK_pi**, in
    bytes? And how many bytes must prf+ produce for all seven SK_* keys together? (§2.13,
    §2.14, RFC 5282 §7.1: AES-256 has a 32-byte key; HMAC-SHA-384's output and preferred key
    size is 48 bytes.)
    """),
    code("""
    my_sk_pi = 48  # your answer
    my_total = 48 + 2 * 0 + 2 * (32 + 4) + 2 * 48  # your answer: SK_d, SK_a*, SK_e*, SK_p*
    """),
    code("""
    sizes_384 = kdf.IkeKeySizes.for_algorithms(prf("prfsha384"), encryption("aes256gcm16"))
    assert my_sk_pi == sizes_384.sk_p, f"SK_pi has {sizes_384.sk_p} bytes"
    assert my_total == sizes_384.total, f"prf+ must make {sizes_384.total} bytes"
    print("correct:", sizes_384)
    """),
    md("""
    ## Your turn 3: a wrong key

    Someone's key log has a typo in SK_ei (one bit). What does the decoder report for moon's
    IKE_AUTH request: `"ok"`, `"no_sa"`, `"auth_failed"` or `"malformed"`? And for sun's
    IKE_AUTH response, which SK_er protects?
    """),
    code("""
    my_request_status = "auth_failed"  # your answer
    my_response_status = "ok"  # your answer
    """),
    code("""
    import dataclasses

    typo = dataclasses.replace(logged, sk_ei=bytes([logged.sk_ei[0] ^ 1]) + logged.sk_ei[1:])
    checked = list(decode_capture(work / "ike.pcap", KeyRing(ike_entries=[typo])))
    assert my_request_status == checked[2].status, f"the decoder said {checked[2].status}"
    assert my_response_status == checked[3].status, f"the decoder said {checked[3].status}"
    print("correct: AES-GCM's tag fails under the wrong key; the other direction has its own")
    """),
    cleanup("work"),
    md("""
    ## Summary

    * IKEv2 sets up an IKE SA and the first child SA in two exchanges, four messages:
      IKE_SA_INIT (SA, KE, nonces, in the clear) and IKE_AUTH (everything inside SK)
      (RFC 7296 §1.2). IDs, AUTH, the child SA's proposal and its traffic selectors are
      encrypted; an eavesdropper sees who talks, not as whom.
    * SKEYSEED = prf(Ni | Nr, g^ir); prf+(SKEYSEED, Ni | Nr | SPIi | SPIr) gives SK_d,
      SK_ai, SK_ar, SK_ei, SK_er, SK_pi, SK_pr in that order (§2.14). Only g^ir is secret;
      everything else is in the capture.
    * With a PSK, AUTH = prf(prf(PSK, "Key Pad for IKEv2"), own first message | peer's nonce
      | prf(SK_p, ID)) (§2.15): it binds the identity to the whole IKE_SA_INIT exchange.
    * The child SA's keys are KEYMAT = prf+(SK_d, Ni | Nr), initiator-to-responder first
      (§2.17).
    * Wireshark's `ikev2_decryption_table` and `esp_sa` files (written by the lab for every
      SA) let `ipseclab decode`, the ladder diagram and Wireshark itself read it all.
    """),
]

# --------------------------------------------------------------------------------------------
NB06 = [
    md("""
    # 06: Rekeying, dead peer detection and NAT traversal

    **Learning goals.** After this lesson you can

    * watch a child SA being replaced by a new one while traffic flows, and read the new
      SPIs and the sequence numbers starting over in a capture (RFC 7296 §1.3.3, §2.8);
    * tell a child SA rekey from an IKE SA rekey in the capture (§1.3.2);
    * explain how dead peer detection works, and time it (§2.4);
    * show how IKE finds a NAT with the NAT_DETECTION notifies and why ESP then travels in
      UDP port 4500 (§2.23, RFC 3948).

    Everything here runs in real network namespaces with ipseclab's gateways on both
    sides, so this lesson needs root.
    """),
    SETUP,
    ROOT_CHECK,
    md("""
    ## Short lifetimes, written by us

    Keys should not be used forever: an SA is replaced after a time or an amount of data
    (RFC 7296 §2.8). Real gateways rekey every hour or so; to see it happen in seconds we
    write our own `swanctl.conf` files for the site-to-site topology:

    * gw1's child SA `net` has `rekey_time = 4s`, its IKE SA `rekey_time = 12s`;
    * gw1 checks every 2 s that gw2 is alive when it hears nothing (`dpd_delay = 2s`) and
      removes the SAs when it is not (`dpd_action = clear`);
    * gw2 never starts a rekey itself (`rekey_time = 0`): one side rekeys, so the two never
      collide (a collision is legal but harder to read, §2.8.1).
    """),
    code('''
    import tempfile
    import time
    from pathlib import Path

    IKE_CONF = """
    connections {{
      s2s {{
        local_addrs = {me}
        remote_addrs = {peer}
        proposals = aes128gcm16-prfsha256-x25519
        {ike_extra}
        local {{
          auth = psk
          id = {me_id}
        }}
        remote {{
          auth = psk
          id = {peer_id}
        }}
        children {{
          net {{
            local_ts = {my_ts}
            remote_ts = {peer_ts}
            esp_proposals = aes128gcm16
            {child_extra}
          }}
        }}
      }}
    }}
    secrets {{
      ike-lab {{
        id-a = {me_id}
        id-b = {peer_id}
        secret = "a lab secret for lesson 06"
      }}
    }}
    """

    lab_dir = Path(tempfile.mkdtemp(prefix="nb06-"))
    (lab_dir / "gw1.conf").write_text(IKE_CONF.format(
        me="192.0.2.1", peer="192.0.2.2", me_id="gw1.lab.example", peer_id="gw2.lab.example",
        my_ts="10.1.0.0/24", peer_ts="10.2.0.0/24",
        ike_extra="rekey_time = 12s\\n    dpd_delay = 2s",
        child_extra="start_action = start\\n        rekey_time = 4s\\n        dpd_action = clear"))
    (lab_dir / "gw2.conf").write_text(IKE_CONF.format(
        me="192.0.2.2", peer="192.0.2.1", me_id="gw2.lab.example", peer_id="gw1.lab.example",
        my_ts="10.2.0.0/24", peer_ts="10.1.0.0/24",
        ike_extra="rekey_time = 0", child_extra="rekey_time = 0"))
    print((lab_dir / "gw1.conf").read_text())
    '''),
    md("""
    ## The run

    One cell does the whole experiment, and the lab is gone when it ends (also on an
    error). It captures the WAN from the first packet, starts both gateways (gw1 initiates
    at once, `start_action = start`), pings from h1 to h2 for 13 seconds, five pings a
    second, waits 2.5 s in silence, then kills gw2's process without a word, as a crashed
    or unplugged peer would disappear, and times how long gw1 needs to notice. gw1
    retransmits an unanswered request after 0.5 s, then 1 s more, before it gives up
    (`--ike-retransmit-base 0.5`, `--ike-retransmit-tries 2`; by default it waits 1, 2, 4,
    8 and 16 s, RFC 7296 §2.1).
    """),
    code("""
    from ipseclab.drivers.cli_gateway import request_gateway
    from ipseclab.lab.api import Lab
    from ipseclab.lab.ipseclab_gateway import control_socket
    from ipseclab.lab.topology import GatewaySpec


    def wait_until(predicate, timeout):
        start = time.monotonic()
        while time.monotonic() - start < timeout:
            if predicate():
                return time.monotonic() - start
            time.sleep(0.1)
        return None


    fast_retransmits = {"args": ["--ike-retransmit-base", "0.5", "--ike-retransmit-tries", "2"]}
    gateways = {"gw1": GatewaySpec("ipseclab", (lab_dir / "gw1.conf",), fast_retransmits),
                "gw2": GatewaySpec("ipseclab", (lab_dir / "gw2.conf",))}
    with Lab("site-to-site", lab_dir / "lab", gateways, start_gateways=False) as lab:

        def ike_sas():
            return request_gateway(control_socket("gw1"), {"command": "list-ike-sas"})

        with lab.capture("wan", lab_dir / "rekey.pcap") as rekey_pcap:
            lab.start_gateway("gw2")
            lab.start_gateway("gw1")
            assert wait_until(lambda: any(sa["children"] for sa in ike_sas()), 10) is not None
            ping = lab.ping("h1", "h2", count=65, interval=0.2)
            time.sleep(2.5)  # quiet: one DPD check on the new IKE SA
        after_ping = ike_sas()
        with lab.capture("wan", lab_dir / "dpd.pcap") as dpd_pcap:
            lab.kill_gateway("gw2")  # SIGKILL: gw2 crashes and sends no DELETE
            dpd_seconds = wait_until(lambda: not ike_sas(), 15)
        gw1_log = (lab.workdir / "gw1" / "gateway.log").read_text()
        keylog_dir = lab.workdir

    print("ping h1 -> h2:", ping)
    print(f"DPD: gw1 removed the dead peer's SAs after {dpd_seconds:.1f} s")
    """),
    md("""
    ## What gw1's log says

    Every rekey is a line: a new child SA with new SPIs *replaces* the old one, and the old
    one is deleted just after. The IKE SA is replaced once, with a new pair of IKE SPIs.
    """),
    code("""
    for line in gw1_log.splitlines():
        if any(w in line for w in ("established", "rekeyed", "deleted", "does not answer")):
            print(line.split(" ipseclab.ike ")[-1])
    """),
    md("""
    ## The rekeys in the capture

    The gateways wrote their keys (Wireshark's `esp_sa` and `ikev2_decryption_table`) next
    to the captures, so we can open every IKE message and every ESP packet. The IKE
    messages first:

    * **CREATE_CHILD_SA with N(REKEY_SA)** rekeys a child SA (§1.3.3): the notify names the
      SPI being replaced; new nonces give new keys (KEYMAT, §2.17). Then an INFORMATIONAL
      exchange with DELETE removes the old SA (§1.4.1).
    * **CREATE_CHILD_SA with SA, Ni and KE but no traffic selectors** rekeys the IKE SA
      itself (§1.3.2): a fresh Diffie-Hellman exchange, new IKE SPIs, new SK_* keys.
    * **INFORMATIONAL with an empty SK** is a liveness check, DPD (§2.4): sent when gw1 has
      heard nothing from gw2 for `dpd_delay`.
    """),
    code("""
    from ipseclab.capture.decode import KeyRing, decode_capture
    from ipseclab.keylog import keylog_dir_layout, read_esp_sa, read_ikev2

    esp_file, ike_file = keylog_dir_layout(keylog_dir)
    ring = KeyRing(read_esp_sa(esp_file), ike_entries=read_ikev2(ike_file))
    frames = [f for f in decode_capture(rekey_pcap, ring) if f.proto in ("esp", "ike")]
    t0 = frames[0].time
    ike_frames = [f for f in frames if f.proto == "ike"]
    for f in ike_frames:
        who = "gw1" if f.src == "192.0.2.1" else "gw2"
        print(f"{f.time - t0:6.2f}s {who} {'response' if f.response else 'request ':8}"
              f" {f.exchange:16} IKE SPIi {f.ike.spi_i.hex()}  {', '.join(f.payloads)}")
    """),
    md("""
    Now the data. Each ESP packet carries an SPI and a sequence number in the clear
    (RFC 4303 §2.1, §2.2). We plot both against time for the echo requests gw1 sends:
    every colour is one SA. The vertical lines mark the CREATE_CHILD_SA requests.
    """),
    code("""
    esp_out = [f for f in frames if f.proto == "esp" and f.src == "192.0.2.1"]
    spis = list(dict.fromkeys(f.spi for f in esp_out))  # in order of first use
    rekeys = [f.time - t0 for f in ike_frames
              if f.exchange == "CREATE_CHILD_SA" and not f.response]

    fig, (ax_spi, ax_seq) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    colours = plt.cm.tab10.colors
    for i, spi in enumerate(spis):
        pts = [(f.time - t0, f.seq) for f in esp_out if f.spi == spi]
        ax_spi.scatter([t for t, _ in pts], [i] * len(pts), s=12, color=colours[i % 10])
        ax_seq.plot([t for t, _ in pts], [s for _, s in pts], ".-", color=colours[i % 10],
                    label=f"SPI {spi:#010x}")
    for ax in (ax_spi, ax_seq):
        for t in rekeys:
            ax.axvline(t, color="grey", linestyle=":", linewidth=1)
    ax_spi.set_yticks(range(len(spis)), [f"{s:#010x}" for s in spis])
    ax_spi.set_ylabel("SPI of gw1's outbound SA")
    ax_spi.set_title("gw1 -> gw2 ESP packets during a 13 s ping (dotted: CREATE_CHILD_SA)")
    ax_seq.set_ylabel("ESP sequence number")
    ax_seq.set_xlabel("seconds since the first IKE message")
    ax_seq.legend(fontsize=8, loc="upper left")
    plt.tight_layout()
    plt.show()
    print(len(spis), "outbound SAs in turn; packets not decrypted:",
          sum(f.status != "ok" for f in frames))
    """),
    md("""
    Two things to see. The SPI changes about every 4 seconds, as configured. And the
    sequence number **starts over at 1** on each new SA (RFC 4303 §2.2: the counter belongs
    to the SA); that is why rekeying also solves the problem of a counter running out. No
    ping was lost: gw1 installs the new inbound SA before it answers or deletes the old one
    and keeps the old SA until the DELETE, *make before break* (§2.8).

    The last CREATE_CHILD_SA carried KE and no TSi/TSr: that was the IKE SA's rekey. The
    child SAs move to the new IKE SA with it (§1.3.2), as the IKE SPIi in the table shows.
    """),
    code("""
    ike_spis = list(dict.fromkeys(f.ike.spi_i.hex() for f in ike_frames))
    print("IKE SAs seen (initiator SPIs):", ike_spis)
    out_sa = next(sa for sa in after_ping[0]["children"][0]["sas"] if sa["direction"] == "out")
    print("gw1 after the ping: IKE SA rekeyed", after_ping[0]["rekeys"], "time(s); sending on",
          out_sa["spi"], "with sequence number", out_sa["seq"])
    assert len(ike_spis) == 2 and after_ping[0]["rekeys"] == 1
    assert ping.received == ping.sent  # make-before-break: nothing lost across the rekeys
    """),
    md("""
    ## Dead peer detection (RFC 7296 §2.4)

    IKE has no keep-alive of its own. A peer that hears nothing protected for a while
    sends an INFORMATIONAL request with an empty SK payload; the other side must answer
    it. No answer after the retransmissions means the peer is dead: gw1 deletes the IKE SA
    and its child SAs and, with `dpd_action = clear`, leaves it at that (`trap` would wait
    for traffic, `restart` would try again at once).
    """),
    code("""
    dpd_frames = [f for f in decode_capture(dpd_pcap, ring) if f.proto == "ike"]
    for f in dpd_frames:
        print(f"{f.time - dpd_frames[0].time:5.2f}s {f.src} -> {f.dst} {f.exchange}"
              f" #{f.message_id} {', '.join(f.payloads)}")
    print(f"{len(dpd_frames)} unanswered requests: the first and {len(dpd_frames) - 1}"
          f" retransmissions; SAs removed after {dpd_seconds:.1f} s")
    """),
    md("""
    All the requests carry the same Message ID: they are retransmissions of one request,
    not new ones (§2.1). The time DPD takes is `dpd_delay` plus the retransmission
    schedule, a trade-off between noticing fast and declaring a slow peer dead.

    ## Your turn 1: the first sequence number

    What sequence number does the first packet on a freshly rekeyed SA carry? Read it off
    the plot, or think of RFC 4303 §2.2.
    """),
    code("""
    my_first_seq = 1  # your answer
    """),
    code("""
    firsts = {min(f.seq for f in esp_out if f.spi == spi) for spi in spis[1:]}
    assert firsts == {my_first_seq}, f"the capture says {sorted(firsts)}"
    print("correct: each SA counts from 1 again")
    """),
    md("""
    ## NAT traversal (RFC 7296 §2.23, RFC 3948)

    A road warrior `rw` (10.9.0.10) sits behind a NAT router that rewrites its address to
    `203.0.113.2`; the site gateway `gw` is `203.0.113.1` with LAN 10.2.0.0/24
    (`topologies/nat-road-warrior.yaml`). ESP has no ports, so a NAT cannot tell two ESP
    flows apart, and a changed outer address would not matter to ESP but does to IKE's
    checks. IKEv2 therefore *detects* the NAT and moves everything to UDP port 4500.

    The gateway accepts the road warrior from any address (`remote_addrs = %any`) and
    knows it by its identity, not by its address.
    """),
    code("""
    (lab_dir / "rw.conf").write_text(IKE_CONF.format(
        me="10.9.0.10", peer="203.0.113.1", me_id="rw.lab.example", peer_id="gw.lab.example",
        my_ts="10.9.0.10/32", peer_ts="10.2.0.0/24", ike_extra="",
        child_extra="start_action = start"))
    (lab_dir / "gw.conf").write_text(IKE_CONF.format(
        me="203.0.113.1", peer="%any", me_id="gw.lab.example", peer_id="rw.lab.example",
        my_ts="10.2.0.0/24", peer_ts="10.9.0.10/32", ike_extra="", child_extra=""))

    gateways = {"rw": GatewaySpec("ipseclab", (lab_dir / "rw.conf",)),
                "gw": GatewaySpec("ipseclab", (lab_dir / "gw.conf",))}


    def gw_sas():
        return request_gateway(control_socket("gw"), {"command": "list-ike-sas"})


    with Lab("nat-road-warrior", lab_dir / "nat", gateways, start_gateways=False) as lab:
        with lab.capture("home", lab_dir / "home.pcap") as home_pcap, \\
                lab.capture("wan", lab_dir / "nat-wan.pcap") as wan_pcap:
            lab.start_gateway("gw")
            lab.start_gateway("rw")
            assert wait_until(lambda: any(sa["children"] for sa in gw_sas()), 10) is not None
            nat_ping = lab.ping("rw", "h2", count=3)
        gw_view = gw_sas()[0]
        nat_keys = lab.workdir
    print("ping rw -> h2:", nat_ping)
    print("gw sees the road warrior at", gw_view["remote"], "NAT detected:", gw_view["nat"])
    """),
    md("""
    The same conversation, captured on both sides of the NAT. Behind it, `rw` speaks from
    10.9.0.10; in front of it the NAT has put in its own address. After IKE_SA_INIT both
    peers switch to port 4500, and ESP travels inside UDP too (ESP-in-UDP, RFC 3948 §2.1);
    on port 4500 an IKE message starts with four zero bytes, the non-ESP marker (§2.2).
    """),
    code("""
    from scapy.layers.inet import IP

    from ipseclab.capture.pcap import ip_payload, read_capture

    esp_file, ike_file = keylog_dir_layout(nat_keys)
    for name, pcap in (("home (behind the NAT)", home_pcap), ("wan (in front of it)", wan_pcap)):
        print(f"--- {name} ---")
        raw = {f.number: ip_payload(f.linktype, f.data) for f in read_capture(pcap)}
        ring = KeyRing(read_esp_sa(esp_file), ike_entries=read_ikev2(ike_file))
        for f in decode_capture(pcap, ring):
            if f.proto in ("ike", "esp"):
                p = IP(raw[f.frame])
                what = f.exchange if f.proto == "ike" else f"ESP SPI {f.spi:#010x}"
                print(f"  {p.src}:{p.sport} -> {p.dst}:{p.dport}  {what}")
    """),
    md("""
    ### How the NAT was found: the NAT_DETECTION notifies (§2.23)

    In IKE_SA_INIT each side sends two hashes, `SHA-1(SPIi | SPIr | IP address | port)`:
    NAT_DETECTION_SOURCE_IP over the address and port it sends *from*,
    NAT_DETECTION_DESTINATION_IP over those it sends *to*. The receiver computes the same
    hashes over the addresses it actually sees. A difference in the source hash means a NAT
    in front of the *sender*. (In the request SPIr is still zero.)
    """),
    code("""
    from ipseclab.ike.constants import NotifyType
    from ipseclab.ike.negotiation import natd_hash

    ring = KeyRing(ike_entries=read_ikev2(ike_file))
    wan_raw = {f.number: ip_payload(f.linktype, f.data) for f in read_capture(wan_pcap)}
    init = next(f for f in decode_capture(wan_pcap, ring) if f.exchange == "IKE_SA_INIT")
    seen = IP(wan_raw[init.frame])  # the request as gw receives it
    natd_src = init.ike.message.notifies(NotifyType.NAT_DETECTION_SOURCE_IP)[0].data
    natd_dst = init.ike.message.notifies(NotifyType.NAT_DETECTION_DESTINATION_IP)[0].data
    spi_i, spi_r = init.ike.spi_i, init.ike.spi_r

    print("rw's NAT_DETECTION_SOURCE_IP:      ", natd_src.hex())
    print(f"gw's hash of {seen.src}:{seen.sport}:      ",
          natd_hash(spi_i, spi_r, seen.src, seen.sport).hex())
    print("rw's NAT_DETECTION_DESTINATION_IP: ", natd_dst.hex())
    print(f"gw's hash of {seen.dst}:{seen.dport}:      ",
          natd_hash(spi_i, spi_r, seen.dst, seen.dport).hex())
    """),
    md("""
    ## Your turn 2: whose address did the NAT change?

    Which of the two hashes differs, `"source"` or `"destination"`? And which address and
    port did rw hash into its NAT_DETECTION_SOURCE_IP? Fill in the three values.
    """),
    code("""
    my_mismatch = "source"  # your answer: "source" or "destination"
    my_rw_address, my_rw_port = "10.9.0.10", 500  # your answer
    """),
    code("""
    mismatch = {"source": natd_hash(spi_i, spi_r, seen.src, seen.sport) != natd_src,
                "destination": natd_hash(spi_i, spi_r, seen.dst, seen.dport) != natd_dst}
    assert mismatch[my_mismatch] and not mismatch[{"source": "destination",
                                                    "destination": "source"}[my_mismatch]]
    assert natd_hash(spi_i, spi_r, my_rw_address, my_rw_port) == natd_src
    print("correct: the NAT is in front of rw; gw keeps the NAT's address and port for rw,"
          " and both sides send ESP in UDP 4500")
    """),
    cleanup("lab_dir"),
    md("""
    ## Summary

    * A child SA is rekeyed with CREATE_CHILD_SA carrying N(REKEY_SA) (RFC 7296 §1.3.3):
      new SPIs, new KEYMAT, sequence numbers from 1; the old SA is deleted after the new one
      works, so no packet is lost (§2.8).
    * An IKE SA is rekeyed with CREATE_CHILD_SA carrying SA, nonce and KE but no traffic
      selectors (§1.3.2); its children move to the new IKE SA.
    * DPD is an empty INFORMATIONAL request (§2.4); a peer that answers no retransmission
      is declared dead and its SAs are removed (`dpd_action`).
    * NAT_DETECTION_SOURCE_IP/DESTINATION_IP hash the addresses and ports each side sees
      (§2.23); a mismatch moves IKE and ESP to UDP 4500 (RFC 3948), which a NAT can
      rewrite like any UDP flow.
    """),
]

NB07 = [
    md("""
    # 07: Interop, our gateway opposite strongSwan

    **Learning goals.** After this lesson you can

    * run ipseclab's gateway against strongSwan, the reference implementation, with one
      `swanctl.conf` syntax on both sides;
    * decode the handshake between the two from a capture with the key log our gateway
      wrote, as a ladder diagram (RFC 7296 §1.2);
    * read `swanctl --list-sas` and `ipseclab ctl list-sas` side by side and match them up;
    * check that both ends derived the same keys, which is what interoperability means for
      IKE (§2.14, §2.17).

    This lesson runs strongSwan (`charon-systemd`) in a Mininet namespace: it needs root and
    the Debian packages charon-systemd, strongswan-swanctl and libcharon-extra-plugins.
    """),
    SETUP,
    ROOT_CHECK,
    code("""
    from ipseclab.lab import strongswan

    if not strongswan.available():
        raise NeedsRoot("strongSwan is not installed: apt-get install charon-systemd"
                        " strongswan-swanctl libcharon-extra-plugins")
    print("strongSwan found:", strongswan.CHARON)
    """),
    md("""
    ## The scenario: site-to-site-mixed

    The site-to-site topology (`h1 -- gw1 == gw2 -- h2`) with ipseclab on gw1 and strongSwan
    on gw2, both reading the config files in `topologies/configs/site-to-site/`: the same
    file format, a PSK, `aes128gcm16-prfsha256-x25519` for IKE and `aes128gcm16` for ESP.
    strongSwan initiates as soon as it starts; gw1 answers.

    One detail of this strongSwan: it has no kernel ESP here and carries ESP in user space
    (`kernel-libipsec`), which always encapsulates ESP in UDP (RFC 3948), as if there were a
    NAT. Our gateway follows its lead: IKE moves to port 4500 after IKE_SA_INIT (RFC 7296
    §2.23) and ESP travels in UDP 4500 too.
    """),
    code("""
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    from ipseclab.lab.api import Lab
    from ipseclab.lab.ipseclab_gateway import control_socket
    from ipseclab.lab.topology import TOPOLOGY_DIR, GatewaySpec

    CONFIGS = TOPOLOGY_DIR / "configs" / "site-to-site"
    gateways = {
        "gw1": GatewaySpec("ipseclab", (CONFIGS / "gw1.swanctl.conf",)),
        "gw2": GatewaySpec("strongswan", (CONFIGS / "gw2.swanctl.conf",), {"initiate": ["net"]}),
    }
    lab_dir = Path(tempfile.mkdtemp(prefix="nb07-"))
    with Lab("site-to-site", lab_dir, gateways, start_gateways=False) as lab:
        with lab.capture("wan") as pcap:
            lab.start_gateway("gw1")
            lab.start_gateway("gw2")  # returns once strongSwan's child SA 'net' is up
            ping = lab.ping("h1", "h2", count=3, pattern="ipseclab-secret")
        strongswan_view = lab.node("gw2").launcher.charon.swanctl("--list-sas")
        ipseclab_view = subprocess.run(
            [sys.executable, "-m", "ipseclab", "ctl", "--socket", str(control_socket("gw1")),
             "list-sas"], capture_output=True, text=True, check=True).stdout
        strongswan_keys = lab.node("gw2").launcher.keys()  # from charon's log, level 4
    print("ping h1 -> h2:", ping)
    """),
    md("""
    ## The handshake, decoded with our key log

    gw1 wrote the IKE SA's keys into Wireshark's `ikev2_decryption_table` and the child
    SA's into `esp_sa` (in `wireshark/` of the lab directory). With them the decoder opens
    every SK payload (§3.14) and every ESP packet. strongSwan sends more notifies than we
    do (MOBIKE, redirect, fragmentation support...); a peer ignores status notifies it does
    not know (§3.10.1), which is one of the rules that make interop work.
    """),
    code("""
    from ipseclab.capture.decode import KeyRing, decode_capture
    from ipseclab.keylog import keylog_dir_layout, read_esp_sa, read_ikev2
    from ipseclab.teaching.ladder import ladder, plot_ladder

    esp_file, ike_file = keylog_dir_layout(lab_dir)
    our_ike_keys, our_esp_keys = read_ikev2(ike_file), read_esp_sa(esp_file)
    ring = KeyRing(our_esp_keys, ike_entries=our_ike_keys)
    frames = [f for f in decode_capture(pcap, ring) if f.proto in ("ike", "esp")]
    for f in frames:
        if f.proto == "ike":
            print(f"{f.src:>9} -> {f.dst:<9} {f.exchange:12} {', '.join(f.payloads)}")
    print(len([f for f in frames if f.proto == "esp" and f.status == "ok"]),
          "ESP packets decrypted, all in UDP 4500:", all(f.udp_encap for f in frames
                                                         if f.proto == "esp"))
    plot_ladder(ladder(frames), title="strongSwan (gw2) initiates, ipseclab (gw1) answers")
    plt.show()
    """),
    md("""
    ## Two views of one IKE SA

    strongSwan's `swanctl --list-sas` and our `ipseclab ctl list-sas` print the same
    things in nearly the same layout. Match them up: the IKE SPIs (the `*` marks the local
    side's SPI), the identities and addresses, the algorithms (strongSwan writes the IANA
    names, we the proposal keywords), and the child SA's two SPIs, which appear **crossed**:
    the SPI one side receives on (`in`) is the one the other sends to (`out`).
    """),
    code("""
    left = strongswan_view.rstrip().splitlines()
    right = ipseclab_view.rstrip().splitlines()
    width = max(len(line) for line in left)
    print(f"{'strongSwan on gw2: swanctl --list-sas':{width}} | ipseclab on gw1: ctl list-sas")
    print("-" * width + "-+-" + "-" * 40)
    for i in range(max(len(left), len(right))):
        a = left[i] if i < len(left) else ""
        b = right[i] if i < len(right) else ""
        print(f"{a:{width}} | {b}")
    """),
    md("""
    ## The same keys on both sides

    Neither side ever sends a key. Each computes SKEYSEED and the SK_* keys from the DH
    secret and the nonces (RFC 7296 §2.14), and the child SA's KEYMAT from SK_d (§2.17).
    If anything differed (an algorithm's key length, the order of the keys in KEYMAT, which
    nonce comes first), the first SK payload would fail its ICV. strongSwan prints its keys
    in its log at level 4; our gateway wrote its own into the key log. They agree.
    """),
    code("""
    (theirs,) = strongswan_keys
    (ours,) = our_ike_keys
    assert (theirs.spi_i, theirs.spi_r) == (ours.spi_i, ours.spi_r)
    for name in ("sk_ei", "sk_er", "sk_ai", "sk_ar"):
        assert getattr(theirs, name) == getattr(ours, name), name
        print(f"{name}: {getattr(ours, name).hex() or '(none: AES-GCM needs no key)'}")

    our_key_for = {e.spi: e.encryption_key for e in our_esp_keys}
    (child,) = theirs.children
    assert our_key_for[child.spi_in] == child.enc_in  # strongSwan receives, gw1 sends
    assert our_key_for[child.spi_out] == child.enc_out  # strongSwan sends, gw1 receives
    print(f"ESP SPI {child.spi_in:08x}: {child.enc_in.hex()}  (gw1 -> gw2)")
    print(f"ESP SPI {child.spi_out:08x}: {child.enc_out.hex()}  (gw2 -> gw1)")
    """),
    md("""
    ## Your turn: crossed SPIs

    strongSwan on gw2 sends its ESP packets on its *outbound* SA. In ipseclab's
    `ctl list-sas` on gw1, is that SPI listed as `"in"` or `"out"`? And which UDP
    destination port do those packets use?
    """),
    code("""
    my_direction = "in"  # your answer: "in" or "out"
    my_port = 4500  # your answer
    """),
    code("""
    ours_line = next(line for line in right if f"{child.spi_out:08x}" in line)
    assert ours_line.split()[0] == my_direction, f"gw1 lists it as: {ours_line.strip()}"
    esp_from_gw2 = [f for f in frames if f.proto == "esp" and f.spi == child.spi_out]
    assert esp_from_gw2 and all(f.udp_encap for f in esp_from_gw2) and my_port == 4500
    print("correct: what one side sends on, the other receives on; ESP in UDP 4500")
    """),
    cleanup("lab_dir"),
    md("""
    ## Summary

    * One configuration language (swanctl.conf) on both sides; the proposals strongSwan
      and ipseclab negotiate are the same keywords.
    * The handshake between them is the ordinary IKE_SA_INIT + IKE_AUTH (RFC 7296 §1.2);
      unknown status notifies are ignored (§3.10.1), which leaves room for extensions.
    * `swanctl --list-sas` and `ipseclab ctl list-sas` show the same IKE SPIs, identities,
      algorithms and crossed child SA SPIs.
    * Interop is, in the end, equal keys: SK_* from SKEYSEED (§2.14) and KEYMAT (§2.17)
      computed independently by two implementations, byte for byte the same.
    """),
]

NB09 = [
    md("""
    # 09: Capstone, a broken tunnel to diagnose and fix

    **Learning goals.** After this lesson you can

    * diagnose a site-to-site tunnel that does not come up, from three sources: the
      gateways' logs, `ipseclab ctl list-sas`, and the decoded capture of the WAN;
    * read the error notifies of IKEv2 (RFC 7296 §3.10.1): NO_PROPOSAL_CHOSEN in the clear
      in IKE_SA_INIT, TS_UNACCEPTABLE and AUTHENTICATION_FAILED inside the encrypted
      IKE_AUTH response, opened with the key log the gateways write after IKE_SA_INIT;
    * fix the configuration one fault at a time and prove the fix with a ping.

    This lesson runs the site-to-site topology in Mininet with ipseclab on both gateways:
    it needs root.
    """),
    SETUP,
    ROOT_CHECK,
    md("""
    ## The ticket

    *"Since gw2 was reconfigured last night, site 1 (10.1.0.0/24) cannot reach site 2
    (10.2.0.0/24)."* gw1's configuration is the one that worked before. Here are both
    files, as the notebook writes them; read gw2's with care, but let the tools find the
    problems.
    """),
    code('''
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    TEMPLATE = """
    connections {{
      site-to-site {{
        local_addrs = {me}
        remote_addrs = {peer}
        proposals = {proposals}
        local {{
          auth = psk
          id = {me}.lab.example
        }}
        remote {{
          auth = psk
          id = {peer}.lab.example
        }}
        children {{
          net {{
            local_ts = {local_ts}
            remote_ts = {remote_ts}
            esp_proposals = aes128gcm16
            start_action = trap
          }}
        }}
      }}
    }}
    secrets {{
      ike-site-to-site {{
        id-gw1 = gw1.lab.example
        id-gw2 = gw2.lab.example
        secret = "capstone lab secret"
      }}
    }}
    """
    ADDR = {"gw1": "192.0.2.1", "gw2": "192.0.2.2"}


    def config(me, peer, proposals, local_ts, remote_ts):
        text = TEMPLATE.format(me=me, peer=peer, proposals=proposals, local_ts=local_ts,
                               remote_ts=remote_ts)
        return text.replace(f"addrs = {me}\\n", f"addrs = {ADDR[me]}\\n").replace(
            f"addrs = {peer}\\n", f"addrs = {ADDR[peer]}\\n")


    lab_dir = Path(tempfile.mkdtemp(prefix="nb09-"))
    GW1 = config("gw1", "gw2", "aes128gcm16-prfsha256-x25519", "10.1.0.0/24", "10.2.0.0/24")
    GW2_BROKEN = config("gw2", "gw1", "aes256-sha256-modp2048", "10.2.0.0/24", "10.1.1.0/24")
    print(GW2_BROKEN)
    '''),
    md("""
    ## A tool for each attempt

    `attempt(gw2_conf)` starts the lab with gw1's file and the given gw2 file, captures
    the WAN while h1 pings h2 (both configs say `start_action = trap`, so the ping itself
    starts IKE, RFC 4301 §5.1), collects the evidence and tears the lab down again, also on
    an error. Each attempt is a fresh network, as after a restart of both gateways.
    """),
    code("""
    from ipseclab.capture.decode import KeyRing, decode_capture
    from ipseclab.keylog import keylog_dir_layout, read_esp_sa, read_ikev2
    from ipseclab.lab.api import Lab
    from ipseclab.lab.ipseclab_gateway import control_socket
    from ipseclab.lab.topology import GatewaySpec

    runs = 0


    def attempt(gw2_conf):
        global runs
        runs += 1
        where = lab_dir / f"attempt{runs}"
        where.mkdir()
        (where / "gw1.conf").write_text(GW1)
        (where / "gw2.conf").write_text(gw2_conf)
        gateways = {name: GatewaySpec("ipseclab", (where / f"{name}.conf",))
                    for name in ("gw1", "gw2")}
        with Lab("site-to-site", where / "lab", gateways) as lab:
            with lab.capture("wan") as pcap:
                ping = lab.ping("h1", "h2", count=3, interval=0.3)
            ctl = subprocess.run([sys.executable, "-m", "ipseclab", "ctl", "--socket",
                                  str(control_socket("gw1")), "list-sas"],
                                 capture_output=True, text=True, check=True).stdout
            logs = {gw: (lab.workdir / gw / "gateway.log").read_text() for gw in ("gw1", "gw2")}
        esp_file, ike_file = keylog_dir_layout(where / "lab")
        ring = KeyRing(read_esp_sa(esp_file) if esp_file.exists() else (),
                       ike_entries=read_ikev2(ike_file) if ike_file.exists() else ())
        frames = [f for f in decode_capture(pcap, ring) if f.proto in ("ike", "esp")]
        print("ping h1 -> h2:", ping)
        return {"ping": ping, "ctl": ctl, "logs": logs, "frames": frames}


    def show_logs(run):
        for gw, text in run["logs"].items():
            for line in text.splitlines():
                if "WARNING" in line or "ERROR" in line:
                    print(gw, line.split(" ipseclab.")[-1])


    def show_ike(run):
        for f in run["frames"]:
            if f.proto == "ike":
                print(f"{f.src:>9} -> {f.dst:<9} {f.exchange:12}"
                      f" {'response' if f.response else 'request '} {', '.join(f.payloads)}")


    first = attempt(GW2_BROKEN)
    """),
    md("""
    ## Attempt 1: the evidence

    **The logs.** Start with what the gateways say about themselves.
    """),
    code("""
    show_logs(first)
    """),
    md("""
    **The control socket.** `ipseclab ctl list-sas` on gw1 lists what exists: no IKE SA,
    no child SA.
    """),
    code("""
    print(first["ctl"])
    """),
    md("""
    **The capture.** IKE_SA_INIT is not encrypted, so no key log is needed. gw2 answered
    gw1's request with nothing but a notify: **NO_PROPOSAL_CHOSEN** (type 14, RFC 7296
    §3.10.1), "none of your proposals is acceptable to me" (§2.7). A responder sends it
    instead of SA, KE and Nr; the IKE SA dies before it was born.
    """),
    code("""
    from ipseclab.ike.sa_payload import SecurityAssociation as SaPayload

    show_ike(first)
    request = next(f for f in first["frames"] if f.exchange == "IKE_SA_INIT" and not f.response)
    offer = request.ike.message.find(SaPayload).proposals[0]
    print("\\ngw1's proposal, transform by transform (RFC 7296 §3.3.2):")
    for t in offer.transforms:
        print(f"  {getattr(t.transform_type, 'name', t.transform_type):6}"
              f" {getattr(t.transform_id, 'name', t.transform_id)}")
    """),
    md("""
    ## Your turn 1: fix the proposals

    gw1 offers `aes128gcm16-prfsha256-x25519`; gw2 was changed to
    `aes256-sha256-modp2048`. The two share no algorithm for encryption, PRF or DH group.
    Write the `proposals` line gw2 should have, so that both ends agree with the rest of
    the site's gateways.
    """),
    code("""
    my_gw2_proposals = "aes128gcm16-prfsha256-x25519"  # your answer
    """),
    code("""
    GW2_STEP1 = GW2_BROKEN.replace("aes256-sha256-modp2048", my_gw2_proposals)
    second = attempt(GW2_STEP1)
    assert any(f.exchange == "IKE_AUTH" for f in second["frames"]), \\
        "still no IKE_AUTH: the proposals do not match yet"
    print("IKE_SA_INIT now succeeds")
    """),
    md("""
    ## Attempt 2: one step further, still no ping

    The proposals match now, and yet the ping fails. Same three sources.
    """),
    code("""
    show_logs(second)
    print()
    print(second["ctl"])
    """),
    md("""
    The IKE SA is ESTABLISHED: the PSK and the identities are right, IKE_AUTH succeeded.
    But it has no child SA. In IKEv2 the first child SA is created inside IKE_AUTH (§1.2);
    if only the child part fails, the IKE SA stays up and the responder puts an error
    notify into its IKE_AUTH response (§1.2, §2.21.2). That response is encrypted: an
    observer cannot read the reason, but with the key log that gw1 wrote for the IKE SA we
    can.
    """),
    code("""
    show_ike(second)
    auth_request = next(f for f in second["frames"]
                        if f.exchange == "IKE_AUTH" and not f.response)
    print()
    for p in auth_request.ike.inner_payloads:
        if type(p).__name__ in ("TSi", "TSr"):
            ranges = ", ".join(f"{ts.start_address} - {ts.end_address}" for ts in p.selectors)
            print(f"gw1 proposes {type(p).__name__}: {ranges}")
    """),
    md("""
    **TS_UNACCEPTABLE** (type 38): the traffic selectors gw1 proposed (§2.9), TSi =
    10.1.0.0/24 (its side) and TSr = 10.2.0.0/24 (gw2's side), do not fit gw2's policy.
    gw2 narrows the initiator's selectors to the intersection with its own (§2.9); with
    gw2's `remote_ts = 10.1.1.0/24`, a typo, the intersection is empty.

    ## Your turn 2: fix the traffic selectors

    What must gw2's `remote_ts` be?
    """),
    code("""
    my_gw2_remote_ts = "10.1.0.0/24"  # your answer
    """),
    md("""
    ## The check: a working tunnel

    Both fixes together; the ping must pass, over ESP, and every packet must decrypt with
    the key log.
    """),
    code("""
    GW2_FIXED = GW2_STEP1.replace("remote_ts = 10.1.1.0/24", f"remote_ts = {my_gw2_remote_ts}")
    fixed = attempt(GW2_FIXED)
    show_ike(fixed)
    esp = [f for f in fixed["frames"] if f.proto == "esp"]
    assert fixed["ping"].received == fixed["ping"].sent, "the tunnel still does not pass ping"
    assert esp and all(f.status == "ok" for f in esp)
    print(f"fixed: {fixed['ping']}, {len(esp)} ESP packets on the WAN, all decrypted")
    print(fixed["ctl"])
    """),
    md("""
    ## A third fault: the pre-shared key

    A month later the ticket is back: someone "rotated" the PSK in gw2's `secrets` section
    and forgot gw1. Proposals and selectors are right this time.
    """),
    code("""
    GW2_ROTATED = GW2_FIXED.replace('secret = "capstone lab secret"',
                                    'secret = "capstone lab secret 2025"')
    third = attempt(GW2_ROTATED)
    show_logs(third)
    print()
    print(third["ctl"])
    """),
    md("""
    The logs name the failed check: gw2, the responder, computed the AUTH value gw1 should
    have sent, prf(prf(PSK, "Key Pad for IKEv2"), <InitiatorSignedOctets>) (RFC 7296
    §2.15), and it differs from gw1's; gw1 learns it from gw2's answer. Neither log shows
    the PSK itself. `ctl list-sas` shows nothing: the IKE SA was never established.

    **The capture.** The refusal travels inside the SK payload of the IKE_AUTH response
    (§2.21.2: an error in IKE_AUTH is reported in the protected response). Can we read it
    when no IKE SA came up? Yes: the SK_e and SK_a keys exist as soon as IKE_SA_INIT is
    done (SKEYSEED, §2.14), before anyone is authenticated, and the gateways write them to
    the key log at that moment, as strongSwan logs them. Both sides hold the same keys;
    only the PSK differs, and the PSK does not enter SKEYSEED.
    """),
    code("""
    show_ike(third)
    for gw, text in third["logs"].items():
        for line in text.splitlines():
            if "keys derived" in line:
                print(gw, line.split(" ipseclab.")[-1])
    auth_response = next(f for f in third["frames"] if f.exchange == "IKE_AUTH" and f.response)
    print("\\nIKE_AUTH response:", ", ".join(auth_response.payloads))
    assert auth_response.payloads == ["SK{N(AUTHENTICATION_FAILED)}"]
    """),
    md("""
    ## Your turn 3: fix the key

    Which `secret` must gw2's `secrets` section hold? (Only gw1's file, the one that worked
    before, can tell you: a PSK is never on the wire.)
    """),
    code("""
    my_gw2_secret = "capstone lab secret"  # your answer
    """),
    code("""
    GW2_KEYED = GW2_ROTATED.replace('"capstone lab secret 2025"', f'"{my_gw2_secret}"')
    keyed = attempt(GW2_KEYED)
    assert keyed["ping"].received == keyed["ping"].sent, "still no tunnel: the PSKs differ"
    assert not any("authentication failed" in text for text in keyed["logs"].values())
    print("the PSKs match again:", keyed["ping"])
    """),
    cleanup("lab_dir"),
    md("""
    ## Summary

    * Diagnose from the outside in: the logs say *what* failed, `ctl list-sas` shows *how
      far* the tunnel got (nothing, an IKE SA without child, or both), the capture proves
      what the peers actually said.
    * NO_PROPOSAL_CHOSEN in IKE_SA_INIT (RFC 7296 §2.7, §3.10.1) means no common algorithm:
      compare the proposals; it is readable without keys.
    * TS_UNACCEPTABLE in the IKE_AUTH response (§2.9) means the IKE SA is fine but the
      traffic selectors do not intersect: compare `local_ts`/`remote_ts` on both sides. It
      is encrypted; the key log reads it.
    * A wrong PSK ends one exchange later: AUTHENTICATION_FAILED (§2.21.2) inside SK of
      the IKE_AUTH response. The keys exist after IKE_SA_INIT (§2.14) and the gateways log
      them then, so the capture still opens although no IKE SA came up; the responder's
      log names the check that failed, never the key.
    * Fix one fault at a time and test after each: the second fault hid behind the first.
    """),
]

NOTEBOOKS = {
    "01-esp-by-hand.ipynb": NB01,
    "02-transport-vs-tunnel.ipynb": NB02,
    "03-ah-vs-esp.ipynb": NB03,
    "04-anti-replay.ipynb": NB04,
    "05-ikev2-handshake.ipynb": NB05,
    "06-rekey-dpd-nat.ipynb": NB06,
    "07-interop.ipynb": NB07,
    "09-capstone.ipynb": NB09,
}
# whole lessons in Mininet: tests without root skip them
ROOT_ONLY = {"06-rekey-dpd-nat.ipynb", "07-interop.ipynb", "09-capstone.ipynb"}


def write(notebooks: dict[str, list], directory: Path = HERE,
          root_only: Collection[str] = ROOT_ONLY) -> list[Path]:
    """Write ``{file name: cells}`` as notebooks into ``directory``; the paths written.

    Both generators (this file and ``build_attacks.py``) write through here, so every
    notebook gets the same metadata and stable cell ids. A name in ``root_only`` is marked
    as a whole-lesson lab (``metadata.ipseclab.needs_root``) that tests skip without root.
    """
    written = []
    for name, cells in notebooks.items():
        nb = new_notebook(cells=cells, metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"}})
        if name in root_only:
            nb.metadata["ipseclab"] = {"needs_root": True}
        for i, cell in enumerate(nb.cells):
            cell["id"] = f"cell-{i:02d}"  # stable ids keep rebuilt notebooks diff-free
        path = directory / name
        nbformat.write(nb, path)
        written.append(path)
    return written


def build(directory: Path = HERE) -> list[Path]:
    return write(NOTEBOOKS, directory)


if __name__ == "__main__":
    for p in build(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(p)
