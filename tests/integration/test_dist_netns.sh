#!/bin/bash
# test_dist_netns.sh - two hosts simulated on one machine: two network
# namespaces joined by a veth pair, one rank in each, Open MPI over TCP between
# them with its remote launcher (plm_rsh_agent) pointed at a script that runs
# `ip netns exec` instead of ssh. The job finishes and matches the local -np 2
# run bit for bit and the one-process run within 1e-5 relative. Needs root for
# `ip netns` (as a normal user: sudo -n); without either it is a TAP SKIP.
# Not for: the equivalence across presets, failures (test_dist_mpi.sh).
# Usage: test_dist_netns.sh FINETUNED ST_COMPARE
. "$(dirname "$0")/lib.sh"
# Under `make asan`: Open MPI dlopens its components and dlcloses them in MPI_Finalize, and LeakSanitizer reports
# what they allocated as leaks of an <unknown module>, aborting every rank at exit. The ranks run without leak
# checking; the same training code is leak-checked by every single-process test.
[ -n "${ASAN_OPTIONS:-}" ] && export ASAN_OPTIONS="$ASAN_OPTIONS:detect_leaks=0"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
COMPARE=$2
FT=$(readlink -f "$FINETUNED")
MPIRUN_BIN=$(command -v mpirun)

SUDO=()
if [ "$(id -u)" != 0 ]; then
        if sudo -n true 2>/dev/null; then
                SUDO=(sudo -n)
        else
                echo "1..0 # SKIP ip netns needs root, and this user is not root and has no passwordless sudo"
                exit 0
        fi
fi
A=fta$$ B=ftb$$
teardown() {
        "${SUDO[@]}" ip netns del "$A" 2>/dev/null
        "${SUDO[@]}" ip netns del "$B" 2>/dev/null
        "${SUDO[@]}" chown -R "$(id -u):$(id -g)" "$TMP" 2>/dev/null
        cleanup
}
trap teardown EXIT
if ! { "${SUDO[@]}" ip netns add "$A" && "${SUDO[@]}" ip netns add "$B"; } 2>"$TMP/netns.err"; then
        echo "1..0 # SKIP cannot create network namespaces here: $(head -c 200 "$TMP/netns.err")"
        exit 0
fi
"${SUDO[@]}" ip link add "va$$" type veth peer name "vb$$" &&
        "${SUDO[@]}" ip link set "va$$" netns "$A" && "${SUDO[@]}" ip link set "vb$$" netns "$B" &&
        "${SUDO[@]}" ip -n "$A" addr add 10.77.0.1/24 dev "va$$" && "${SUDO[@]}" ip -n "$B" addr add 10.77.0.2/24 dev "vb$$" &&
        "${SUDO[@]}" ip -n "$A" link set "va$$" up && "${SUDO[@]}" ip -n "$B" link set "vb$$" up &&
        "${SUDO[@]}" ip -n "$A" link set lo up && "${SUDO[@]}" ip -n "$B" link set lo up
ok $? "two namespaces joined by a veth pair (10.77.0.1 in $A, 10.77.0.2 in $B)"

# the remote launcher: `agent HOST COMMAND...` runs COMMAND in HOST's namespace, and logs the host
cat >"$TMP/agent" <<AGENT
#!/bin/sh
host=\$1; shift
echo "\$host" >>"$TMP/agent.log"
case \$host in 10.77.0.1) ns=$A ;; 10.77.0.2) ns=$B ;; *) echo "agent: unknown host \$host" >&2; exit 1 ;; esac
exec ip netns exec "\$ns" sh -c "\$*"
AGENT
chmod 755 "$TMP/agent"

cp "$SRC/examples/tabular/wine.csv" "$TMP/"
cat >"$TMP/job.json" <<'JOB'
{"model": {"preset": "mlp", "options": {"hidden": [32, 16]}}, "training_file": "wine.csv",
 "validation_split": 0.2, "task": {"type": "classification", "target": "cultivar"},
 "preprocess": {"standardize": true},
 "hyperparameters": {"epochs": 2, "batch_size": 29, "learning_rate": 0.01, "optimizer": "adam",
                     "weight_decay": 0.01, "max_grad_norm": 1.0}, "seed": 5}
JOB
LOCAL=(mpirun --oversubscribe --bind-to none)
[ "$(id -u)" = 0 ] && LOCAL+=(--allow-run-as-root)
"$FT" train "$TMP/job.json" --out "$TMP/one" --threads 1 >"$TMP/one.ndjson" 2>"$TMP/one.err"
ok $? "one process trains"
"${LOCAL[@]}" -np 2 "$FT" train "$TMP/job.json" --out "$TMP/local" --threads 1 >"$TMP/local.ndjson" 2>"$TMP/local.err"
ok $? "-np 2 on this host trains"

"${SUDO[@]}" ip netns exec "$A" env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 \
        timeout 300 "$MPIRUN_BIN" --allow-run-as-root --oversubscribe --bind-to none \
        --mca plm_rsh_agent "$TMP/agent" --host 10.77.0.1,10.77.0.2 -np 2 \
        --mca btl self,tcp --mca btl_tcp_if_include 10.77.0.0/24 --mca oob_tcp_if_include 10.77.0.0/24 \
        -x OMPI_ALLOW_RUN_AS_ROOT -x OMPI_ALLOW_RUN_AS_ROOT_CONFIRM ${ASAN_OPTIONS:+-x ASAN_OPTIONS} \
        "$FT" train "$TMP/job.json" --out "$TMP/net" --threads 1 >"$TMP/net.ndjson" 2>"$TMP/net.err"
ok $? "one rank in each namespace over TCP trains ($(grep -v '^-*$' "$TMP/net.err" | head -c 400))"
grep -qx 10.77.0.2 "$TMP/agent.log" 2>/dev/null
ok $? "the second rank was started through the agent in $B ($(tr '\n' ' ' <"$TMP/agent.log" 2>/dev/null))"
"${SUDO[@]}" chown -R "$(id -u):$(id -g)" "$TMP"
out=$("$COMPARE" "$TMP/local/model.safetensors" "$TMP/net/model.safetensors" 0)
ok $? "two hosts give the weights of -np 2 on one host: $out"
out=$("$COMPARE" "$TMP/one/model.safetensors" "$TMP/net/model.safetensors" 1e-5)
ok $? "... and of one process within 1e-5 relative: $out"
diff <(jq -c 'select(.type == "epoch") | {step, train_loss, val_loss}' "$TMP/local.ndjson") \
        <(jq -c 'select(.type == "epoch") | {step, train_loss, val_loss}' "$TMP/net.ndjson") >/dev/null
ok $? "the same epoch events"

done_testing
