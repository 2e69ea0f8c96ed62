#!/usr/bin/env bash
# Activation checkpointing on an 8-block GPT (width 64, context 64, batch 16, dropout 0.1):
# activation memory (buffer-pool counters), median step time and the first 50 losses, off and
# with checkpointed segments of 1 and 2 blocks. Release build; extra arguments go to the example
# (examples/grad_checkpoint.rs lists them). Exits non-zero when a checkpointed loss differs
# from the plain run's by more than 1e-4 in the first 50 steps.
# Usage: scripts/grad-checkpoint.sh [--layers 8 --width 64 --steps 50 --every 1,2 ...]
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-/tmp}"
out="$(cargo run --release --quiet --example grad_checkpoint -- "$@")"
echo "$out"
echo "$out" | awk '$1 == "every" && $9 + 0 > 1e-4 { bad = 1 } END { exit bad }' || {
  echo "grad-checkpoint: a checkpointed loss curve differs from the plain one by more than 1e-4" >&2
  exit 1
}
