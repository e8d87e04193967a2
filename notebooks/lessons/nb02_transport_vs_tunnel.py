"""Lesson 02, transport mode and tunnel mode (RFC 4301 §4.1, RFC 4303 §3.1): what each
puts where, what an observer sees, the overhead and MTU; the second half in Mininet (root).
"""

from __future__ import annotations

from .cells import ROOT_CHECK, SETUP, cleanup, code, md, root_code

CELLS = [
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
    What to notice: aes128gcm16 has no sawtooth here. The sizes go up in steps of 4 bytes
    and GCM pads to 4, so every packet gets the same 2 bytes of padding and the overhead
    is always 36 bytes (56 in tunnel mode). The CBC lines swing by 12 bytes, the padding
    to their 16-byte block; aes256-sha512 sits 16 bytes above aes128-sha256 at every size,
    its 32-byte ICV against 16.

    ## Where fragmentation starts

    A link with a 1500-byte MTU carries the *protected* packet. `largest_inner` finds, by
    encapsulating real packets, the largest inner packet that still fits. One byte more and
    the gateway must fragment, or drop the packet and tell the sender with ICMP
    "fragmentation needed" ("packet too big" in IPv6) so it can lower its path MTU
    (RFC 4301 §8).
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
    ## Your turn: tunnel minus transport

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
