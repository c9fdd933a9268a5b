#!/usr/bin/env bash
# The "Many inputs" figures of the README:
#   1. throughput: `maxi batch` over N MNIST digits vs `maxi explain` once per digit, same
#      config and backend (default backend, all cores);
#   2. memory: peak RSS (/usr/bin/time -v) of `maxi batch` over 100 and 10,000 digits with a
#      tiny run per digit.
#   scripts/batch-bench.sh [throughput|memory|all]
# Environment: N (default 100), BACKEND (e.g. onnxruntime; default: by file extension, tract),
# WORK (scratch folder).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
MAXI=${MAXI:-$ROOT/target/release/maxi}
N=${N:-100}
WORK=${WORK:-$(mktemp -d /tmp/maxi-bench.XXXXXX)}
WHAT=${1:-all}
mkdir -p "$WORK"
[ -x "$MAXI" ] || (cd "$ROOT" && cargo build --release -p maxi-cli)

SHORT=$ROOT/configs/mnist_pp_short.toml  # the main job's PP settings: 60 updates of 1 + 49 rows

tiny() {  # tiny FILE: the short config with 2 updates of 1 + 4 rows (model path made absolute)
    sed -e 's/^num_iter = 60$/num_iter = 2/' -e 's/^sample_num = 49$/sample_num = 4/' \
        -e "s|^path = \"\.\./|path = \"$ROOT/|" "$SHORT" >"$1"
    grep -q '^num_iter = 2$' "$1" && grep -q '^sample_num = 4$' "$1" && grep -q "^path = \"$ROOT/" "$1" ||
        { echo "batch-bench: $SHORT no longer has the lines tiny() rewrites" >&2; exit 1; }
}

now() { date +%s.%N; }

if [ "$WHAT" = throughput ] || [ "$WHAT" = all ]; then
    echo "== backend: ${BACKEND:-default}"
    echo "== $N x maxi explain (one process per digit), config: 60 updates of 1 + 49 rows"
    rm -rf "$WORK/explain"
    t0=$(now)
    for i in $(seq 0 $((N - 1))); do
        "$MAXI" explain --config "$SHORT" --input "mnist:$i" --out "$WORK/explain/$i" --quiet ${BACKEND:+--backend "$BACKEND"} ||
            [ $? = 3 ]  # 3: finished without a valid explanation (outputs written)
    done
    t1=$(now)
    echo "== maxi batch over mnist:0..$N"
    rm -rf "$WORK/batch"
    "$MAXI" batch --config "$SHORT" --inputs "mnist:0..$N" --out "$WORK/batch" --quiet ${BACKEND:+--backend "$BACKEND"}
    t2=$(now)
    python3 - "$t0" "$t1" "$t2" "$N" <<'EOT'
import sys
t0, t1, t2, n = map(float, sys.argv[1:])
e, b = n / (t1 - t0), n / (t2 - t1)
print(f"explain per input: {t1 - t0:.1f} s, {e:.2f} inputs/s")
print(f"batch:             {t2 - t1:.1f} s, {b:.2f} inputs/s")
print(f"speed-up:          {b / e:.2f}x")
EOT
fi

if [ "$WHAT" = memory ] || [ "$WHAT" = all ]; then
    tiny "$WORK/tiny.toml"
    for n in 100 10000; do
        rm -rf "$WORK/mem-$n"
        /usr/bin/time -v "$MAXI" batch --config "$WORK/tiny.toml" --inputs "mnist:0..$n" \
            --out "$WORK/mem-$n" --quiet 2>"$WORK/time-$n.txt"
        rss=$(sed -n 's/.*Maximum resident set size (kbytes): //p' "$WORK/time-$n.txt")
        wall=$(sed -n 's/.*Elapsed (wall clock) time (h:mm:ss or m:ss): //p' "$WORK/time-$n.txt")
        echo "mnist:0..$n: peak RSS $rss kB, wall $wall"
    done
fi
echo "(scratch: $WORK)"
