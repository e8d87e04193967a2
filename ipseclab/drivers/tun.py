"""A TUN device: the kernel hands us IP packets routed into it, and takes ours back.

Linux's TUN driver (Documentation/networking/tuntap.rst): open ``/dev/net/tun``, ask for a
layer-3 device with ``TUNSETIFF`` and ``IFF_TUN | IFF_NO_PI`` (no 4-byte packet-information
prefix), then every ``read`` returns one whole IP packet and every ``write`` injects one.
The device exists while the file descriptor is open; closing it removes the device and
every route through it.
"""

from __future__ import annotations

import fcntl
import os
import struct

from ipseclab.drivers.netconf import NetConf, NetConfError

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
DEFAULT_MTU = 1400  # 1500 on the wire minus room for the outer header, UDP, ESP and ICV
_READ_SIZE = 65535


class TunDevice:
    """One TUN device, non-blocking, for ``loop.add_reader``.

    ``netconf`` records the link changes so they are undone on exit; the device itself goes
    away with :meth:`close`.
    """

    def __init__(self, name: str, netconf: NetConf, *, mtu: int = DEFAULT_MTU) -> None:
        if len(name.encode()) > 15:
            raise NetConfError(f"interface name '{name}' is longer than 15 characters")
        try:
            self.fd = os.open("/dev/net/tun", os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise NetConfError(f"cannot open /dev/net/tun: {exc.strerror}") from None
        try:
            ifr = struct.pack("16sH22x", name.encode(), IFF_TUN | IFF_NO_PI)
            result = fcntl.ioctl(self.fd, TUNSETIFF, ifr)
            self.name = result[:16].rstrip(b"\x00").decode()
            # No IPv6 link-local address: the kernel would send router solicitations into
            # the tunnel, and they belong to no policy.
            netconf.run(["link", "set", "dev", self.name, "addrgenmode", "none"])
            netconf.run(["link", "set", "dev", self.name, "mtu", str(mtu), "up"])
        except OSError as exc:
            os.close(self.fd)
            raise NetConfError(f"cannot create TUN device '{name}': {exc.strerror}") from None
        except BaseException:
            os.close(self.fd)
            raise
        self.mtu = mtu

    def read(self) -> bytes | None:
        """One packet, or None when nothing is waiting."""
        try:
            return os.read(self.fd, _READ_SIZE)
        except BlockingIOError:
            return None

    def write(self, packet: bytes) -> None:
        """Inject one IP packet, as if it had arrived on this interface."""
        os.write(self.fd, packet)

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
