"""Lesson 08c, replay: a recorded ESP packet sent again to a gateway without an
anti-replay window (RFC 4303 §3.4.3), and the fix.
"""

from __future__ import annotations

from .attack_cells import IP_PACKETS, ROOT_CHECK, SHOW_CONFIG, scope
from .cells import SETUP_INLINE, code, md

CELLS = [
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
    SETUP_INLINE,
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
