#!/usr/bin/env bash
# Issue 15, item 7: the speed tables on a lent GPU, in one call of the `device` tool
# (CI never runs this). Run from the repository root on the GPU machine; where that machine
# cannot install from a registry, first put the wheels in .whl/ here (git-ignored via
# .git/info/exclude): `pip wheel --no-deps . -w .whl` and `pip download --no-deps
# --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 -d .whl optree
# zuko==1.6.0` (the machine's Python and platform), and carry .whl with the call. Results go
# to $OUT (default benchmarks/results), each step under a hard time limit, each JSON
# rewritten as it goes so that a step cut short keeps what it measured. What fits: on one
# H200 (torch 2.11) the eager step timed 10 of the 12 Zuko flows in 120 s, and inductor
# compiled 6 flows' pairs in 170 s (10-90 s a flow): choose FLOWS / GRAPH_FLOWS per lease.
set -u
OUT=$(realpath "${OUT:-benchmarks/results}")
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        && export PYTHONPATH=/tmp/site || exit 1
fi
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.mem --format=csv
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
cd benchmarks
# correctness of every flow on CUDA; eager vmap/module per N (item 2), sampling vs Zuko
# (item 3), K = 32 vmap vs loop (item 4)
timeout "${T_EAGER:-120}" python3 cuda_check.py --timed all --min-run-time 0.05 --out "$OUT" 2>&1 | tee -a "$OUT/device.log" | grep -v Warning
# compiled vmap / compiled batched, inductor, dynamic=True (item 1)
timeout "${T_COMPILED:-240}" python3 compiled_vmap.py --device cuda --no-explain --deadline "${DEADLINE:-170}" \
    --flows "${FLOWS:-MAF,hypernet,NSF,RealNVP,NICE,NCSF,GF,SOSPF,BPF,GMM,NAF,Planar,Radial,Sylvester,UNAF,CNF}" \
    --out "$OUT" 2>&1 | tee -a "$OUT/device.log" | grep -E "^[A-Za-z]+ +(log_prob|sample|grad step)|deadline|Error"
# the same with CUDA graphs at small N (item 7)
timeout "${T_GRAPHS:-110}" python3 compiled_vmap.py --device cuda --mode reduce-overhead --no-explain --deadline 60 \
    --sizes "${GRAPH_SIZES:-256,1024}" --flows "${GRAPH_FLOWS:-MAF,hypernet,NSF,RealNVP,GF,BPF,NAF}" \
    --out "$OUT" 2>&1 | tee -a "$OUT/device.log" | grep -E "^[A-Za-z]+ +(log_prob|sample|grad step)|deadline|Error"
# monotonic flows' sampling vs Zuko with round trips (item 3)
timeout "${T_MONOTONIC:-50}" python3 monotonic.py --device cuda --quick --out "$OUT" 2>&1 | tee -a "$OUT/device.log" | tail -12
ls -la "$OUT"
