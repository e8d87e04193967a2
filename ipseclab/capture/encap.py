"""Protect a plaintext capture with manual SAs: what ``ipseclab encap`` does.

Each IP packet of the input goes through the outbound SPD of an ``ip xfrm`` file, exactly
as a gateway would send it; the protected capture and a Wireshark key log come out.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ipseclab.capture.keys import esp_sa_entry
from ipseclab.capture.pcap import (
    IP_LINKTYPES,
    LINKTYPE_RAW,
    CaptureError,
    Frame,
    PcapWriter,
    ip_payload,
    read_capture,
)
from ipseclab.config.xfrm import ManualConfig
from ipseclab.ipsec.engine import IpsecEngine
from ipseclab.ipsec.sa import Protocol
from ipseclab.keylog import EspSaFile


@dataclass
class EncapReport:
    frames: int = 0
    not_ip: int = 0
    actions: dict[str, int] = field(default_factory=dict)
    details: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = ", ".join(f"{n} {a}" for a, n in sorted(self.actions.items()))
        extra = f", {self.not_ip} not IP (dropped)" if self.not_ip else ""
        return f"{self.frames} frames: {parts or 'nothing'}{extra}"


def write_keylog(config: ManualConfig, path: str | os.PathLike[str]) -> int:
    """Write the ``esp_sa`` lines of every ESP SA in a config; returns how many."""
    entries = [esp_sa_entry(sa) for sa in config.states if sa.protocol is Protocol.ESP]
    path = Path(path)
    try:
        if path.exists():
            path.unlink()
        file = EspSaFile(path)
        for entry in entries:
            file.add(entry)
    except OSError as e:
        raise CaptureError(f"cannot write the key log: {e.strerror or e}", file=str(path)
                           ) from None
    return len(entries)


def encap_capture(config: ManualConfig, src: str | os.PathLike[str],
                  dst: str | os.PathLike[str],
                  progress: Callable[[int], None] | None = None) -> EncapReport:
    """Run every packet of ``src`` through the outbound SPD and write ``dst`` (raw IP).

    The input is opened and its first frame read before anything is created, so a missing
    or damaged input leaves no empty output behind; ``dst`` may not be ``src`` itself. The
    capture is written beside ``dst`` and renamed to it only when complete: an input that
    breaks off, or Ctrl-C, leaves an earlier ``dst`` as it was and no partial file.
    """
    if Path(dst).exists() and Path(dst).resolve() == Path(src).resolve():
        raise CaptureError("the output would overwrite the input capture", file=str(dst))
    engine = IpsecEngine()
    engine.load(config.states, config.policies)
    report = EncapReport()
    frames = read_capture(src)
    first = next(frames, None)
    try:
        Path(dst).parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise CaptureError(f"cannot create its directory: {e.strerror or e}",
                           file=str(dst)) from None
    part = Path(dst).with_name(Path(dst).name + ".part")
    try:
        with PcapWriter(part, LINKTYPE_RAW) as writer:
            _encap_frames(engine, itertools.chain((first,) if first is not None else (), frames),
                          writer, report, progress)
        os.replace(part, dst)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return report


def _encap_frames(engine: IpsecEngine, frames: Iterable[Frame], writer: PcapWriter,
                  report: EncapReport, progress: Callable[[int], None] | None) -> None:
    for frame in frames:
        report.frames += 1
        if progress is not None and report.frames % 10000 == 0:
            progress(report.frames)
        packet = ip_payload(frame.linktype, frame.data)
        if packet is None:
            report.not_ip += 1
            if frame.linktype not in IP_LINKTYPES and report.not_ip == 1:
                report.details.append(f"frame {frame.number}: link type {frame.linktype},"
                                      " which ipseclab does not read")
            continue
        out = engine.outbound(bytes(packet))
        report.actions[out.action] = report.actions.get(out.action, 0) + 1
        if out.packet is not None:
            writer.write(out.packet, frame.timestamp)
        elif out.detail and len(report.details) < 10:
            report.details.append(f"frame {frame.number}: {out.action}: {out.detail}")

