#!/usr/bin/env bash
# Semi-supervised learning on digits with 50 labels: the table in README "Semi-supervised
# training". Every run uses the same 50 labelled training images (--labeled 50 keeps 5 per
# class, chosen by the seed), the same labelled validation split and the same 269 test images.
#   scripts/semi-digits.sh [SEEDS...]      (default seeds: 0 1 2)
# KILN=path/to/kiln picks the binary (default: target/release/kiln, built if missing).
set -euo pipefail
cd "$(dirname "$0")/.."
KILN=${KILN:-target/release/kiln}
[ -x "$KILN" ] || cargo build --release --quiet
SEEDS=${*:-0 1 2}
OUT=${OUT:-runs/semi-digits}
EPOCHS=${EPOCHS:-60}
mkdir -p "$OUT"
# A semi-supervised epoch is 3 steps (ceil(1208 / 7) = 173 labelled rows in batches of 64);
# the supervised baseline on 50 labels gets the same 3 x EPOCHS steps (1 step an epoch).
declare -A ARGS=(
  [supervised-50]="--labeled 50 --epochs $((3 * EPOCHS))"
  [pseudo]="--labeled 50 --semi pseudo --epochs $EPOCHS"
  [fixmatch]="--labeled 50 --semi fixmatch --epochs $EPOCHS"
  [spread]="--labeled 50 --semi spread"
  [supervised-all]="--epochs $EPOCHS"
)
printf '%-16s' method; for s in $SEEDS; do printf ' seed%-5s' "$s"; done; echo ' mean'
for m in supervised-50 pseudo fixmatch spread supervised-all; do
  printf '%-16s' "$m"
  sum=0
  for s in $SEEDS; do
    dir="$OUT/$m-$s"
    rm -rf "$dir"
    # shellcheck disable=SC2086
    "$KILN" train --quiet --lr 0.003 --seed "$s" ${ARGS[$m]} --out "$dir" > "$dir.log" 2>&1 \
      || { echo " failed: see $dir.log"; exit 1; }
    acc=$(python3 -c "import json;print(json.load(open('$dir/summary.json'))['test_accuracy'])")
    printf ' %8.4f' "$acc"
    sum=$(python3 -c "print($sum + $acc)")
  done
  python3 -c "print(' %.4f' % ($sum / len('$SEEDS'.split())))"
done
