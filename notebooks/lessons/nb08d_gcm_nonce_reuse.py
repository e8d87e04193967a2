"""Lesson 08d, GCM nonce reuse: a static AES-GCM key repeats nonces (RFC 4106); the XOR
of plaintexts, GHASH's hash key recovered, a forged packet in the lab, and the fix.
"""

from __future__ import annotations

from .attack_cells import ROOT_CHECK, scope
from .cells import SETUP_INLINE, code, md

CELLS = [
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
    SETUP_INLINE,
    ROOT_CHECK,
    md("""
    ## The weak configuration

    aes128gcm16 with manual keys. Nothing looks wrong in the file; the problem is time: the
    key outlives the gateway. After a restart the sequence number, and so the GCM nonce,
    starts again at 1 under the same key. RFC 4106 §10 (Security Considerations) therefore
    finds GCM hard to use safely with statically configured keys and requires automated key
    management, such as IKE.
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
    assert gf128.from_block(t2) ^ gf128.ghash(H, a2, ct2) == S  # the same for both
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
      plus a restart repeat it; RFC 4106 §10 requires IKE, not manual keys, for GCM.
    * One repeat gives away the XOR of two plaintexts (counter mode) and a polynomial whose
      root is the hash key H (Joux 2006); a second repeat pins H down. With H and the mask
      S = T + GHASH_H(A, C) the attacker tags whatever it likes (Böck et al. 2016).
    * The fix is a fresh key for every SA, which IKE provides (RFC 7296 §2.17). With other
      keys, equal IVs mean nothing, and a forged tag is an `auth_failed` at the gateway.
    """),
]
