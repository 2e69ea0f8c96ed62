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
# With an MPI library (mpirun, mpicc) and libclang (rsmpi's bindgen) the suites build with the
# `mpi` feature, which adds tests/mpi.rs (collectives and lost ranks under `mpirun -n 2`);
# without them that is a skip.
features=()
have_libclang() { ldconfig -p 2>/dev/null | grep -E 'libclang(-[0-9.]+)?\.so' >/dev/null; }
if command -v mpirun >/dev/null && command -v mpicc >/dev/null && have_libclang; then
    features=(--features kiln/mpi)
else
    line="tests/mpi.rs: no MPI library (mpirun, mpicc) or no libclang; to run it: apt-get install -y openmpi-bin libopenmpi-dev libclang-dev"
    if [ "${CI:-}" = true ]; then
        echo "test: check cannot run under CI (CI=true): $line" >&2
        exit 1
    fi
    echo "$line" >>"$skips"
fi
cargo test --workspace "${features[@]}" "$@"
status=$?
if [ -s "$skips" ]; then
    echo "test: $(sort -u "$skips" | wc -l) checks skipped (they did not run; install what each names):"
    sort -u "$skips" | sed 's/^/  - /'
else
    echo "test: no checks skipped"
fi
exit "$status"
