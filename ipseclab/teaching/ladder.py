"""IKE ladder diagrams: the messages of a capture as arrows between two peers.

A ladder (sequence) diagram is how RFC 7296 §1.2 draws the exchanges: the initiator on the
left, the responder on the right, time running down, one arrow per message::

    Initiator                         Responder
    HDR, SAi1, KEi, Ni          -->
                                <--   HDR, SAr1, KEr, Nr, [CERTREQ]
    HDR, SK {IDi, AUTH, SAi2, TSi, TSr} -->
                                <--   HDR, SK {IDr, AUTH, SAr2, TSi, TSr}

:func:`ladder` turns a decoded capture into :class:`Rung` objects (data a notebook can
print or test), :func:`plot_ladder` draws them with matplotlib. The payloads inside SK are
only known with the IKE SA's keys (RFC 7296 §3.14), which come from the capture's
``ikev2_decryption_table``; without them the arrow says ``SK{?}``.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Iterable
from dataclasses import dataclass

from ipseclab.capture.decode import DecodedFrame, KeyRing, decode_capture
from ipseclab.capture.ike_decode import IkeKeys
from ipseclab.keylog import IkeSaEntry, read_ikev2

__all__ = ["Rung", "ladder", "plot_ladder"]


@dataclass(frozen=True, slots=True)
class Rung:
    """One message: who sent it, the exchange (RFC 7296 §3.1) and its payload names.

    ``kind`` is "ike" or "esp". For IKE, ``payloads`` shows SK's contents in braces
    (``SK{IDi, AUTH, SA, TSi, TSr}``), ``from_initiator`` is the I flag. For ESP,
    ``exchange`` is "ESP" and ``message_id`` the sequence number.
    """

    time: float
    sender: str
    receiver: str
    exchange: str
    response: bool
    message_id: int
    payloads: tuple[str, ...] = ()
    kind: str = "ike"
    status: str = "ok"
    from_initiator: bool = False
    frame: int = 0
    spi: int | None = None

    @property
    def title(self) -> str:
        """``IKE_AUTH #1 request`` (or ``ESP spi 0xc1a5e001 seq 1``)."""
        if self.kind == "esp":
            return f"ESP spi 0x{self.spi or 0:08x} seq {self.message_id}"
        return f"{self.exchange} #{self.message_id} {'response' if self.response else 'request'}"

    @property
    def label(self) -> str:
        """Title and payloads on one line, as :func:`print` of a ladder shows it."""
        text = self.title
        if self.payloads:
            text += ": " + ", ".join(self.payloads)
        if self.status != "ok":
            text += f" [{self.status}]"
        return text


def _ike_keys(keys: object) -> KeyRing:
    if keys is None:
        return KeyRing()
    if isinstance(keys, KeyRing):
        return keys
    if isinstance(keys, IkeKeys):
        ring = KeyRing()
        ring.ike = keys
        return ring
    if isinstance(keys, str | os.PathLike):
        return KeyRing(ike_entries=read_ikev2(keys))
    entries = list(keys)  # type: ignore[call-overload]
    if not all(isinstance(e, IkeSaEntry) for e in entries):
        raise TypeError("keys: a KeyRing, an IkeKeys, IkeSaEntry lines or a key-log path")
    return KeyRing(ike_entries=entries)


def ladder(frames_or_capture: str | os.PathLike[str] | Iterable[DecodedFrame],
           keys: object = None, *, esp: bool = True) -> list[Rung]:
    """The IKE (and, with ``esp``, ESP) messages of a capture, in order.

    ``frames_or_capture``: a pcap/pcapng path, decoded here with ``keys`` (a
    :class:`KeyRing`, an :class:`IkeKeys`, ``IkeSaEntry`` lines or the path of an
    ``ikev2_decryption_table``), or frames :func:`decode_capture` already decoded (then
    ``keys`` is not needed).
    """
    if isinstance(frames_or_capture, str | os.PathLike):
        frames: Iterable[DecodedFrame] = decode_capture(frames_or_capture, _ike_keys(keys))
    else:
        frames = frames_or_capture
    rungs = []
    for f in frames:
        if f.src is None or f.dst is None:
            continue
        if f.proto == "ike" and f.ike is not None:
            v = f.ike
            if v.message is None:  # not even the header parsed
                rungs.append(Rung(f.time, f.src, f.dst, "?", False, 0, (), "ike", f.status,
                                  False, f.frame))
                continue
            shown = list(v.shown_payloads)
            if v.inner is None and "SK" in shown:
                shown[shown.index("SK")] = "SK{?}"
            rungs.append(Rung(f.time, f.src, f.dst, v.exchange, v.response, v.message_id,
                              tuple(shown), "ike", f.status, v.initiator, f.frame))
        elif esp and f.proto == "esp" and f.spi is not None:
            rungs.append(Rung(f.time, f.src, f.dst, "ESP", False, f.seq or 0, (), "esp",
                              f.status, False, f.frame, f.spi))
    return rungs


def _peers(rungs: list[Rung]) -> tuple[str, str]:
    """(left, right): the IKE initiator on the left, as RFC 7296 draws it."""
    first = next((r for r in rungs if r.kind == "ike" and r.from_initiator), None)
    first = first or next((r for r in rungs if r.kind == "ike"), None) or rungs[0]
    if first.kind == "ike" and not first.from_initiator:
        return first.receiver, first.sender
    return first.sender, first.receiver


def plot_ladder(rungs: list[Rung], ax=None, *, width: int = 58, title: str | None = None):
    """Draw the rungs: two peers as vertical lines, one arrow per message, time running down.

    The time beside each arrow counts from the first message.

    IKE messages are thick arrows labelled with exchange, Message ID and payloads (SK's
    contents in braces); ESP packets thin grey arrows. A message that did not decode
    (``status`` other than ok) is labelled in red. Returns the matplotlib Axes.
    """
    import matplotlib.pyplot as plt

    if not rungs:
        raise ValueError("no messages to draw")
    left, right = _peers(rungs)
    heights = []
    for r in rungs:
        if r.kind == "esp":
            heights.append(0.55)
        else:
            lines = len(textwrap.wrap(", ".join(r.payloads), width)) if r.payloads else 0
            heights.append(1.0 + 0.38 * lines)
    total = sum(heights) + 0.8
    t0 = rungs[0].time
    if ax is None:
        _, ax = plt.subplots(figsize=(10, max(3.0, 0.55 * total + 1.2)))
    xl, xr = 0.0, 10.0
    ax.set_xlim(-1.5, 11.5)
    ax.set_ylim(-total, 1.3)
    ax.axis("off")
    for x, name, role in ((xl, left, "initiator"), (xr, right, "responder")):
        ax.plot([x, x], [0.2, -total], color="black", linewidth=1.5, zorder=1)
        ax.text(x, 0.45, f"{name}\n({role})", ha="center", va="bottom", fontsize=10,
                fontweight="bold", bbox={"boxstyle": "round", "facecolor": "#eef3fa",
                                         "edgecolor": "#4a6fa5"})
    y = -0.3
    for r, h in zip(rungs, heights, strict=True):
        y_arrow = y - h + 0.25
        start, end = (xl, xr) if r.sender == left else (xr, xl)
        bad = r.status not in ("ok", "unverified")
        if r.kind == "esp":
            color = "#b03030" if bad else "#8a8a8a"
            ax.annotate("", xy=(end, y_arrow), xytext=(start, y_arrow),
                        arrowprops={"arrowstyle": "->", "color": color, "linewidth": 0.8})
            text = r.title + (f" [{r.status}]" if bad else "")
            ax.text((xl + xr) / 2, y_arrow + 0.08, text, ha="center", va="bottom",
                    fontsize=7.5, color=color)
        else:
            color = "#b03030" if bad else ("#1f4e9a" if r.from_initiator else "#2e7d32")
            ax.annotate("", xy=(end, y_arrow), xytext=(start, y_arrow),
                        arrowprops={"arrowstyle": "-|>", "color": color, "linewidth": 2,
                                    "mutation_scale": 16})
            body = "\n".join(textwrap.wrap(", ".join(r.payloads), width))
            ax.text((xl + xr) / 2, y_arrow + 0.1, body, ha="center", va="bottom",
                    fontsize=8.5, family="monospace", color="black")
            head = r.title + (f" [{r.status}]" if bad else "")
            ax.text((xl + xr) / 2, y_arrow + 0.12 + 0.38 * body.count("\n") + 0.42, head,
                    ha="center", va="bottom", fontsize=9.5, fontweight="bold", color=color)
        ax.text(xl - 0.2, y_arrow, f"+{r.time - t0:.3f} s", fontsize=7.5, color="#666666",
                ha="right", va="center")
        y -= h
    if title:
        ax.set_title(title)
    return ax
