#!/usr/bin/env bash
# test_api_docs.sh - every ```sh block of docs/api.md, run in order as one
# script against the real daemon (with B pointing at it): each command must
# succeed and no answer may be an error envelope, so the examples work as
# written.
. "$(dirname "$0")/lib.sh"

DOC="$(dirname "$0")/../../docs/api.md"
start_daemon "$TMP/state" --threads 1; ok $? "daemon starts"
awk '/^```sh$/ { on = 1; next } /^```$/ { on = 0; next } on' "$DOC" |
        sed "s|^B=http://127.0.0.1:8080$|B=$BASE|" >"$TMP/docs.sh"
n=$(grep -c '^curl\|^[A-Z]*=$(curl' "$TMP/docs.sh")
BIN_DIR=$(cd "$(dirname "$FINETUNED")" && pwd) # the page's `finetuned` commands run this build
(cd "$TMP" && PATH="$BIN_DIR:$PATH" bash -e -o pipefail "$TMP/docs.sh") >"$TMP/out" 2>&1; rc=$?
[ $rc -eq 0 ]; ok $? "the $n curl examples run to the end (exit $rc)"
[ $rc -eq 0 ] || diag "$(tail -n 5 "$TMP/out")"
! grep -q '"error":{"code"' "$TMP/out"; ok $? "no example answers an error"
grep -q '"setosa","versicolor","virginica"' "$TMP/out"; ok $? "the predict example gives the documented labels"
grep -q '^event: epoch' "$TMP/out" && grep -q '"source":"upload","has_weights":true' "$TMP/out"; ok $? "the event stream and weight upload examples show what the page says"
grep -q '{"method":"integrated_gradients","steps":32,"baseline":"zeros","target":"[0-9]","rows":28,"cols":28}' "$TMP/out"
ok $? "the explain example answers a 28x28 map"
stop_daemon; ok $? "clean stop"
done_testing
