#!/usr/bin/env bash
# The GPU benchmarks in one script, under 8 minutes on one H100 (or H200):
#   1. the data pipeline at full model size (Grounding DINO-T + SAM ViT-B dimensions, random weights),
#      bf16 on cuda: Beam vs the plain batched loop vs batch-of-one (SAM per box), images/s and MFU;
#   2. the same with batch-of-one encoding each image once (Grounded-SAM's demo), a shorter run;
#   2b. Beam with 3 worker processes sharing the GPU (one worker's CPU feeds ~50 images/s: bench.cpu_stages);
#   3. the trainer at SD-1.5 size, stage 1 at 256 px: on images (random LLaVA-1.5-7B layout + SD VAE),
#      on pre-computed features, and the plain UNet loop: images/s and MFU (the >= 40% target);
#   4. the trainer at SD-1.5 size, stage 2 at 512 px with the attention loss.
# Figures go to $OUT (default: bench-results/) as JSON beside the printed tables.
#   bash bench/gpu.sh            # from the repository root
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-bench-results}"
mkdir -p "$OUT"
N="${BENCH_N:-192}"             # samples per pipeline run
WORKERS="${BENCH_WORKERS:-3}"   # Beam worker processes of run 2b
BATCH="${BENCH_BATCH:-16}"      # both models' batch size
# Batched forwards (one per canvas group / per batch): the throughput setting on a GPU. The default,
# one forward per image, keeps rows bit-identical whatever the batch (docs/pipeline/index.md, Determinism).
FORWARD="--set grounding.forward=canvas --set segmentation.forward=batch"
TRAIN1_ARGS="${BENCH_TRAIN1_ARGS:---preset sd15 --device cuda --dtype bf16 --stages 1 --resolution 256 --batch-size 32 --steps 6 --warmup 3}"
TRAIN2_ARGS="${BENCH_TRAIN2_ARGS:---preset sd15 --device cuda --dtype bf16 --stages 2 --batch-size 8 --steps 4 --warmup 2}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name())"

# 1. ~3 min (at most 190 s): three pipeline runs of N samples, each in a fresh process, plus the FLOP count.
# shellcheck disable=SC2086  # FORWARD is a list of arguments
timeout 190 python -m bench.pipeline --preset full --device cuda --dtype bf16 --batch-size "$BATCH" $FORWARD \
  --n "$N" --warmup-images "$BATCH" --flops-images "$BATCH" --one-sam per_box \
  --json "$OUT/pipeline_full_cuda_bf16.json" || echo "pipeline benchmark (per_box) failed or timed out: $?"

# 2. ~1 min (at most 70 s): batch-of-one with one SAM encoding per image, against the plain batched loop.
# shellcheck disable=SC2086
timeout 70 python -m bench.pipeline --preset full --device cuda --dtype bf16 --batch-size "$BATCH" $FORWARD \
  --n "$((N / 4))" --warmup-images "$BATCH" --flops-images 0 --modes plain,one --one-sam per_image \
  --json "$OUT/pipeline_full_cuda_bf16_per_image.json" || echo "pipeline benchmark (per_image) failed or timed out: $?"

# 2b. ~1 min (at most 90 s): Beam, WORKERS processes each with both models on the GPU, 3N samples (their
# start-up, ~10-20 s each in parallel, is in the raw time; the steady time subtracts one model load).
# shellcheck disable=SC2086
timeout 90 python -m bench.pipeline --preset full --device cuda --dtype bf16 --batch-size "$BATCH" $FORWARD \
  --n "$((3 * N))" --warmup-images 0 --flops-images 0 --modes beam --direct-running-mode multi_processing \
  --workers "$WORKERS" --json "$OUT/pipeline_full_cuda_bf16_workers.json" \
  || echo "pipeline benchmark ($WORKERS workers) failed or timed out: $?"

# 3. ~2 min (at most 130 s): stage 1 at 256 px on images, on pre-computed features, and the plain loop.
# shellcheck disable=SC2086  # the ARGS variables are lists of arguments
timeout 130 python -m bench.train $TRAIN1_ARGS --json "$OUT/train_sd15_stage1_256.json" \
  || echo "trainer benchmark (stage 1) failed or timed out: $?"

# 4. ~1.5 min (at most 90 s): stage 2 at 512 px with the attention loss.
# shellcheck disable=SC2086
timeout 90 python -m bench.train $TRAIN2_ARGS --json "$OUT/train_sd15_stage2.json" \
  || echo "trainer benchmark (stage 2) failed or timed out: $?"
ls -l "$OUT"
