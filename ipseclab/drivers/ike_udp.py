"""A small asyncio driver for :class:`~ipseclab.ike.engine.IkeEngine`: IKE over UDP 500/4500.

Only IKE: the engine's datagrams go out of two UDP sockets bound to one address, what comes in
is fed to the engine with ``time.monotonic()`` as ``now``, the engine's timer is kept armed,
and its events are collected (and handed to a callback). No data plane: ESP arriving on port
4500 is counted and dropped.

On port 4500 IKE and ESP share the socket (RFC 3948 §2.2): an IKE message carries a leading
non-ESP marker of four zero octets, ESP starts with its non-zero SPI, and a single 0xFF octet
is a NAT keepalive (RFC 3948 §2.3). The marker is stripped before the engine sees a message
and added to every message the engine sends from or to a port other than 500.

Run it on its own, for tests inside a network namespace::

    python -m ipseclab.drivers.ike_udp --address 192.0.2.1 --config conn.json \\
        [--initiate NAME] [--until ChildSaEstablished,AuthenticationFailed] [--timeout 10]

``--config`` is a swanctl.conf (certificates and keys in ``x509/``, ``private/`` ... beside
it), or a JSON file: one :class:`~ipseclab.ike.config.IkeConfig` as an object (or a list of
them), children as a list of :class:`~ipseclab.ike.config.ChildConfig` objects, the PSK as
text. Each event is printed as one JSON line (keys in hex), after a first ``Listening`` line.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import enum
import ipaddress
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ipseclab.errors import IpsecLabError
from ipseclab.ike import events
from ipseclab.ike.config import ChildConfig, IkeConfig
from ipseclab.ike.engine import IkeEngine

__all__ = ["IKE_PORT", "NAT_T_PORT", "NON_ESP_MARKER", "IkeUdpDriver", "classify_4500",
           "config_from_dict", "event_to_dict", "load_configs", "main"]

IKE_PORT = 500
NAT_T_PORT = 4500
NON_ESP_MARKER = b"\x00\x00\x00\x00"
NAT_KEEPALIVE = b"\xff"


def classify_4500(data: bytes) -> tuple[str, bytes]:
    """What arrived on a NAT-T port (RFC 3948 §2.2, §2.3): ("ike", message without the
    marker), ("keepalive", b"") or ("esp", data); ("short", data) for anything too short."""
    if data == NAT_KEEPALIVE:
        return "keepalive", b""
    if len(data) < 8:
        return "short", data
    if data[:4] == NON_ESP_MARKER:
        return "ike", data[4:]
    return "esp", data


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(self, driver: IkeUdpDriver, port: int) -> None:
        self.driver = driver
        self.port = port
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        self.driver.datagram_received(data, (addr[0], addr[1]), self.port)

    def error_received(self, exc: Exception) -> None:
        self.driver.errors.append(f"port {self.port}: {exc}")  # e.g. ICMP port unreachable


class IkeUdpDriver:
    """Runs one engine on ``address`` (UDP ``ports``, 500 and 4500 by default).

    ``on_event(event)`` is called for every event; all of them are also kept in ``events``.
    Use as ``async with IkeUdpDriver(engine, "192.0.2.1") as driver: ...``.
    """

    def __init__(self, engine: IkeEngine, address: str, *,
                 ports: tuple[int, ...] = (IKE_PORT, NAT_T_PORT),
                 on_event: Callable[[events.Event], None] | None = None) -> None:
        self.engine = engine
        self.address = str(ipaddress.ip_address(address))
        self.ports = ports
        self.on_event = on_event
        self.events: list[events.Event] = []
        self.errors: list[str] = []
        self.esp_dropped = 0
        self._endpoints: dict[int, _Endpoint] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._changed = asyncio.Event()

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            for port in self.ports:
                _, endpoint = await loop.create_datagram_endpoint(
                    lambda port=port: _Endpoint(self, port), local_addr=(self.address, port))
                self._endpoints[port] = endpoint
        except OSError as error:
            self.close()
            raise IpsecLabError(f"cannot bind UDP on {self.address}: {error.strerror}") from None

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for endpoint in self._endpoints.values():
            if endpoint.transport is not None:
                endpoint.transport.close()
        self._endpoints.clear()

    async def __aenter__(self) -> IkeUdpDriver:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    # -- into the engine ----------------------------------------------------------------

    def datagram_received(self, data: bytes, src: tuple[str, int], port: int) -> None:
        if port != IKE_PORT:
            kind, data = classify_4500(data)
            if kind != "ike":
                self.esp_dropped += kind == "esp"
                return
        self.engine.receive_datagram(data, src, (self.address, port), time.monotonic())
        self._pump()

    def initiate(self, connection: str, child: str | None = None) -> None:
        self.engine.initiate(connection, time.monotonic(), child)
        self._pump()

    def _on_timer(self) -> None:
        self._timer = None
        self.engine.handle_timer(time.monotonic())
        self._pump()

    # -- out of the engine --------------------------------------------------------------

    def _pump(self) -> None:
        """Send what the engine wants sent, collect its events, re-arm its timer."""
        for data, src, dst in self.engine.datagrams_to_send():
            endpoint = self._endpoints.get(src[1])
            if endpoint is None or endpoint.transport is None:
                self.errors.append(f"no socket for source port {src[1]}")
                continue
            if src[1] != IKE_PORT or dst[1] != IKE_PORT:
                data = NON_ESP_MARKER + data
            endpoint.transport.sendto(data, dst)
        while (event := self.engine.next_event()) is not None:
            self.events.append(event)
            if self.on_event is not None:
                self.on_event(event)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        when = self.engine.get_timer()
        if when is not None and self._endpoints:
            delay = max(0.0, when - time.monotonic())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)
        self._changed.set()

    async def wait_for(self, names: set[str], timeout: float) -> events.Event | None:
        """The first event (old or new) whose class name is in ``names``, or None."""
        deadline = time.monotonic() + timeout
        while True:
            for event in self.events:
                if type(event).__name__ in names:
                    return event
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except TimeoutError:
                return None


# --- JSON in and out, for the command line -------------------------------------------------


def load_configs(path: Path) -> list[IkeConfig]:
    """The connections of a swanctl.conf (``*.conf``, with its x509/private folders beside
    it, as a gateway reads them) or of a JSON file (an IkeConfig dict or a list of them)."""
    if path.suffix == ".conf":
        from ipseclab.config.swanctl import load_swanctl

        return list(load_swanctl(path).connections.values())
    try:
        raw = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise IpsecLabError(f"{path}: not JSON ({error})") from None
    return [config_from_dict(c) for c in (raw if isinstance(raw, list) else [raw])]


def config_from_dict(data: dict[str, Any]) -> IkeConfig:
    """An IkeConfig from its fields as a dict; ``children`` a list of ChildConfig dicts."""
    data = dict(data)
    children = [ChildConfig(**c) for c in data.pop("children", [])]
    try:
        return IkeConfig(**data, children=children)
    except TypeError as error:
        raise IpsecLabError(f"bad connection in JSON: {error}") from None


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return bytes(value).hex()
    if isinstance(value, enum.Enum):
        return value.name if not isinstance(value, int) else int(value)
    if isinstance(value, str | int | float | bool) or value is None:
        return value
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and type(value).__name__ == "SecurityAssociation":
        return {"spi": value.spi, "src": str(value.src), "dst": str(value.dst),
                "encryption": getattr(value.encryption, "name", None),
                "encryption_key": value.encryption_key.hex(),
                "integrity": getattr(value.integrity, "name", None),
                "integrity_key": value.integrity_key.hex()}
    return str(value)


def event_to_dict(event: events.Event) -> dict[str, Any]:
    """An event as plain JSON data: ``{"event": class name, field: value, ...}``, keys in hex,
    the SAs of a ChildSaEstablished as their SPI, addresses, algorithms and keys."""
    out: dict[str, Any] = {"event": type(event).__name__}
    for f in dataclasses.fields(event):
        out[f.name] = _jsonable(getattr(event, f.name))
    return out


def _print(data: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(data) + "\n")
    sys.stdout.flush()


async def _run(args: argparse.Namespace) -> int:
    configs = load_configs(Path(args.config))
    engine = IkeEngine(configs, local_addr=args.address,
                       wall_clock=lambda now: now + (time.time() - time.monotonic()),
                       cookie_threshold=args.cookie_threshold)
    until = {name for name in args.until.split(",") if name}
    async with IkeUdpDriver(engine, args.address, on_event=lambda e: _print(event_to_dict(e))
                            ) as driver:
        _print({"event": "Listening", "address": args.address, "ports": list(driver.ports)})
        if args.initiate:
            driver.initiate(args.initiate)
        found = None
        if until:
            found = await driver.wait_for(until, args.timeout)
            if found is not None:
                await asyncio.sleep(args.linger)
        else:
            await asyncio.sleep(args.timeout)
        _print({"event": "Exit", "esp_dropped": driver.esp_dropped, "errors": driver.errors,
                "internal_errors": engine.internal_errors, "dropped": engine.dropped})
    return 0 if (found is not None or not until) else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ipseclab.drivers.ike_udp",
                                     description="Run the IKEv2 engine on UDP 500/4500.")
    parser.add_argument("--address", required=True, help="local IP address to bind")
    parser.add_argument("--config", required=True,
                        help="a swanctl.conf, or a JSON file: an IkeConfig or a list")
    parser.add_argument("--initiate", help="connection to initiate")
    parser.add_argument("--until", default="", help="exit after one of these events (a,b)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait")
    parser.add_argument("--linger", type=float, default=0.5,
                        help="seconds to keep answering after the --until event")
    parser.add_argument("--cookie-threshold", type=int, default=20, metavar="N",
                        help="demand a COOKIE (RFC 7296 §2.6) once N IKE SAs are half-open;"
                             " 0: from every initiator")
    args = parser.parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except (IpsecLabError, OSError, ValueError) as error:
        print(f"ike_udp: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
