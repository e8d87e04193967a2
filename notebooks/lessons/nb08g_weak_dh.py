"""Lesson 08g, weak Diffie-Hellman: a passive attacker solves the discrete log of a toy
group and recomputes SKEYSEED (RFC 7296 §2.14); why 2048-bit groups or x25519.
"""

from __future__ import annotations

from .attack_cells import IKE_ENGINES, ROOT_CHECK, scope
from .cells import SETUP_INLINE, code, md

CELLS = [
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
    SETUP_INLINE,
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

    from ipseclab.attacks.dlog import bsgs

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
