#!/usr/bin/env bash
# Installs what the end-to-end tests and the benchmark drive, on a bare
# machine: BitTorrent clients (libtorrent for the DHT tests), tracker, players, FUSE (Debian packages), bcoin
# (npm) and ElectrumX (PyPI) for the regtest chain. Extra Debian packages may be
# named as arguments (tests/bench.py adds btfs). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

# chromium (the web page test) without its recommends, which pull in udev
# and a systemd upgrade that change /dev/fuse's mode.
need=(aria2 transmission-daemon qbittorrent-nox python3-libtorrent opentracker ffmpeg vlc-bin vlc-plugin-base fuse3 psmisc iproute2 util-linux lintian man-db dpkg-dev systemd chromium curl "$@")
missing=()
for p in "${need[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
[ -e /dev/fuse ] || { echo "no /dev/fuse: the end-to-end tests need FUSE" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "the end-to-end tests mount filesystems and run peers; run as root" >&2; exit 1; }

# The regtest chain for the payment tests: bcoin (npm) and ElectrumX (PyPI).
command -v node >/dev/null && command -v npm >/dev/null || {
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm build-essential python3 >/dev/null
}
if [ ! -e tests/regtest/node_modules/bcoin/package.json ]; then
  (cd tests/regtest && npm_config_nodedir=/usr npm ci --no-audit --no-fund --loglevel=error)
fi
# puppeteer-core drives Debian's chromium (no browser download).
if [ ! -e tests/browser/node_modules/puppeteer-core/package.json ]; then
  (cd tests/browser && PUPPETEER_SKIP_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)
fi
if [ ! -x tests/regtest/.venv/bin/python3 ] || ! tests/regtest/.venv/bin/python3 -c 'import electrumx, plyvel' 2>/dev/null; then
  python3 -m venv tests/regtest/.venv
  tests/regtest/.venv/bin/pip install -q --disable-pip-version-check e-x==1.18.0 plyvel
fi
