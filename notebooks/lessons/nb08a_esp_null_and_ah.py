"""Lesson 08a, ESP-NULL and AH: integrity without confidentiality; the inner packet read
without a key, the attack in the lab and the fix (RFC 2410, RFC 4302, RFC 4303 §3.2).
"""

from __future__ import annotations

from .attack_cells import IP_PACKETS, ROOT_CHECK, SHOW_CONFIG, scope
from .cells import SETUP, code, md

CELLS = [
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
    byte 28 and the message follows its IPv4 (20) and UDP (8) headers. Only the padding
    (none here: the length already fits), the pad length, the next header (4: an IPv4
    packet, tunnel mode) and the 16-byte ICV come after it.

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
