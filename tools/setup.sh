#!/usr/bin/env bash
# setup.sh - install every Debian package finetuned needs to build, test and
# serve its dashboard. Idempotent: quiet and fast when everything is present.
#   tools/setup.sh          build + test dependencies
#   tools/setup.sh --dev    also python3-torch etc. for regenerating fixtures and bench/
set -euo pipefail

packages=(
        # build (the C library headers are only a Recommends of gcc)
        gcc libc6-dev make meson ninja-build pkg-config cmake xxd
        libmicrohttpd-dev libjansson-dev libsqlite3-dev zlib1g-dev libsystemd-dev libdnnl-dev
        libopenmpi-dev openmpi-bin
        libcurl4-openssl-dev # the webhook sender
        # tests (fakeroot: test_ops_systemd applies tmpfiles.d ownership as a normal user;
        # iproute2: test_dist_netns joins two network namespaces with a veth pair)
        curl jq bc sqlite3 dataset-fashion-mnist systemd prometheus socat fakeroot iproute2
        # PostgreSQL store: libpq to build; the server for its tests (tools/pg-test-server.sh)
        libpq-dev postgresql
        # dashboard
        libjs-chart.js
        # browser tests: Debian's chromium driven by playwright-core from npm (tests/browser)
        chromium nodejs
)
if [ "${1:-}" = "--dev" ]; then
        packages+=(python3-torch python3-torchvision python3-numpy python3-sklearn libopenblas0-pthread wrk clang-format valgrind)
fi
if [ -f "$(dirname "$0")/setup.d/extra-packages" ]; then
        # shellcheck disable=SC2207
        packages+=($(grep -v '^#' "$(dirname "$0")/setup.d/extra-packages"))
fi

# npm packages for the tests, each directory from its committed package-lock.json:
# tests/browser (playwright-core; never a browser download: Debian's chromium is
# used) and tests/contract (the OpenAPI and JSON Schema validators). Re-run when a
# lock file changes.
npm_deps() {
        local dir
        for dir in tests/browser tests/contract; do
                dir="$(cd "$(dirname "$0")/../$dir" && pwd)"
                cmp -s "$dir/package-lock.json" "$dir/node_modules/.finetuned-lock" 2>/dev/null && continue
                echo "setup: npm ci in ${dir#"$(cd "$(dirname "$0")/.." && pwd)/"}" >&2
                (cd "$dir" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
                cp "$dir/package-lock.json" "$dir/node_modules/.finetuned-lock"
        done
}

missing=()
for p in "${packages[@]}"; do
        status=$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)
        [ "$status" = installed ] || missing+=("$p")
done
# Debian's nodejs comes without npm (package npm); NodeSource's bundles it.
command -v npm >/dev/null 2>&1 || missing+=(npm)
[ ${#missing[@]} -eq 0 ] && { npm_deps; exit 0; }

echo "setup: installing ${missing[*]}" >&2
sudo=
[ "$(id -u)" -eq 0 ] || sudo=sudo
# env: sudo does not pass DEBIAN_FRONTEND on.
$sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
npm_deps
