"""strongSwan as a lab gateway and as the reference peer of interop tests.

One :class:`Charon` is one ``charon-systemd`` with a directory of its own: a private
``strongswan.conf``, its vici socket, a copy of the gateway's ``swanctl.conf`` (with the
``x509``/``private`` directories beside it) and a log file. Nothing is read from ``/etc``
and nothing is written outside that directory; the daemon runs inside a network namespace
(a lab node, or an ``ip netns`` of a test) and never in the machine's own.

Facts this rests on (Debian 12, strongSwan 5.9.8, see the project's interop notes):

* the kernel has no ESP here, so strongSwan's userspace ESP ``kernel-libipsec`` carries the
  data over a TUN device ``ipsec0``; it must be loaded *before* ``kernel-netlink`` or the
  responder cannot install SAs. With it strongSwan always acts as if behind a NAT: IKE moves
  to UDP 4500 and ESP is always UDP-encapsulated (RFC 3948);
* routes into the tunnel go to table 220;
* ``charon-systemd`` logs to journald only; the ``filelog`` section below adds a file, and
  at level 4 for ``ike`` and ``chd`` it prints the IKE SA keys (``Sk_ei secret => ...``) and
  the child SA keys, the only way to get strongSwan's keys (Debian builds no ``save-keys``).

:class:`StrongswanLauncher` (``impl: strongswan``) runs one per gateway node of a lab.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ipseclab.errors import IpsecLabError
from ipseclab.lab.network import GatewayLauncher, LabNode, ProcessHandle, register_launcher
from ipseclab.lab.topology import GatewaySpec

__all__ = ["CHARON", "PLUGINS", "Charon", "ChildKeys", "IkeKeys", "StrongswanLauncher",
           "available", "parse_log_keys", "parse_vici_raw"]

CHARON = "/usr/sbin/charon-systemd"
SWANCTL = "swanctl"
# openssl provides X25519, ECP, MODP and ChaCha20-Poly1305 (Debian builds no curve25519 or
# chapoly plugin).
PLUGINS = ("random nonce openssl pem pkcs1 pkcs8 x509 pubkey aes sha1 sha2 hmac gcm xcbc cmac kdf"
           " kernel-libipsec kernel-netlink socket-default vici")
# Enough for swanctl to read PSKs, certificates and keys; no network plugins.
SWANCTL_PLUGINS = "random nonce openssl pem pkcs1 pkcs8 x509 pubkey"

_SWANCTL_SUBDIRS = ("x509", "x509ca", "x509aa", "x509ocsp", "x509crl", "x509ac", "pubkey",
                    "private", "rsa", "ecdsa", "bliss", "pkcs8", "pkcs12")

_CONF = """\
# Written by ipseclab for one charon-systemd; nothing here touches /etc or the root namespace.
charon-systemd {{
  journal {{
    default = -1
  }}
}}
charon {{
  load_modular = no
  load = {plugins}
  install_routes = yes
  # a road warrior's virtual IP (vips = 0.0.0.0) goes on its outbound interface
  install_virtual_ip = yes
  routing_table = 220
  routing_table_prio = 220
  # No DNS changes, no XAUTH/Unity attributes, no roaming on address changes.
  cisco_unity = no
  retransmit_tries = 3
  retransmit_timeout = 1.0
  retransmit_base = 1.4
  plugins {{
    vici {{
      socket = unix://{dir}/charon.vici
    }}
    kernel-netlink {{
      roam_events = no
    }}
  }}
  filelog {{
    ipseclab {{
      path = {dir}/charon.log
      append = no
      flush_line = yes
      ike_name = yes
      default = 1
      ike = 4
      chd = 4
      cfg = 2
      knl = 1
      net = 1
      enc = 1
    }}
  }}
}}
swanctl {{
  load = {swanctl_plugins}
}}
"""


def available() -> bool:
    """Whether charon-systemd, swanctl and kernel-libipsec are installed."""
    return (os.access(CHARON, os.X_OK) and shutil.which(SWANCTL) is not None
            and any(Path(d, "libstrongswan-kernel-libipsec.so").exists()
                    for d in ("/usr/lib/ipsec/plugins", "/usr/lib/x86_64-linux-gnu/ipsec/plugins",
                              "/usr/lib/aarch64-linux-gnu/ipsec/plugins")))


# --- what the log tells ------------------------------------------------------------------


@dataclass
class ChildKeys:
    """One child SA as charon derived it (RFC 7296 §2.17), from charon's point of view.

    ``enc_in`` is the key of the SA with SPI ``spi_in`` (traffic charon receives); AEAD keys
    include their salt. ``integ_*`` are empty for AEADs.
    """

    name: str
    spi_in: int
    spi_out: int
    enc_in: bytes = field(repr=False)
    enc_out: bytes = field(repr=False)
    integ_in: bytes = field(repr=False)
    integ_out: bytes = field(repr=False)


@dataclass
class IkeKeys:
    """One IKE SA's keys (RFC 7296 §2.14) from charon's log; SPIs filled in from vici."""

    name: str
    unique_id: int
    initiator: bool
    secrets: dict[str, bytes] = field(repr=False)  # Sk_d, Sk_ai, Sk_ar, Sk_ei, ... as logged
    children: list[ChildKeys] = field(default_factory=list)
    spi_i: bytes = b""
    spi_r: bytes = b""

    def __getattr__(self, name: str) -> bytes:
        # sk_ei -> Sk_ei, so keys read like the RFC's names; an AEAD has no Sk_a*: b""
        if name in ("sk_d", "sk_ai", "sk_ar", "sk_ei", "sk_er", "sk_pi", "sk_pr"):
            return self.secrets.get("Sk_" + name[3:], b"")
        raise AttributeError(name)


# "11[IKE] <t|1> text"; a responder's SA is "<1>" until a connection is chosen
_LINE = re.compile(r"^\S*\s*\d+\[(?P<group>\w+)\] <(?:(?P<name>[^|>]*)\|)?(?P<id>\d+)> "
                   r"(?P<text>.*)$")
_DUMP = re.compile(r"^\s*\d+: ((?:[0-9A-F]{2} ?)+)")
_BYTES = re.compile(r"^(?P<label>.+?) => (?P<n>\d+) bytes @")
_CHILD_KEY_LABELS = {"encryption initiator key": "ei", "encryption responder key": "er",
                     "integrity initiator key": "ai", "integrity responder key": "ar"}
_CHILD_UP = re.compile(r"CHILD_SA (?P<name>\S+)\{\d+\} established with SPIs "
                       r"(?P<i>[0-9a-f]{8})_i (?P<o>[0-9a-f]{8})_o")
# Whose request the exchange that makes a child SA answers: its initiator's keys come first
# in KEYMAT (RFC 7296 §2.17), whichever side began the IKE SA.
_REQUEST = re.compile(r"^(?P<how>generating|parsed) (?:IKE_AUTH|CREATE_CHILD_SA) request")
# An IKE SA rekey charon begins is logged in the old IKE SA's context: "initiating IKE_SA
# name[N]" up to "IKE_SA name[N] state change: CONNECTING => ESTABLISHED" is SA N's.
_REKEY_START = re.compile(r"^initiating IKE_SA \S*\[(?P<n>\d+)\]")
_REKEY_END = re.compile(r"^IKE_SA \S*\[(?P<n>\d+)\] state change: CONNECTING => ")


def parse_log_keys(text: str) -> dict[int, IkeKeys]:
    """IKE and child SA keys from a charon log written with ``ike_name = yes``, level 4.

    Charon prints a key as ``Sk_ei secret => 20 bytes @ 0x...`` followed by hex dump lines.
    The child keys come just before their ``CHILD_SA ... established with SPIs X_i Y_o``
    line; the initiator keys protect what the initiator of the exchange that made the child
    SA sends (§2.17): IKE_AUTH's or a CREATE_CHILD_SA's, either side's. The keys of an IKE SA
    that charon's rekey made (§2.18) are filed under that new SA.
    """
    sas: dict[int, IkeKeys] = {}
    label: str | None = None
    want = 0
    value = bytearray()
    pending: dict[int, dict[str, bytes]] = {}
    we_asked: dict[int, bool] = {}  # context -> charon sent the last IKE_AUTH/CREATE_CHILD_SA
    rekeying: dict[int, int] = {}  # context -> the IKE SA its rekey is making
    for raw in text.splitlines():
        m = _LINE.match(raw)
        if m is None:
            continue
        context, text_ = int(m["id"]), m["text"]
        uid = rekeying.get(context, context)
        sa = sas.setdefault(uid, IkeKeys("", uid, False, {}))
        sa.name = m["name"] or sa.name
        if label is not None:
            d = _DUMP.match(text_)
            if d:
                value += bytes.fromhex(d.group(1).replace(" ", ""))
                if len(value) >= want:
                    _store(sa, pending.setdefault(uid, {}), label, bytes(value[:want]))
                    label = None
                continue
            label = None
        b = _BYTES.match(text_)
        if b and (b["label"].startswith("Sk_") or b["label"] in _CHILD_KEY_LABELS):
            label, want, value = b["label"], int(b["n"]), bytearray()
            if want == 0:
                _store(sa, pending.setdefault(uid, {}), label, b"")
                label = None
            continue
        start = _REKEY_START.match(text_)
        if start:
            new_uid = int(start["n"])
            if new_uid != context:
                rekeying[context] = new_uid
            sas.setdefault(new_uid, IkeKeys(sa.name, new_uid, False, {})).initiator = True
            continue
        end = _REKEY_END.match(text_)
        if end and rekeying.get(context) == int(end["n"]):
            del rekeying[context]
            continue
        request = _REQUEST.match(text_)
        if request:
            we_asked[context] = request["how"] == "generating"
            continue
        up = _CHILD_UP.search(text_)
        if up:
            keys = pending.pop(uid, {})
            mine, theirs = ("i", "r") if we_asked.get(context, sa.initiator) else ("r", "i")
            sa.children.append(ChildKeys(
                up["name"], int(up["i"], 16), int(up["o"], 16),
                enc_in=keys.get("e" + theirs, b""), enc_out=keys.get("e" + mine, b""),
                integ_in=keys.get("a" + theirs, b""), integ_out=keys.get("a" + mine, b"")))
    return {uid: sa for uid, sa in sas.items() if sa.secrets}


def _store(sa: IkeKeys, pending: dict[str, bytes], label: str, value: bytes) -> None:
    if label.startswith("Sk_"):
        sa.secrets[label.split()[0]] = value
    else:
        pending[_CHILD_KEY_LABELS[label]] = value


# --- swanctl --raw output ------------------------------------------------------------------

# --raw prints values unquoted, so a value runs on across spaces until the next vici key
# (lower case: "remote-host="), section ("child-sas {") or closing brace: a DN identity is
# "C=CH, O=ipseclab, CN=moon". List items may hold brackets: "10.2.0.0/24[tcp/http]".
_TOKEN = re.compile(r"\s*(?:(?P<open>[^\s{}=\[\]]+)\s*\{|(?P<close>\})|"
                    r"(?P<key>[^\s{}=\[\]]+)=(?:\[(?P<list>(?:[^\[\]]|\[[^\[\]]*\])*)\]|"
                    r"(?P<value>(?:[^\s{}]|\s(?![a-z][a-z0-9-]*=|[^\s{}=\[\]]+\s*\{))*)))")


def parse_vici_raw(text: str) -> list[dict[str, Any]]:
    """``swanctl --list-sas --raw`` output as one dict per message.

    Each line is ``list-sa event {name {key=value child-sas {...} list=[a b]}}``: sections
    become dicts, lists become lists of strings.
    """
    messages = []
    for line in text.splitlines():
        start = line.find("{")
        if start < 0:
            continue
        stack: list[dict[str, Any]] = [{}]
        for m in _TOKEN.finditer(line, start + 1):
            if m["open"]:
                child: dict[str, Any] = {}
                stack[-1][m["open"]] = child
                stack.append(child)
            elif m["close"]:
                if len(stack) > 1:
                    stack.pop()
            elif m["list"] is not None:
                stack[-1][m["key"]] = m["list"].split()
            else:
                stack[-1][m["key"]] = m["value"]
        messages.append(stack[0])
    return messages


# --- one daemon -------------------------------------------------------------------------------

Popen = Callable[..., "subprocess.Popen[bytes]"]


class Charon:
    """One charon-systemd with its own directory; ``popen`` runs it in the right namespace.

    ``popen(args, **subprocess_kwargs)`` must start ``args`` inside the namespace and return
    the Popen of the daemon itself (``ip netns exec`` and Mininet's ``node.popen`` do).
    """

    def __init__(self, directory: Path, popen: Popen) -> None:
        self.dir = Path(directory).resolve()
        self.popen = popen
        self.proc: subprocess.Popen[bytes] | None = None
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "strongswan.conf"
        self.swanctl_dir = self.dir / "swanctl"
        self.log = self.dir / "charon.log"
        self.socket = self.dir / "charon.vici"
        self.uri = f"unix://{self.socket}"
        self.conf.write_text(_CONF.format(dir=self.dir, plugins=PLUGINS,
                                          swanctl_plugins=SWANCTL_PLUGINS))

    def install_config(self, swanctl_conf: Path | str, text: str | None = None) -> Path:
        """Copy ``swanctl_conf`` (or write ``text``) and the x509/private dirs beside it."""
        for sub in _SWANCTL_SUBDIRS:
            (self.swanctl_dir / sub).mkdir(parents=True, exist_ok=True)
        target = self.swanctl_dir / "swanctl.conf"
        if text is not None:
            target.write_text(text)
        else:
            source = Path(swanctl_conf)
            shutil.copyfile(source, target)
            for sub in _SWANCTL_SUBDIRS:
                if (source.parent / sub).is_dir():
                    shutil.copytree(source.parent / sub, self.swanctl_dir / sub,
                                    dirs_exist_ok=True)
        target.chmod(0o600)
        return target

    def start(self, timeout: float = 10.0) -> subprocess.Popen[bytes]:
        """Start the daemon and wait until its vici socket answers."""
        self.socket.unlink(missing_ok=True)
        env = dict(os.environ, STRONGSWAN_CONF=str(self.conf))
        self.proc = self.popen([CHARON], env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise IpsecLabError(f"charon-systemd exited with {self.proc.returncode};"
                                    f" see {self.log}")
            if self.socket.exists():
                try:
                    self.swanctl("--stats")
                    return self.proc
                except IpsecLabError:
                    pass
            if time.monotonic() > deadline:
                self.stop()
                raise IpsecLabError(f"charon-systemd opened no vici socket in {timeout:g} s")
            time.sleep(0.05)

    def stop(self, timeout: float = 5.0) -> None:
        """End the daemon by its PID (SIGTERM, then SIGKILL)."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout)

    def swanctl(self, command: str, *args: str, check: bool = True,
                timeout: float = 15.0) -> str:
        """Run ``swanctl COMMAND --uri ... ARGS`` against this daemon; returns stdout."""
        env = dict(os.environ, STRONGSWAN_CONF=str(self.conf), SWANCTL_DIR=str(self.swanctl_dir))
        result = subprocess.run([SWANCTL, command, "--uri", self.uri, *args], env=env,
                                capture_output=True, text=True, timeout=timeout)
        if check and result.returncode != 0:
            raise IpsecLabError(f"swanctl {command} failed: "
                                f"{(result.stderr or result.stdout).strip()[-300:]}")
        return result.stdout

    def load_all(self) -> str:
        return self.swanctl("--load-all", "--noprompt", "--file",
                            str(self.swanctl_dir / "swanctl.conf"))

    def initiate(self, child: str, ike: str | None = None, timeout: float = 10.0) -> bool:
        """``swanctl --initiate --child CHILD``; True if it came up within ``timeout``."""
        args = ["--child", child, "--timeout", str(max(1, round(timeout)))]
        if ike:
            args += ["--ike", ike]
        try:
            self.swanctl("--initiate", *args, timeout=timeout + 5)
        except (IpsecLabError, subprocess.TimeoutExpired):
            return False
        return True

    def terminate(self, ike: str) -> None:
        self.swanctl("--terminate", "--ike", ike, "--timeout", "3", check=False)

    def terminate_all(self) -> None:
        """Drop every IKE SA at once, without waiting for the peer (``--force``)."""
        for sa in self.list_sas():
            self.swanctl("--terminate", "--ike-id", str(sa.get("uniqueid", "")), "--force",
                         check=False)

    def list_sas(self) -> list[dict[str, Any]]:
        """IKE SAs as vici reports them: one dict per SA, with ``name`` added.

        Keys as in swanctl's raw output: ``state`` (ESTABLISHED), ``initiator-spi``,
        ``responder-spi``, ``uniqueid``, ``child-sas`` (a dict of dicts with ``state``
        INSTALLED, ``spi-in``, ``spi-out``, ``encr-alg`` ...).
        """
        sas = []
        for message in parse_vici_raw(self.swanctl("--list-sas", "--raw")):
            for name, body in message.items():
                if isinstance(body, dict):
                    sas.append({"name": name, **body})
        return sas

    def keys(self) -> list[IkeKeys]:
        """Keys of the IKE SAs in the log; SPIs filled in for those vici still lists."""
        found = parse_log_keys(self.log.read_text(errors="replace")) if self.log.exists() else {}
        for sa in self.list_sas():
            keys = found.get(int(sa.get("uniqueid", -1)))
            if keys is not None:
                keys.spi_i = bytes.fromhex(sa.get("initiator-spi", ""))
                keys.spi_r = bytes.fromhex(sa.get("responder-spi", ""))
        return list(found.values())

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


# --- the lab launcher ------------------------------------------------------------------------


class StrongswanLauncher(GatewayLauncher):
    """``impl: strongswan``: charon-systemd in the gateway's namespace, config loaded.

    The gateway's ``config`` is one swanctl.conf (the first file is used). ``options``:
    ``initiate: [child, ...]`` brings those children up right after loading (and fails the
    start if one does not come up); ``pki: lab`` puts the run's lab PKI beside the config
    (:mod:`ipseclab.lab.labpki`). Note that ``start_action = trap`` does not start IKE here:
    kernel-libipsec's TUN routes drop a packet without an SA instead of raising an acquire.
    """

    def __init__(self) -> None:
        self.charon: Charon | None = None
        self.node: LabNode | None = None

    def start(self, node: LabNode, gateway: GatewaySpec, workdir: Path) -> ProcessHandle | None:
        if not available():
            raise IpsecLabError("strongSwan is not installed: apt-get install charon-systemd"
                                " strongswan-swanctl libcharon-extra-plugins")
        if not gateway.config:
            raise IpsecLabError(f"{node.name}: impl strongswan needs a swanctl.conf")
        self.node = node
        node.cmd("sysctl -qw net.ipv4.ip_forward=1", check=True)

        def popen(args: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
            return node.popen(args, "charon-systemd", **kwargs)

        charon = Charon(workdir / "strongswan", popen)
        conf = gateway.config[0]
        if gateway.options.get("pki") == "lab":  # certificates made for this run
            from ipseclab.lab.labpki import swanctl_with_lab_pki

            conf = swanctl_with_lab_pki(conf, workdir, workdir.parent)
        charon.install_config(conf)
        self.charon = charon
        proc = charon.start()
        try:
            charon.load_all()
            for child in gateway.options.get("initiate", []):
                if not charon.initiate(str(child)):
                    raise IpsecLabError(f"{node.name}: strongSwan could not bring up child"
                                        f" '{child}'; see {charon.log}")
        except BaseException:
            self.stop()
            raise
        return proc

    def stop(self) -> None:
        if self.charon is not None:
            self.charon.stop()

    # what tests and notebooks ask a running strongSwan gateway

    def _require(self) -> Charon:
        if self.charon is None or self.charon.proc is None:
            raise IpsecLabError("strongSwan is not running on this gateway")
        return self.charon

    def initiate(self, child: str, ike: str | None = None, timeout: float = 10.0) -> bool:
        return self._require().initiate(child, ike, timeout)

    def list_sas(self) -> list[dict[str, Any]]:
        return self._require().list_sas()

    def keys(self) -> list[IkeKeys]:
        return self._require().keys()


register_launcher("strongswan", StrongswanLauncher)
