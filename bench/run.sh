#!/bin/bash
# run.sh - the compute engine against PyTorch on the three reference models (bench/bench_compute.c vs
# bench/bench_torch.py), run alternately on the same machine, each with 1 and 2 threads, under each CPU ISA asked
# for. Prints per ISA the median samples/s of each, the ratio (ours / PyTorch at the same thread count, and ours /
# PyTorch at its best thread count), GFLOP/s against the measured dnnl_sgemm peak, peak RSS, and the number of
# oneDNN reference kernels our step ran (0 is the only good answer).
#
#   [MODELS="mlp cnn resnet18"] bench/run.sh [BUILD_DIR] [ROUNDS] [SECONDS] [ISA...]
# defaults: build 3 5, and every ISA this CPU can run; MODELS also takes resnet18_224, resnet18_224_partial and
# predict_resnet18_224 (the fine-tuning workloads of docs/performance.md)
# ISA: native (no cap), or a ONEDNN_MAX_CPU_ISA value (AVX2, AVX512_CORE, ...). Both sides run under the same cap:
# ONEDNN_MAX_CPU_ISA for our oneDNN and PyTorch's bundled one, and for PyTorch's OpenBLAS (its Linear layers) the
# matching OPENBLAS_CORETYPE (AVX2: Haswell, AVX512_CORE: SkylakeX; native: OpenBLAS's own detection).
# Not a test: timings are never assertions. On shared machines, run it when the machine is quiet.
set -euo pipefail
BUILD=${1:-build}
ROUNDS=${2:-3}
SECONDS_PER_RUN=${3:-5}
shift $(($# < 3 ? $# : 3))
HERE=$(cd "$(dirname "$0")" && pwd)
if [ $# -gt 0 ]; then
        ISAS=("$@")
else
        mapfile -t ISAS < <("$HERE/../tools/isa-matrix.sh")
        ISAS+=(native)
fi
BIN="$BUILD/bench/bench_compute"
# MODELS="..." picks workloads (bench_compute.c lists them); the default is the three reference models
MODELS=${MODELS:-mlp cnn resnet18}
# PyTorch at its best: Debian's python3-torch does its Linear layers through the system BLAS (BLAS_INFO=generic),
# which is the slow reference BLAS unless OpenBLAS is installed (tools/setup.sh --dev installs
# libopenblas0-pthread), and OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, set on some of these machines for old
# OpenBLAS builds, slow a current one: they are unset for the PyTorch runs (and set again from the ISA cap).
blas=$(readlink -f /usr/lib/x86_64-linux-gnu/libblas.so.3 2>/dev/null || true)
case "$blas" in
*openblas*) ;;
*) echo "warning: the system BLAS is $blas, not OpenBLAS: PyTorch's Linear layers will be slow and the" \
        "ratios flattering; install libopenblas0-pthread (tools/setup.sh --dev)" >&2 ;;
esac
[ -x "$BIN" ] || { echo "build $BIN first (ninja -C $BUILD)" >&2; exit 1; }
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
for isa in "${ISAS[@]}"; do
        case "$isa" in
        native) cap=(-u ONEDNN_MAX_CPU_ISA); coretype=() ;;
        AVX2 | avx2) cap=(ONEDNN_MAX_CPU_ISA=AVX2); coretype=(OPENBLAS_CORETYPE=Haswell) ;;
        AVX512_CORE* | avx512_core*) cap=(ONEDNN_MAX_CPU_ISA="${isa^^}"); coretype=(OPENBLAS_CORETYPE=SkylakeX) ;;
        *) cap=(ONEDNN_MAX_CPU_ISA="${isa^^}"); coretype=() ;;
        esac
        OURS=(env "${cap[@]}" "$BIN")
        PY=(env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "${cap[@]}" "${coretype[@]}" /usr/bin/python3)
        tag() { sed "s/^{/{\"isa_cap\": \"$isa\", /"; }
        for t in 1 2; do "${OURS[@]}" sgemm "$t" 0 | tag >>"$OUT"; done
        for r in $(seq "$ROUNDS"); do
                for m in $MODELS; do
                        for t in 1 2; do
                                if [ $((r % 2)) -eq 1 ]; then
                                        "${OURS[@]}" "$m" "$t" "$SECONDS_PER_RUN" | tag >>"$OUT"
                                        "${PY[@]}" "$HERE/bench_torch.py" "$m" "$t" "$SECONDS_PER_RUN" | tag >>"$OUT"
                                else
                                        "${PY[@]}" "$HERE/bench_torch.py" "$m" "$t" "$SECONDS_PER_RUN" | tag >>"$OUT"
                                        "${OURS[@]}" "$m" "$t" "$SECONDS_PER_RUN" | tag >>"$OUT"
                                fi
                        done
                done
        done
done
/usr/bin/python3 - "$OUT" <<'PYEOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
for cap in dict.fromkeys(r["isa_cap"] for r in rows):
    rs = [r for r in rows if r["isa_cap"] == cap]
    peak = {r["threads"]: r["gflops"] for r in rs if r["model"] == "sgemm"}
    def med(impl, model, t, key):
        v = [r[key] for r in rs if r["impl"] == impl and r["model"] == model and r["threads"] == t]
        return statistics.median(v) if v else float("nan")
    isa = next((r["isa"] for r in rs if r.get("isa")), "?")
    print(f"== ISA cap {cap} (oneDNN dispatches to {isa}) ==")
    print(f"dnnl_sgemm peak: 1 thread {peak.get(1, 0):.1f} GFLOP/s, 2 threads {peak.get(2, 0):.1f} GFLOP/s")
    for model in dict.fromkeys(r["model"] for r in rs if r["model"] != "sgemm"):
        torch_best = max(med("pytorch", model, t, "samples_per_sec") for t in (1, 2))
        for t in (1, 2):
            ours, theirs = med("finetuned", model, t, "samples_per_sec"), med("pytorch", model, t, "samples_per_sec")
            gf = med("finetuned", model, t, "gflops")
            refs = max((r.get("reference_kernels", 0) for r in rs if r["impl"] == "finetuned" and r["model"] == model),
                       default=0)
            print(f"{model:9s} threads {t}: finetuned {ours:9.1f} samples/s, pytorch {theirs:9.1f} samples/s, "
                  f"{ours / theirs:5.1f}x same threads, {ours / torch_best:5.1f}x vs pytorch's best; "
                  f"{gf:6.1f} GFLOP/s = {100 * gf / peak.get(t, float('nan')):4.1f}% of sgemm peak (pytorch "
                  f"{100 * gf * theirs / ours / peak.get(t, float('nan')):4.1f}%); peak RSS "
                  f"{med('finetuned', model, t, 'peak_rss_mb'):.0f} MB vs {med('pytorch', model, t, 'peak_rss_mb'):.0f} MB;"
                  f" reference kernels {refs}")
PYEOF
