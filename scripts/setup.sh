#!/usr/bin/env bash
# Installs everything ipseclab needs on a Debian 12 machine, as root, and is cheap to run again:
# the Debian packages (tshark, Mininet, strongSwan, iperf3, ...) and a virtualenv in .venv/
# built on Debian's own Python 3 (Mininet's Python module is a Debian package, not on PyPI).
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(python3 python3-venv python3-pip iproute2 iptables tcpdump tshark mininet iperf3
              charon-systemd strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins
              procps iputils-ping strongswan-pki openssl
              gcc libc6-dev libssl-dev python3-dev)  # the last four: ESP's compiled fast path
VENV=.venv
STAMP=$VENV/.ipseclab-setup
EXTRAS=${IPSECLAB_EXTRAS:-dev,notebooks}

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x $VENV/bin/python ]; then
  echo "setup: creating $VENV with /usr/bin/python3" >&2
  /usr/bin/python3 -m venv $VENV
fi
# Mininet comes from Debian; expose only that package to the virtualenv.
site=$($VENV/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p $VENV/debian-mininet
ln -sfn /usr/lib/python3/dist-packages/mininet $VENV/debian-mininet/mininet
echo "$(pwd)/$VENV/debian-mininet" > "$site/debian-mininet.pth"

# Reinstall when the build changes, the C source of ESP's fast path included.
want="$(cat pyproject.toml setup.py ipseclab/ipsec/_espfast.c | sha256sum | cut -c1-16)-$EXTRAS"
# Also when ESP's compiled fast path is missing and a compiler is there now.
if [ ! -f $STAMP ] || [ "$(cat $STAMP)" != "$want" ] || { command -v gcc >/dev/null \
     && ! $VENV/bin/python -c 'import ipseclab.ipsec._espfast' 2>/dev/null; }; then
  echo "setup: installing ipseclab[$EXTRAS] into $VENV" >&2
  $VENV/bin/pip install -q --upgrade pip >/dev/null
  $VENV/bin/pip install -q -e ".[$EXTRAS]"
  echo "$want" > $STAMP
  if ! $VENV/bin/python -c 'import ipseclab.ipsec._espfast' 2>/dev/null; then
    echo "setup: ESP's compiled fast path did not build; ipseclab runs in pure Python" >&2
  fi
fi
