"""Build the attack notebooks (lesson 08): ``python notebooks/build_attacks.py``.

One notebook per family of :mod:`ipseclab.attacks`. They live in this second generator so
that lessons 01-09 in ``build.py`` and these can change independently; the helpers (``md``,
``code``, ``SETUP``, ``build``) come from ``build.py``. Each lesson: the weak configuration,
the cryptography done by hand (no root), the attack run for real in the lab (root; the lab
cells print why they are skipped otherwise), the fix and the counters that show why the
attack fails, exercises with checks, and a summary. Every attack targets only the lab's own
hosts inside the ``on-path-attacker`` topology.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def _load_base():
    # A private copy of build.py: "import build" could find PyPA's build package instead.
    spec = importlib.util.spec_from_file_location("nb_build_base", HERE / "build.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_base = _load_base()
md, code, SETUP = _base.md, _base.code, _base.SETUP


def scope(what: str):
    """The statement every attack notebook makes about whom it attacks."""
    return md(f"""
    **Scope: the lab only.** {what} The attacks in this notebook target only the lab's own
    hosts inside the topology: `h1`, `gw1`, `mallory`, `gw2` and `h2` are network namespaces
    on this machine (`topologies/on-path-attacker.yaml`), with addresses from private and
    documentation ranges that are never routed out of them. The keys are lab keys, published
    in `topologies/attacks/`. Never point these tools at networks you do not own.

        h1 --[lan1]-- gw1 --[wan1]-- mallory --[wan2]-- gw2 --[lan2]-- h2
        10.1.0.10     192.0.2.1    192.0.2.254 / 198.51.100.254    198.51.100.2   10.2.0.10
    """)


ROOT_CHECK = code("""
    import os

    ROOT = os.geteuid() == 0
    NOT_ROOT = ("lab cell skipped: the lab builds network namespaces and needs root. Run Jupyter"
                " as root (e.g. sudo) to see the attack on the wire; all other cells still run.")
    print("running as root: the lab cells start the on-path-attacker topology" if ROOT
          else "not root: the lab cells will say they are skipped; the rest runs as usual")
    """)

IP_PACKETS = code("""
    from ipseclab.capture.pcap import ip_payload, read_capture


    def ip_packets(pcap, proto: int) -> list[bytes]:
        \"\"\"The IPv4 packets of IP protocol ``proto`` (50 ESP, 51 AH, 1 ICMP) in a capture.\"\"\"
        found = (ip_payload(f.linktype, f.data) for f in read_capture(pcap))
        return [p for p in found if p and p[0] >> 4 == 4 and p[9] == proto]
    """)

SHOW_CONFIG = code("""
    import re

    from ipseclab.attacks.common import config_dir


    def show_config(attack: str, config: str, node: str = "gw2", what: str = "state") -> None:
        \"\"\"The ``ip xfrm state`` (or ``policy``) commands of one gateway, long keys cut.\"\"\"
        path = config_dir(attack, config) / f"{node}.xfrm"
        lines = path.read_text().splitlines()
        print(f"{config}: {lines[0].lstrip('# ')}")
        body = " ".join(line for line in lines if not line.startswith("#"))
        for command in body.replace(chr(92), " ").split("ip xfrm ")[1:]:
            if command.startswith(what):
                line = re.sub(r"0x[0-9a-f]{12,}", lambda m: m[0][:12] + "...", command)
                print("    ip xfrm", " ".join(line.split()))
    """)

# --------------------------------------------------------------------------------------------
NB08A = [
    md("""
    # 08a: ESP-NULL and AH, integrity without confidentiality

    **Learning goals.** After this lesson you can

    * say what ESP with the NULL cipher (RFC 2410) and AH (RFC 4302) protect, and what they
      leave in the clear (RFC 4303 §3.2: confidentiality is optional in ESP);
    * find the inner packet of an ESP-NULL or AH packet without any key, byte by byte, as an
      on-path attacker does;
    * run the attack in the lab, apply the fix (aes128gcm16, RFC 4106) and read the gateway
      counters that explain the result.

    Only the cells marked *lab* need root; the rest works on bytes.
    """),
    scope("mallory, the router between the two sites, reads what h1 sends to h2."),
    SETUP,
    ROOT_CHECK,
    md("""
    ## The weak configuration

    Both gateways are keyed by hand with `ip xfrm` files (the attack library's
    `topologies/attacks/esp-null/`). The weak one uses `enc cipher_null ""`: ESP with
    ENCR_NULL, whose whole definition is "NULL does nothing" (RFC 2410 §2), and an HMAC-SHA-256
    ICV. The variant `ah` uses AH, which never encrypts (RFC 4302 §1). Both authenticate every
    packet; neither hides anything.
    """),
    SHOW_CONFIG,
    code("""
    for config in ("weak", "ah", "recommended"):
        show_config("esp-null", config)
    """),
    md("""
    ## One packet under ESP-NULL, byte by byte

    We protect h1's message with the library's own ESP code (RFC 4303 §3.1.2, tunnel mode),
    with demo keys. The secret goes onto the wire unchanged.
    """),
    code("""
    from ipseclab.attacks import esp_null, inet
    from ipseclab.ipsec import ah, esp
    from ipseclab.teaching.bytemap import byte_map, plot_byte_map
    from ipseclab.teaching.demo import demo_pair, udp_packet

    inner = udp_packet(esp_null.SECRET, src="10.1.0.10", dst="10.2.0.10", sport=40000,
                       dport=esp_null.PORT, ttl=63)
    tx, rx = demo_pair("null-sha256", "tunnel")
    wire = esp.encapsulate(tx, inner)
    print(f"{len(inner)}-byte inner packet -> {len(wire)} bytes on the wire")
    print("the secret is in the ESP packet, unchanged:", esp_null.SECRET in wire)
    m = byte_map(wire, rx)
    print(m.table())
    plot_byte_map(m)
    plt.show()
    """),
    md("""
    Nothing is marked E (encrypted). Bytes 20-27 are the ESP header (SPI, sequence number,
    RFC 4303 §2.1-2.2); ENCR_NULL has no IV (RFC 2410 §2), so the inner IPv4 packet starts at
    byte 28 and the message follows its IPv4 (20) and UDP (8) headers. Only the padding,
    the pad length, the next header (4: an IPv4 packet, tunnel mode) and the 16-byte ICV
    come after it.

    ## What mallory does without a key

    Mallory does not need the SA to read this. It guesses: right after the ESP header there
    should be an IPv4 header, and a real one has version 4, a header length of 20 to 60 bytes
    and a header checksum that verifies (RFC 791, RFC 1071: the one's-complement sum of the
    header is 0xffff). Ciphertext passes the checksum test by chance once in about 65536
    tries. `esp_null.inner_packet` is that guess; for AH it reads AH's own length field to
    skip the header (RFC 4302 §2.2: "Payload Length" counts 32-bit words, minus 2).
    """),
    code("""
    found = esp_null.inner_packet(wire)
    start = len(wire) - len(found)
    header = found[:20]
    print("inner IPv4 header at byte", start, ":", header.hex(" "))
    print("version", header[0] >> 4, "| header length", (header[0] & 0x0F) * 4,
          "| one's-complement sum", hex(inet.ones_sum(header)))
    print("mallory reads:", esp_null.read_secrets([wire]))
    assert esp_null.read_secrets([wire]) == [esp_null.SECRET]
    """),
    code("""
    ah_tx, ah_rx = demo_pair("sha256", "tunnel", protocol="ah")
    ah_wire = ah.encapsulate(ah_tx, inner)
    print("AH: next header", ah_wire[20], "| payload length field", ah_wire[21],
          "-> the AH header is", (ah_wire[21] + 2) * 4, "bytes long (RFC 4302 §2.2)")
    print("mallory reads:", esp_null.read_secrets([ah_wire]))

    gcm_tx, gcm_rx = demo_pair("aes128gcm16", "tunnel")
    gcm_wire = esp.encapsulate(gcm_tx, inner)
    print("aes128gcm16: bytes 28-43 are", gcm_wire[28:44].hex(" "), "(IV and ciphertext)")
    print("mallory reads:", esp_null.read_secrets([gcm_wire]))
    assert esp_null.read_secrets([gcm_wire]) == []
    """),
    md("""
    ## The attack in the lab (root)

    `attack_lab("esp-null", config)` is `Lab("on-path-attacker", gateways=...)` with both
    gateways running ipseclab's own stack, keyed from `topologies/attacks/esp-null/<config>/`;
    leaving the `with` block tears the namespaces down. `esp_null.run(lab, config=...)` then
    does the attack: h2 listens on UDP 8080, mallory sniffs ESP (or AH) on its interface
    towards gw1, h1 sends its secret, mallory runs the guess above on what it caught. We also
    capture the link `wan1` to look at the packet ourselves.
    """),
    IP_PACKETS,
    code("""
    from scapy.utils import hexdump

    from ipseclab.attacks.common import attack_lab

    if ROOT:
        with attack_lab("esp-null", "weak") as lab:
            with lab.capture("wan1") as pcap:
                weak = esp_null.run(lab, config="weak")
            seen = ip_packets(pcap, 50)
        print(weak.report())
        print("\\nthe ESP packet on wan1, as mallory sees it:")
        hexdump(seen[0])
        assert weak.succeeded and esp_null.SECRET in seen[0]
    else:
        print(NOT_ROOT)
    """),
    md("""
    The message is readable in the ASCII column of the dump: the gateway "protected" it with
    an ICV and sent it in the clear. The counters of gw2's inbound SA say the packet arrived
    and verified: the ICV did its job, it just is not a confidentiality mechanism.

    The same against AH:
    """),
    code("""
    if ROOT:
        with attack_lab("esp-null", "ah") as lab:
            with_ah = esp_null.run(lab, config="ah")
        print(with_ah.report())
        assert with_ah.succeeded
    else:
        print(NOT_ROOT)
    """),
    md("""
    ## The fix: encrypt (aes128gcm16)

    The recommended configuration replaces ENCR_NULL by AES-GCM (RFC 4106; RFC 8221 §5 lists
    it as MUST for ESP). Mallory still catches the packet, the gateway still accepts it, but
    after the ESP header come an IV and ciphertext: the guess finds no IPv4 header.
    """),
    code("""
    if ROOT:
        with attack_lab("esp-null", "recommended") as lab:
            fixed = esp_null.run(lab, config="recommended")
        print(fixed.report())
        print("delivered to h2:", fixed.details["delivered"], "| mallory learned:",
              fixed.details["learned"])
        assert not fixed.succeeded and fixed.details["delivered"] == 1
    else:
        print(NOT_ROOT)
    """),
    md("""
    Here the counters show no failure at all (`packets 1`, nothing else): the attack fails
    not because gw2 drops something but because there is nothing to read. Compare with the
    next notebooks, where the fix makes the gateway *refuse* packets and a counter says so.

    ## Your turn 1: where does the inner packet start under AH?

    For the AH packet above (HMAC-SHA-256-128, tunnel mode, IPv4 outside), at which byte does
    the inner IPv4 header begin? Count the outer header, AH's fixed fields (RFC 4302 §2) and
    the ICV.
    """),
    code("""
    my_offset = 20 + 12 + 16  # your answer: outer header + AH fixed fields + ICV
    """),
    code("""
    real = len(ah_wire) - len(esp_null.inner_packet(ah_wire))
    assert my_offset == real, f"the inner header starts at byte {real}"
    print("correct: the inner packet starts at byte", real)
    """),
    md("""
    ## Your turn 2: can mallory *change* the secret?

    ESP-NULL gives no confidentiality, but it does give integrity. Change one byte of the
    message inside `wire` (say, the first letter) and hand it to a fresh receiving SA. What is
    the verdict: `"ok"`, `"auth_failed"` or `"malformed"`?
    """),
    code("""
    my_status = "auth_failed"  # your answer
    """),
    code("""
    at = wire.index(esp_null.SECRET)
    tampered = wire[:at] + b"P" + wire[at + 1:]
    receiver = demo_pair("null-sha256", "tunnel")[1]
    verdict = esp.decapsulate(receiver, tampered).status
    assert my_status == verdict, f"the gateway said {verdict}"
    print("correct:", verdict, "| counters:", receiver.counters)
    """),
    md("""
    ## Summary

    * ESP with ENCR_NULL (RFC 2410) and AH (RFC 4302) authenticate packets and encrypt
      nothing: an on-path attacker reads every inner packet, and can find it without a key
      by testing for an IPv4 header whose checksum verifies.
    * Integrity still holds: a changed byte is an `auth_failed` at the receiver. Use these
      modes only where the data may be public and only its origin matters.
    * The fix is an encrypting transform, aes128gcm16 (RFC 4106, RFC 8221). The gateway's
      counters do not change: the attack fails because the bytes are ciphertext.
    """),
]

# --------------------------------------------------------------------------------------------
NB08B = [
    md("""
    # 08b: Encryption without integrity: flipping bits in CBC

    **Learning goals.** After this lesson you can

    * explain why AES-CBC without an ICV lets anyone who flips bits of the IV flip the same
      bits of the first plaintext block (RFC 3602 §2), and why RFC 4303 §3.2 warns against
      "encryption-only" ESP;
    * compute the IV flips that rewrite an inner IPv4 header while its checksum stays valid
      (RFC 1624 arithmetic), without knowing the key or the checksum;
    * run the attack of Degabriele and Paterson ("Attacking the IPsec Standards in
      Encryption-only Configurations", IEEE S&P 2007; after Bellovin 1996 and Paterson and
      Yau, Eurocrypt 2006) in the lab: h2 itself sends the decrypted secret to mallory;
    * apply the fix (an ICV) and read `auth_failed` in gw2's counters.
    """),
    scope("mallory, the router between the sites, rewrites an ESP packet from gw1 to gw2."),
    SETUP,
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
    covers the IV (RFC 4303 §3.3.4), the receiver checks it before decrypting (§3.4.4), and
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
      RFC 8221 §5 says encryption-only ESP must not be used.
    """),
]

# --------------------------------------------------------------------------------------------
NB08C = [
    md("""
    # 08c: Replay: the same valid packet, twice

    **Learning goals.** After this lesson you can

    * explain why a recorded ESP packet stays valid forever: its ICV is the sender's own;
    * say what the sequence number and the anti-replay window do (RFC 4303 §2.2, §3.4.3 and
      Appendix A), and why `ip xfrm state add` without `replay-window` switches them off;
    * replay a command in the lab, apply the fix and read the `replay` counter.

    Notebook 04 takes the window apart; here we attack a gateway that does not use it.
    """),
    scope("mallory records one ESP packet from gw1 to gw2 and sends it again."),
    SETUP,
    ROOT_CHECK,
    md("""
    ## The weak configuration

    AES-GCM, so every packet is encrypted and authenticated; but `replay-window 0`, which is
    what `ip xfrm state add` installs when the option is left out. With a window of 0 the
    receiver keeps no record of what it has seen. IKE always sets a window; hand-keyed SAs
    are where this happens.
    """),
    SHOW_CONFIG,
    code("""
    for config in ("weak", "recommended"):
        show_config("replay", config)
    """),
    md("""
    ## One command, three times, in the core

    h1 sends one command to a service on h2 that carries out every datagram it gets. We
    protect it once and give the same bytes three times to a receiving SA, first with a
    window of 0, then with 64. The sequence number sits in bytes 24-27, right after the SPI
    (RFC 4303 §2.2); it is covered by the ICV, so mallory cannot change it, only repeat it.
    """),
    code("""
    from ipseclab.attacks import replay
    from ipseclab.ipsec import esp
    from ipseclab.teaching.demo import demo_sa, udp_packet

    inner = udp_packet(replay.COMMAND, src="10.1.0.10", dst="10.2.0.10", sport=40000,
                       dport=replay.PORT)
    wire = esp.encapsulate(demo_sa("aes128gcm16", "tunnel"), inner)
    print("SPI", wire[20:24].hex(" "), "| sequence number", wire[24:28].hex(" "),
          "=", int.from_bytes(wire[24:28], "big"), "| ICV", wire[-16:].hex(" "))

    for window in (0, 64):
        receiver = demo_sa("aes128gcm16", "tunnel", replay_window=window)
        verdicts = [str(esp.decapsulate(receiver, wire).status) for _ in range(3)]
        print(f"replay-window {window:2}: {verdicts}  packets {receiver.counters.packets},"
              f" replay {receiver.counters.replay}")
    """),
    md("""
    With window 0 all three copies are `ok`: the command runs three times. With window 64
    the receiver remembers sequence number 1 and drops the copies (RFC 4303 §3.4.3: the
    duplicate check comes before the ICV check and is counted as an auditable event).

    ## The attack in the lab (root)

    `replay.run(lab, config="weak")`: h2 runs the command counter on UDP 9001, h1 sends
    `TRANSFER 100 EUR FROM alice TO mallory` once, mallory records the ESP packet as it
    forwards it and later injects it twice more. We capture `wan2`, the link into gw2.
    """),
    IP_PACKETS,
    code("""
    from ipseclab.attacks.common import attack_lab, total

    if ROOT:
        with attack_lab("replay", "weak") as lab:
            with lab.capture("wan2") as pcap:
                weak = replay.run(lab, config="weak")
            arrived = ip_packets(pcap, 50)
        print(weak.report())
        print()
        for p in arrived:
            print("to gw2: SPI", p[20:24].hex(), "seq", int.from_bytes(p[24:28], "big"),
                  "ICV", p[-16:].hex())
        print("ESP part (SPI to ICV) byte for byte the same in all copies:",
              len({p[20:] for p in arrived}) == 1)
        assert weak.succeeded and weak.details["executed"] == 3
    else:
        print(NOT_ROOT)
    """),
    md("""
    Three identical packets, each with a valid ICV: gw2 cannot tell the copies from the
    original, and h2 carried out the transfer three times.

    ## The fix: replay-window 64

    Same keys, same packets; gw2 now keeps a window:
    """),
    code("""
    if ROOT:
        with attack_lab("replay", "recommended") as lab:
            fixed = replay.run(lab, config="recommended")
        print(fixed.report())
        assert fixed.details["executed"] == 1 and total(fixed.counters, "replay") == 2
    else:
        print(NOT_ROOT)
    """),
    md("""
    `replay 2`: the two copies were dropped and counted; the command ran once.

    ## Your turn 1: which sequence numbers would gw2 accept next?

    gw2 has a window of 64 and has received sequence numbers 1 to 5 and 7 (6 was lost on the
    way). Mallory has the packets 3 and 7 recorded; the honest gw1 will send 8 next, and
    might send 200 after a burst of losses. Which of 3, 6, 7, 8, 200 would gw2 accept now?
    """),
    code("""
    my_accepted = {6, 8, 200}  # your answer
    """),
    code("""
    from ipseclab.ipsec.replay import ReplayWindow

    window = ReplayWindow(64)
    for seq in (1, 2, 3, 4, 5, 7):
        window.update(window.infer_seq64(seq))
    accepted = {seq for seq in (3, 6, 7, 8, 200) if window.check(seq).ok}
    assert my_accepted == accepted, f"gw2 would accept {sorted(accepted)}"
    print("correct:", sorted(accepted), "| the window:", window)
    """),
    md("""
    ## Your turn 2: the left edge

    gw2 then receives 200. What is the smallest sequence number it would still accept (one
    it has not seen)? Anything further left is "too old" (RFC 4303 Appendix A).
    """),
    code("""
    my_smallest = 200 - 64 + 1  # your answer
    """),
    code("""
    window.update(window.infer_seq64(200))
    smallest = min(seq for seq in range(1, 201) if window.check(seq).ok)
    assert my_smallest == smallest, f"the smallest accepted is {smallest}"
    print("correct:", smallest, "| 135 is", window.check(135).verdict.value)
    """),
    md("""
    ## Summary

    * An ESP packet's ICV proves who sent it, not when: a recorded packet verifies forever.
    * The sequence number (RFC 4303 §2.2) and the receiver's anti-replay window (§3.4.3,
      Appendix A) turn a copy into a `replay` drop; with `replay-window 0` (the `ip xfrm`
      default) the check is off and every copy is carried out.
    * The fix: a window (64 or more) on every SA; IKE sets one. The gateway's `replay`
      counter shows the copies it dropped.
    """),
]

# --------------------------------------------------------------------------------------------
NB08D = [
    md("""
    # 08d: GCM nonce reuse: one key, one nonce, everything lost

    **Learning goals.** After this lesson you can

    * explain why a gateway restarted with a static AES-GCM key repeats its nonces
      (RFC 4106 §3-4: nonce = salt || IV, and the IV is the sequence number);
    * read a second message from the XOR of two ciphertexts under one nonce (GCM is counter
      mode: C1 XOR C2 = P1 XOR P2);
    * write GHASH as a polynomial in the hash key H (NIST SP 800-38D §6.4), build the
      polynomial two tags under one nonce give away, and find H among its roots in
      GF(2^128) (Joux, "Authentication Failures in NIST version of GCM", 2006);
    * forge a packet the gateway accepts (Böck, Zauner, Devlin, Somorovsky and Jovanovic,
      "Nonce-Disrespecting Adversaries", WOOT 2016), in the lab, and see the fix stop it.
    """),
    scope("mallory records ESP packets from gw1 to gw2 and injects a forged one."),
    SETUP,
    ROOT_CHECK,
    md("""
    ## The weak configuration

    aes128gcm16 with manual keys. Nothing looks wrong in the file; the problem is time: the
    key outlives the gateway. After a restart the sequence number, and so the GCM nonce,
    starts again at 1 under the same key. RFC 4106 §8 (Security Considerations) therefore
    says GCM must not be used with statically configured keys; RFC 4303 §3.3.3 says the same
    for every counter mode.
    """),
    code("""
    from ipseclab.attacks.common import config_dir

    print((config_dir("gcm-nonce-reuse", "weak") / "gw1.xfrm").read_text())
    """),
    md("""
    ## A restart, in the core

    We load gw1's outbound SA from that very file twice: once for the gateway before the
    restart, once after. Two status messages go out before, two secrets after.
    """),
    code("""
    from ipseclab.attacks import gcm_nonce_reuse as gnr
    from ipseclab.attacks import gf128, inet
    from ipseclab.config import xfrm
    from ipseclab.ipsec import esp
    from ipseclab.teaching.demo import udp_packet

    WEAK = config_dir("gcm-nonce-reuse", "weak")


    def gw1_to_gw2():
        \"\"\"gw1's outbound SA as it is after (re)loading the file: sequence number 1.\"\"\"
        return xfrm.load(WEAK / "gw1.xfrm").states[0]


    def message(data: bytes) -> bytes:
        return udp_packet(data, src="10.1.0.10", dst="10.2.0.10", sport=40000, dport=gnr.PORT)


    before, after = gw1_to_gw2(), gw1_to_gw2()
    wires = [esp.encapsulate(before, message(m)) for m in gnr.KNOWN]
    wires += [esp.encapsulate(after, message(m)) for m in gnr.SECRETS]
    for label, w in zip(("known 1", "known 2", "secret 1", "secret 2"), wires, strict=True):
        aad, iv, ct, tag = gnr.split(w)
        print(f"{label:8}  seq {int.from_bytes(aad[4:], 'big')}  IV {iv.hex()}  tag {tag.hex()}")
    """),
    md("""
    The IVs repeat: 1, 2, then 1, 2 again. With the same key and salt the nonce
    `salt || IV` (RFC 4106 §4) repeats too.

    ## Step 1: the XOR of two plaintexts

    GCM encrypts in counter mode: C = P XOR keystream(K, nonce). Two messages under one
    nonce share the keystream, so C1 XOR C2 = P1 XOR P2, and a known P1 gives P2. Mallory
    knows the status messages (they are sent every minute and always look alike); the data
    starts at byte 28 of the ESP plaintext, after the inner IPv4 and UDP headers.
    """),
    code("""
    (known1, secret1), (known2, secret2) = gnr.pairs(wires)
    c1, c2 = gnr.split(known1)[2], gnr.split(secret1)[2]
    start = gnr.INNER_DATA
    print("byte   C1  C2  C1^C2  known P1   P2 = C1^C2^P1")
    for i in range(start, start + 16):
        x, p1 = c1[i] ^ c2[i], gnr.KNOWN[0][i - start]
        print(f"{i:4}   {c1[i]:02x}  {c2[i]:02x}   {x:02x}    {p1:02x} {chr(p1)!r:5}",
              f" {x ^ p1:02x} {chr(x ^ p1)!r}")
    recovered = gnr.recover_plaintext(known1, secret1, gnr.KNOWN[0])
    print("\\nsecret 1:", recovered[:len(gnr.SECRETS[0])])
    assert recovered.startswith(gnr.SECRETS[0])
    """),
    md("""
    ## Step 2: the tag as a polynomial in H

    GCM's tag is T = GHASH_H(A, C) XOR S, with H = E_K(0^128) and the mask S = E_K(J0),
    J0 = nonce || 0x00000001 (SP 800-38D §7.1). GHASH reads the blocks
    B_1 ... B_m (AAD, ciphertext, zero-padded, then a block with both bit lengths) and
    computes B_1 H^m + B_2 H^(m-1) + ... + B_m H in GF(2^128) (§6.4): a polynomial in H
    whose coefficients are on the wire. In ESP the AAD is the SPI and sequence number
    (RFC 4106 §5).

    Two packets under one nonce have the same S. Adding their tags removes it:

    **f(X) = GHASH_X(A1, C1) + GHASH_X(A2, C2) + T1 + T2**, and f(H) = 0.

    Mallory knows every coefficient of f. In ESP both packets carry the same SPI and
    sequence number (that is why the nonce repeats), so the AAD terms cancel and the highest
    coefficient is the XOR of the first ciphertext blocks.
    """),
    code("""
    a1, _, ct1, t1 = gnr.split(known1)
    a2, _, ct2, t2 = gnr.split(secret1)
    blocks = gf128.ghash_blocks(a1, ct1)
    print(f"GHASH of known 1 reads {len(blocks)} blocks: 1 of AAD, {len(blocks) - 2} of"
          f" ciphertext, 1 of lengths")
    print("  AAD block:    ", gf128.to_block(blocks[0]).hex(), "(SPI, seq, zero padding)")
    print("  lengths block:", gf128.to_block(blocks[-1]).hex(), "(64 bits of AAD, bits of C)")
    f = gf128.nonce_reuse_poly((a1, ct1, t1), (a2, ct2, t2))
    print(f"\\nf has degree {len(f) - 1}; its coefficients, highest first:")
    for i, c in reversed(list(enumerate(f))):
        print(f"  X^{i}: {gf128.to_block(c).hex()}")
    """),
    md("""
    ## Step 3: the roots of f

    A polynomial of degree d has at most d roots. `gf128.roots` finds them the textbook way
    (Cantor-Zassenhaus): gcd(f, X^(2^128) - X) keeps the linear factors, and random
    trace maps split them. One pair leaves one or a few candidates; the second pair gives a
    second polynomial with the same root H, and the gcd of the two leaves H alone.
    """),
    code("""
    first = gf128.roots(f)
    print(len(first), "candidate(s) for H from the first pair:")
    for r in first:
        print("  ", gf128.to_block(r).hex())
    candidates = gnr.recover_h(gnr.pairs(wires))
    (H,) = candidates
    print("with the second pair, one is left: H =", gf128.to_block(H).hex())
    """),
    md("""
    Only because the lab key is published can we check what mallory found: H = E_K(0^128)
    with gw1's key (the first 16 bytes of the key material, RFC 4106 §8.1). Mallory never
    learns K, and does not need to.
    """),
    code("""
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

    K = gw1_to_gw2().encryption_key[:16]
    true_h = Cipher(algorithms.AES(K), modes.ECB()).encryptor().update(bytes(16))
    print("E_K(0^128) =", true_h.hex())
    assert gf128.to_block(H) == true_h
    S = gf128.from_block(t1) ^ gf128.ghash(H, a1, ct1)
    print("the mask S = T1 + GHASH_H(A1, C1) =", gf128.to_block(S).hex())
    assert S == gf128.from_block(t2) ^ gf128.ghash(H, a2, ct2)  # the same for both
    """),
    md("""
    ## Step 4: a forgery

    With H and S mallory can tag any ciphertext under this nonce. It flips the known status
    message into its own (counter mode: XOR the difference into the ciphertext), gives the
    packet a fresh sequence number (1000, beyond the receiver's window; the AAD changes, the
    nonce, which comes from the IV, does not), and computes T = GHASH_H(A, C) + S. The last
    two bytes of the message pay for the change so the UDP checksum, which mallory cannot
    see, still holds (as in notebook 08b).
    """),
    code("""
    forged = gnr.forge(known1, H, gnr.KNOWN[0], gnr.FORGED, 1000)
    print("known: ", gnr.KNOWN[0])
    print("wanted:", gnr.FORGED)
    receiver = xfrm.load(WEAK / "gw2.xfrm").states[0]  # gw2's inbound SA, same key
    result = esp.decapsulate(receiver, forged)
    print("gw2's verdict:", result.status, "| h2 gets:", result.inner[28:])
    assert str(result.status) == "ok" and result.inner[28:-2] == gnr.FORGED[:-2]
    """),
    md("""
    ## The attack in the lab (root)

    `gcm_nonce_reuse.run(lab, config="weak")`: h1 sends the two status messages, gw1
    restarts and loads the same file again, h1 sends the two secrets; mallory records all
    four, recovers the first secret and H as above, and injects the forgery. h2's listener
    reports what it received.
    """),
    code("""
    from ipseclab.attacks.common import attack_lab, total

    if ROOT:
        with attack_lab("gcm-nonce-reuse", "weak") as lab:
            weak = gnr.run(lab, config="weak")
        print(weak.report())
        assert weak.succeeded and weak.details["h"] == true_h.hex()
    else:
        print(NOT_ROOT)
    """),
    md("""
    Look at gw2's counters: `replay 2`. gw2 was not restarted, so it had seen sequence
    numbers 1 and 2 and dropped the two secret messages as replays. That did not protect
    them: mallory read them off the wire before they reached gw2. The forgery carries
    sequence number 1000, new to gw2's window, and a valid tag.
    """),
    md("""
    ## The fix: fresh keys for every SA

    IKE derives new keys for every child SA (KEYMAT = prf+(SK_d, Ni | Nr), RFC 7296 §2.17),
    so a restart means a new key. The recommended configuration stands for that: after the
    restart both gateways load new keys (`gw1-rekeyed.xfrm`). The IVs still repeat, but
    under a different key they share neither keystream nor mask.
    """),
    code("""
    if ROOT:
        with attack_lab("gcm-nonce-reuse", "recommended") as lab:
            fixed = gnr.run(lab, config="recommended")
        print(fixed.report())
        print("what the XOR gives now:", fixed.details["recovered"])
        assert not fixed.succeeded and total(fixed.counters, "auth_failed") == 1
    else:
        print(NOT_ROOT)
    """),
    md("""
    The XOR yields noise, the polynomials share no root (or a wrong one), and the forged tag
    fails: gw2 counts `auth_failed 1`.

    ## Your turn 1: the degree of f

    Two ESP packets under one nonce, each with one AAD block (SPI and sequence number) and 5
    blocks of ciphertext. What is the degree of f, and so the most candidates for H one pair
    can leave? Careful: under one nonce the sequence numbers are equal, so are the AADs.
    """),
    code("""
    my_degree = 5 + 1  # your answer: the AAD terms cancel; ciphertext blocks + lengths block
    """),
    code("""
    import os
    import struct

    aad = struct.pack("!II", 0x5001, 1)
    g = gf128.nonce_reuse_poly((aad, os.urandom(80), os.urandom(16)),
                               (aad, os.urandom(80), os.urandom(16)))
    assert my_degree == len(g) - 1, f"f has degree {len(g) - 1}"
    print("correct: degree", my_degree)
    """),
    md("""
    ## Your turn 2: a tag of your own

    Take the ciphertext of `known1`, flip the lowest bit of its first data byte (byte 28 of
    the ciphertext: "s" of "status" becomes "r"), give it sequence number 2000, and compute
    its tag from H and S. gw2's SA must accept it.
    """),
    code("""
    my_ct = bytearray(ct1)
    my_ct[28] ^= 0x01
    my_aad = a1[:4] + struct.pack("!I", 2000)
    my_tag = gf128.to_block(gf128.ghash(H, my_aad, bytes(my_ct)) ^ S)  # your answer
    """),
    code("""
    esp_part = known1[20:]
    packet = inet.rebuild_ipv4(known1[:20], my_aad + esp_part[8:16] + bytes(my_ct) + my_tag)
    verdict = esp.decapsulate(xfrm.load(WEAK / "gw2.xfrm").states[0], packet)
    assert str(verdict.status) == "ok", f"gw2 says {verdict.status}"
    print("correct: gw2 accepts", verdict.inner[28:40], "...")
    """),
    md("""
    ## Summary

    * AES-GCM's nonce (salt || IV, RFC 4106 §4) must never repeat under one key. Static keys
      plus a restart repeat it; RFC 4106 §8 forbids manual keys for GCM.
    * One repeat gives away the XOR of two plaintexts (counter mode) and a polynomial whose
      root is the hash key H (Joux 2006); a second repeat pins H down. With H and the mask
      S = T + GHASH_H(A, C) the attacker tags whatever it likes (Böck et al. 2016).
    * The fix is a fresh key for every SA, which IKE provides (RFC 7296 §2.17). With other
      keys, equal IVs mean nothing, and a forged tag is an `auth_failed` at the gateway.
    """),
]

# --------------------------------------------------------------------------------------------
NB08E = [
    md("""
    # 08e: Traffic analysis and the birthday bound

    **Learning goals.** After this lesson you can

    * say what ESP leaves visible to an observer: the endpoints (transport mode keeps the
      hosts' addresses, RFC 4303 §3.1.1; tunnel mode shows only the gateways, §3.1.2) and
      the length of every packet, to within the cipher's block;
    * measure in the lab how the ESP length follows the message length, plot it, and hide it
      with Traffic Flow Confidentiality padding (RFC 4303 §2.4, §2.7; `tfcpad`);
    * compute the birthday bound of 64-bit block ciphers and why 3DES is out (Bhargavan and
      Leurent, "On the Practical (In-)Security of 64-bit Block Ciphers", CCS 2016, known as
      Sweet32; RFC 8221 §5).
    """),
    scope("mallory only watches the traffic between gw1 and gw2."),
    SETUP,
    ROOT_CHECK,
    md("""
    ## The weak configuration

    aes128gcm16 in tunnel mode: confidential and authenticated, nothing wrong with the
    cryptography. What it does not hide is the packets' sizes. The recommended configuration
    differs in one option, `tfcpad 1024`: every inner packet is padded to 1024 bytes before
    encryption.
    """),
    SHOW_CONFIG,
    code("""
    for config in ("weak", "recommended"):
        show_config("traffic-analysis", config)
    """),
    md("""
    ## Who talks to whom

    The outer IP header of one h1 -> h2 packet in each mode, built with the library's core:
    """),
    code("""
    from ipseclab.attacks import traffic_analysis as ta

    for mode, seen in ta.endpoints().items():
        print(f"{mode:9}: {seen['outer_src']} -> {seen['outer_dst']}, {seen['length']} bytes")
    """),
    md("""
    ## How long is an ESP packet?

    ESP adds fixed fields (outer header, SPI and sequence number, IV, ICV) and pads the
    plaintext `inner packet || pad length || next header` to the cipher's block (RFC 4303
    §2.4): 4 bytes for GCM, 16 for AES-CBC. So the wire length is the message length rounded
    up a little. With `tfcpad 1024` the inner packet is first padded to 1024 bytes (§2.7:
    the receiver finds the real end from the inner IP header's length field).
    """),
    code("""
    import dataclasses

    from ipseclab.ipsec import esp
    from ipseclab.teaching.demo import demo_sa, udp_packet


    def esp_length(proposal: str, message: int, tfc: int = 0) -> int:
        \"\"\"Bytes on the wire for a UDP message of ``message`` bytes, tunnel mode.\"\"\"
        sa = dataclasses.replace(demo_sa(proposal, "tunnel"), tfc_padding=tfc)
        return len(esp.encapsulate(sa, udp_packet(message)))


    messages = list(range(0, 901, 4))
    series = {
        "aes128gcm16": [esp_length("aes128gcm16", n) for n in messages],
        "aes128-sha256 (CBC)": [esp_length("aes128-sha256", n) for n in messages],
        "aes128gcm16, tfcpad 1024": [esp_length("aes128gcm16", n, 1024) for n in messages],
    }
    fig, (near, far) = plt.subplots(1, 2, figsize=(11, 4))
    for label, lengths in series.items():
        far.step(messages, lengths, where="post", label=label)
        if "tfcpad" not in label:  # the first 120 bytes, close up: the steps of each cipher
            near.step(messages[:31], lengths[:31], where="post", marker=".", label=label)
    for ax, title in ((near, "close up: 4-byte (GCM) and 16-byte (CBC) steps"),
                      (far, "with TFC padding to 1024 bytes")):
        ax.set_xlabel("message length (bytes)")
        ax.set_ylabel("ESP packet on the wire (bytes)")
        ax.set_title(title)
        ax.legend()
    plt.show()
    for label, lengths in series.items():
        print(f"{label:26} {len(set(lengths)):3} distinct lengths for {len(messages)} messages")
    """),
    md("""
    Without TFC padding every 4 (GCM) or 16 (CBC) bytes of message show up on the wire: a
    login page and an error page, "yes" and "no", a keystroke and a paste are told apart
    without breaking any cipher. With `tfcpad 1024` the line is flat up to 1024 - 28 bytes of
    message, at the price of sending 1024 bytes for every small packet.

    ## The attack in the lab (root)

    `traffic_analysis.run(lab, config=...)`: h1 sends messages of 8 to 800 bytes to h2,
    mallory records the length of every ESP packet it forwards. The plot puts the measured
    points over the computed lines.
    """),
    code("""
    from IPython.display import display

    from ipseclab.attacks.common import attack_lab

    measured = {}
    if ROOT:
        for config in ("weak", "recommended"):
            with attack_lab("traffic-analysis", config) as lab:
                result = ta.run(lab, config=config)
            print(result.report(), "\\n")
            measured[config] = result.details["points"]
        assert len({w for _, w in measured["weak"]}) == len(ta.SIZES)
        assert len({w for _, w in measured["recommended"]}) == 1
        fig = ta.plot_sizes({f"measured, {k}": v for k, v in measured.items()})
        fig.axes[0].step(messages, series["aes128gcm16"], where="post", alpha=0.4,
                         label="computed, no TFC")
        fig.axes[0].legend()
        display(fig)
    else:
        print(NOT_ROOT)
    """),
    md("""
    The weak gateway's packets grow with the messages; the recommended one's are all the
    same size. The counters of gw2 show every packet accepted: traffic analysis never
    touches the cryptography, so no counter can show it. Only padding (and dummy packets,
    next header 59, for the timing, RFC 4303 §2.6) helps.

    ## Your turn 1: lengths that look alike

    A 100-byte UDP message under aes128gcm16 in tunnel mode: how long is the ESP packet?
    (Outer header 20, ESP header 8, IV 8, then the inner packet of 100 + 28 bytes plus the
    2 trailer bytes, padded to a multiple of 4, then the 16-byte ICV.) And which message
    lengths from 0 to 200 give exactly the same packet length?
    """),
    code("""
    my_length = 20 + 8 + 8 + 132 + 16  # your answer
    my_same = {99, 100, 101, 102}  # your answer
    """),
    code("""
    assert my_length == esp_length("aes128gcm16", 100), esp_length("aes128gcm16", 100)
    same = {n for n in range(201) if esp_length("aes128gcm16", n) == my_length}
    assert my_same == same, f"these give {my_length} bytes: {sorted(same)}"
    print("correct: mallory knows the message length to within", len(same), "bytes")
    """),
    md("""
    ## The birthday bound: 64-bit blocks (Sweet32)

    Lengths leak from every cipher. Block size leaks something else. In CBC, two equal
    ciphertext blocks C_i = C_j mean D_K(C_i) = D_K(C_j), so P_i XOR C_(i-1) = P_j XOR
    C_(j-1), and P_i XOR P_j = C_(i-1) XOR C_(j-1): the XOR of two plaintext blocks, from
    ciphertext alone. Among n random b-bit blocks a collision has probability about
    1 - exp(-n^2 / 2^(b+1)): likely after 2^(b/2) blocks. For 3DES (b = 64) that is 2^32
    blocks, 32 GiB, under one SA with no byte limit (RFC 4303 §3.3.3 on volume limits); for
    AES (b = 128) it is 2^64 blocks.
    """),
    code("""
    from ipseclab.attacks import sweet32

    from IPython.display import display

    display(sweet32.plot_collision_probability())
    for bits in (64, 128):
        half = sweet32.bytes_for_probability(0.5, bits)
        print(f"{bits:3}-bit blocks: 50% after {half / 2**30:.3g} GiB;"
              f" P(collision) after 1 TiB = {sweet32.collision_probability(2**40, bits):.3g}")
    """),
    md("""
    2^32 blocks are too many for a notebook, so we check the law in a smaller space: we
    encrypt 300 packets of 1000 bytes with 3DES-CBC (the core, demo keys) and count pairs of
    ciphertext blocks that agree in their first 16 or 24 bits, against the law's
    n(n-1)/2 / 2^bits. The same counting on 64 bits needs 2^32 blocks.
    """),
    code("""
    tx = demo_sa("3des-sha1", "tunnel")
    packets = [esp.encapsulate(tx, udp_packet(i.to_bytes(4, "big") + bytes(996)))
               for i in range(300)]
    blocks = sweet32.ciphertext_blocks(packets, block=8, icv=12)
    print(len(blocks), "ciphertext blocks of 8 bytes")
    for bits in (16, 24):
        seen = sweet32.count_collisions(blocks, bits)
        law = sweet32.expected_collisions(len(blocks), bits)
        print(f"  equal in the first {bits} bits: {seen} pairs (the law expects {law:.1f})")
        assert 0.5 * law <= seen <= 2 * law + 5
    """),
    md("""
    In the lab, `sweet32.run` does the same with packets mallory captures between a 3DES SA
    (weak) and an AES-GCM SA (recommended), and scales the result to the real block size.
    """),
    code("""
    if ROOT:
        for config in ("weak", "recommended"):
            with attack_lab("sweet32", config) as lab:
                result = sweet32.run(lab, config=config)
            print(result.report(), "\\n")
    else:
        print(NOT_ROOT)
    """),
    md("""
    ## Your turn 2: how much 3DES is too much?

    After how many bytes of 3DES ciphertext under one SA does a block collision have a 1%
    chance? Solve 1 - exp(-n^2 / 2^65) = 0.01 for n blocks and multiply by 8 bytes.
    """),
    code("""
    import math

    my_bytes = 8 * math.sqrt(2**65 * -math.log(0.99))  # your answer
    """),
    code("""
    real = sweet32.bytes_for_probability(0.01, 64)
    assert abs(my_bytes - real) / real < 0.01, f"{real / 2**30:.2f} GiB"
    print(f"correct: {my_bytes / 2**30:.2f} GiB; a byte lifetime far below that"
          " (or AES) keeps an SA safe")
    """),
    md("""
    ## Summary

    * ESP hides contents, not shape: the endpoints (in transport mode the hosts themselves,
      RFC 4303 §3.1.1) and each packet's length, to within 4 (GCM) or 16 (CBC) bytes.
    * TFC padding (`tfcpad`, RFC 4303 §2.7) makes every inner packet the same length in
      tunnel mode; dummy packets (next header 59, §2.6) hide timing. Both cost bandwidth.
    * 64-bit block ciphers reach the birthday bound after about 2^32 blocks (32 GiB) under
      one key (Sweet32): use AES (RFC 8221), and byte lifetimes on SAs.
    """),
]

# --------------------------------------------------------------------------------------------
IKE_ENGINES = code("""
    from ipseclab.config.swanctl import load_swanctl
    from ipseclab.crypto import kdf
    from ipseclab.ike import events
    from ipseclab.ike.engine import IkeEngine

    GW1, GW2 = ("192.0.2.1", 500), ("198.51.100.2", 500)  # the WAN addresses, UDP 500


    def engine(swanctl, **options):
        \"\"\"An in-memory IKE engine with the connections of one swanctl.conf (sans-IO:
        datagrams in, datagrams and events out; nothing is sent anywhere).\"\"\"
        return IkeEngine(list(load_swanctl(swanctl).connections.values()),
                         cookie_threshold=None, **options)


    def all_keys(ev):
        \"\"\"The seven SK_* keys (RFC 7296 §2.14) from an IkeSaKeysDerived event.\"\"\"
        return kdf.IkeKeys(SK_d=ev.sk_d, SK_ai=ev.sk_ai, SK_ar=ev.sk_ar, SK_ei=ev.sk_ei,
                           SK_er=ev.sk_er, SK_pi=ev.sk_pi, SK_pr=ev.sk_pr)
    """)

NB08F = [
    md("""
    # 08f: Weak PSK, an offline dictionary attack on IKEv2

    **Learning goals.** After this lesson you can

    * write out the PSK authentication of IKEv2, AUTH = prf(prf(PSK, "Key Pad for IKEv2"),
      <InitiatorSignedOctets>) (RFC 7296 §2.15), and say which of its inputs an attacker
      gets for free;
    * explain why whoever answers IKE_SA_INIT (a rogue responder on the path) can test PSK
      guesses offline, two PRF calls each, without talking to anyone again;
    * run the attack in the lab, measure guesses per second, extrapolate to real password
      lists, and see it fail against a 32-byte random PSK.

    Only the cells marked *lab* need root; the rest runs two IKE engines in memory.
    """),
    scope("mallory, the router between the two sites, answers gw1's IKE_SA_INIT in gw2's"
          " name and tests PSK guesses against the AUTH value gw1 sends."),
    SETUP,
    ROOT_CHECK,
    md("""
    ## The weak configuration

    Both gateways authenticate with a pre-shared key (`auth = psk`). In the weak
    configuration it is a word a person chose; in the recommended one, 32 random octets
    written in hex. RFC 7296 §2.15: a PSK derived from a password "is not secure" against
    this attack; it should be as random as a strong key.
    """),
    code("""
    from ipseclab.attacks import weak_psk
    from ipseclab.attacks.common import config_dir

    for config in ("weak", "recommended"):
        conf = config_dir("weak-psk", config) / "gw1.swanctl.conf"
        secret = next(line.strip() for line in conf.read_text().splitlines()
                      if line.strip().startswith("secret"))
        print(f"{config:12} gw1: {secret}")
    print("mallory's word list:", len(weak_psk.load_words()), "ordinary words,"
          " generated for the lab")
    """),
    md("""
    ## gw1 talks to a rogue responder (in memory)

    gw1 wants to reach gw2 and sends IKE_SA_INIT to gw2's address. Mallory, on the path,
    answers it with an IKE engine of its own (`topologies/attacks/weak-psk/rogue.swanctl.conf`:
    gw2's identity, a PSK mallory does not know). IKE_SA_INIT authenticates nobody (§1.2):
    gw1 completes the Diffie-Hellman exchange with mallory and derives the IKE SA's keys,
    the same ones mallory has. Then gw1 sends IKE_AUTH, encrypted with SK_ei, *for
    mallory*. Here both engines run in this process; the lab below does it on the wire.
    """),
    IKE_ENGINES,
    code("""
    from ipseclab.attacks.ike_common import SaInit

    gw1 = engine(config_dir("weak-psk", "weak") / "gw1.swanctl.conf")
    rogue = engine(weak_psk.ROGUE, report_keys=True)  # report its keys after IKE_SA_INIT

    gw1.initiate("site", 0.0)
    [(request, _, _)] = gw1.datagrams_to_send()  # IKE_SA_INIT request: SA, KE, Ni
    rogue.receive_datagram(request, GW1, GW2, 0.0)
    [(response, _, _)] = rogue.datagrams_to_send()  # mallory's answer: SA, KE, Nr
    gw1.receive_datagram(response, GW2, GW1, 0.01)
    [(auth_request, _, _)] = gw1.datagrams_to_send()  # IKE_AUTH: SK{IDi, AUTH, SA, TS...}

    [derived] = [e for e in iter(rogue.next_event, None)
                 if isinstance(e, events.IkeSaKeysDerived)]
    keys = all_keys(derived)
    init = SaInit.from_messages([request, response])
    goal = weak_psk.target(init, keys, auth_request)  # opens IKE_AUTH with SK_ei
    print("gw1's identity (IDi):", goal.identity.decode())
    print("gw1's AUTH:          ", goal.auth.hex())
    print("PRF of the IKE SA:   ", goal.prf)
    """),
    md("""
    ## AUTH, written out (RFC 7296 §2.15)

    For a PSK the initiator sends

        AUTH = prf( prf(PSK, "Key Pad for IKEv2"), <InitiatorSignedOctets> )
        InitiatorSignedOctets = RealMessage1 | NonceRData | MACedIDForI
        MACedIDForI = prf(SK_pi, RestOfInitIDPayload)

    `RealMessage1` is gw1's IKE_SA_INIT request as sent, `NonceRData` the responder's
    nonce (mallory's own), `RestOfInitIDPayload` the ID type, three reserved octets and the
    identity. Everything but the PSK is known to mallory: the request crossed its path, the
    nonce and SK_pi are its own. We build the octets by hand and check one guess.
    """),
    code("""
    prf = init.suite.prf
    id_body = bytes([2, 0, 0, 0]) + goal.identity  # ID_FQDN (2), RESERVED, the identity
    signed_octets = init.request + init.nr + prf.prf(keys.SK_pi, id_body)
    assert signed_octets == goal.signed_octets
    print(f"InitiatorSignedOctets: {len(init.request)} + {len(init.nr)} +"
          f" {len(prf.prf(keys.SK_pi, id_body))} = {len(signed_octets)} octets")

    guess = "winter2024"
    key = prf.prf(guess.encode(), weak_psk.PAD)  # prf(PSK, "Key Pad for IKEv2")
    auth = prf.prf(key, signed_octets)
    print(f"AUTH for {guess!r}: {auth.hex()}")
    print("matches gw1's AUTH:", auth == goal.auth)
    assert auth == goal.auth
    """),
    md("""
    Two PRF calls per guess, no network, no lockout, no log entry on gw2 (gw2 never saw
    the exchange). The search is a loop over a word list: `weak_psk.search`.
    """),
    code("""
    words = weak_psk.load_words()
    found, tried, seconds = weak_psk.search(goal, words)
    _, everything, full = weak_psk.search(weak_psk.Target(prf, signed_octets, b"", b""), words)
    rate = everything / full
    print(f"found {found!r} after {tried} of {len(words)} words in {seconds * 1000:.1f} ms")
    print(f"{rate:,.0f} guesses/s on one core, in Python")
    """),
    md("""
    ## How far that goes

    A real leaked-password list has some 14 million entries (`weak_psk.REAL_LIST`); a GPU
    computes HMAC-SHA-256 some ten thousand times faster than this loop. A random PSK of 32
    octets has 2^256 values: on average 2^255 guesses.
    """),
    code("""
    YEAR = 365.25 * 86400
    print(f"14 million words:        {weak_psk.REAL_LIST / rate:10,.0f} s at {rate:,.0f}/s")
    for name, space in (("8 lowercase letters", 26 ** 8), ("10 of 94 printable", 94 ** 10),
                        ("32 random octets", 2 ** 256)):
        print(f"{name:24} {space / 2 / rate / YEAR:10.3g} years (half the space)")
    """),
    md("""
    ## The attack in the lab (root)

    `weak_psk.run(lab)`: the `on-path-attacker` topology with both gateways running IKEv2
    (`impl: ipseclab`, `start_action = trap`). mallory's rogue responder takes over gw2's
    address inside mallory's namespace (`ipseclab.attacks.rogue_responder`), h1 sends a
    datagram to h2, gw1's trap starts IKE, and mallory gets IKE_AUTH, then searches the
    list. The lab's files go to a temporary directory that is removed afterwards.
    """),
    code("""
    import tempfile
    from pathlib import Path

    from ipseclab.attacks.ike_common import ike_lab

    if ROOT:
        with tempfile.TemporaryDirectory(prefix="nb08f-") as tmp:
            with ike_lab("weak-psk", "weak", Path(tmp) / "lab") as lab:
                weak = weak_psk.run(lab, config="weak")
                gw1_log = (lab.workdir / "gw1" / "gateway.log").read_text()
        print(weak.report())
        print()
        for line in gw1_log.splitlines():
            if "keys derived" in line or "authentication failed" in line:
                print("gw1:", line.split(" ipseclab.")[-1])
        assert weak.succeeded and weak.details["psk"] == "winter2024"
    else:
        print(NOT_ROOT)
    """),
    md("""
    gw1's own log shows what happened to it: an IKE SA with "gw2" got its keys, and then
    gw2 (mallory) refused gw1's AUTH. That failure is all gw1 sees; the PSK is gone.
    With certificates (`auth = pubkey`) AUTH is a signature: there is no small secret in it
    to guess offline.

    ## The fix fails the attack

    The recommended configuration has a PSK of 32 random octets. Same rogue, same list.
    """),
    code("""
    strong = engine(config_dir("weak-psk", "recommended") / "gw1.swanctl.conf")
    rogue = engine(weak_psk.ROGUE, report_keys=True)
    strong.initiate("site", 0.0)
    [(request, _, _)] = strong.datagrams_to_send()
    rogue.receive_datagram(request, GW1, GW2, 0.0)
    [(response, _, _)] = rogue.datagrams_to_send()
    strong.receive_datagram(response, GW2, GW1, 0.01)
    [(auth_request, _, _)] = strong.datagrams_to_send()
    [derived] = [e for e in iter(rogue.next_event, None)
                 if isinstance(e, events.IkeSaKeysDerived)]
    init2 = SaInit.from_messages([request, response])
    goal2 = weak_psk.target(init2, all_keys(derived), auth_request)
    found2, tried2, _ = weak_psk.search(goal2, words)
    print(f"in memory: {tried2} words tried, found: {found2}")
    assert found2 is None

    if ROOT:
        with tempfile.TemporaryDirectory(prefix="nb08f-") as tmp:
            with ike_lab("weak-psk", "recommended", Path(tmp) / "lab") as lab:
                fixed = weak_psk.run(lab, config="recommended")
        print(fixed.report())
        assert not fixed.succeeded and fixed.details["psk"] is None
    else:
        print(NOT_ROOT)
    """),
    md("""
    ## Your turn 1: one guess by hand

    The attacker tries `"summer2024"`. Compute its AUTH with the two PRF calls of §2.15 and
    say whether it matches gw1's (`goal.auth`).
    """),
    code("""
    my_key = prf.prf(b"summer2024", b"Key Pad for IKEv2")  # your answer: the two PRF calls
    my_auth = prf.prf(my_key, signed_octets)
    my_match = False  # your answer
    """),
    code("""
    expected = weak_psk.Target(prf, signed_octets, goal.auth, goal.identity)
    assert my_auth == prf.prf(prf.prf(b"summer2024", weak_psk.PAD), signed_octets)
    assert my_match == (weak_psk.search(expected, ["summer2024"])[0] is not None)
    print("correct: 'summer2024' gives", my_auth.hex()[:16], "..., not gw1's AUTH")
    """),
    md("""
    ## Your turn 2: the extrapolation

    At the rate measured above, how many seconds does the whole space of 6-character
    passwords of lowercase letters and digits (36^6) take, in the worst case?
    """),
    code("""
    my_seconds = 36 ** 6 / rate  # your answer
    """),
    code("""
    assert abs(my_seconds - 36 ** 6 / rate) <= 0.01 * 36 ** 6 / rate
    print(f"correct: {my_seconds:,.0f} s, {my_seconds / 3600:.1f} hours on one core in Python")
    """),
    md("""
    ## Summary

    * PSK authentication in IKEv2 is AUTH = prf(prf(PSK, "Key Pad for IKEv2"),
      <InitiatorSignedOctets>) (RFC 7296 §2.15). Whoever completes IKE_SA_INIT with the
      initiator can open its IKE_AUTH and knows every input but the PSK.
    * The initiator authenticates first (§1.2), so a rogue responder on the path gets one
      AUTH value and tests guesses offline, two PRF calls each: thousands per second in
      Python, billions on GPUs. A word from a list falls at once.
    * The fix: a PSK of 32 random octets (§2.15), or certificates (`auth = pubkey`). The
      search then finds nothing in any time that matters.
    """),
]

# --------------------------------------------------------------------------------------------
NB08G = [
    md("""
    # 08g: Weak Diffie-Hellman, a passive attacker solves the discrete log

    **Learning goals.** After this lesson you can

    * say why all of IKEv2's keys hang on g^ir (RFC 7296 §2.14: SKEYSEED = prf(Ni | Nr,
      g^ir)) and what an observer of IKE_SA_INIT sees in the clear;
    * run baby-step giant-step by hand on a tiny group and explain its sqrt(q) cost;
    * break a recorded handshake in a 40-bit toy group: recompute SKEYSEED, open IKE_AUTH
      and the ESP traffic, and read a cost plot that places real groups (Logjam, x25519).

    Only the cells marked *lab* need root; the rest runs two IKE engines in memory.
    """),
    scope("mallory, the router between the two sites, only records what it forwards and"
          " computes afterwards; it sends nothing."),
    SETUP,
    ROOT_CHECK,
    md("""
    ## The weak configuration: a toy group

    The weak gateways propose `aes128gcm16-prfsha256-modp40toy`: a MODP group with a 40-bit
    safe prime p = 2q + 1 and a generator g of prime order q (as RFC 3526 builds the real
    ones), IANA private-use ID 1040 (§3.3.2). It exists only in the attack library:
    `weak_dh.enable_toy_group()` registers it in this process, and the lab starts the weak
    gateways through `python -m ipseclab.attacks.weak_dh gateway` (`impl: ipseclab-toydh`),
    which logs a warning. The recommended configuration uses x25519 (RFC 7748).
    """),
    code("""
    from ipseclab.attacks import weak_dh
    from ipseclab.attacks.common import config_dir

    group = weak_dh.enable_toy_group()  # INSECURE, for this lesson only
    p, q, g = group.p, group.q, group.g
    print(f"p = {p:#x} ({p.bit_length()} bits), q = (p - 1) / 2 = {q:#x}, g = {g}")
    print("p = 2q + 1:", p == 2 * q + 1, "| g^q mod p =", pow(g, q, p), "(g has order q)")
    for config in ("weak", "recommended"):
        conf = (config_dir("weak-dh", config) / "gw1.swanctl.conf").read_text()
        print(f"{config:12}", next(line.strip() for line in conf.splitlines()
                                   if line.strip().startswith("proposals")))
    """),
    md("""
    ## Baby-step giant-step on a group you can follow

    Given g, y = g^x mod p and the order q of g, find x. Write x = i·m + j with
    m = ceil(sqrt(q)) and 0 <= j < m. Then y · (g^-m)^i = g^j. **Baby steps:** a table of
    g^j for j = 0 .. m-1. **Giant steps:** y, y·g^-m, y·g^-2m, ... until one is in the
    table. At most m of each: about sqrt(q) work and memory instead of q.

    Take p = 23 = 2·11 + 1, g = 4 (order 11) and y = 13.
    """),
    code("""
    from math import isqrt

    P, G, Q, Y = 23, 4, 11, 13
    M = isqrt(Q - 1) + 1  # ceil(sqrt(11)) = 4
    baby = {pow(G, j, P): j for j in range(M)}
    print("m =", M, "| baby steps g^j:", {f"4^{j}": v for v, j in baby.items()})
    step = pow(G, -M, P)  # g^-m mod p
    gamma = Y
    for i in range(M):
        hit = baby.get(gamma)
        print(f"giant step i={i}: y * g^-{M * i} = {gamma:2}", f"-> in the table: j = {hit}"
              if hit is not None else "")
        if hit is not None:
            x = i * M + hit
            break
        gamma = gamma * step % P  # the next giant step
    print(f"x = i*m + j = {x}; check 4^{x} mod 23 = {pow(G, x, P)}")

    from ipseclab.attacks.dlog import bsgs

    assert pow(G, x, P) == Y and bsgs(G, Y, P, Q) == x
    """),
    md("""
    ## A handshake in the toy group, recorded (in memory)

    gw1 and gw2 of the weak configuration run IKE_SA_INIT and IKE_AUTH in this process;
    we keep every message as mallory would record it, and then send one ESP packet with
    the child SA gw1 got. mallory has only the list `recorded` and that packet.
    """),
    IKE_ENGINES,
    code("""
    from ipseclab.ipsec import esp
    from ipseclab.teaching.demo import udp_packet

    gw1 = engine(config_dir("weak-dh", "weak") / "gw1.swanctl.conf")
    gw2 = engine(config_dir("weak-dh", "weak") / "gw2.swanctl.conf")
    recorded = []
    gw1.initiate("site", 0.0)
    for now in (0.01, 0.02, 0.03, 0.04):
        for sender, receiver, src, dst in ((gw1, gw2, GW1, GW2), (gw2, gw1, GW2, GW1)):
            for data, _, _ in sender.datagrams_to_send():
                recorded.append(data)
                receiver.receive_datagram(data, src, dst, now)
    child = next(e for e in iter(gw1.next_event, None)
                 if isinstance(e, events.ChildSaEstablished))
    inner = udp_packet(weak_dh.SECRET, src="10.1.0.10", dst="10.2.0.10", sport=40000,
                       dport=weak_dh.PORT, ttl=63)
    esp_packet = esp.encapsulate(child.outbound, inner)
    print(len(recorded), "IKE messages and one ESP packet recorded;",
          "the secret in the ESP packet:", weak_dh.SECRET in esp_packet)
    """),
    md("""
    ## The real solve

    IKE_SA_INIT is in the clear: mallory reads g^i (gw1's KE payload), g^r (gw2's), the
    nonces and the SPIs. It solves g^x = g^i for gw1's private exponent x with
    baby-step giant-step (m = 2^19.5, about 741,000 table entries), then computes
    g^ir = (g^r)^x mod p, as gw1 did.
    """),
    code("""
    from ipseclab.attacks.ike_common import SaInit

    init = SaInit.from_messages(recorded)
    print("KE of gw1 (g^i):", init.ke_i.data.hex(), "| KE of gw2 (g^r):", init.ke_r.data.hex())
    x, solve_seconds = weak_dh.solve(group, init.ke_i.data)
    print(f"x = {x}, found in {solve_seconds:.2f} s; g^x mod p == g^i:",
          pow(g, x, p) == int.from_bytes(init.ke_i.data, "big"))
    g_ir = weak_dh.shared_secret(group, x, init.ke_r.data)
    print("g^ir =", g_ir.hex())
    """),
    md("""
    ## SKEYSEED and the SK_* keys, recomputed (RFC 7296 §2.14)

        SKEYSEED = prf(Ni | Nr, g^ir)
        {SK_d | SK_ai | SK_ar | SK_ei | SK_er | SK_pi | SK_pr}
            = prf+(SKEYSEED, Ni | Nr | SPIi | SPIr)

    With an AEAD (aes128gcm16) SK_ai and SK_ar are empty and SK_e* carry a 4-octet salt
    (RFC 5282 §7.1). We compare with the keys gw1 really used.
    """),
    code("""
    from ipseclab.attacks.ike_common import sa_keys

    prf = init.suite.prf
    skeyseed = prf.prf(init.ni + init.nr, g_ir)
    print("SKEYSEED =", skeyseed.hex())
    keys = sa_keys(init, g_ir)
    print("SK_ei    =", keys.SK_ei.hex(), "| SK_er =", keys.SK_er.hex())
    gw1_keys = next(sa for sa in gw1._sas.values()).keys  # gw1's own, only to compare
    assert keys == gw1_keys
    print("mallory's SK_* are gw1's")
    """),
    md("""
    ## IKE_AUTH and ESP, opened

    With SK_ei and SK_er mallory opens both IKE_AUTH messages (§3.14): the identities,
    the AUTH values, the child SA's proposal and traffic selectors. With SK_d and the
    nonces it computes the child SA's KEYMAT = prf+(SK_d, Ni | Nr) (§2.17) and decrypts
    the ESP packet.
    """),
    code("""
    from ipseclab.attacks.ike_common import auth_exchange, child_sas, decrypt_esp, open_sk

    request, response = auth_exchange(recorded, init)
    _, inner_request = open_sk(request, init, keys)
    _, inner_response = open_sk(response, init, keys)
    print("IKE_AUTH request: ", [type(pl).__name__ for pl in inner_request])
    print("IKE_AUTH response:", [type(pl).__name__ for pl in inner_response])
    sa_out, _ = child_sas(init, keys, inner_request, inner_response, GW1[0], GW2[0])
    [opened] = decrypt_esp(sa_out, [esp_packet.hex()])
    print("ESP, decrypted:", opened[28:].decode())
    assert opened[28:] == weak_dh.SECRET
    """),
    md("""
    ## What it costs for real groups

    The measured toy solve scaled by sqrt(q) gives the generic attack (baby-step
    giant-step, Pollard rho), the only known one on x25519: about 2^126 steps. MODP groups
    also fall to the number field sieve, whose expensive part is a precomputation *per
    prime*; the dashed curve is its L[1/3] shape anchored at Logjam's 768-bit estimate
    (Adrian et al., CCS 2015). These are extrapolations, not measurements.
    """),
    code("""
    import tempfile
    from pathlib import Path

    from IPython.display import Image, display

    with tempfile.TemporaryDirectory(prefix="nb08g-") as tmp:
        display(Image(filename=str(weak_dh.cost_plot(Path(tmp) / "cost.png", solve_seconds))))
    for name, row in weak_dh.estimates(solve_seconds).items():
        print(f"{name:9}", ", ".join(f"{k} ~{v / weak_dh.SECONDS_PER_YEAR:.0e} core-years"
                                     for k, v in row.items()))
    """),
    md("""
    ## The attack in the lab (root)

    `weak_dh.run(workdir=...)` starts the `on-path-attacker` lab with the toy-group gateways
    (weak) or x25519 (recommended); h1 sends the secret to h2, mallory records the WAN with
    its sniffer and then does what we did above. Both labs run in a temporary directory
    that is removed afterwards.
    """),
    code("""
    if ROOT:
        with tempfile.TemporaryDirectory(prefix="nb08g-") as tmp:
            weak = weak_dh.run(config="weak", workdir=Path(tmp) / "lab",
                               plot=Path(tmp) / "cost.png")
        print(weak.report())
        assert weak.succeeded and weak.details["esp_plaintext"] == weak_dh.SECRET.decode()
    else:
        print(NOT_ROOT)
    """),
    md("""
    ## The fix fails the attack

    x25519: the KE payloads are 32-octet curve points; there is no discrete log in reach,
    and the attack stops before SKEYSEED.
    """),
    code("""
    if ROOT:
        with tempfile.TemporaryDirectory(prefix="nb08g-") as tmp:
            fixed = weak_dh.run(config="recommended", workdir=Path(tmp) / "lab")
        print(fixed.report())
        assert not fixed.succeeded and fixed.details["delivered"] == 1
    else:
        print(NOT_ROOT)
    """),
    md("""
    ## Your turn 1: baby-step giant-step by hand

    In the tiny group above (p = 23, g = 4, order 11), find x with 4^x = 9 (mod 23). Use
    the table `baby` and giant steps, or think.
    """),
    code("""
    my_x = 8  # your answer
    """),
    code("""
    assert pow(4, my_x, 23) == 9 and 0 <= my_x < 11, f"4^{my_x} mod 23 = {pow(4, my_x, 23)}"
    assert bsgs(4, 9, 23, 11) == my_x
    print("correct: 4^8 = 65536 = 2849 * 23 + 9")
    """),
    md("""
    ## Your turn 2: a bigger toy

    Baby-step giant-step needs about sqrt(q) steps. At the rate measured above (40-bit p,
    q about 2^39), how many seconds would a 64-bit safe prime (q about 2^63) take?
    """),
    code("""
    my_seconds = solve_seconds * 2 ** ((63 - 39) / 2)  # your answer
    """),
    code("""
    expected = solve_seconds * 2 ** 12
    assert abs(my_seconds - expected) <= 0.05 * expected, f"about {expected:,.0f} s"
    print(f"correct: about {my_seconds / 3600:.1f} hours; 2^12 = 4096 times the toy")
    """),
    md("""
    ## Summary

    * All of IKEv2's keys come from g^ir (RFC 7296 §2.14); the public values, nonces and
      SPIs cross the wire in clear. Whoever computes one discrete log computes SKEYSEED,
      every SK_* key, the child SAs' KEYMAT (§2.17), and reads IKE_AUTH and the ESP
      traffic, after the fact, from a recording.
    * Baby-step giant-step solves any group of order q in about sqrt(q) steps: a 40-bit
      toy group in seconds. Real MODP groups fall to the number field sieve, with a
      precomputation per prime (Logjam); 1024-bit groups are within reach of a nation.
    * The fix: groups of at least 2048 bits, better x25519 (RFC 8247 §2.4); a responder
      should not accept groups it would not want to end up with.
    """),
]


NOTEBOOKS = {
    "08a-esp-null-and-ah.ipynb": NB08A,
    "08b-encryption-without-integrity.ipynb": NB08B,
    "08c-replay.ipynb": NB08C,
    "08d-gcm-nonce-reuse.ipynb": NB08D,
    "08e-traffic-analysis.ipynb": NB08E,
    "08f-weak-psk.ipynb": NB08F,
    "08g-weak-dh.ipynb": NB08G,
}


def build(directory: Path = HERE) -> list[Path]:
    return _base.write(NOTEBOOKS, directory)


if __name__ == "__main__":
    for p in build(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(p)
