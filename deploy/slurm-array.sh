#!/usr/bin/env bash
# lai as a Slurm job array: array task K of N runs shard K/N of the inputs.
#
# lai reads K from SLURM_ARRAY_TASK_ID (minus SLURM_ARRAY_TASK_MIN) and N from
# SLURM_ARRAY_TASK_COUNT. Shard K writes into $OUT/shard-K-of-N with its own ledger, so a task
# that is preempted or requeued resumes where it stopped. Submit, then merge when all are done:
#
#   jobid=$(sbatch --parsable deploy/slurm-array.sh)
#   sbatch --dependency=afterany:$jobid --wrap "lai merge /shared/lai-out"
#
# lai builds whisper.cpp for the AVX-512/VNNI extensions of the CPU it is built on: on a cluster
# of mixed CPUs, build it with GGML_AVX512=OFF GGML_AVX512_VNNI=OFF GGML_AVX512_VBMI=OFF
# GGML_AVX512_BF16=OFF GGML_AVX_VNNI=OFF (a mismatch stops lai at start-up, saying so).
#
# Exit codes: 0 done, 1 some items failed (see errors.jsonl), 2 configuration error,
# 75 the shard's folder is in use by another task (try again later).
#SBATCH --job-name=lai-transcribe
#SBATCH --array=0-7
#SBATCH --cpus-per-task=8
#SBATCH --mem=16G
#SBATCH --time=12:00:00
#SBATCH --requeue
#SBATCH --output=lai-%A_%a.log
set -euo pipefail

PIPELINE=${PIPELINE:-pipelines/transcribe-clean.toml}
INPUTS=${INPUTS:-/shared/recordings}
OUT=${OUT:-/shared/lai-out}
export LAI_MODELS_DIR=${LAI_MODELS_DIR:-/shared/lai-models}

exec lai run "$PIPELINE" "$INPUTS" -o "$OUT" --quiet --progress never --jobs "$SLURM_CPUS_PER_TASK"
