#!/usr/bin/env bash
# Installs the Debian packages prewarm needs, only those missing. Runs unattended (CI has
# no standard input); as a non-root user it uses sudo when it can.
set -euo pipefail
packages=(
  # what SwiftPM and the Swift toolchain link against
  pkg-config git gcc binutils libc6-dev libncurses6 zlib1g-dev libcurl4-openssl-dev libxml2-dev tzdata ca-certificates
  # the C libraries the wrappers bind
  librdkafka-dev libhiredis-dev libpq-dev
  # local services and the stock tools benchmarks compare against
  redis-server redis-tools postgresql postgresql-client kcat wrk
  # compose.yaml check; python3-venv for noida-db (below)
  python3 python3-yaml python3-venv bc curl
  # the console's browser test and screenshot (headless chromium); promtool for the alert rules' tests
  chromium prometheus
  # make bench scale draws its curves with gnuplot
  gnuplot-nox
)
command -v swift >/dev/null || { echo "deps: the Swift toolchain (swift) is not on PATH; install Swift 6 first" >&2; exit 1; }
# swift itself needs libncurses6; a minimal image may lack it.
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing ${missing[*]}"
  if [ "$(id -u)" = 0 ]; then sudo=(); else sudo=(sudo -n); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo[@]}" apt-get update -qq
  "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  echo "deps: done"
fi

# noida-db, the independent Kafka-protocol broker the suite also runs on
# (PREWARM_DEV_KAFKA=noida), from PyPI, pinned, in a virtual environment under .run/.
NOIDA_VERSION=0.2.3
venv=$(cd "$(dirname "$0")/.." && pwd)/.run/noida/venv
if ! "$venv/bin/python3" -c "import importlib.metadata as m, sys; sys.exit(m.version('noida-db') != '$NOIDA_VERSION')" 2>/dev/null; then
  echo "deps: installing noida-db $NOIDA_VERSION under $venv"
  rm -rf "$venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --disable-pip-version-check "noida-db==$NOIDA_VERSION"
fi
