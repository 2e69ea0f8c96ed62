#!/usr/bin/env bash
# 8-bit Adam and optimizer offload against 32-bit Adam on the default GPT of
# `kiln train --model gpt` (character-level Shakespeare): optimizer state bytes, device bytes,
# ms per step, final training and validation loss over the same steps from the same start.
# The table in README "8-bit Adam and optimizer offload" and BENCHMARKS.md.
#   scripts/adam8bit.sh [STEPS] [extra flags of examples/adam8bit_gpt.rs]
#   scripts/adam8bit.sh 200                       # the committed numbers
#   scripts/adam8bit.sh 50 --layers 2 --width 64  # a quick look
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
STEPS=${1:-200}
shift || true
cargo run --quiet --example adam8bit_gpt -- --steps "$STEPS" "$@"
