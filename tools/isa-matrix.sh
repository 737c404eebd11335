#!/usr/bin/env bash
# isa-matrix.sh - the ONEDNN_MAX_CPU_ISA caps the compute tests run under on this machine, one per line, besides
# the native run: AVX2 whenever the CPU has more than AVX2 (AVX-512), and AVX512_CORE whenever it has more than
# that (VNNI, BF16, AMX). An AVX2-only machine prints nothing: its native run is the AVX2 run. meson reads it at
# configure time (tests/meson.build); docs/isa.md says why these two.
# Not for: choosing kernels (oneDNN does that) or benchmarks (bench/run.sh takes its ISA as an argument).
set -euo pipefail
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
has() { [[ " $flags " == *" $1 "* ]]; }
if has avx2 && has avx512f; then
        echo AVX2
        if has avx512bw && has avx512vl && has avx512dq &&
                { has avx512_vnni || has avx512_bf16 || has amx_tile; }; then
                echo AVX512_CORE
        fi
fi
