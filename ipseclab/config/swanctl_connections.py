"""swanctl.conf's ``connections`` onto :class:`IkeConfig` and :class:`ChildConfig` objects.

One ``connections.NAME`` section becomes one :class:`IkeConfig` and its
:class:`ConnectionExtras` (swanctl.conf(5) ``connections.<conn>``): addresses, ports,
proposals (checked by :func:`ipseclab.crypto.proposals.parse_proposals`), times with
strongSwan's defaults (rekey_time 4h, over_time and rand_time a tenth of the longer of
rekey_time and reauth_time), the ``local<suffix>``/``remote<suffix>`` authentication rounds
(:class:`AuthRound`; a second round, RFC 4739, is read but warned about), the PSK that
:meth:`Secrets.shared_key` picks for the pair of identities, and the ``children`` (child SA
rekey_time 1h, life_time = rekey_time + 10 %, rand_time = life_time - rekey_time).
Certificates and keys come from :mod:`.swanctl_credentials`.

A mixin of :class:`ipseclab.config.swanctl._Loader`.
"""

from __future__ import annotations

import dataclasses
import difflib
import ipaddress
from typing import TYPE_CHECKING

from ipseclab.config.settings_syntax import Section, Value
from ipseclab.config.swanctl_keys import (
    AUTH_METHODS,
    CERT_SECTION_KEYS,
    CHILD_IGNORED,
    CHILD_MAPPED,
    CONN_IGNORED,
    CONN_MAPPED,
    HASHES,
    LOCAL_KEYS,
    REMOTE_KEYS,
)
from ipseclab.config.swanctl_model import (
    AuthRound,
    ChildExtras,
    ConnectionExtras,
    Pool,
    Secrets,
)
from ipseclab.crypto.proposals import parse_proposals
from ipseclab.errors import ConfigError
from ipseclab.ike.config import DYNAMIC, ChildConfig, IkeConfig
from ipseclab.ipsec.pad import IdentityMatcher
from ipseclab.ipsec.replay import MAX_REPLAY_WINDOW
from ipseclab.ipsec.selectors import TrafficSelector

if TYPE_CHECKING:
    from ipseclab.config.swanctl import _Loader

__all__ = ["ConnectionLoader"]


class ConnectionLoader:
    """Connections, their authentication rounds and their children; mixed into ``_Loader``."""

    def connection(self: _Loader, sec: Section, secrets: Secrets, pools: dict[str, Pool]
                   ) -> tuple[IkeConfig, ConnectionExtras]:
        path = f"connections.{sec.name}"

        def is_sub(name: str) -> bool:
            return name.startswith(("local", "remote")) or name == "children"

        self.check_keys(sec, path, CONN_MAPPED, CONN_IGNORED, is_sub)
        v: dict[str, Value] = {k: i for k, i in sec.items.items() if isinstance(i, Value)}
        kw: dict[str, object] = {"name": sec.name}
        ext = ConnectionExtras()
        if "version" in v:
            ext.version = self.as_int(v["version"], f"{path}.version", 0, 2)
            if ext.version == 1:
                raise self.err(v["version"], f"{path}.version", "IKEv1 is not supported")
        for key in ("local_addrs", "remote_addrs"):
            if key in v:
                kw[key] = self.addresses(v[key], f"{path}.{key}")
        for key in ("local_port", "remote_port"):
            if key in v:
                kw[key] = self.as_int(v[key], f"{path}.{key}", 1, 65535)
        if "proposals" in v:
            kw["proposals"] = self.proposals(v["proposals"], f"{path}.proposals", "ike")
        for key in ("dpd_delay", "dpd_timeout", "reauth_time", "over_time", "rand_time"):
            if key in v:
                kw[key] = self.time(v[key], f"{path}.{key}")
        rekey = self.time(v["rekey_time"], f"{path}.rekey_time") if "rekey_time" in v else 14400.0
        kw["rekey_time"] = rekey
        ext.dpd_timeout = float(kw.get("dpd_timeout", 0.0))  # type: ignore[arg-type]
        ext.reauth_time = float(kw.get("reauth_time", 0.0))  # type: ignore[arg-type]
        ext.over_time = float(kw.get("over_time",  # type: ignore[arg-type]
                                     max(rekey, ext.reauth_time) / 10))
        ext.rand_time = float(kw.get("rand_time", ext.over_time))  # type: ignore[arg-type]
        for key in ("encap", "mobike", "send_certreq"):
            if key in v:
                setattr(ext, key, self.as_bool(v[key], f"{path}.{key}"))
        if "fragmentation" in v:
            ext.fragmentation = self.choice(v["fragmentation"], f"{path}.fragmentation",
                                            ("yes", "accept", "force", "no"))
        if "send_cert" in v:
            ext.send_cert = self.choice(v["send_cert"], f"{path}.send_cert",
                                        ("always", "never", "ifasked"))
        if "unique" in v:
            ext.unique = self.choice(v["unique"], f"{path}.unique",
                                     ("no", "never", "keep", "replace"))
        if "keyingtries" in v:
            ext.keyingtries = self.as_int(v["keyingtries"], f"{path}.keyingtries")
        kw["encap"] = ext.encap
        kw["unique"] = ext.unique
        if "childless" in v:
            kw["childless"] = self.choice(v["childless"], f"{path}.childless",
                                          ("allow", "force", "never"))
            self.not_honoured(v, path, "childless", kw["childless"] == "force",
                              "as responder ipseclab also accepts an IKE_AUTH with a child SA"
                              " (as initiator it starts childless)")
        self.not_honoured(v, path, "mobike", ext.mobike,
                          "MOBIKE (RFC 4555) is not implemented: an IKE SA keeps its addresses"
                          " (and never announces MOBIKE_SUPPORTED)")
        if "vips" in v:
            kw["vips"] = self.as_list(v["vips"])
            for vip in kw["vips"]:  # type: ignore[attr-defined]
                try:
                    ipaddress.ip_address(vip)
                except ValueError:
                    raise self.err(v["vips"], f"{path}.vips", "takes addresses such as 0.0.0.0"
                                   " or ::") from None
        if "pools" in v:
            ext.pools = self.as_list(v["pools"])
            for name in ext.pools:
                if name not in pools and name not in ("dhcp", "radius"):
                    raise self.err(v["pools"], f"{path}.pools", f"no pool named '{name}'")
        for name, item in sec.items.items():
            if isinstance(item, Section) and name.startswith(("local", "remote")):
                auth_round = self.auth_round(item, path)
                (ext.local_rounds if auth_round.side == "local"
                 else ext.remote_rounds).append(auth_round)
        for rounds in (ext.local_rounds, ext.remote_rounds):
            rounds.sort(key=lambda r: r.round)  # stable: written order breaks ties
        children: list[ChildConfig] = []
        child_sec = sec.items.get("children")
        if isinstance(child_sec, Section):
            for name, item in child_sec.items.items():
                if isinstance(item, Value):
                    raise self.err(item, f"{path}.children.{name}",
                                   "children holds only sections")
                child, ext.children[name] = self.child(item, f"{path}.children.{name}")
                children.append(child)
        kw["children"] = children
        local = ext.local_rounds[0] if ext.local_rounds else AuthRound("local", "local")
        remote = ext.remote_rounds[0] if ext.remote_rounds else AuthRound("remote", "remote")
        for later in ext.local_rounds[1:] + ext.remote_rounds[1:]:
            self.warnings.append(f"{sec.file}:{sec.line}: {path}.{later.section}: a second"
                                 " authentication round (RFC 4739) is not implemented")
        for auth_round in (local, remote):
            if auth_round.method in ("eap", "xauth"):
                self.warnings.append(f"{sec.file}:{sec.line}: {path}.{auth_round.section}: auth"
                                     f" {auth_round.auth} is not implemented by ipseclab")
        kw["local_id"] = local.id
        kw["remote_id"] = remote.id or "%any"
        kw["local_auth"] = local.method
        kw["remote_auth"] = remote.method
        kw["send_cert"], kw["send_certreq"] = ext.send_cert, ext.send_certreq
        kw["fragmentation"] = ext.fragmentation
        kw["pools"] = [pools[name].address_pool() for name in ext.pools
                       if name in pools and pools[name].addrs not in ("dhcp", "radius")]
        if local.method == "pubkey":
            self.local_credentials(kw, local, secrets, f"{sec.file}:{sec.line}: {path}")
        if remote.method == "pubkey":
            kw["remote_certs"] = [self.certificate(p) for p in remote.certs]
            kw["remote_cacerts"] = [self.certificate(p) for p in (
                remote.cacerts or self.folder_files("x509ca"))]
            if not kw["remote_cacerts"] and not kw["remote_certs"]:
                self.warnings.append(f"{sec.file}:{sec.line}: {path}.{remote.section}: auth"
                                     " pubkey, but no CA certificate in x509ca/ or cacerts")
            kw["remote_crls"] = self.crls()
            kw["revocation"] = remote.revocation
        if "psk" in (local.method, remote.method):
            me = local.id or _first_address(kw.get("local_addrs"))  # type: ignore[arg-type]
            peer = remote.id or _first_address(kw.get("remote_addrs"))  # type: ignore[arg-type]
            psk = secrets.shared_key(me, peer)
            if psk is None:
                self.warnings.append(f"{sec.file}:{sec.line}: {path}: no ike secret for"
                                     f" '{me}' and '{peer}' (auth psk)")
            kw["psk"] = psk or b""
        return _construct(IkeConfig, kw, sec), ext

    def auth_round(self: _Loader, sec: Section, conn_path: str) -> AuthRound:
        side = "local" if sec.name.startswith("local") else "remote"
        path = f"{conn_path}.{sec.name}"
        keys = LOCAL_KEYS if side == "local" else REMOTE_KEYS

        def is_cert(name: str) -> bool:
            return name.startswith("cert") or (side == "remote" and name.startswith("cacert"))

        self.check_keys(sec, path, keys, set(), is_cert)
        v = {k: i for k, i in sec.items.items() if isinstance(i, Value)}
        result = AuthRound(side, sec.name)
        if "round" in v:
            result.round = self.as_int(v["round"], f"{path}.round")
        if "auth" in v:
            result.auth = self.auth(v["auth"], f"{path}.auth")
        for key in ("id", "eap_id", "ca_id"):
            if key in v:
                setattr(result, key, v[key].text)
        for key in ("id", "ca_id"):
            if key in v:
                try:
                    IdentityMatcher.parse(v[key].text)
                except ConfigError as exc:
                    raise self.err(v[key], f"{path}.{key}", exc.message) from None
        if "certs" in v:
            result.certs = self.files(v["certs"], f"{path}.certs", "x509")
        if "cacerts" in v:
            result.cacerts = self.files(v["cacerts"], f"{path}.cacerts", "x509ca")
        if "pubkeys" in v:
            result.pubkeys = self.files(v["pubkeys"], f"{path}.pubkeys", "pubkey")
        if "revocation" in v:
            result.revocation = self.choice(v["revocation"], f"{path}.revocation",
                                            ("strict", "ifuri", "relaxed"))
            if result.revocation != "relaxed":
                self.warnings.append(f"{v['revocation'].file}:{v['revocation'].line}: {path}."
                                     f"revocation = {result.revocation}: only CRLs in x509crl/"
                                     " are checked (ipseclab fetches none and asks no OCSP"
                                     " responder)")
        for key in ("groups", "cert_policy"):
            if key in v:
                setattr(result, key, self.as_list(v[key]))
                self.warnings.append(f"{v[key].file}:{v[key].line}: {path}.{key} is not"
                                     " implemented by ipseclab and is ignored")
        for name, item in sec.items.items():
            if isinstance(item, Section):
                cert_path = f"{path}.{name}"
                self.check_keys(item, cert_path, CERT_SECTION_KEYS, set())
                if "file" not in item.items:
                    self.warnings.append(f"{item.file}:{item.line}: {cert_path}: certificates"
                                         " on tokens (handle/slot/module) are not implemented")
                    continue
                target = result.cacerts if name.startswith("cacert") else result.certs
                folder = "x509ca" if name.startswith("cacert") else "x509"
                target += self.files(item.items["file"], f"{cert_path}.file",  # type: ignore
                                     folder)
        return result

    def auth(self: _Loader, v: Value, key: str) -> str:
        text = v.text.strip()
        for part in text.split(","):
            scheme = part.strip().removeprefix("ike:")
            words = scheme.split("-")
            base = words[0].split("/")[0].lower()
            if base not in AUTH_METHODS:
                near = difflib.get_close_matches(base, sorted(AUTH_METHODS), n=1)
                hint = f"; did you mean '{near[0]}'?" if near else ""
                raise self.err(v, key, f"unknown authentication method '{base}'{hint}")
            if base in ("psk", "null") and len(words) > 1:
                raise self.err(v, key, f"auth {base} takes no suffix")
            if base in ("pubkey", "rsa", "ecdsa", "ed25519", "ed448"):
                for word in words[1:]:
                    if word not in HASHES and not word.isdigit() and word not in (
                            "rsa", "ecdsa", "ed25519", "ed448", "pss"):
                        raise self.err(v, key, f"unknown hash or key type '{word}'")
        return text

    def proposals(self: _Loader, v: Value, key: str, protocol: str) -> str:
        try:
            parse_proposals(v.text, protocol)  # type: ignore[arg-type]
        except ConfigError as exc:
            raise ConfigError(f"{key}: {exc.message}", file=v.file, line=v.line,
                              token=exc.token or v.text) from None
        return v.text

    def selectors(self: _Loader, v: Value, key: str) -> list[str]:
        """Traffic selectors, each read here so that a bad one is reported at its line."""
        items = self.as_list(v)
        for item in items:
            if item.strip() != DYNAMIC:
                try:
                    TrafficSelector.parse(item)
                except ConfigError as exc:
                    raise ConfigError(f"{key}: {exc.message}", file=v.file, line=v.line,
                                      token=exc.token or item) from None
        return items

    def child(self: _Loader, sec: Section, path: str) -> tuple[ChildConfig, ChildExtras]:
        self.check_keys(sec, path, CHILD_MAPPED, CHILD_IGNORED)
        v = {k: i for k, i in sec.items.items() if isinstance(i, Value)}
        kw: dict[str, object] = {"name": sec.name}
        ext = ChildExtras()
        for key in ("local_ts", "remote_ts"):
            if key in v:
                kw[key] = self.selectors(v[key], f"{path}.{key}")
        if "mode" in v:
            mode = self.choice(v["mode"], f"{path}.mode",
                               ("tunnel", "transport", "beet", "pass", "drop"))
            if mode not in ("tunnel", "transport"):
                raise self.err(v["mode"], f"{path}.mode", f"mode {mode} is not supported by"
                               " ipseclab (tunnel or transport)")
            kw["mode"] = mode
        if "esp_proposals" in v:
            kw["esp_proposals"] = self.proposals(v["esp_proposals"], f"{path}.esp_proposals",
                                                 "esp")
        if "ah_proposals" in v:
            ext.ah_proposals = self.proposals(v["ah_proposals"], f"{path}.ah_proposals", "ah")
            kw["ah_proposals"] = ext.ah_proposals
            if "esp_proposals" in v:
                self.warnings.append(
                    f"{v['ah_proposals'].file}:{v['ah_proposals'].line}: {path}.ah_proposals:"
                    " AH and ESP together (a bundle) is not supported by ipseclab; this child"
                    " negotiates AH only, its esp_proposals are not offered")
        rekey = self.time(v["rekey_time"], f"{path}.rekey_time") if "rekey_time" in v else 3600.0
        life = (self.time(v["life_time"], f"{path}.life_time") if "life_time" in v
                else rekey + rekey / 10)
        if "life_time" in v and "rekey_time" in v and rekey and life < rekey:
            raise self.err(v["life_time"], f"{path}.life_time", "is shorter than rekey_time")
        kw["rekey_time"], kw["life_time"] = rekey, life
        ext.rand_time = (self.time(v["rand_time"], f"{path}.rand_time") if "rand_time" in v
                         else max(life - rekey, 0.0))
        for unit in ("bytes", "packets"):
            # strongSwan's defaults: life = rekey + 10 %, rand = life - rekey
            names = [f"{what}_{unit}" for what in ("rekey", "life", "rand")]
            rekey, life, rand = (self.as_volume(v[n], f"{path}.{n}") if n in v else None
                                 for n in names)
            if life is None:
                life = (rekey or 0) + (rekey or 0) // 10
            if rekey and life < rekey:
                raise self.err(v[names[1]], f"{path}.{names[1]}", f"is below {names[0]}")
            kw[names[0]], kw[names[1]], kw[names[2]] = rekey or 0, life, rand
        if "tfc_padding" in v:
            text = v["tfc_padding"].text.strip().lower()
            kw["tfc_padding"] = ("mtu" if text == "mtu"
                                 else self.as_int(v["tfc_padding"], f"{path}.tfc_padding",
                                                  0, 65535))
            self.not_honoured(v, path, "tfc_padding", "ah_proposals" in kw,
                              "TFC padding is ESP's (RFC 4303 §2.7); this child uses AH")
        if "replay_window" in v:
            kw["replay_window"] = self.as_int(v["replay_window"], f"{path}.replay_window",
                                              0, MAX_REPLAY_WINDOW)
        if "start_action" in v:
            action = v["start_action"].text.replace(" ", "").lower()
            if action not in ("none", "trap", "start", "trap|start", "start|trap"):
                raise self.err(v["start_action"], f"{path}.start_action",
                               "must be one of none, trap, start, trap|start")
            kw["start_action"] = action
        if "dpd_action" in v:
            kw["dpd_action"] = self.choice(v["dpd_action"], f"{path}.dpd_action",
                                           ("none", "clear", "trap", "restart"))
        if "close_action" in v:
            ext.close_action = self.choice(v["close_action"], f"{path}.close_action",
                                           ("none", "clear", "trap", "start", "restart"))
        if "inactivity" in v:
            ext.inactivity = self.time(v["inactivity"], f"{path}.inactivity")
        for key in ("hostaccess", "policies"):
            if key in v:
                setattr(ext, key, self.as_bool(v[key], f"{path}.{key}"))
        self.not_honoured(v, path, "policies", not ext.policies,
                          "a child SA's policies are always installed")
        if "updown" in v:
            ext.updown = v["updown"].text
        return _construct(ChildConfig, kw, sec), ext


def _first_address(addrs: list[str] | None) -> str:
    return addrs[0] if addrs else "%any"


def _construct(cls: type, kw: dict[str, object], sec: Section) -> object:
    """``cls(**kw)`` with the keys it has fields for; its ConfigError gets file and line.

    While :class:`IkeConfig` refuses auth methods other than psk and pubkey, such a
    connection (eap, xauth) is built without that check (its auth is in the object, and the
    rounds in the extras), so it can be listed and inspected; the engine refuses it.
    """
    names = {f.name for f in dataclasses.fields(cls)}
    args = {k: val for k, val in kw.items() if k in names}
    try:
        return cls(**args)
    except ConfigError as exc:
        if cls is IkeConfig and "auth" in exc.message and "not supported" in exc.message:
            obj = object.__new__(cls)
            for f in dataclasses.fields(cls):
                if f.name in args:
                    setattr(obj, f.name, args[f.name])
                elif f.default is not dataclasses.MISSING:
                    setattr(obj, f.name, f.default)
                else:
                    setattr(obj, f.name, f.default_factory())  # type: ignore[misc]
            return obj
        raise ConfigError(exc.message, file=sec.file, line=sec.line,
                          token=exc.token or sec.name) from None
