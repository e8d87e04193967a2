"""Lesson 03, AH versus ESP: integrity (RFC 4302) against confidentiality (RFC 4303), the
bytes AH covers and the mutable fields it zeroes, and why AH cannot cross a NAT.
"""

from __future__ import annotations

from .cells import SETUP, code, md

CELLS = [
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
    * The SAs here were set by hand. IKEv2 negotiates AH as well: a child in swanctl.conf
      with `ah_proposals = sha256` instead of `esp_proposals` gets an AH child SA (its SA
      payload names protocol AH, and KEYMAT holds integrity keys only, RFC 7296 §2.17).
    """),
]
