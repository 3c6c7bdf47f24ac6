#!/usr/bin/env bash
# Every GPU figure in one run and one JSON file (about 7 min on one H200, compilation included,
# before the transformer rows were added; they add at most --budget_s 200 s and one row).
#
#   bash benchmarks/gpu.sh [--out gpu.json]               # on the accelerator
#   bash benchmarks/gpu.sh --cpu_smoke [--out smoke.json] # on CPU: checks that it all runs
#
# speed.py --quick: DDPM++ and NCSN++ (cont.), fp32 and bf16, batch 128 and the best of
#   (128, 256): train img/s and MFU, forward img/s, likelihood ms per NFE, PC over 1000 steps,
#   the adaptive ODE, Heun 35 NFE, executable and peak memory (parts that would start after
#   300 s are reported as skipped);
# train_step.py: the step in forward passes and the launcher over a plain jitted step (DDPM++
#   at its published width, batch 128).
# speed.py on the transformers: U-ViT-S/2 and DiT-S/2 on CIFAR-10 (vp/cifar10_uvit_s2,
#   vp/cifar10_dit_s2), fp32 and bf16, batch 128 and the best of (128, 256), the same figures.
# Writes {"speed": [one object per JSON line of speed.py], "transformers": [the same for the
#   transformers], "train_step": {...}, "seconds": s}.
set -euo pipefail
cd "$(dirname "$0")/.."
out=gpu.json
smoke=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --cpu_smoke) smoke=1; shift ;;
    -h|--help) sed -n '2,17p' "$0" | cut -c3-; exit 0 ;;
    *) echo "error: unknown argument $1 (use --out FILE, --cpu_smoke)" >&2; exit 2 ;;
  esac
done
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)
if [ -n "$smoke" ]; then
  python benchmarks/speed.py --cpu_smoke --dtype float32 --search 4 | tee "$tmp/speed.txt"
  python benchmarks/train_step.py --cpu_smoke --rounds 1 | tee "$tmp/step.txt"
  python benchmarks/speed.py --cpu_smoke --config digits/dit --dtype float32 --search 4 \
    --set model.hidden_size=32 --set model.depth=1 --set model.num_heads=2 | tee "$tmp/tr.txt"
else
  python benchmarks/speed.py --quick --pc_steps 1000 --budget_s 300 | tee "$tmp/speed.txt"
  python benchmarks/train_step.py --nf 128 --batch 128 --rounds 5 | tee "$tmp/step.txt"
  python benchmarks/speed.py --quick --config vp/cifar10_uvit_s2 --config vp/cifar10_dit_s2 \
    --pc_steps 100 --budget_s 200 | tee "$tmp/tr.txt"
fi
python - "$tmp" "$out" "$(( $(date +%s) - start ))" <<'PY'
import json, sys
tmp, out, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = lambda f: [json.loads(l) for l in open(f"{tmp}/{f}") if l.startswith("{")]
(step,) = rows("step.txt")
json.dump({"speed": rows("speed.txt"), "transformers": rows("tr.txt"), "train_step": step,
           "seconds": seconds}, open(out, "w"), indent=1)
print(f"wrote {out} ({seconds} s)")
PY
