"""Lesson 04, anti-replay: sequence numbers, the receiver's replay window and Extended
Sequence Numbers (RFC 4303 §2.2, §3.4.3).
"""

from __future__ import annotations

from .cells import SETUP, code, md

CELLS = [
    md("""
    # 04: Anti-replay

    **Learning goals.** After this lesson you can

    * explain why ESP and AH carry a sequence number (RFC 4303 §2.2, §3.4.3);
    * draw the receiver's replay window as packets arrive out of order;
    * tell a replay from a packet that is too old;
    * explain Extended Sequence Numbers: what happens at 2^32, and why the high bits are in
      the ICV even though they are never sent (RFC 4303 §2.2.1).
    """),
    SETUP,
    md("""
    ## Why a window?

    An attacker can record a valid ESP packet and send it again later: the ICV is still
    right. So the sender numbers packets 1, 2, 3, ... and the receiver remembers which
    numbers it has accepted. Networks reorder packets, so a receiver accepts numbers a little
    below the highest one seen: within a **window** of W numbers (RFC 4303 §3.4.3, Appendix
    A). Below the window a packet is **too old**; inside it, a number already seen is a
    **replay**.
    """),
    code("""
    from ipseclab.ipsec.replay import ReplayWindow

    W = 16
    window = ReplayWindow(W)
    arrivals = [1, 2, 4, 3, 8, 5, 5, 20, 12, 9, 3, 21, 19, 30, 14, 25]
    history = []
    for seq in arrivals:
        check = window.check(seq)
        if check.ok:
            window.update(check.seq64)  # a real receiver does this after the ICV verified
        history.append((seq, check.verdict.value, window.highest,
                        [window.seen(n) for n in range(1, 33)]))
        print(f"seq {seq:3}: {check.verdict.value:8}  highest now {window.highest}")
    """),
    md("""
    ## The window as a picture

    One row per arriving packet (top to bottom), one column per sequence number. Dark:
    accepted and remembered. The frame on each row is the window: `W` numbers ending at the
    highest one seen. Red crosses mark the packet that just arrived and was dropped.
    """),
    code("""
    import numpy as np
    from matplotlib.patches import Rectangle

    grid = np.array([row for *_, row in history], dtype=float)
    fig, ax = plt.subplots(figsize=(11, 6))
    ax.imshow(grid, cmap="Blues", vmin=0, vmax=1.4, aspect="auto",
              extent=(0.5, 32.5, len(history) - 0.5, -0.5))
    for i, (seq, verdict, highest, _) in enumerate(history):
        ax.add_patch(Rectangle((highest - W + 0.5, i - 0.5), W, 1, fill=False,
                               edgecolor="black", linewidth=1))
        mark = "o" if verdict == "ok" else "x"
        ax.plot(seq, i, mark, color="green" if verdict == "ok" else "red", markersize=8)
    ax.set_yticks(range(len(history)), [f"{s} ({v})" for s, v, *_ in history], fontsize=8)
    ax.set_xlim(0.5, 32.5)
    ax.set_xlabel("sequence number")
    ax.set_ylabel("packet arriving (verdict)")
    ax.set_title(f"Replay window, W = {W}")
    plt.show()
    """),
    md("""
    ## With real packets

    The window above is the one inside every SA. Here a sender SA protects 40 packets; we
    deliver some out of order, one twice, and one very late, to a receiver with a 32-number
    window.
    """),
    code("""
    from ipseclab.ipsec import esp
    from ipseclab.teaching.demo import demo_pair, udp_packet

    tx, rx = demo_pair("aes128gcm16", "transport", replay_window=32)
    sent = [esp.encapsulate(tx, udp_packet(16)) for _ in range(40)]
    order = [1, 3, 2, 5, 5, 4, 40, 7, 6, 9]  # 5 twice; 7 arrives after 40
    for n in order:
        r = esp.decapsulate(rx, sent[n - 1])
        print(f"packet {n:2}: {r.status}")
    print(rx.counters)
    """),
    md("""
    What to notice: once packet 40 is accepted, the window covers 9 to 40 (32 numbers
    ending at the highest). Packets 7 and 6 arrive below it and are *too old*, although
    the receiver never saw them; 9, just inside, is accepted. The counters add up: 7
    packets accepted, 1 replay, 2 too old.

    ## Extended Sequence Numbers (RFC 4303 §2.2.1)

    A 32-bit counter runs out after 2^32 packets: at 10 Gbit/s and small packets, in
    minutes, and the SA must then be rekeyed (§3.3.3). With **ESN** the counter has 64 bits,
    but only the low 32 travel in the packet. The receiver infers the high bits from its
    window (Appendix A2.2), and the sender puts the high bits into the ICV computation, so a
    wrong guess fails the ICV instead of going unnoticed.

    Let's start an SA just below 2^32 and cross the boundary.
    """),
    code("""
    tx, rx = demo_pair("aes128-sha256", "transport", esn=True, replay_window=64)
    tx.seq = 2**32 - 3  # pretend the sender has already sent that many packets ...
    rx.replay.update(2**32 - 3)  # ... and the receiver has accepted them
    for _ in range(5):
        wire = esp.encapsulate(tx, udp_packet(8))
        low = int.from_bytes(wire[24:28], "big")
        r = esp.decapsulate(rx, wire)
        print(f"sent seq {tx.seq:>11} = 0x{tx.seq:010x}; on the wire 0x{low:08x};"
              f" receiver: {r.status}, seq {r.seq}")
    last = wire
    """),
    md("""
    The last packet carries `0x00000002` on the wire, yet the receiver knew it was
    `2^32 + 2`. Now a receiver **without** ESN (same keys): it takes the number as 2 and
    leaves the high bits out of the ICV. The ICV, computed by the sender over the high bits
    `00000001`, does not match:
    """),
    code("""
    no_esn = demo_pair("aes128-sha256", "transport", esn=False)[1]
    r = esp.decapsulate(no_esn, last)
    print(r.status, "-", r.detail)
    """),
    md("""
    ## Your turn

    A receiver with a window of 32 has accepted packets up to number 100 (and nothing else
    is missing). Predict the verdict for arrivals 100, 69, 68 and 101, in that order. Use
    `"ok"`, `"replay"` or `"too old"`.
    """),
    code("""
    my_verdicts = ["replay", "replay", "too old", "ok"]  # your answer here
    """),
    code("""
    w = ReplayWindow(32)
    for n in range(1, 101):
        w.update(n)
    actual = []
    for n in (100, 69, 68, 101):
        check = w.check(n)
        actual.append(check.verdict.value)
        if check.ok:
            w.update(check.seq64)
    assert my_verdicts == actual, f"the window said {actual}"
    print("correct:", actual)
    """),
    md("""
    ## Summary

    * The sequence number lets the receiver drop replays; the window of W numbers tolerates
      reordering (RFC 4303 §3.4.3).
    * Numbers below the window are too old, numbers seen inside it are replays; the window
      moves only after the ICV verified, so a forgery cannot move it.
    * ESN extends the counter to 64 bits; the high half is never sent but is covered by the
      ICV, so sender and receiver must agree on it (RFC 4303 §2.2.1).
    """),
]
