"""The kernel side of the gateway: sysctls, policy routing and the TUN routes the SPD needs.

The daemon does IPsec in user space, so the kernel's only part is to bring it the packets that
need protecting and to keep its own ESP away from them:

* Routes. Each outbound PROTECT policy (RFC 4301 §4.4.1) becomes a route into the TUN:
  tunnel mode, the remote selector's prefixes; transport mode, the same (usually the peer
  itself) with ``src`` our address, so that the kernel picks the address the SA was made for.
  :meth:`GatewayRoutes.sync_routes` keeps them in step with the SPD as SAs come and go.
* Loop avoidance. Those routes live in their own table, consulted through
  ``ip rule add not fwmark MARK table T``; the daemon's sockets carry ``SO_MARK`` MARK
  (:mod:`.gateway_sockets`), so its ESP is routed by the main table, never into the TUN.
* sysctls. Forwarding on, reverse-path filtering off (decrypted packets arrive on the TUN
  with a source the marked traffic routes elsewhere).

Every change goes through :class:`ipseclab.drivers.netconf.NetConf` with its undo, so closing
the gateway leaves the namespace as it found it. A mixin of
:class:`ipseclab.drivers.gateway.Gateway`.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from typing import TYPE_CHECKING

from ipseclab.drivers.netconf import NetConfError, local_addresses
from ipseclab.drivers.netconf import ip as ip_command
from ipseclab.ipsec.spd import Policy, PolicyAction

if TYPE_CHECKING:
    from ipseclab.drivers.gateway import Gateway

__all__ = ["DEFAULT_MARK", "DEFAULT_TABLE", "RULE_PRIORITY", "GatewayRoutes"]

log = logging.getLogger("ipseclab.gateway")

DEFAULT_MARK = 0x1E5
DEFAULT_TABLE = 485  # 0x1e5
RULE_PRIORITY = 220  # before main (32766); strongSwan uses 220 for its own table too


class GatewayRoutes:
    """Kernel set-up and TUN routes; mixed into :class:`Gateway` (which holds the state)."""

    def _configure_kernel(self: Gateway) -> None:
        o, nc = self.options, self.netconf
        tun = self.tun.name
        # Decrypted packets come in on the TUN; their source is routed elsewhere for marked
        # traffic, so reverse-path filtering must not drop them.
        nc.sysctl("net.ipv4.conf.all.rp_filter", "0")
        nc.sysctl(f"net.ipv4.conf.{tun}.rp_filter", "0")
        nc.sysctl("net.ipv4.ip_forward", "1")
        with contextlib.suppress(NetConfError):
            nc.sysctl("net.ipv6.conf.all.forwarding", "1")
        for family in ("-4", "-6"):
            rule = ["rule", "add", "not", "fwmark", f"0x{o.mark:x}", "table", str(o.table),
                    "priority", str(RULE_PRIORITY)]
            undo = ["rule", "del", "not", "fwmark", f"0x{o.mark:x}", "table", str(o.table),
                    "priority", str(RULE_PRIORITY)]
            # A rule left by a daemon that was killed: remove it before adding ours.
            for _ in range(8):
                if ip_command(family, *undo, check=False).returncode != 0:
                    break
            try:
                nc.run([family, *rule], [family, *undo])
            except NetConfError:
                if family == "-4":
                    raise
                log.info("no IPv6 policy routing in this namespace; IPv6 is not protected")

    def desired_routes(self: Gateway) -> dict[tuple[int, str], list[str]]:
        """The TUN routes the SPD's outbound PROTECT policies need, keyed by (family, prefix).

        Tunnel mode: the remote selector's prefixes. Transport mode: the same (usually the
        peer's address), with ``src`` our address so that the kernel picks the address the
        SA was made for.
        """
        mine = local_addresses()
        routes: dict[tuple[int, str], list[str]] = {}
        for policy in self.engine.spd.policies("out"):
            if policy.action is not PolicyAction.PROTECT:
                continue
            src = self._route_source(policy, mine)
            for net in policy.selector.remote.networks():
                key = (net.version, str(net))
                if key in routes:
                    continue
                args = [f"-{net.version}", "route", "replace", str(net), "dev", self.tun.name,
                        "table", str(self.options.table)]
                if src is not None:
                    args += ["src", src]
                routes[key] = args
        return routes

    @staticmethod
    def _route_source(policy: Policy, mine: set[str]) -> str | None:
        """The ``src`` of the policy's TUN route, or None to let the kernel choose.

        As strongSwan chooses it: an address of ours inside the local selector (the single
        address of a transport-mode or virtual-IP selector; in tunnel mode the gateway's own
        LAN address), so that what the gateway itself sends to the remote side matches the
        policy and is protected; else the tunnel's outer source. Only an address of the
        route's own family will do: IPv6 inside IPv4 (or the reverse, RFC 4301 §4.1) gives an
        outer family that is not the inner one.
        """
        local = policy.selector.local
        candidates = []
        if local.start == local.end:
            candidates.append(str(ipaddress.ip_address(local.start) if local.version == 4
                                  else ipaddress.IPv6Address(local.start)))
        candidates += sorted(a for a in mine if ipaddress.ip_address(a).version == local.version
                             and local.start <= int(ipaddress.ip_address(a)) <= local.end)
        candidates += [str(t.src) for t in policy.templates
                       if t.src is not None and t.src.version == local.version]
        return next((a for a in candidates if a in mine), None)

    def sync_routes(self: Gateway) -> None:
        """Make the TUN routes match the SPD: add what is new, remove what is gone."""
        want = self.desired_routes()
        for key in list(self._routes):
            if key not in want or want[key] != self._routes[key]:
                self.netconf.forget(self._route_undo(key))
                del self._routes[key]
        for key, args in want.items():
            if key in self._routes:
                continue
            try:
                self.netconf.run(args, self._route_undo(key))
            except NetConfError as exc:
                log.warning("route %s: %s", key[1], exc)
                continue
            self._routes[key] = args
            log.info("route %s via %s (table %d)", key[1], self.tun.name, self.options.table)

    def _route_undo(self: Gateway, key: tuple[int, str]) -> list[str]:
        return [f"-{key[0]}", "route", "del", key[1], "dev", self.tun.name, "table",
                str(self.options.table)]
