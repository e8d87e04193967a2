"""swanctl.conf loading: realistic configs as strongSwan's docs write them, and every error."""

from __future__ import annotations

import base64
import textwrap
from pathlib import Path

import pytest

from ipseclab.config.swanctl import load_swanctl, parse_settings, parse_time
from ipseclab.errors import ConfigError
from ipseclab.ike import testpki


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


PSK_SITE = """\
    # site-to-site with a pre-shared key, as in strongSwan's quickstart
    connections {
       gw-gw {
          local_addrs  = 192.0.2.1
          remote_addrs = 198.51.100.1
          proposals = aes128gcm16-prfsha256-x25519, default
          version = 2
          dpd_delay = 30s
          rekey_time = 2h

          local {
             auth = psk
             id = moon.strongswan.org
          }
          remote {
             auth = psk
             id = sun.strongswan.org
          }
          children {
             net-net {
                local_ts  = 10.1.0.0/16
                remote_ts = 10.2.0.0/16, 10.3.0.0/16[tcp/80]
                esp_proposals = aes128gcm16-x25519
                rekey_time = 30m
                start_action = trap
                dpd_action = restart
                updown = /usr/local/libexec/ipsec/_updown iptables
             }
          }
       }
    }
    secrets {
       ike-any {
          secret = "not this one"
       }
       ike-1 {
          id-moon = moon.strongswan.org
          id-sun = sun.strongswan.org
          secret = 0sv+NkxY9LLZvwj4qCC2o/gGrWDF2d21jL
       }
    }
"""


def test_psk_site_to_site(tmp_path):
    loaded = load_swanctl(write(tmp_path, "swanctl.conf", PSK_SITE))
    conn = loaded.connections["gw-gw"]
    assert conn.local_addrs == ["192.0.2.1"] and conn.remote_addrs == ["198.51.100.1"]
    assert conn.local_id == "moon.strongswan.org" and conn.remote_id == "sun.strongswan.org"
    assert conn.local_auth == conn.remote_auth == "psk"
    assert conn.psk == base64.b64decode("v+NkxY9LLZvwj4qCC2o/gGrWDF2d21jL")
    assert conn.rekey_time == 7200 and conn.dpd_delay == 30
    child = conn.child("net-net")
    assert child.remote_ts == ["10.2.0.0/16", "10.3.0.0/16[tcp/80]"]
    assert (child.rekey_time, child.life_time) == (1800, 1980)
    assert (child.start_action, child.dpd_action) == ("trap", "restart")
    extras = loaded.extras["gw-gw"]
    assert extras.over_time == 720 and extras.rand_time == 720  # 10 % of rekey_time
    assert extras.children["net-net"].rand_time == 180
    assert extras.children["net-net"].updown.endswith("_updown iptables")
    assert not any("updown" in w for w in loaded.warnings)  # run by the IKE gateway
    conn.check()


def test_secret_lookup_prefers_exact_ids(tmp_path):
    loaded = load_swanctl(write(tmp_path, "swanctl.conf", PSK_SITE))
    secrets = loaded.secrets
    moon_sun = secrets.shared_key("moon.strongswan.org", "sun.strongswan.org")
    assert moon_sun != b"not this one"
    # One identity fitting exactly (3) beats a secret without ids (1 + 1), as in strongSwan.
    assert secrets.shared_key("moon.strongswan.org", "venus.strongswan.org") == moon_sun
    assert secrets.shared_key("mars.strongswan.org", "venus.strongswan.org") == b"not this one"
    hexed = write(tmp_path, "hex.conf", """\
        secrets {
           ike-x {
              id = 10.0.0.0/8
              secret = 0x0102ff
           }
        }
    """)
    assert load_swanctl(hexed).secrets.shared_key("10.1.2.3", "%any") == b"\x01\x02\xff"


def test_a_secret_naming_only_the_peer_is_found(tmp_path):
    """The way strongSwan's own examples and our interop tests write a PSK: ``id`` = the
    peer. charon takes it; ipseclab refused the connection ("auth psk needs a secret")."""
    conf = write(tmp_path, "peer.conf", PSK_SITE.replace("""       ike-any {
          secret = "not this one"
       }""", "").replace("""          id-moon = moon.strongswan.org
          id-sun = sun.strongswan.org""", "          id = sun.strongswan.org"))
    loaded = load_swanctl(conf)
    assert loaded.connections["gw-gw"].psk == base64.b64decode("v+NkxY9LLZvwj4qCC2o/gGrWDF2d21jL")
    assert loaded.secrets.shared_key("moon.strongswan.org", "venus.strongswan.org") is None


@pytest.fixture(scope="module")
def pki_dir(tmp_path_factory):
    directory = tmp_path_factory.mktemp("swanctl")
    testpki.make_lab_pki(directory)
    return directory


ROAD_WARRIOR = """\
    connections {
       rw {
          pools = rw_pool
          send_cert = always
          fragmentation = yes
          local {
             auth = pubkey
             certs = moonCert.pem
             id = moon.ipseclab.test
          }
          remote {
             auth = pubkey
             cacerts = caCert.pem
             revocation = relaxed
          }
          children {
             net {
                local_ts = 10.1.0.0/16
                esp_proposals = aes256gcm16-ecp256
             }
          }
       }
    }
    pools {
       rw_pool {
          addrs = 10.3.0.0/24
          dns = 10.1.0.53, 10.1.0.54
       }
    }
    secrets {
       private-moon {
          file = moonKey.pem
       }
    }
    authorities {
       ipseclab {
          cacert = caCert.pem
          crl_uris = http://crl.ipseclab.test/ca.crl
       }
    }
"""


def test_certificate_road_warrior_with_pool(pki_dir):
    loaded = load_swanctl(write(pki_dir, "swanctl.conf", ROAD_WARRIOR))
    conn = loaded.connections["rw"]
    assert conn.local_auth == "pubkey" and conn.remote_id == "%any"
    assert conn.remote_addrs == ["%any"]
    extras = loaded.extras["rw"]
    assert extras.pools == ["rw_pool"] and extras.send_cert == "always"
    assert extras.local_rounds[0].certs == [(pki_dir / "x509" / "moonCert.pem").resolve()]
    assert extras.remote_rounds[0].cacerts == [(pki_dir / "x509ca" / "caCert.pem").resolve()]
    assert loaded.pools["rw_pool"].addrs == "10.3.0.0/24"
    assert loaded.pools["rw_pool"].attributes["dns"] == ["10.1.0.53", "10.1.0.54"]
    assert loaded.secrets.private_keys[0].file == (pki_dir / "private" / "moonKey.pem").resolve()
    assert any("authorities" in w for w in loaded.warnings)
    # the objects the engine uses: our certificate, the key that fits it, the CA, the pool
    assert conn.certificate.subject.rfc4514_string() == "CN=moon.ipseclab.test,O=ipseclab,C=CH"
    assert conn.private_key.public_key() == conn.certificate.public_key()
    assert conn.remote_cacerts[0].subject == conn.certificate.issuer
    assert conn.pools[0].addrs == "10.3.0.0/24" and conn.pools[0].dns == ("10.1.0.53",
                                                                          "10.1.0.54")
    assert conn.send_cert == "always" and conn.send_certreq
    conn.check()


def test_transport_host_to_host(tmp_path):
    path = write(tmp_path, "swanctl.conf", """\
        connections {
           host-host {
              remote_addrs = 192.0.2.2
              local { auth = psk }
              remote { auth = psk }
              children {
                 host-host {
                    mode = transport
                    ah_proposals = sha256
                    esp_proposals =
                    life_time = 2h
                 }
              }
           }
        }
        secrets { ike { secret = "a secret with # and \\"quotes\\"" } }
    """)
    loaded = load_swanctl(path)
    conn = loaded.connections["host-host"]
    child = conn.child()
    assert child.mode == "transport" and child.esp_proposals == "default"
    assert (child.rekey_time, child.life_time) == (3600, 7200)
    assert loaded.extras["host-host"].children["host-host"].ah_proposals == "sha256"
    assert child.protocol == "ah"
    assert conn.psk == b'a secret with # and "quotes"'
    assert conn.local_id == "" and conn.remote_id == "%any"


def test_includes_references_and_merging(tmp_path):
    write(tmp_path, "conf.d/a.conf", """\
        connections {
           base {
              rekey_time = 1h
              local { auth = psk }
           }
        }
    """)
    write(tmp_path, "conf.d/b.conf", "secrets { ike-1 { secret = s3cret } }\n")
    write(tmp_path, "children.inc", "net { local_ts = 10.9.0.0/24 }\n")
    path = write(tmp_path, "swanctl.conf", """\
        include conf.d/*.conf
        include conf.d/nothing-*.conf
        connections {
           base { remote { auth = psk } }
           derived : connections.base {
              rekey_time = 3h
              children {
                 include children.inc
              }
           }
        }
    """)
    loaded = load_swanctl(path)
    assert loaded.connections["base"].rekey_time == 3600
    derived = loaded.connections["derived"]
    assert derived.rekey_time == 10800 and derived.local_auth == "psk"
    assert derived.child("net").local_ts == ["10.9.0.0/24"]
    assert derived.psk == b"s3cret"
    tree = parse_settings(path)
    assert "derived" in tree.items["connections"].items  # type: ignore[union-attr]


def test_time_values():
    assert [parse_time(t) for t in ("90", "30s", "10m", "4h", "1d")] == [90, 30, 600, 14400,
                                                                          86400]
    with pytest.raises(ValueError):
        parse_time("4x")


def test_unimplemented_keys_warn(tmp_path):
    loaded = load_swanctl(write(tmp_path, "swanctl.conf", """\
        connections {
           c {
              aggressive = yes
              local { auth = psk }
              remote { auth = eap-mschapv2 }
              children { x { ipcomp = yes } }
           }
        }
    """))
    text = "\n".join(loaded.warnings)
    assert "connections.c.aggressive" in text and "ipcomp" in text and "eap-mschapv2" in text
    assert "swanctl.conf:3:" in text


ERRORS = [
    ("connections {\n  c {\n    rekey_tim = 1h\n  }\n}\n", 3, "did you mean 'rekey_time'"),
    ("connections {\n  c {\n    children {\n      x {\n        esp_proposal = aes128\n"
     "}}}}\n", 5, "did you mean 'esp_proposals'"),
    ("connections {\n  c {\n    remote {\n      auth = pubkee\n    }\n  }\n}\n", 4,
     "did you mean 'pubkey'"),
    ("connections {\n  c {\n    rekey_time = 4x\n  }\n}\n", 3, "not a time"),
    ("connections {\n  c {\n    local_port = 70000\n  }\n}\n", 3, "between 1 and 65535"),
    ("connections {\n  c {\n    mobike = maybe\n  }\n}\n", 3, "yes or no"),
    ("connections {\n  c {\n    proposals = aes128-sha256-modp9999\n  }\n}\n", 3, "proposals"),
    ("connections {\n  c {\n    version = 1\n  }\n}\n", 3, "IKEv1"),
    ("connections {\n  c {\n    children {\n      x {\n        mode = beet\n}}}}\n", 5,
     "not supported"),
    ("connections {\n  c {\n    children {\n      x {\n        remote_ts = 10.2.0.0/33\n"
     "}}}}\n", 5, "x.remote_ts: not an address"),
    ("connections {\n  c {\n    children {\n      x {\n        local_ts = dynamic, "
     "10.1.0.0/24[icmp/8:300]\n}}}}\n", 5, "ICMP type and code are 0..255"),
    ("connections {\n  c {\n    local {\n      certs = missing.pem\n}}}\n", 4, "no such file"),
    ("connections {\n  c {\n    pools = nopool\n  }\n}\n", 3, "no pool named"),
    ("connection {\n}\n", 1, "did you mean 'connections'"),
    ("secrets {\n  psk-1 {\n    secret = x\n  }\n}\n", 2, "secret sections start"),
    ("secrets {\n  ike-1 {\n    secret = 0xZZ\n  }\n}\n", 3, "hex"),
    ("secrets {\n  ike-1 {\n    id = a\n  }\n}\n", 2, "needs a secret"),
    ("pools {\n  p {\n    addrs = 10.0.0.0/33\n  }\n}\n", 3, "not an address"),
    ("connections {\n  c {\n    rekey_time = 1h\n", 2, "never closed"),
    ("connections {\n}\n}\n", 3, "without a section"),
    ("connections {\n  c = d\n}\n", 2, "only sections"),
    ("a b c\n", 1, "expected '=' or '{'"),
    ("secrets {\n  ike { secret = \"open\n}\n}\n", 2, "never closed"),
    ("include nope.conf\n", 1, "does not exist"),
    ("connections {\n  c : connections.zzz {\n  }\n}\n", 2, "does not exist"),
]


@pytest.mark.parametrize(("text", "line", "message"), ERRORS)
def test_errors_name_file_line_and_key(tmp_path, text, line, message):
    path = tmp_path / "swanctl.conf"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_swanctl(path)
    assert info.value.file == str(path)
    assert info.value.line == line, str(info.value)
    assert message in str(info.value)


def test_include_loop_is_an_error(tmp_path):
    write(tmp_path, "a.conf", "include b.conf\n")
    write(tmp_path, "b.conf", "include a.conf\n")
    with pytest.raises(ConfigError, match="includes itself"):
        load_swanctl(tmp_path / "a.conf")


def test_secret_value_not_in_error(tmp_path):
    path = write(tmp_path, "swanctl.conf", "secrets {\n ike { secret = 0xsupersecret }\n}\n")
    with pytest.raises(ConfigError) as info:
        load_swanctl(path)
    assert "supersecret" not in str(info.value)


def test_endpoints_are_the_first_single_addresses() -> None:
    """Where an initiator or a trap sends from and to: never a subnet, range, %any or name."""
    from ipseclab.ike.config import IkeConfig

    config = IkeConfig("c", local_addrs=["192.0.2.0/24", "%any", "192.0.2.1", "192.0.2.9"],
                       remote_addrs=["gw.example", "198.51.100.1-198.51.100.9", "2001:db8::2"])
    assert config.endpoints() == ("192.0.2.1", "2001:db8::2")
    anywhere = IkeConfig("any")
    assert anywhere.endpoints() == (None, None)
    assert anywhere.endpoints("203.0.113.5") == ("203.0.113.5", None)


@pytest.mark.parametrize(("remote", "problem"), [
    ("198.51.100.300", "is no IP address, subnet or range"),
    ("198.51.100.0/33", "is no IP address, subnet or range"),
    ("198.51.100.1-2001:db8::1", "different IP versions"),
    ("198.51.100.9-198.51.100.1", "first address is above its last"),
])
def test_address_typos_are_errors_with_file_and_line(tmp_path, remote, problem):
    path = write(tmp_path, "swanctl.conf",
                 PSK_SITE.replace("remote_addrs = 198.51.100.1", f"remote_addrs = {remote}"))
    with pytest.raises(ConfigError, match=problem) as info:
        load_swanctl(path)
    assert info.value.line == 5 and "remote_addrs" in str(info.value)


def test_addresses_subnets_ranges_and_names(tmp_path):
    text = PSK_SITE.replace("remote_addrs = 198.51.100.1", "remote_addrs = sun.example.org,"
                            " 198.51.100.1, 198.51.100.0/24, 198.51.100.1-198.51.100.9, %any6,"
                            " 2001:db8::1")
    loaded = load_swanctl(write(tmp_path, "swanctl.conf", text))
    config = loaded.connections["gw-gw"]
    assert config.remote_addrs[0] == "sun.example.org" and len(config.remote_addrs) == 6
    (warning,) = [w for w in loaded.warnings if "remote_addrs" in w]
    assert "'sun.example.org' is taken as a host name" in warning and ":5:" in warning
    assert config.matches_addresses("192.0.2.1", "198.51.100.5")
    assert config.endpoints() == ("192.0.2.1", "198.51.100.1")


def test_ah_proposals_make_an_ah_child_sa(tmp_path):
    text = PSK_SITE.replace("esp_proposals = aes128gcm16-x25519", "ah_proposals = sha256")
    loaded = load_swanctl(write(tmp_path, "swanctl.conf", text))
    child = loaded.connections["gw-gw"].child("net-net")
    assert (child.protocol, child.protocol_id, child.ah_proposals) == ("ah", 2, "sha256")
    assert [str(p) for p in child.proposals] == ["sha256"]
    assert not [w for w in loaded.warnings if "ah_proposals" in w]
    both = PSK_SITE.replace("esp_proposals = aes128gcm16-x25519",
                            "esp_proposals = aes128gcm16\n                ah_proposals = sha256")
    loaded = load_swanctl(write(tmp_path, "both.conf", both))
    (warning,) = [w for w in loaded.warnings if "a bundle" in w]
    assert warning.split(": ")[1] == "connections.gw-gw.children.net-net.ah_proposals"
    assert loaded.connections["gw-gw"].child("net-net").protocol == "ah"


def test_settings_read_but_not_acted_on_are_warned_about(tmp_path):
    """Each with a value that asks for more than ipseclab does; defaults stay quiet."""
    text = PSK_SITE.replace("version = 2", "version = 2\n          encap = yes\n"
                            "          reauth_time = 1h\n          unique = keep\n"
                            "          keyingtries = 0\n          mobike = yes")
    text = text.replace("start_action = trap", "start_action = trap\n"
                        "                inactivity = 60\n                hostaccess = yes\n"
                        "                policies = no")
    loaded = load_swanctl(write(tmp_path, "swanctl.conf", text))
    flagged = {w.split(": ")[1].split(" = ")[0].rsplit(".", 1)[1]
               for w in loaded.warnings if "is not honoured by ipseclab" in w}
    assert flagged == {"policies", "mobike"}
    assert loaded.connections["gw-gw"].encap
    config = loaded.connections["gw-gw"]
    assert config.reauth_time == 3600.0  # honoured: see tests/test_ike_reauth.py
    assert config.unique == "keep"  # honoured: see tests/test_ike_engine.py
    assert config.life_time == 3600.0 + 720.0  # the earlier of 1h and 2h, plus 10% of 2h
    quiet = PSK_SITE.replace("version = 2", "version = 2\n          encap = no\n"
                             "          unique = no\n          keyingtries = 1")
    assert not [w for w in load_swanctl(write(tmp_path, "q.conf", quiet)).warnings
                if "not honoured" in w]


def test_volume_limits_and_tfc_padding_are_read(tmp_path):
    """rekey_bytes and kin take swanctl's k/m/g suffixes (times 1024) and strongSwan's
    defaults (life 10% above rekey); tfc_padding a number of bytes or mtu."""
    child = ("start_action = trap\n                rekey_bytes = 512k\n"
             "                rekey_packets = 1000\n                life_packets = 1500\n"
             "                tfc_padding = mtu")
    text = PSK_SITE.replace("start_action = trap", child)
    loaded = load_swanctl(write(tmp_path, "swanctl.conf", text))
    assert not [w for w in loaded.warnings if "rekey_bytes" in w or "tfc_padding" in w]
    config = loaded.connections["gw-gw"].child("net-net")
    assert (config.rekey_bytes, config.life_bytes) == (512 * 1024, 512 * 1024 * 11 // 10)
    assert (config.rekey_packets, config.life_packets) == (1000, 1500)
    assert config.tfc_padding == "mtu"
    numeric = text.replace("tfc_padding = mtu", "tfc_padding = 1200")
    numeric_config = load_swanctl(write(tmp_path, "n.conf", numeric)).connections["gw-gw"]
    assert numeric_config.child("net-net").tfc_padding == 1200
    for bad, message in (("rekey_bytes = 512x", "not a number"),
                         ("life_packets = 999", "is below rekey_packets"),
                         ("tfc_padding = lots", "not a number")):
        key = bad.split(" = ")[0]
        broken = text.replace(next(line.strip() for line in child.splitlines()
                                   if line.strip().startswith(key)), bad)
        with pytest.raises(ConfigError, match=message) as info:
            load_swanctl(write(tmp_path, "bad.conf", broken))
        assert info.value.line is not None
