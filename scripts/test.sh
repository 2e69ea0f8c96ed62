#!/usr/bin/env bash
# The test suites plus one summary line of the checks that could not run here.
#
# Runs `cargo test --workspace` (extra arguments are passed on). A test whose check cannot run on
# this machine (no MiniLM, no Python safetensors, no OpenGL adapter, no Fashion-MNIST, an adapter
# without SHADER_F16 or SUBGROUP) appends a line to target/kiln-skips.txt
# (kernels/tests/kernels/common/skip.rs); libtest hides those tests' output, so this script prints the count and
# the list at the end. Under CI (CI=true) such a test fails instead, naming what to install.
set -uo pipefail
cd "$(dirname "$0")/.."
skips=target/kiln-skips.txt
mkdir -p target
rm -f "$skips"
cargo test --workspace "$@"
status=$?
if [ -s "$skips" ]; then
    echo "test: $(sort -u "$skips" | wc -l) checks skipped (they did not run; install what each names):"
    sort -u "$skips" | sed 's/^/  - /'
else
    echo "test: no checks skipped"
fi
exit "$status"
