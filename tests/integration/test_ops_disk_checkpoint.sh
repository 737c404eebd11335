#!/usr/bin/env bash
# test_ops_disk_checkpoint.sh - a disk that fills up under a training job
# (issue 21). The state directory is on a 48 MiB tmpfs of its own. Job A runs
# to the end and gives the size S of one checkpoint. Then a filler file leaves
# about 1.5 S free, below --disk-low-mb: /healthz says degraded (disk_low) and
# /metrics says so. Job B's first checkpoint fits, its second does not: the
# job is not failed but back in the queue with a warning event (disk_full),
# its last good checkpoint kept, and the workers claim nothing while the
# space is missing (the job stays queued). Once the filler is gone the job
# resumes from that checkpoint and ends with the same weights as job A.
# Mounting needs root or sudo -n; with neither the test says so and skips.
. "$(dirname "$0")/lib.sh"

SUDO=
if [ "$(id -u)" != 0 ]; then
        if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
                echo "1..0 # SKIP mounting a tmpfs needs root or sudo -n"; exit 0
        fi
fi
mnt="$TMP/small"
mkdir -p "$mnt"
$SUDO mount -t tmpfs -o "size=48m,uid=$(id -u),gid=$(id -g),mode=0700" tmpfs "$mnt" || {
        echo "1..0 # SKIP cannot mount a tmpfs here"; exit 0; }
umount_small() { [ -n "$DAEMON_PID" ] && kill -9 "$DAEMON_PID" 2>/dev/null; wait 2>/dev/null; $SUDO umount "$mnt"; }
trap 'umount_small; cleanup' EXIT

J=(-H 'Content-Type: application/json')
state="$mnt/state"
job_state() { curl -s "$BASE/v1/jobs/$1" | jq -r .state; }
wait_for() { # wait_for SECONDS COMMAND...
        local n=$(($1 * 10)); shift
        for i in $(seq 1 "$n"); do "$@" && return 0; sleep 0.1; done
        return 1
}
is_state() { [ "$(job_state "$1")" = "$2" ]; }
avail() { df -B1 --output=avail "$mnt" | tail -n1 | tr -d ' '; }
health() { curl -s "$BASE/healthz"; }
metric() { curl -s "$BASE/metrics" | grep -v '^#' | grep -F -- "$1 " | head -n1 | awk '{print $NF}'; }

# 12 MiB of "almost full": job A's checkpoints (about 3 MB each) leave more than that free
start_daemon "$state" --workers 1 --threads 1 --disk-low-mb 12; ok $? "daemon starts with its state on a 48 MiB tmpfs"
[ "$(health | jq -r .status)" = ok ]; ok $? "/healthz: ok with the disk empty: $(health)"
[ "$(metric finetuned_state_disk_low)" = 0 ] && [ "$(metric finetuned_state_disk_free_bytes)" -gt 0 ]
ok $? "/metrics: disk free $(metric finetuned_state_disk_free_bytes) bytes, not low"

awk 'BEGIN { print "a,b,c,d,label"; s = 3;
        for (i = 0; i < 400; i++) { s = (s * 1103515245 + 12345) % 2147483648; v = s / 2147483648;
                printf "%.4f,%.4f,%.4f,%.4f,%d\n", v, 1 - v, v * v, i % 7 / 7, (v > 0.5) } }' >"$TMP/rows.csv"
http POST '/v1/datasets?name=rows' --data-binary @"$TMP/rows.csv"; ds=$(echo "$BODY" | jq -r .id)
# 4 -> 512 -> 512 -> 2 with Adam: ~265k parameters, a checkpoint of ~3.2 MB (weights and two moments)
http POST /v1/models "${J[@]}" -d '{"name": "wide", "preset": "mlp", "config": {"inputs": 4, "hidden": [512, 512], "outputs": 2}}'
mdl=$(echo "$BODY" | jq -r .id)
spec="{\"model\": \"$mdl\", \"training_file\": \"$ds\", \"task\": {\"type\": \"classification\", \"target\": \"label\"},
       \"hyperparameters\": {\"epochs\": 4, \"batch_size\": 32, \"learning_rate\": 0.001, \"optimizer\": \"adam\"},
       \"checkpoint\": {\"every_epochs\": 1, \"keep\": 1}, \"seed\": 7}"

http POST /v1/jobs "${J[@]}" -d "$spec"; a=$(echo "$BODY" | jq -r .id)
wait_for 120 is_state "$a" succeeded; ok $? "job A succeeds: $(job_state "$a")"
ckpt=$(ls -d "$state/jobs/$a"/ckpt-* | tail -n1)
S=$(du -sb "$ckpt" | cut -f1)
[ "$S" -gt 1000000 ]; ok $? "one checkpoint of job A is $S bytes"
# the tensors of a job's result (the file's metadata names the job, so not the whole file)
tensors_sha() {
        curl -s -o "$TMP/w.st" "$BASE/v1/models/$(curl -s "$BASE/v1/jobs/$1" | jq -r .result_model)/weights"
        local hlen; hlen=$(od -An -tu8 -N8 "$TMP/w.st" | tr -d ' ')
        tail -c +$((9 + hlen)) "$TMP/w.st" | sha256sum | cut -d' ' -f1
}
sha_a=$(tensors_sha "$a")

# leave 1.5 checkpoints free: the first of job B fits, the second cannot (keep 1 deletes the older only after)
filler=$(($(avail) - S * 3 / 2))
head -c "$filler" /dev/zero >"$mnt/filler"
diag "free after the filler: $(avail) bytes"
[ "$(health | jq -r .status)" = degraded ] && [ "$(health | jq -r '.reasons[0].code')" = disk_low ]
ok $? "/healthz: degraded (disk_low) with $(avail) bytes free: $(health | jq -c .reasons)"
[ "$(metric finetuned_state_disk_low)" = 1 ]; ok $? "/metrics: finetuned_state_disk_low 1"

http POST /v1/jobs "${J[@]}" -d "$spec"; b=$(echo "$BODY" | jq -r .id)
warned() { curl -s "$BASE/v1/jobs/$b/events?limit=100" | jq -e '.data[] | select(.type == "warning")' >/dev/null; }
warned_or_over() { warned || is_state "$b" failed || is_state "$b" succeeded; }
wait_for 120 warned_or_over; warned; ok $? "job B gets a warning event ($(job_state "$b"))"
ev=$(curl -s "$BASE/v1/jobs/$b/events?limit=100" | jq -c '[.data[] | select(.type == "warning")][0].data')
diag "warning: $ev"
[ "$(echo "$ev" | jq -r .code)" = disk_full ] && [ "$(echo "$ev" | jq -r .checkpoint_epoch)" = 1 ]
ok $? "the warning says disk_full and names the kept checkpoint (epoch 1)"
echo "$ev" | jq -r .message | grep -q "back in the queue"; ok $? "its message says the job is back in the queue"
! echo "$ev" | grep -q "$mnt"; ok $? "no server path in the warning"
is_state "$b" queued; ok $? "job B is queued, not failed: $(job_state "$b")"
[ "$(curl -s "$BASE/v1/jobs/$b/checkpoints" | jq '.data | length')" -ge 1 ]
ok $? "its checkpoint of epoch 1 is still listed"
[ -z "$(ls -A "$state/jobs/$b" | grep '^\.tmp-')" ]; ok $? "no temporary checkpoint files left: $(ls -A "$state/jobs/$b")"
[ "$(health | jq -r '[.reasons[].code] | index("disk_full_wait") != null')" = true ] &&
        [ "$(health | jq -r .disk.wait_bytes)" -gt "$S" ]
ok $? "/healthz: the workers wait for space: $(health | jq -c .reasons[-1])"
[ "$(metric finetuned_workers_disk_wait_bytes)" -gt 0 ] && [ "$(metric finetuned_jobs_requeued_disk_full_total)" = 1 ]
ok $? "/metrics: waiting for $(metric finetuned_workers_disk_wait_bytes) bytes, 1 job requeued"
sleep 3
is_state "$b" queued && [ "$(curl -s "$BASE/v1/jobs/$b" | jq -r .attempt)" = 1 ]
ok $? "3 s later it is still queued, not claimed again while the disk is full (attempt $(curl -s "$BASE/v1/jobs/$b" | jq -r .attempt))"
[ "$(curl -s "$BASE/v1/jobs/$b" | jq -r .error)" = null ]; ok $? "and it carries no error"

rm -f "$mnt/filler"
over() { is_state "$b" succeeded || is_state "$b" failed; }
wait_for 120 over; is_state "$b" succeeded; ok $? "space back: job B resumes and succeeds: $(job_state "$b")"
sha_b=$(tensors_sha "$b")
[ "$sha_a" = "$sha_b" ] && [ "$sha_a" != "$(printf '' | sha256sum | cut -d' ' -f1)" ]
ok $? "its weights equal job A's, which never stopped ($sha_b)"
epochs=$(curl -s "$BASE/v1/jobs/$b/events?limit=100" | jq -c '[.data[] | select(.type == "epoch") | .data.epoch]')
[ "$epochs" = "[1,2,3,4]" ]; ok $? "every epoch exactly once: $epochs"
[ "$(health | jq -r .status)" = ok ] && [ "$(metric finetuned_workers_disk_wait_bytes)" = 0 ]
ok $? "/healthz ok again, no wait: $(health | jq -c .)"
stop_daemon; ok $? "daemon stops cleanly"
done_testing
