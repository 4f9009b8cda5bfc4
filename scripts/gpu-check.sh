#!/usr/bin/env bash
# The GPU check of issue 37, run on a lent GPU machine from the repository
# root (it has no Rust toolchain: the binaries are built on the CPU machine
# and carried, xz-compressed, in gpu-carry/; see "Building" below).
#
# In one run of at most BUDGET_S seconds (default 530) it writes to $OUT:
#   system.txt       nvidia-smi, lscpu, AMX flags, the libraries the binaries load
#   ops-tests.log    the CUDA ops tests (tests/integration/ops.rs, module on_a_cuda_gpu)
#   bench-train.txt  misfit bench train --device cuda against PyTorch eager on the same GPU
#   audit-cifar10.log, cifar10-gpu.tgz
#                    the CIFAR-10 audit trained on the GPU (--folds 2; --epochs 30,
#                    fewer when the measured speed says 30 would not fit the budget)
#                    and its run folder (no images, no per-image embeddings,
#                    neighbours or dynamics)
#   demo-seeds.tgz   at the same time, on the CPU path of the same binary: the
#                    default demo audit for seeds 1-5, 2 threads each, without PNGs
#   steps.log        what ran, when, and its exit status
#
# Building (on the CPU machine; CUDA 13.0 toolkit from pip, driver 580 = CUDA 13.0):
#   pip install 'nvidia-cuda-nvcc==13.0.*' 'nvidia-cuda-cccl==13.0.*' 'nvidia-cuda-crt==13.0.*' \
#     'nvidia-cuda-runtime==13.0.*' 'nvidia-nvvm==13.0.*' 'nvidia-cublas==13.0.*' \
#     'nvidia-curand==10.4.0.*' 'nvidia-cuda-nvrtc==13.0.*'
#   CUDA_ROOT=<site-packages>/nvidia/cu13, with unversioned links libcublas.so,
#   libcublasLt.so, libcurand.so, libnvrtc.so in its lib/ and a stub libcuda.so
#   (soname libcuda.so.1; candle links the driver API) there;
#   CUDA_COMPUTE_CAP=90 CUDARC_CUDA_VERSION=13000 PATH=$CUDA_ROOT/bin:$PATH \
#     cargo build --release --features cuda --target-dir target/cuda --bin misfit --test integration
#   strip target/cuda/release/misfit and target/cuda/release/deps/integration-<hash>
#   (as "integration"), tar both, xz --x86 --lzma2=preset=9,dict=400MiB into
#   gpu-carry/bins.tar.xz (about 36 MB: 64 MiB travel with the tree); copy
#   ../shared/datasets/cifar10-jpeg.tar.gz into gpu-carry/ (gpu-carry/ is in
#   .git/info/exclude; the device tool carries it).
#
# The GPU steps only (as the second run did): DEMO_SEEDS=" " EPOCHS=8 AUDIT_ARGS=--no-aum-threshold.
# Locally (no GPU) for a dry run: GPU_DEVICE=cpu DATASET=<tiny dataset> EPOCHS=1
# DEMO_SEEDS=1 DEMO_ARGS='--epochs 1' BENCH_ARGS='--steps 2' OUT=/tmp/out scripts/gpu-check.sh
set -u
OUT=${OUT:?set OUT to the results folder}
CARRY=${CARRY:-gpu-carry}
GPU_DEVICE=${GPU_DEVICE:-cuda}
DATASET=${DATASET:-$CARRY/cifar10-jpeg.tar.gz}
DEMO_SEEDS=${DEMO_SEEDS:-1 2 3 4 5}
DEMO_ARGS=${DEMO_ARGS:-}
BUDGET_S=${BUDGET_S:-530}
BENCH_ARGS=${BENCH_ARGS:---steps 50 --warmup 5 --rounds 3}
AUDIT_ARGS=${AUDIT_ARGS:-}
W=${WORK:-/tmp/misfit-gpu}
rm -rf "$W" && mkdir -p "$W/bin" "$W/demo" "$W/gpu" "$OUT"
START=$(date +%s)
DEADLINE=$((START + BUDGET_S))
left() { echo $((DEADLINE - $(date +%s))); }
# A timeout of the time left less $1 seconds, at least 10.
until_end() { local t=$(($(left) - $1)); echo $((t > 10 ? t : 10)); }
log() { echo "[$(($(date +%s) - START)) s] $*" | tee -a "$OUT/steps.log"; }

# --- binaries and the libraries they load ------------------------------------
# gpu-carry/bins.tar.xz: misfit and the integration tests, stripped, in one
# xz stream (x86 filter, 400 MiB dictionary: the two share most of their
# bytes); or one NAME.xz per binary.
for f in "$CARRY"/*.xz; do
    case $f in
    *.tar.xz) xz -dc "$f" | tar -x -C "$W/bin" ;;
    *) b=$(basename "$f" .xz) && xz -dc -T0 "$f" >"$W/bin/$b" && chmod +x "$W/bin/$b" ;;
    esac
done
MISFIT=$W/bin/misfit
TESTS=$W/bin/integration
# cudarc links libcuda.so.1 (the driver's), libcublas(.Lt).so.13, libcurand.so.10
# libcudart.so.13 and libnvrtc.so.13: the driver's folder and torch's pip nvidia libraries.
libdirs=""
for d in /usr/local/nvidia/lib64 /usr/local/nvidia/lib /usr/lib/x86_64-linux-gnu \
    "$(ldconfig -p 2>/dev/null | awk '/libcuda.so.1 / {print $NF; exit}' | xargs -r dirname)"; do
    [ -e "$d/libcuda.so.1" ] && libdirs="$libdirs:$d" && break
done
for n in libcudart.so.13 libcublas.so.13 libcublasLt.so.13 libcurand.so.10 libnvrtc.so.13; do
    p=$(find /opt/torch/.venv /usr/local/lib/python3*/dist-packages /usr/lib/python3/dist-packages \
        -name "$n" 2>/dev/null | head -1)
    [ -n "$p" ] && libdirs="$libdirs:$(dirname "$p")"
done
export LD_LIBRARY_PATH="${libdirs#:}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
{
    echo "== date: $(date -u +%FT%TZ)"
    echo "== nvidia-smi"; nvidia-smi 2>&1
    echo "== nvidia-smi -q (clocks, power)"; nvidia-smi -q -d CLOCK,POWER 2>&1 | head -60
    echo "== lscpu"; lscpu 2>&1
    echo "== AMX flags"; grep -o 'amx[a-z0-9_]*' /proc/cpuinfo | sort -u | tr '\n' ' '; echo
    echo "== nproc: $(nproc)"; free -g 2>&1
    echo "== python3 torch"; python3 -c 'import torch; print(torch.__version__, torch.version.cuda, torch.backends.cudnn.version(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no cuda")' 2>&1
    echo "== LD_LIBRARY_PATH=$LD_LIBRARY_PATH"
    echo "== ldd misfit"; ldd "$MISFIT" 2>&1
    echo "== misfit --version"; "$MISFIT" --version 2>&1
} >"$OUT/system.txt"
log "binaries: $(ls -la "$W/bin" | tail -n +2 | awk '{print $5, $9}' | tr '\n' ' ')"
if grep -q '=> not found' "$OUT/system.txt"; then
    log "MISSING LIBRARIES: $(grep '=> not found' "$OUT/system.txt" | tr '\n' ' ')"
fi

# --- CPU path, in the background: the demo audit for each seed -----------------
# 2 threads each (5 seeds: 10 of 16 cores), niced so the GPU path's CPU work
# (data loading, augmentation, scores) keeps its cores.
demo_pids=""
for s in $DEMO_SEEDS; do
    (
        t0=$(date +%s)
        RAYON_NUM_THREADS=2 nice -n 10 timeout "$(until_end 25)" "$MISFIT" audit -q --device cpu --seed "$s" \
            --run "demo-s$s" --outputs "$W/demo" $DEMO_ARGS >"$W/demo/demo-s$s.log" 2>&1
        rc=$?
        echo "seed $s: exit $rc, wall $(($(date +%s) - t0)) s" >>"$W/demo/demo-s$s.log"
        log "demo seed $s (cpu, 2 threads): exit $rc, wall $(($(date +%s) - t0)) s"
    ) &
    demo_pids="$demo_pids $!"
done
log "demo audits started (seeds $DEMO_SEEDS)"

# --- GPU path -------------------------------------------------------------------
# 1. The ops tests (tests/integration/ops.rs), those on CUDA tensors among them
#    (module on_a_cuda_gpu: the convolution forward/backward against the
#    direct reference; a training step against the CPU's).
if [ "$GPU_DEVICE" = cuda ]; then
    timeout 120 "$TESTS" ops:: --include-ignored --test-threads 1 >"$OUT/ops-tests.log" 2>&1
    log "CUDA ops tests: exit $? ($(grep -E '^test result' "$OUT/ops-tests.log" | tail -1))"
fi

# 2. Train and inference speed against PyTorch eager on the same GPU.
t0=$(date +%s)
timeout 150 "$MISFIT" bench train --device "$GPU_DEVICE" --python python3 $BENCH_ARGS \
    >"$OUT/bench-train.txt" 2>&1
log "bench train: exit $?, $(($(date +%s) - t0)) s"
rate=$(grep -E '^misfit ' "$OUT/bench-train.txt" | sed -E 's/.*train +([0-9.]+) img\/s.*/\1/' | sort -g |
    awk '{v[NR]=$1} END {if (NR) print int(v[int((NR+1)/2)]); else print 0}')
[ "${rate:-0}" -gt 0 ] || rate=2000

# 3. The CIFAR-10 audit trained on the GPU, 2 folds. Per epoch it trains
#    2 x 25,000 (folds) + 50,000 (final) + 50,000 (AUM threshold run) images.
#    30 epochs when they fit the time left at 75% of the benchmark's speed,
#    with 200 s for the other stages; else without the AUM threshold run;
#    else as many epochs as fit.
avail=$(($(left) - 45 - 200 - 20))
fit_full=$((avail * rate * 3 / 4 / 150000))
fit_noaum=$((avail * rate * 3 / 4 / 100000))
if [ -n "${EPOCHS:-}" ]; then
    epochs=$EPOCHS extra=""
elif [ "$fit_full" -ge 30 ]; then
    epochs=30 extra=""
elif [ "$fit_noaum" -ge 30 ]; then
    epochs=30 extra="--no-aum-threshold"
else
    epochs=$((fit_noaum > 1 ? fit_noaum : 1)) extra="--no-aum-threshold"
fi
log "audit: bench train rate $rate img/s, $(left) s left: --epochs $epochs --folds 2 $extra"
t0=$(date +%s)
# GPU utilisation, memory, clock and power every 5 s while the audit runs.
nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used,clocks.sm,power.draw --format=csv -l 5 \
    >"$W/gpu/gpu-util.csv" 2>&1 &
smi=$!
RAYON_NUM_THREADS=6 timeout "$(until_end 40)" "$MISFIT" audit "$DATASET" --device "$GPU_DEVICE" \
    --epochs "$epochs" --folds 2 $extra $AUDIT_ARGS --run cifar10-gpu --outputs "$W/gpu" >"$OUT/audit-cifar10.log" 2>&1
rc=$?
log "CIFAR-10 audit: exit $rc, wall $(($(date +%s) - t0)) s"
kill "$smi" 2>/dev/null
# The run folder (or what a killed audit left) and gpu-util.csv.
(cd "$W/gpu" && tar --exclude='*.png' --exclude='embeddings.parquet' --exclude='neighbors.parquet' \
    --exclude='dynamics.parquet' --exclude='*.safetensors' -czf "$OUT/cifar10-gpu.tgz" .)
if [ "$(stat -c %s "$OUT/cifar10-gpu.tgz")" -gt 15000000 ]; then
    (cd "$W/gpu" && tar --exclude='*.png' --exclude='*.parquet' --exclude='*.safetensors' \
        -czf "$OUT/cifar10-gpu.tgz" . ./cifar10-gpu/classes.parquet ./cifar10-gpu/confusion.parquet)
fi
if [ -f "$W/gpu/cifar10-gpu/run.json" ]; then
    python3 - "$W/gpu/cifar10-gpu/run.json" <<'EOF' >>"$OUT/steps.log" 2>&1
import json, sys
m = json.load(open(sys.argv[1]))
print("timing_s:", json.dumps(m.get("timing_s")))
ev = m.get("evaluation") or {}
print("evaluation accuracy:", ev.get("accuracy"), "| model device:", (m.get("model") or {}).get("device"))
EOF
fi

# --- wait for the CPU path --------------------------------------------------------
log "waiting for the demo audits ($(left) s left)"
for p in $demo_pids; do wait "$p"; done
[ -n "$demo_pids" ] && (cd "$W/demo" && tar --exclude='*.png' -czf "$OUT/demo-seeds.tgz" demo-s*)
# Files come back up to 16 MiB each: over 15.5 MB, seeds 1-3 and the rest in two.
if [ -n "$demo_pids" ] && [ "$(stat -c %s "$OUT/demo-seeds.tgz")" -gt 15500000 ]; then
    set -- $DEMO_SEEDS
    first="" rest=""
    for s in "$@"; do
        if [ "$s" = "$1" ] || [ "$s" = "${2:-}" ] || [ "$s" = "${3:-}" ]; then first="$first demo-s$s demo-s$s.log"
        else rest="$rest demo-s$s demo-s$s.log"; fi
    done
    (cd "$W/demo" && tar --exclude='*.png' -czf "$OUT/demo-seeds.tgz" $first)
    [ -n "$rest" ] && (cd "$W/demo" && tar --exclude='*.png' -czf "$OUT/demo-seeds-2.tgz" $rest)
fi
log "done: $(ls "$OUT" | tr '\n' ' ')"
