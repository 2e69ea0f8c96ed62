#!/usr/bin/env bash
# The largest GPT that trains under a fixed device-memory cap, without memory savers and with
# each saver kiln has (issue 19): for each row, the most transformer blocks (width, heads,
# context and batch fixed) whose `kiln train --dry-run --max-memory CAP` plan fits, found by
# doubling then bisecting; the winner is then trained for a few real steps under the same cap
# (`--memory`: the measured peak) and, with CHECK_NEXT=1, one block more must fail with the
# pool's out-of-memory error. Prints the Markdown table of README "Memory: the largest GPT under
# a cap" and the ratio of parameter counts (all savers against none).
#   scripts/memory-table.sh                      # cap 64MiB, width 64, the committed table
#   CAP=32MiB WIDTH=32 scripts/memory-table.sh   # a quicker look
#   KILN=target/release/kiln scripts/memory-table.sh
#   DRY_ONLY=1 scripts/memory-table.sh           # the search alone, no training
# Step time is GPU time per step: the dispatches of the run's trace (`--trace`, GPU timestamps
# where the adapter has them) summed over the STEPS steps and divided by STEPS (host time is
# left out: the first step compiles the pipelines).
set -euo pipefail
cd "$(dirname "$0")/.."
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
CAP=${CAP:-64MiB}
WIDTH=${WIDTH:-64}
HEADS=${HEADS:-4}
CONTEXT=${CONTEXT:-64}
BATCH=${BATCH:-16}
STEPS=${STEPS:-4}
MAX_LAYERS=${MAX_LAYERS:-512}
CHECK_NEXT=${CHECK_NEXT:-0}
if [[ -z "${KILN:-}" ]]; then
  cargo build --quiet --bin kiln
  KILN=target/debug/kiln
fi
work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-memory-table.XXXXXX")
trap 'rm -rf "$work"' EXIT
# A small corpus (the first 40 kB of the bundled Shakespeare): validation stays short.
(gzip -dc data/shakespeare.txt.gz || true) | head -c 40000 >"$work/text.txt"

gpt() { # gpt LAYERS [flags...]: the common flags of every run
  local layers=$1
  shift
  echo --model gpt --text "$work/text.txt" --layers "$layers" --width "$WIDTH" --heads "$HEADS" \
    --context "$CONTEXT" --batch-size "$BATCH" --max-memory "$CAP" --seed 1 "$@"
}

fits() { # fits LAYERS [flags...]: the dry-run plan fits under the cap
  local out
  # shellcheck disable=SC2046
  out=$("$KILN" train $(gpt "$@") --dry-run --out "$work/plan" 2>&1) || true
  if grep -q "^fits under the cap" <<<"$out"; then return 0; fi
  if grep -q "^does not fit under the cap" <<<"$out"; then return 1; fi
  echo "memory-table: the plan of $* failed:" >&2
  echo "$out" >&2
  exit 1
}

largest() { # largest [flags...]: the most layers whose plan fits (0 if none)
  local lo=0 hi=1
  while ((hi <= MAX_LAYERS)) && fits "$hi" "$@"; do
    lo=$hi
    hi=$((hi * 2))
  done
  while ((hi - lo > 1)); do
    local mid=$(((lo + hi) / 2))
    if fits "$mid" "$@"; then lo=$mid; else hi=$mid; fi
  done
  echo "$lo"
}

mib() { awk -v b="$1" 'BEGIN { printf "%.2f MiB", b / 1048576 }'; }

# Real steps of LAYERS under the cap: "parameters peak_bytes step_ms" (or "failed").
measure() {
  local layers=$1
  shift
  local run="$work/run-$layers"
  rm -rf "$run"
  # shellcheck disable=SC2046
  if ! "$KILN" train $(gpt "$layers" "$@") --max-steps "$STEPS" --memory --quiet \
    --trace "$run/trace.json" --trace-steps "$STEPS" --out "$run" >"$work/log" 2>&1; then
    echo failed
    return
  fi
  local params peak ms
  params=$(jq .parameters "$run/summary.json")
  peak=$(jq .overall.peak_total "$run/memory.json")
  # GPU time per step: the dispatch slices of the trace (GPU timestamps where the adapter has
  # them), summed over the traced steps, divided by their number.
  ms=$(jq "[.traceEvents[] | select(.cat == \"gpu\" and .ph == \"X\") | .dur] | add / $STEPS / 1000
        | . * 10 | round / 10" "$run/trace.json")
  echo "$params $peak $ms"
}

rows=(
  "none|"
  "--grad-checkpoint|--grad-checkpoint"
  "--optimizer adam8bit|--optimizer adam8bit"
  "--offload-optimizer|--offload-optimizer"
  "--grad-checkpoint --optimizer adam8bit|--grad-checkpoint --optimizer adam8bit"
  "--grad-checkpoint --offload-optimizer|--grad-checkpoint --offload-optimizer"
)
adapter=""
echo "cap $CAP; GPT width $WIDTH, $HEADS heads, context $CONTEXT, batch $BATCH, $STEPS steps"
echo
echo "| savers | largest GPT (blocks) | parameters | planned peak | measured peak | step time | mixed precision |"
echo "|---|---|---|---|---|---|---|"
base_params=0
best_params=0
for row in "${rows[@]}"; do
  name=${row%%|*}
  # shellcheck disable=SC2206
  flags=(${row#*|})
  layers=$(largest "${flags[@]}")
  # shellcheck disable=SC2046
  planned=$("$KILN" train $(gpt "$layers" "${flags[@]}") --dry-run --out "$work/plan" >/dev/null 2>&1 &&
    jq .peak_total "$work/plan/memory_plan.json")
  if [[ "${DRY_ONLY:-0}" == 1 ]]; then
    params=$(jq .formula.parameters "$work/plan/memory_plan.json")
    echo "| \`$name\` | $layers | $params | $(mib "$planned") | (DRY_ONLY) | - | not built yet |"
    [[ "$name" == none ]] && base_params=$params
    ((params > best_params)) && best_params=$params
    continue
  fi
  read -r params peak ms <<<"$(measure "$layers" "${flags[@]}")"
  if [[ "$params" == failed ]]; then
    echo "| \`$name\` | $layers | - | $(mib "$planned") | failed under the cap | - | not built yet |"
    continue
  fi
  adapter=$(jq -r .device "$work/run-$layers/summary.json")
  next=""
  # shellcheck disable=SC2046
  if [[ "$CHECK_NEXT" == 1 ]] && [[ "$(measure $((layers + 1)) "${flags[@]}")" != failed ]]; then
    next=" (and $((layers + 1)) trained too)"
  fi
  echo "| \`$name\` | $layers$next | $params | $(mib "$planned") | $(mib "$peak") | ${ms} ms | not built yet |"
  [[ "$name" == none ]] && base_params=$params
  ((params > best_params)) && best_params=$params
done
echo
[[ -n "$adapter" ]] && echo "adapter: $adapter"
awk -v a="$best_params" -v b="$base_params" \
  'BEGIN { if (b > 0) printf "largest with savers / largest without: %d / %d parameters = %.2fx\n", a, b, a / b }'
