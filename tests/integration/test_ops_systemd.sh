#!/usr/bin/env bash
# test_ops_systemd.sh - the systemd unit passes `systemd-analyze verify`, its
# sandbox scores an exposure of 2.0 or less in `systemd-analyze security
# --offline=true` (with and without the CUDA drop-in), and `meson install`
# puts the binary, unit, sysusers/tmpfiles snippets, example configuration and
# docs in place; the snippets are applied for real with systemd-sysusers and
# systemd-tmpfiles into a scratch root; every option of the example
# configuration is one `--check-config` accepts.
. "$(dirname "$0")/lib.sh"

FINETUNED=$(readlink -f "$FINETUNED")
BUILD=$(cd "$(dirname "$FINETUNED")/.." && pwd)
UNIT_IN="$BUILD/systemd/finetuned.service"
[ -f "$UNIT_IN" ]; ok $? "meson generated the unit ($UNIT_IN)"

# Verify the unit as installed, but with ExecStart pointing at this build's
# binary (verify checks that the program exists and is executable).
mkdir -p "$TMP/units"
sed "s|^ExecStart=.*/finetuned |ExecStart=$FINETUNED |" "$UNIT_IN" >"$TMP/units/finetuned.service"
grep -q "^ExecStart=$FINETUNED serve$" "$TMP/units/finetuned.service"; ok $? "ExecStart runs 'finetuned serve'"
grep -q '^Type=notify$' "$TMP/units/finetuned.service" && grep -q '^WatchdogSec=' "$TMP/units/finetuned.service"
ok $? "Type=notify with a watchdog"
out=$(systemd-analyze verify "$TMP/units/finetuned.service" 2>&1); rc=$?
[ $rc -eq 0 ] && [ -z "$out" ]; ok $? "systemd-analyze verify: clean ($out)"

exposure() { # exposure UNIT_FILE -> prints the overall exposure number
        systemd-analyze security --offline=true --no-pager "$1" 2>&1 |
                sed -n 's/.*Overall exposure level for [^:]*: \([0-9.]*\).*/\1/p'
}
e=$(exposure "$TMP/units/finetuned.service")
[ -n "$e" ] && [ "$(echo "$e <= 2.0" | bc)" = 1 ]; ok $? "security exposure $e <= 2.0"
systemd-analyze security --offline=true --threshold=20 --no-pager "$TMP/units/finetuned.service" >/dev/null 2>&1
ok $? "systemd-analyze security --threshold=20 passes"
for setting in 'DynamicUser=yes' 'ProtectSystem=strict' 'ProtectHome=yes' 'PrivateTmp=yes' 'PrivateDevices=yes' \
        'NoNewPrivileges=yes' 'RestrictNamespaces=yes' 'SystemCallFilter=@system-service' 'CapabilityBoundingSet=$' \
        'UMask=0077' 'LimitNOFILE=' 'StateDirectory=finetuned' 'ConfigurationDirectory=finetuned' \
        'RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6'; do
        grep -q "^$setting" "$TMP/units/finetuned.service"; ok $? "unit sets $setting"
done
! grep -q '^MemoryDenyWriteExecute' "$TMP/units/finetuned.service" && grep -q 'oneDNN' "$TMP/units/finetuned.service"
ok $? "no MemoryDenyWriteExecute (oneDNN JIT), and the unit says why"

mkdir -p "$TMP/units/finetuned.service.d"
cp "$(dirname "$0")/../../systemd/finetuned-cuda.conf" "$TMP/units/finetuned.service.d/cuda.conf"
out=$(systemd-analyze verify "$TMP/units/finetuned.service" 2>&1); rc=$?
[ $rc -eq 0 ] && [ -z "$out" ]; ok $? "verify with the CUDA drop-in: clean ($out)"
e=$(exposure "$TMP/units/finetuned.service")
[ -n "$e" ] && [ "$(echo "$e <= 2.0" | bc)" = 1 ]; ok $? "security exposure with the CUDA drop-in $e <= 2.0"
systemd-analyze security --offline=true --no-pager "$TMP/units/finetuned.service" 2>&1 | grep -q 'char-nvidia-frontend:rw'
ok $? "the CUDA drop-in is applied (DeviceAllow char-nvidia-frontend)"

# meson install into a scratch root.
root="$TMP/root"
meson install -C "$BUILD" --destdir "$root" --no-rebuild --quiet >"$TMP/install.log" 2>&1
ok $? "meson install --destdir: $(tail -n1 "$TMP/install.log")"
prefix=$(meson introspect "$BUILD" --buildoptions | jq -r '.[] | select(.name=="prefix") | .value')
for f in bin/finetuned lib/systemd/system/finetuned.service lib/sysusers.d/finetuned.conf \
        lib/tmpfiles.d/finetuned.conf share/doc/finetuned/finetuned.conf.example share/doc/finetuned/operations.md \
        share/doc/finetuned/README.md; do
        [ -f "$root$prefix/$f" ]; ok $? "installed $prefix/$f"
done
[ -x "$root$prefix/bin/finetuned" ]; ok $? "the installed binary is executable"
grep -q "^ExecStart=$prefix/bin/finetuned serve$" "$root$prefix/lib/systemd/system/finetuned.service"
ok $? "the installed unit runs $prefix/bin/finetuned"

mkdir -p "$root/etc"
systemd-sysusers --root="$root" "$root$prefix/lib/sysusers.d/finetuned.conf" >/dev/null 2>&1 &&
        grep -q '^finetuned:x:[0-9]*:[0-9]*:.*:/var/lib/finetuned:' "$root/etc/passwd"
ok $? "systemd-sysusers creates the finetuned user: $(grep finetuned "$root/etc/passwd")"
mkdir -p "$root/etc/finetuned" && head -c 16 /dev/urandom | od -An -tx1 | tr -d " \n" >"$root/etc/finetuned/token" &&
        chmod 0644 "$root/etc/finetuned/token"
# Only root may chown: a normal user (make test as the README has it) applies
# the snippet under fakeroot and reads the ownership back in the same session.
asroot=
[ "$(id -u)" -eq 0 ] || asroot=fakeroot
out=$($asroot sh -c 'systemd-tmpfiles --root="$1" --create "$2" 2>"$3" && stat -c "%a %u %g" "$1/etc/finetuned/token"' \
        sh "$root" "$root$prefix/lib/tmpfiles.d/finetuned.conf" "$TMP/tmpfiles.err"); rc=$?
gid=$(sed -n 's/^finetuned:x:\([0-9]*\):.*/\1/p' "$root/etc/group")
uid=$(sed -n 's/^finetuned:x:\([0-9]*\):.*/\1/p' "$root/etc/passwd")
[ $rc -eq 0 ] && [ "$out" = "600 $uid $gid" ]
ok $? "systemd-tmpfiles makes the token file 0600 user finetuned ($(cat "$TMP/tmpfiles.err")$out)"

# The example configuration: as shipped (all commented) and with every option
# uncommented, --check-config accepts it, and it lists every option there is.
example="$root$prefix/share/doc/finetuned/finetuned.conf.example"
"$FINETUNED" serve --config "$example" --check-config >"$TMP/out" 2>&1; ok $? "the example config as shipped passes --check-config"
mkdir -p "$TMP/logs"
head -c 16 /dev/urandom | od -An -tx1 | tr -d " \n" >"$TMP/token" && chmod 600 "$TMP/token"
sed -e 's/^#\([a-z-]* = \)/\1/' -e "s|^token-file = .*|token-file = $TMP/token|" \
        -e "s|^log-file = .*|log-file = $TMP/logs/finetuned.log|" "$example" >"$TMP/all.conf"
n=$(grep -c '^[a-z-]* = ' "$TMP/all.conf")
"$FINETUNED" serve --config "$TMP/all.conf" --check-config >"$TMP/out" 2>&1; rc=$?
known=$(grep -c '^[a-z-]* = ' "$TMP/out")
[ $rc -eq 0 ] && [ "$n" -eq "$known" ] && [ "$(grep -c '# line ' "$TMP/out")" -eq "$n" ]
ok $? "the example documents every option ($n of $known), each accepted and taken from the file"
[ $rc -eq 0 ] || diag "$(cat "$TMP/out")"

done_testing
