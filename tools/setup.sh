#!/usr/bin/env bash
# setup.sh - install every Debian package finetuned needs to build, test and
# serve its dashboard. Idempotent: quiet and fast when everything is present.
#   tools/setup.sh          build + test dependencies
#   tools/setup.sh --dev    also python3-torch etc. for regenerating fixtures and bench/
set -euo pipefail

packages=(
        # build
        gcc make meson ninja-build pkg-config cmake
        libmicrohttpd-dev libjansson-dev libsqlite3-dev zlib1g-dev libsystemd-dev libdnnl-dev
        # tests
        curl jq bc sqlite3 dataset-fashion-mnist systemd prometheus socat
        # dashboard
        libjs-chart.js
)
if [ "${1:-}" = "--dev" ]; then
        packages+=(python3-torch python3-torchvision python3-numpy python3-sklearn wrk clang-format valgrind)
fi
if [ -f "$(dirname "$0")/setup.d/extra-packages" ]; then
        # shellcheck disable=SC2207
        packages+=($(grep -v '^#' "$(dirname "$0")/setup.d/extra-packages"))
fi

missing=()
for p in "${packages[@]}"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
        [ "$status" = installed ] || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing ${missing[*]}" >&2
sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
