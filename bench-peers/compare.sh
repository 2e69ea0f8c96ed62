#!/usr/bin/env bash
# kiln beside Burn 0.22, interleaved in one run on the same adapter (issue 7).
#
# usage: bench-peers/compare.sh [--rounds N] [--only CASES] [--out FILE.jsonl]
#   --rounds N     interleaved rounds (default 3; each round runs every case on both peers)
#   --only CASES   comma-separated subset of: matmul,attention,mlp,cnn (default: all)
#   --out FILE     also keep every raw measurement there, one JSON object a line
# env: CARGO_TARGET_DIR (kiln's target dir, default ./target), BURN_TARGET_DIR (the Burn peer's,
#      default bench-peers/burn/target), KILN_MATMUL_RUNGS (kiln matmul rungs to time, default
#      "vec4", kiln's default rung; e.g. "vec4 regblock" keeps the faster per shape),
#      KILN_MATMUL_BENCH=1 (also time matmul with `kiln bench`, see below).
#
# Each round runs, per case, the kiln measurement then the Burn one (the order flips every
# round so a drift of the machine does not favour one side), each in a fresh process. The table
# gives the median over rounds of each side's figure and burn_ms / kiln_ms (> 1: kiln faster).
#
# kiln's figures: matmul = criterion `kernels/benches/matmul.rs` (wall time around a sync per product,
# as Burn is timed) for each rung of KILN_MATMUL_RUNGS (the fastest one per shape if several);
# KILN_MATMUL_BENCH=1 adds `kiln bench --json` rows (GPU timestamps) as separate table rows;
# attention = criterion `benches/attention.rs`, group attention_forward, b4_h4_t128_d32
# (fused = scaled_dot_product_attention, composed = attention_composed); mlp / cnn = the
# per-step time printed by examples/mlp_step.rs and examples/cnn_step.rs.
# Burn's: bench-peers/burn (see its src/main.rs).
set -euo pipefail

SELF=$(realpath "${BASH_SOURCE[0]}")
ROOT=$(dirname "$(dirname "$SELF")")
cd "$ROOT"
ROUNDS=3
ONLY="matmul,attention,mlp,cnn"
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) ROUNDS="$2"; shift 2 ;;
        --only) ONLY="$2"; shift 2 ;;
        --out) OUT="$2"; shift 2 ;;
        -h|--help) sed -n '2,23p' "$SELF"; exit 0 ;;
        *) echo "compare.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
for c in ${ONLY//,/ }; do
    case "$c" in matmul|attention|mlp|cnn) ;; *) echo "compare.sh: unknown case $c" >&2; exit 2 ;; esac
done
wants() { [[ ",$ONLY," == *",$1,"* ]]; }

export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
TARGET=$(realpath -m "${CARGO_TARGET_DIR:-$ROOT/target}")
BURN_TARGET=$(realpath -m "${BURN_TARGET_DIR:-$ROOT/bench-peers/burn/target}")
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
RAW="$WORK/raw.jsonl"
: > "$RAW"

# Executable paths come from cargo's JSON messages, so the runs below use exactly the binaries
# built here even if the sources change meanwhile.
exe_of() { python3 -c '
import json, sys
for line in sys.stdin:
    try: m = json.loads(line)
    except ValueError: continue
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == sys.argv[1]:
        print(m["executable"])' "$1" | tail -n 1; }

build() {
    local msgs="$WORK/cargo.json" burn_msgs="$WORK/burn.json"
    # kiln: the CLI (kiln bench), the two examples, the attention criterion bench.
    CARGO_TARGET_DIR="$TARGET" cargo build --release --bin kiln \
        --example mlp_step --example cnn_step --message-format=json > "$msgs"
    KILN=$(exe_of kiln < "$msgs")
    MLP=$(exe_of mlp_step < "$msgs")
    CNN=$(exe_of cnn_step < "$msgs")
    MATMUL=""
    if wants matmul; then
        CARGO_TARGET_DIR="$TARGET" cargo bench -p kiln-kernels --bench matmul --no-run \
            --message-format=json > "$msgs"
        MATMUL=$(exe_of matmul < "$msgs")
        [ -n "$MATMUL" ] || { echo "compare.sh: no executable for the matmul bench" >&2; exit 1; }
    fi
    ATTN=""
    if wants attention; then
        CARGO_TARGET_DIR="$TARGET" cargo bench --bench attention --no-run \
            --message-format=json > "$msgs" || true
        ATTN=$(exe_of attention < "$msgs")
        [ -n "$ATTN" ] || echo "compare.sh: the attention bench did not build; attention for kiln is n/a" >&2
    fi
    CARGO_TARGET_DIR="$BURN_TARGET" cargo build --release \
        --manifest-path bench-peers/burn/Cargo.toml --message-format=json > "$burn_msgs"
    BURN=$(exe_of burn-peer-bench < "$burn_msgs")
    for v in KILN MLP CNN BURN; do
        [ -n "${!v}" ] || { echo "compare.sh: no executable for $v" >&2; exit 1; }
    done
}
echo "compare.sh: building (kiln in $TARGET, Burn in $BURN_TARGET)" >&2
build

# record ROUND PEER CASE: stdin = the peer's JSON lines (or the kiln line made below).
record() { python3 -c '
import json, sys
rnd, peer, case = sys.argv[1:4]
for line in sys.stdin:
    line = line.strip()
    if not line.startswith("{"): continue
    r = json.loads(line); r.update(round=int(rnd), peer=peer, case=case)
    print(json.dumps(r))' "$@" >> "$RAW"; }

# Rows from criterion's estimates: read_criterion HOME GROUP VARIANT ID OP SHAPE FLOPS LOG
# (LOG: the bench's output, whose "adapter: NAME (API); ..." line names the adapter).
read_criterion() { python3 -c '
import json, os, re, sys
home, group, variant, ident, op, shape, flops, log = sys.argv[1:9]
p = os.path.join(home, group, variant, ident, "new", "estimates.json")
m = re.search(r"^adapter: (.*) \(\w+\); ", open(log).read(), re.M)
if os.path.exists(p):
    ms = json.load(open(p))["median"]["point_estimate"] / 1e6
    print(json.dumps(dict(op=op, shape=shape, variant=variant + " (criterion, wall)", timer="wall",
                          ms_median=ms, gflops=float(flops) / (ms * 1e-3) / 1e9,
                          adapter=m.group(1) if m else None)))' "$@"; }

# kiln matmul, timed like Burn: criterion `kernels/benches/matmul.rs`, wall time around a device sync
# per product. With KILN_MATMUL_BENCH=1 also `kiln bench` rows (GPU timestamps: launch and sync
# overhead excluded), shown as their own table rows since Burn has no such timer here.
kiln_matmul() {
    local home="$WORK/criterion" rungs
    rungs=$(echo ${KILN_MATMUL_RUNGS:-vec4} | tr ' ' '|')
    rm -rf "$home"
    if CRITERION_HOME="$home" "$MATMUL" --bench "^matmul/($rungs)/(256|512|1024|8x128x64x128)\$" \
        > "$WORK/matmul.out" 2>&1; then
        for rung in ${KILN_MATMUL_RUNGS:-vec4}; do
            for n in 256 512 1024; do
                read_criterion "$home" matmul "$rung" "$n" matmul "${n}x${n}x${n}" $((2 * n * n * n)) \
                    "$WORK/matmul.out"
            done
            read_criterion "$home" matmul "$rung" 8x128x64x128 matmul "8x(128x64@64x128)" \
                $((2 * 8 * 128 * 128 * 64)) "$WORK/matmul.out"
        done | fastest
    else
        echo "compare.sh: kiln matmul bench failed:" >&2; tail -5 "$WORK/matmul.out" >&2
    fi
    [ "${KILN_MATMUL_BENCH:-0}" = 1 ] || return 0
    for rung in ${KILN_MATMUL_RUNGS:-vec4}; do
        for shape in 256x256x256 512x512x512 1024x1024x1024 "8x(128x64@64x128)"; do
            "$KILN" bench --json --filter "matmul $shape $rung" 2> "$WORK/kiln-bench.err" \
                || { echo "compare.sh: kiln bench failed:" >&2; tail -5 "$WORK/kiln-bench.err" >&2; }
        done
    done | python3 -c '
import json, sys
for line in sys.stdin:
    try: r = json.loads(line)
    except ValueError: continue
    if r.get("op") == "matmul" and r.get("dtype") == "f32":
        r["variant"] += " (kiln bench, " + r["timer"] + " timer)"
        print(json.dumps(r))' | fastest
}

# Keeps the fastest row per (op, shape, timer) of the JSON lines on stdin.
fastest() { python3 -c '
import json, sys
best = {}
for line in sys.stdin:
    r = json.loads(line); k = (r["op"], r["shape"], r.get("timer"))
    if k not in best or r["ms_median"] < best[k]["ms_median"]: best[k] = r
for r in best.values(): print(json.dumps(r))'; }

kiln_attention() {
    [ -n "$ATTN" ] || return 0
    local home="$WORK/criterion"
    rm -rf "$home"
    if CRITERION_HOME="$home" "$ATTN" --bench 'attention_forward/.*/b4_h4_t128_d32' \
        > "$WORK/attn.out" 2>&1; then
        for variant in fused composed; do
            read_criterion "$home" attention_forward "$variant" b4_h4_t128_d32 attention \
                "b4 h4 t128 d32" $((4 * 4 * 4 * 128 * 128 * 32)) "$WORK/attn.out"
        done
    else
        echo "compare.sh: kiln attention bench failed:" >&2; tail -5 "$WORK/attn.out" >&2
    fi
}

# The examples print "<ms> ms per step ..." / "<ms> ms per Adam step ...".
kiln_step() {
    local exe="$1" op="$2" shape="$3"
    "$exe" 2>/dev/null | python3 -c '
import json, re, sys
op, shape = sys.argv[1:3]
for line in sys.stdin:
    m = re.match(r"\s*([0-9.]+) ms per", line)
    if m:
        print(json.dumps(dict(op=op, shape=shape, variant="adam", ms_median=float(m.group(1)), gflops=None)))' "$op" "$shape"
}

kiln_case() {
    case "$1" in
        matmul) kiln_matmul ;;
        attention) kiln_attention ;;
        mlp) kiln_step "$MLP" mlp_step "784-256-10 b128" ;;
        cnn) kiln_step "$CNN" cnn_step "b64 1x28x28" ;;
    esac
}
burn_case() { "$BURN" --only "$1" 2> "$WORK/burn.err" || { echo "compare.sh: burn $1 failed:" >&2; tail -5 "$WORK/burn.err" >&2; }; }

KILN_REV=$(git rev-parse --short HEAD 2>/dev/null || echo "?")
git diff --quiet HEAD -- 2>/dev/null || KILN_REV="$KILN_REV + uncommitted changes"
echo "compare.sh: kiln at $KILN_REV; $ROUNDS rounds of [$ONLY]; load average at start: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
for ((r = 1; r <= ROUNDS; r++)); do
    for c in ${ONLY//,/ }; do
        if ((r % 2)); then order="kiln burn"; else order="burn kiln"; fi
        for peer in $order; do
            echo "round $r/$ROUNDS: $peer $c" >&2
            if [ "$peer" = kiln ]; then kiln_case "$c" | record "$r" kiln "$c"
            else burn_case "$c" | record "$r" burn "$c"; fi \
                || echo "compare.sh: round $r $peer $c failed; its figure is missing" >&2
        done
    done
done
echo "compare.sh: load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
[ -z "$OUT" ] || cp "$RAW" "$OUT"

python3 - "$RAW" <<'EOF'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for peer in ("kiln", "burn"):
    names = sorted({r["adapter"] for r in rows if r["peer"] == peer and r.get("adapter")})
    print(f"{peer} adapter: {', '.join(names) or '?'}")
# Rows are matched by (op, shape, variant name without the kiln rung / timer note).
def key(r):
    v = r.get("variant", "")
    if r["op"] == "matmul": v = "kiln bench, gpu timer" if r.get("timer") == "gpu" else ""
    elif r["op"] == "attention": v = v.split(" ")[0]
    return (r["op"], r["shape"], v)
cases = []
for r in rows:
    if key(r) not in cases: cases.append(key(r))
def stat(peer, k):
    ms = [r["ms_median"] for r in rows if r["peer"] == peer and key(r) == k]
    return (statistics.median(ms), len(ms)) if ms else (None, 0)
def note(peer, k):
    vs = sorted({r.get("variant", "") for r in rows if r["peer"] == peer and key(r) == k})
    return "/".join(vs)
print("| case | kiln ms | burn ms | burn/kiln | kiln GFLOP/s | burn GFLOP/s | kiln variant | rounds kiln / burn |")
print("|---|---:|---:|---:|---:|---:|---|---|")
for k in cases:
    (km, kn), (bm, bn) = stat("kiln", k), stat("burn", k)
    flops = next((r["gflops"] * r["ms_median"] * 1e6 for r in rows if key(r) == k and r.get("gflops")), None)
    f = lambda ms: f"{ms:.3f}" if ms is not None else "n/a"
    g = lambda ms: f"{flops / (ms * 1e6):.1f}" if ms and flops else "-"
    ratio = f"{bm / km:.2f}" if km and bm else "n/a"
    name = " ".join(x for x in k if x)
    print(f"| {name} | {f(km)} | {f(bm)} | {ratio} | {g(km)} | {g(bm)} | {note('kiln', k)} | {kn} / {bn} |")
EOF
