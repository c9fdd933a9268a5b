#!/bin/bash
# `maxi batch` over 40 MNIST digits as a Slurm array of 4 tasks: task k explains inputs
# k, k+4, k+8, ... (maxi reads SLURM_ARRAY_TASK_ID/SLURM_ARRAY_TASK_COUNT) into
# out/shard-k. Submit from the folder holding out/ (a shared filesystem):
#   sbatch deploy/slurm-array.sh
# then, when every task has ended (sbatch --wait, or a job with --dependency=afterany:JOBID):
#   maxi merge out/shard-0 out/shard-1 out/shard-2 out/shard-3 --out out/merged
# A task that was preempted or timed out can simply be resubmitted (--array=K): it skips the
# inputs it had completed.
#SBATCH --job-name=maxi-batch
#SBATCH --array=0-3
#SBATCH --cpus-per-task=1
#SBATCH --mem=512M
#SBATCH --output=logs/maxi-%A_%a.out
set -euo pipefail
exec maxi batch --config configs/mnist_pp.toml --inputs mnist:0..40 \
    --out "out/shard-$SLURM_ARRAY_TASK_ID" --threads "${SLURM_CPUS_PER_TASK:-1}" --quiet
