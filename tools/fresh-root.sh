#!/usr/bin/env bash
# fresh-root.sh - run the README's test command (`make test`, or the command
# given) on a copy of this clone inside a brand-new Debian 12 root made with
# `debootstrap --variant=minbase`, as a normal user with sudo, so that CI never
# trusts the packages of the machine it happens to run on. The last line is
# "fresh-root: N passed, N failed, N skipped (N s)"; meson's logs are copied to
# build-fresh-root/meson-logs. Needs root (debootstrap, chroot, mounts).
#   sudo tools/fresh-root.sh              make test in a fresh root
#   sudo tools/fresh-root.sh make run     any other command, in the copy of the clone
# The bare root (debootstrap + what a new machine has preinstalled) is cached in
# $FRESH_ROOT_CACHE (default /var/cache/finetuned-ci); everything after it,
# tools/setup.sh included, runs from scratch in a new copy every time.
# Not for: release builds, images, or other distributions; not a sandbox (the
# root shares the host's kernel, network and devices).
#
# Environment: FRESH_ROOT_SUITE (bookworm), FRESH_ROOT_MIRROR (default: the
# host's apt source for that suite), FRESH_ROOT_CACHE, FRESH_ROOT_MAX_AGE_DAYS
# (7: rebuild the bare root after that), FRESH_ROOT_TIMEOUT (1200 s for the
# command), FRESH_ROOT_OUT (build-fresh-root), FRESH_ROOT_KEEP=1 (leave the
# root on disk, unmounted, to look into).
set -euo pipefail

src=$(cd "$(dirname "$0")/.." && pwd)
suite=${FRESH_ROOT_SUITE:-bookworm}
cache_dir=${FRESH_ROOT_CACHE:-/var/cache/finetuned-ci}
max_age_days=${FRESH_ROOT_MAX_AGE_DAYS:-7}
cmd_timeout=${FRESH_ROOT_TIMEOUT:-1200}
out=${FRESH_ROOT_OUT:-$src/build-fresh-root}
# What a new Debian machine of the kind the README talks about has before the
# first command: a compiler and make to run it, git to clone, sudo.
preinstalled=git,make,gcc,libc6-dev,sudo,ca-certificates
user=dev                  # the machine's normal user, in group sudo
home=/home/$user
clone=$home/finetuned
user_path=/usr/local/bin:/usr/bin:/bin:/usr/local/games:/usr/games  # Debian's default for a user
root_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
if [ $# -gt 0 ]; then cmd=("$@"); else cmd=(make test); fi

t0=$(date +%s)
rm -rf "$out" 2>/dev/null || true  # never the logs of an earlier run
say() { echo "fresh-root: $*" >&2; }
die() {
        say "error: $*"
        echo "fresh-root: 0 passed, 1 failed, 0 skipped ($(($(date +%s) - t0)) s)"
        exit 1
}

[ "$(id -u)" -eq 0 ] || die "needs root for debootstrap, chroot and mounts (sudo $0)"
git -C "$src" rev-parse --git-dir >/dev/null 2>&1 || die "$src is not a git clone"

# ---- the host's apt sources ----------------------------------------------
# apt_sources MODE FILE...: for the Debian sources of $suite (the suites
# $suite, $suite-updates and $suite-security, as on a new machine; other
# suites and repositories are left out), MODE=mirror prints "URI KEYRING" of
# the first one serving $suite itself, MODE=filter prints them, otherwise as
# the host has them.
apt_sources() {
        local mode=$1 f; shift
        for f in "$@"; do
                [ -f "$f" ] || continue
                case $f in
                *.sources) awk -v mode="$mode" -v suite="$suite" '
                        BEGIN { RS = ""; FS = "\n"; ok = "^" suite "(-updates|-security)?$" }
                        {
                                delete v; sl = 0
                                for (i = 1; i <= NF; i++) {
                                        if ($i ~ /^#/ || !match($i, /^[A-Za-z-]+:/)) continue
                                        k = tolower(substr($i, 1, RLENGTH - 1)); x = substr($i, RLENGTH + 1)
                                        gsub(/^[ \t]+|[ \t]+$/, "", x); v[k] = x
                                        if (k == "suites") sl = i
                                }
                                if (tolower(v["enabled"]) == "no" || (" " v["types"] " ") !~ / deb /) next
                                n = split(v["suites"], s, /[ \t]+/); keep = ""; own = 0
                                for (i = 1; i <= n; i++)
                                        if (s[i] ~ ok) { keep = keep " " s[i]; if (s[i] == suite) own = 1 }
                                if (keep == "") next
                                if (mode == "filter") {
                                        $sl = "Suites:" keep
                                        for (i = 1; i <= NF; i++) print $i
                                        print ""
                                        next
                                }
                                split(v["uris"], u, /[ \t]+/)
                                if (own && !done) { print u[1], (v["signed-by"] ~ /^\// ? v["signed-by"] : ""); done = 1 }
                        }' "$f" ;;
                *) awk -v mode="$mode" -v suite="$suite" '
                        BEGIN { ok = "^" suite "(-updates|-security)?$" }
                        $1 != "deb" { next }
                        {
                                line = $0; key = ""; a = index(line, "["); b = index(line, "]")
                                if (a && b > a) {
                                        n = split(substr(line, a + 1, b - a - 1), o, /[ \t]+/)
                                        for (i = 1; i <= n; i++)
                                                if (o[i] ~ /^signed-by=/) key = substr(o[i], 11)
                                        line = substr(line, 1, a - 1) substr(line, b + 1)
                                }
                                split(line, w, /[ \t]+/)
                                if (w[3] !~ ok) next
                                if (mode == "filter") print $0
                                else if (w[3] == suite && !done) { print w[2], key; done = 1 }
                        }' "$f" ;;
                esac
        done
}
shopt -s nullglob
source_files=(/etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources)
shopt -u nullglob
read -r mirror keyring < <(apt_sources mirror "${source_files[@]}" | head -n1) || true
mirror=${FRESH_ROOT_MIRROR:-${mirror:-}}
[ -n "$mirror" ] || die "no Debian $suite source in /etc/apt/sources.list{,.d}; set FRESH_ROOT_MIRROR"
say "$suite from $mirror"

# ---- the bare root, cached ------------------------------------------------
if ! command -v debootstrap >/dev/null 2>&1; then
        say "installing debootstrap"
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends debootstrap >/dev/null ||
                die "cannot install debootstrap"
fi
key=$(printf '%s\n' "$suite" "$mirror" "$preinstalled" "$user" "recipe 1" | sha256sum | cut -c1-12)
cache=$cache_dir/$suite-minbase-$key.tar
if [ -f "$cache" ] && [ -z "$(find "$cache" -mtime +"$max_age_days")" ]; then
        say "bare root from $cache"
else
        say "debootstrap --variant=minbase $suite (cached in $cache_dir)"
        mkdir -p "$cache_dir"
        rm -f "$cache_dir/$suite"-minbase-*.tar
        build=$(mktemp -d "$cache_dir/build.XXXXXX")
        # shellcheck disable=SC2064
        trap "rm -rf --one-file-system '$build'" EXIT
        debootstrap --variant=minbase --include="$preinstalled" ${keyring:+--keyring="$keyring"} \
                "$suite" "$build/root" "$mirror" >"$build/debootstrap.log" 2>&1 ||
                { tail -n 20 "$build/debootstrap.log" >&2; die "debootstrap failed"; }
        chroot "$build/root" /usr/bin/env -i PATH="$root_path" sh -ec "
                useradd --create-home --shell /bin/bash --groups sudo $user
                apt-get clean
                rm -rf /var/lib/apt/lists/* /etc/hostname /etc/resolv.conf"
        tar -C "$build/root" --numeric-owner -cf "$build/root.tar" .
        mv "$build/root.tar" "$cache"
        rm -rf --one-file-system "$build"
        trap - EXIT
fi

# ---- a fresh copy of it -----------------------------------------------------
R=$(mktemp -d "${TMPDIR:-/var/tmp}/finetuned-fresh-root.XXXXXX")
mounted=() cmd_pid=
# shellcheck disable=SC2317 # (a trap)
cleanup() {
        local rc=$? p i left
        trap - EXIT
        trap "" INT TERM  # a second ^C must not stop the cleanup half-way
        # Whatever the command left running in the root (a daemon, a browser)
        # would keep its mounts busy.
        [ -z "${cmd_pid:-}" ] || kill -TERM "$cmd_pid" 2>/dev/null || true
        for i in 1 2 3 4 5 6 7 8 9 10; do
                left=
                for p in /proc/[0-9]*; do
                        [ "$(readlink "$p/root" 2>/dev/null)" = "$R" ] || continue
                        left=1
                        kill -9 "${p#/proc/}" 2>/dev/null || true
                done
                [ -n "$left" ] || break
                sleep 0.5
        done
        # What the command mounted itself (`ip netns add` binds /run/netns), deepest first, then ours.
        awk -v r="$R/" 'index($2, r) == 1 { print length($2), $2 }' /proc/mounts | sort -rn | cut -d' ' -f2- |
                while read -r p; do
                        case " ${mounted[*]} " in *" $p "*) ;; *) umount "$p" 2>/dev/null || umount -l "$p" || true ;; esac
                done
        for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do
                umount "${mounted[i]}" 2>/dev/null || umount -l "${mounted[i]}" || true
        done
        if grep -q " $R/" /proc/mounts; then
                say "still mounted under $R, not removing it:"; grep " $R/" /proc/mounts >&2
        elif [ "${FRESH_ROOT_KEEP:-0}" = 1 ]; then
                say "kept $R"
        else
                rm -rf --one-file-system "$R"
        fi
        exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
tar -C "$R" --numeric-owner -xpf "$cache"
mnt() { # mnt TARGET mount-args...
        mount "${@:2}" "$R$1"
        mounted+=("$R$1")
}
# The root is a mount point, as / is on a machine: `ip netns exec` and `ip -n` make / a slave mount
# (mount --make-rslave /), which fails with EINVAL on a directory that is not one.
mnt "" --bind "$R"
mnt /proc -t proc proc
mnt /sys -t sysfs sysfs
mnt /dev --bind /dev
mnt /dev/pts -t devpts -o newinstance,ptmxmode=0666,mode=620 devpts
mnt /dev/shm -t tmpfs -o mode=1777,nosuid,nodev tmpfs
in_root() { chroot "$R" /usr/bin/env -i PATH="$root_path" HOME=/root LANG=C.UTF-8 "$@"; }

# What the host needs to reach the Debian and npm registries, nothing else:
# name resolution, its trusted CAs (a TLS-intercepting proxy's among them),
# the apt settings that are about fetching (files setting Acquire options,
# never hooks that run host programs), the Debian sources and npm's settings.
cp /etc/resolv.conf "$R/etc/resolv.conf"
cp /etc/hosts "$R/etc/hosts"
if [ -d /usr/local/share/ca-certificates ]; then
        cp -a /usr/local/share/ca-certificates/. "$R/usr/local/share/ca-certificates/"
fi
msg=$(in_root update-ca-certificates 2>&1) || { echo "$msg" >&2; die "update-ca-certificates failed"; }
for f in /etc/apt/apt.conf.d/*; do
        [ -f "$f" ] || continue
        grep -q '^[[:space:]]*Acquire' "$f" && ! grep -qi 'Invoke\|Pre-Install' "$f" && cp "$f" "$R/etc/apt/apt.conf.d/"
done
for f in /etc/apt/auth.conf /etc/apt/auth.conf.d; do
        [ -e "$f" ] && cp -a "$f" "$R/etc/apt/"
done
rm -f "$R/etc/apt/sources.list"
for f in "${source_files[@]}"; do
        [ -f "$f" ] || continue
        text=$(apt_sources filter "$f")
        [ -n "$text" ] || continue
        printf '%s\n' "$text" >"$R$f"
        # A keyring the sources name that the root's debian-archive-keyring lacks.
        sed -n 's/.*[Ss]igned-[Bb]y[:=][[:space:]]*\(\/[^] ]*\).*/\1/p' "$f" | while read -r k; do
                [ -e "$R$k" ] || { mkdir -p "$R$(dirname "$k")"; cp "$k" "$R$k"; }
        done
done
[ -n "$(cat "$R"/etc/apt/sources.list "$R"/etc/apt/sources.list.d/* 2>/dev/null)" ] ||
        echo "deb $mirror $suite main" >"$R/etc/apt/sources.list"
# No init runs in a chroot: packages must not start their services here.
printf '#!/bin/sh\nexit 101\n' >"$R/usr/sbin/policy-rc.d"
chmod 755 "$R/usr/sbin/policy-rc.d"
printf '%s ALL=(ALL:ALL) NOPASSWD: ALL\n' "$user" >"$R/etc/sudoers.d/$user"
chmod 440 "$R/etc/sudoers.d/$user"
# npm: the user's and the global npmrc, wherever the host's npm reads them.
npm_user='' npm_global=''
if command -v npm >/dev/null 2>&1; then
        npm_user=$(npm config get userconfig 2>/dev/null || true)
        npm_global=$(npm config get globalconfig 2>/dev/null || true)
fi
for f in "$npm_global" /etc/npmrc /usr/etc/npmrc; do
        [ -n "$f" ] && [ -f "$f" ] && { cp "$f" "$R/etc/npmrc"; break; }
done
for f in "$npm_user" "${HOME:-/root}/.npmrc"; do
        [ -n "$f" ] && [ -f "$f" ] && { install -m 600 "$f" "$R$home/.npmrc"; break; }
done
env_pass=()
while IFS='=' read -r name _; do
        case $name in
        http_proxy | https_proxy | no_proxy | HTTP_PROXY | HTTPS_PROXY | NO_PROXY | NODE_EXTRA_CA_CERTS | npm_config_* | NPM_CONFIG_*)
                env_pass+=("$name=${!name}") ;;
        esac
done < <(env)

# The clone as a user has it: tracked and untracked files, no build outputs.
mkdir -p "$R$clone"
(cd "$src" && git ls-files -z --cached --others --exclude-standard |
        tar --null -T - --ignore-failed-read -cf - 2>/dev/null) | tar -C "$R$clone" -xf -
in_root chown -R "$user:$user" "$home"

# ---- the command ------------------------------------------------------------
say "${cmd[*]} as $user in $R"
rc=0
# shellcheck disable=SC2016 # (expanded by the inner bash)
timeout --kill-after=30 "$cmd_timeout" chroot "$R" /usr/bin/setpriv --reuid="$user" --regid="$user" --init-groups \
        /usr/bin/env -i PATH="$user_path" HOME="$home" USER="$user" LOGNAME="$user" SHELL=/bin/bash \
        LANG=C.UTF-8 "${env_pass[@]}" /bin/bash -c 'cd "$1" && shift && exec "$@"' bash "$clone" "${cmd[@]}" &
cmd_pid=$!  # waited for in the background, so that a signal reaches the trap at once
wait "$cmd_pid" || rc=$?
cmd_pid=
[ "$rc" -ne 124 ] || say "${cmd[*]} timed out after $cmd_timeout s"

mkdir -p "$out"
[ -d "$R$clone/build/meson-logs" ] && cp -r "$R$clone/build/meson-logs" "$out/"
secs=$(($(date +%s) - t0))
if [ $# -eq 0 ] || [ -f "$out/meson-logs/testlog.json" ]; then
        # jq (test-summary.sh) is the host's when it has one, else the root's.
        if command -v jq >/dev/null 2>&1; then
                summary=$("$src/tools/test-summary.sh" "$out" fresh-root) || [ "$rc" -ne 0 ] || rc=1
        else
                summary=$(in_root runuser -u "$user" -- "$clone/tools/test-summary.sh" "$clone/build" fresh-root) ||
                        [ "$rc" -ne 0 ] || rc=1
        fi
        echo "$summary ($secs s)"
else
        echo "fresh-root: ${cmd[*]}: exit $rc ($secs s)"
fi
exit "$rc"
