"""Lesson 08e, traffic analysis and the birthday bound: what ESP's lengths and addresses
reveal, TFC padding (RFC 4303 §2.4, §2.7), and why 64-bit block ciphers are out (Sweet32).
"""

from __future__ import annotations

from .attack_cells import ROOT_CHECK, SHOW_CONFIG, scope
from .cells import SETUP, code, md

CELLS = [
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
    blocks, 32 GiB, under one SA without a byte lifetime (RFC 4301 §4.4.2.1); for
    AES (b = 128) it is 2^64 blocks.
    """),
    code("""
    from IPython.display import display

    from ipseclab.attacks import sweet32

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
    * TFC padding (`tfcpad` in `ip xfrm`, `tfc_padding = 1024` or `= mtu` in a child of
      swanctl.conf; RFC 4303 §2.7) makes every inner packet the same length in tunnel mode;
      dummy packets (next header 59, §2.6) hide timing. Both cost bandwidth.
    * 64-bit block ciphers reach the birthday bound after about 2^32 blocks (32 GiB) under
      one key (Sweet32): use AES (RFC 8221), and byte lifetimes on SAs (`rekey_bytes` in
      swanctl.conf: the child SA is rekeyed long before).
    """),
]
