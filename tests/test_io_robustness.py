"""The I/O half without root: the control socket, ``ctl`` against strangers, run records,
and how the lab starts and stops many gateways (with launchers that run nothing)."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

from ipseclab.drivers.cli_gateway import main as gateway_main
from ipseclab.drivers.cli_gateway import request_gateway
from ipseclab.drivers.control import LINE_LIMIT, ControlServer, default_control_path
from ipseclab.errors import ConfigError, IpsecLabError
from ipseclab.lab.cleanup import RunDir
from ipseclab.lab.network import GatewayLauncher, LabNode, Network
from ipseclab.lab.topology import GatewaySpec

# -- control socket ------------------------------------------------------------------------


def _handler(request: dict) -> object:
    command = request.get("command")
    if command == "echo":
        return request.get("value")
    if command == "boom":
        raise RuntimeError("bug in a command")
    if command == "unjsonable":
        return {1, 2}
    raise ConfigError(f"unknown command '{command}'")


async def _talk(path: Path, lines: list[bytes]) -> list[dict]:
    reader, writer = await asyncio.open_unix_connection(str(path), limit=4 * LINE_LIMIT)
    replies = []
    try:
        for line in lines:
            writer.write(line)
            await writer.drain()
            reply = await reader.readline()
            if not reply:
                break
            replies.append(json.loads(reply))
    except ConnectionResetError:
        pass  # the server hung up on an over-long request with bytes still unread
    writer.close()
    return replies


def test_control_answers_garbage_and_goes_on(tmp_path):
    path = tmp_path / "gw.sock"

    async def main() -> tuple[list[dict], list[dict]]:
        server = ControlServer(path, _handler)
        await server.start()
        try:
            first = await _talk(path, [b"not json\n", b"[1, 2]\n", b"null\n",
                                       b'{"command": "boom"}\n', b'{"command": "unjsonable"}\n',
                                       b'{"command": "nope"}\n',
                                       b'{"command": "echo", "value": 7}\n'])
            huge = await _talk(path, [b'{"command": "echo", "value": "' + b"x" * (2 * LINE_LIMIT)
                                      + b'"}\n'])
            after = await _talk(path, [b'{"command": "echo", "value": "still here"}\n'])
        finally:
            await server.close()
        return first, huge + after

    first, rest = asyncio.run(main())
    assert [r["ok"] for r in first] == [False] * 6 + [True]
    assert first[0]["error"].startswith("bad request")
    assert "internal error" in first[3]["error"] and "bug in a command" in first[3]["error"]
    assert first[5]["error"] == "unknown command 'nope'"
    assert first[6]["result"] == 7
    *huge, after = rest  # the refusal of the huge line may be lost to the reset
    assert all(r["ok"] is False and "longer than" in r["error"] for r in huge)
    assert after == {"ok": True, "result": "still here"}
    assert not path.exists()  # close removed the socket it made


def test_control_start_leaves_other_files_and_live_gateways_alone(tmp_path):
    plain = tmp_path / "notasocket"
    plain.write_text("user data")
    stale = tmp_path / "stale.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(stale))
    s.close()  # a socket file nobody listens on: what a killed gateway leaves

    async def main() -> None:
        with pytest.raises(ConfigError, match="not a socket"):
            await ControlServer(plain, _handler).start()
        live = ControlServer(stale, _handler)
        await live.start()  # replaces the stale socket
        try:
            second = ControlServer(stale, _handler)
            with pytest.raises(ConfigError, match="already running"):
                await second.start()
            await second.close()  # must not remove the live gateway's socket
            assert (await _talk(stale, [b'{"command": "echo", "value": 1}\n']))[0]["ok"]
        finally:
            await live.close()

    asyncio.run(main())
    assert plain.read_text() == "user data"


@pytest.mark.parametrize("name", ["a/../../etc/x", "", ".."])
def test_control_path_refuses_names_that_leave_the_directory(name):
    with pytest.raises(ConfigError):
        default_control_path(name)


def _stranger(path: Path, answer: bytes) -> threading.Thread:
    """A Unix-socket server that is not a gateway: reads one line, answers ``answer``."""
    srv = socket.socket(socket.AF_UNIX)
    srv.bind(str(path))
    srv.listen(1)

    def serve() -> None:
        conn, _ = srv.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(answer)
        srv.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    return t


@pytest.mark.parametrize("answer", [b"hello\n", b"[1]\n", b'{"ok": false, "error": 5}\n'])
def test_ctl_against_a_stranger_is_one_line(tmp_path, capsys, answer):
    path = tmp_path / "other.sock"
    t = _stranger(path, answer)
    assert gateway_main(["ctl", "--socket", str(path), "stats"]) == 1
    t.join(5)
    err = capsys.readouterr().err
    assert err.startswith("ipseclab: error: ") and err.count("\n") == 1
    assert "Traceback" not in err


def test_request_gateway_non_json_raises_lab_error(tmp_path):
    path = tmp_path / "other.sock"
    t = _stranger(path, b"HTTP/1.0 400 Bad Request\r\n\r\n\n")
    with pytest.raises(IpsecLabError, match="not an ipseclab gateway"):
        request_gateway(path, {"command": "stats"}, timeout=5)
    t.join(5)


# -- run records ---------------------------------------------------------------------------


def test_run_records_survive_a_line_cut_short(tmp_path):
    run = RunDir.create(tmp_path)
    (run.path / "procs").write_text("123 456 h1: namespace shell\n789\n\n12x 3 y\n")
    assert [(p.pid, p.what) for p in run.processes()] == [(123, "h1: namespace shell")]
    run.teardown()
    assert not run.path.exists()


# -- starting many gateways ----------------------------------------------------------------


@dataclass
class _Spec:
    name: str


class _FakeLauncher(GatewayLauncher):
    def __init__(self, name: str, events: list[str], fail: str = "") -> None:
        self.name, self.events, self.fail, self.running = name, events, fail, False

    def parallel(self, gateway):
        return self.name != "ike"

    def start(self, node, gateway, workdir):
        self.spawn(node, gateway, workdir)
        return self.wait_ready()

    def spawn(self, node, gateway, workdir):
        if self.fail == "spawn":
            raise IpsecLabError(f"{self.name}: cannot spawn")
        self.events.append(f"spawn {self.name}")
        self.running = True

    def wait_ready(self):
        self.events.append(f"wait {self.name}")
        if self.fail == "wait":
            self.stop()
            raise IpsecLabError(f"{self.name}: did not come up")
        return None

    def stop(self):
        self.events.append(f"stop {self.name}")
        self.running = False


def _network(tmp_path: Path, launchers: list[_FakeLauncher]) -> Network:
    net = Network.__new__(Network)
    net.workdir = tmp_path
    net.nodes = {}
    net._captures = []
    net._net = None
    net.run = None
    net.topology = type("T", (), {"node": lambda self, name: None})()
    for launcher in launchers:
        net.nodes[launcher.name] = LabNode(_Spec(launcher.name), None, None,  # type: ignore[arg-type]
                                           GatewaySpec("fake"), launcher)
    return net


def test_gateways_are_all_spawned_before_any_is_waited_for(tmp_path):
    events: list[str] = []
    launchers = [_FakeLauncher(f"gw{i}", events) for i in range(4)]
    net = _network(tmp_path, launchers)
    net.start_gateways()
    assert events[:4] == [f"spawn gw{i}" for i in range(4)]
    assert events[4:] == [f"wait gw{i}" for i in range(4)]
    assert all(n.started for n in net.nodes.values())
    net.stop()
    net.stop()  # idempotent: each launcher stopped once
    assert sorted(e for e in events if e.startswith("stop")) == [f"stop gw{i}" for i in range(4)]
    assert not any(launcher.running for launcher in launchers)


@pytest.mark.parametrize("fail", ["spawn", "wait"])
def test_one_gateway_failing_stops_those_already_spawned(tmp_path, fail):
    events: list[str] = []
    launchers = [_FakeLauncher("gw0", events), _FakeLauncher("gw1", events),
                 _FakeLauncher("gw2", events, fail=fail), _FakeLauncher("gw3", events)]
    net = _network(tmp_path, launchers)
    with pytest.raises(IpsecLabError, match="gw2"):
        net.start_gateways()
    assert not any(launcher.running for launcher in launchers)
    assert not any(n.started for n in net.nodes.values())
    if fail == "wait":
        assert "wait gw3" not in events


def test_gateways_that_may_initiate_start_alone_after_the_others(tmp_path):
    events: list[str] = []
    launchers = [_FakeLauncher("ike", events), _FakeLauncher("gw1", events),
                 _FakeLauncher("gw2", events)]
    net = _network(tmp_path, launchers)
    net.start_gateways()
    assert events == ["spawn gw1", "spawn gw2", "wait gw1", "wait gw2", "spawn ike", "wait ike"]
    net.stop()
