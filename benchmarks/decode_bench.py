"""``ipseclab decode --json`` beside tshark, decrypting the same ESP capture, in one run.

    .venv/bin/python benchmarks/decode_bench.py [--packets 100000]

Writes a capture of N ESP packets (aes128gcm16, tunnel mode, 100-byte inner packets: what a
ping-heavy lab capture looks like) and its key log into a temporary directory, then times
both decoders over it. The goal (issue 2): faster than tshark, aiming at twice as fast.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from ipseclab.capture.keys import esp_sa_entry
from ipseclab.capture.pcap import LINKTYPE_RAW, PcapWriter
from ipseclab.crypto import transforms
from ipseclab.ipsec import esp
from ipseclab.ipsec.sa import SecurityAssociation
from ipseclab.keylog import EspSaFile, keylog_dir_layout


def make_capture(directory: Path, n: int) -> Path:
    sa = SecurityAssociation(spi=0x1000, src="192.0.2.1", dst="192.0.2.2", mode="tunnel",
                             encryption=transforms.encryption("aes128gcm16"),
                             encryption_key=os.urandom(20))
    esp_sa, _ = keylog_dir_layout(directory)
    esp_sa.parent.mkdir(parents=True, exist_ok=True)
    EspSaFile(esp_sa).add(esp_sa_entry(sa))
    # 10.1.0.10 -> 10.2.0.10 UDP to port 50000 (a port no tshark dissector claims)
    inner = bytes.fromhex("4500006400000000401100000a01000a0a02000a9c40c35000500000") + bytes(72)
    path = directory / "esp.pcap"
    with PcapWriter(path, LINKTYPE_RAW) as w:
        for i in range(n):
            w.write(esp.encapsulate(sa, inner), 1_800_000_000 + i / 1000)
    return path


def timed(cmd: list[str], env: dict | None = None) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True, env=env)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--packets", type=int, default=100_000)
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        cap = make_capture(d, a.packets)
        keylog = d / "wireshark" / "esp_sa"
        ours = timed([sys.executable, "-m", "ipseclab", "decode", str(cap), "--json",
                      "--esp-sa", str(keylog)])
        print(f"{a.packets} ESP packets ({cap.stat().st_size / 1e6:.1f} MB)")
        print(f"ipseclab decode --json: {ours:7.2f} s  {a.packets / ours:10,.0f} packets/s")
        if shutil.which("tshark") is None:
            print("tshark is not installed: nothing to compare with")
            return
        theirs = timed(["tshark", "-r", str(cap), "-o", "esp.enable_encryption_decode:TRUE",
                        "-T", "fields", "-e", "frame.number", "-e", "esp.sequence",
                        "-e", "ip.dst"], env={**os.environ, "XDG_CONFIG_HOME": str(d)})
        print(f"tshark -T fields:       {theirs:7.2f} s  {a.packets / theirs:10,.0f} packets/s")
        print(f"ipseclab is {theirs / ours:.2f}x tshark's speed (goal > 1, aim 2)")


if __name__ == "__main__":
    main()
