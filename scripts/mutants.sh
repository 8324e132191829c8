#!/usr/bin/env bash
# Mutation testing, time-boxed: `scripts/mutants.sh [GROUP...] [-- CARGO-MUTANTS OPTIONS]`.
#
# cargo-mutants changes one thing at a time in a source file (a `+` to `-`, a `<` to `<=`, a
# function body to `Default::default()`, ...), rebuilds and runs the tests that cover the file:
# a mutant the tests fail is "caught", one they pass is "missed" (the tests cannot tell the bug),
# one they never finish is a "timeout". Every mutant builds and tests the workspace in release
# mode, a minute or more each on a 2-core machine, so each group names a few files and only the
# tests that cover them. Results go to mutants.out/GROUP/ (outcomes.json, caught.txt,
# missed.txt, timeout.txt, unviable.txt); the counts are printed at the end. docs/testing.md
# lists the last counts and why each missed mutant that remains is harmless.
#
# Groups (default: all): norm, shards, adam, integrity, loss, geometry. Options after `--` go to
# cargo-mutants,
# e.g. `-- --shard 0/4`, `-- --in-place` (mutate this tree itself: faster, as it reuses
# ./target, but leave the tree alone while it runs), `-- --re 'tf_same'`.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export PATH="${HOME:-/root}/.cargo/bin:$PATH"

cargo mutants --version >/dev/null 2>&1 || cargo install cargo-mutants --locked

groups=()
while [[ $# -gt 0 && "$1" != "--" ]]; do
    groups+=("$1")
    shift
done
[[ "${1:-}" == "--" ]] && shift
[[ ${#groups[@]} -eq 0 ]] && groups=(norm shards adam integrity loss geometry)

# Each group: the files to mutate, the packages whose tests run, and the `cargo test` arguments
# that pick the tests covering the files (test binaries; `--lib` = each package's unit tests).
group_spec() {
    case "$1" in
        norm) echo "kernels/src/norm/relu.rs kernels/src/norm/bn_relu.rs :: bnconv-kernels :: --lib" ;;
        shards) echo "kernels/src/runtime/shards.rs :: bnconv-kernels :: --lib" ;;
        integrity) echo "nn/src/checkpoint/integrity.rs :: bnconv-nn,bnconv :: --lib --test checkpoint_integrity --test checkpoint" ;;
        loss) echo "nn/src/loss.rs :: bnconv-nn,bnconv :: --lib --test gradcheck --test golden" ;;
        geometry) echo "kernels/src/conv/geometry.rs :: bnconv-kernels :: --lib" ;;
        adam) echo "nn/src/adam.rs :: bnconv-nn,bnconv :: --lib --test golden --test checkpoint" ;;
        *) echo "unknown group $1 (norm, shards, adam, integrity, loss, geometry)" >&2; return 1 ;;
    esac
}

summary=()
for group in "${groups[@]}"; do
    spec="$(group_spec "$group")"
    IFS='|' read -r files packages test_args <<<"${spec// :: /|}"
    args=(--workspace --profile release --timeout 600 --build-timeout 1800 --baseline skip
        --output "mutants.out/$group" --test-package "$packages" --no-shuffle)
    for f in $files; do args+=(--file "$f"); done
    for a in $test_args; do args+=("--cargo-test-arg=$a"); done
    mkdir -p "mutants.out/$group"
    echo "=== mutants: $group ($files; tests of $packages: $test_args)"
    status=0
    nice -n 15 cargo mutants "${args[@]}" "$@" || status=$?
    # cargo-mutants exits 2 when mutants were missed, 3 on timeouts: results, not failures.
    if [[ $status -ne 0 && $status -ne 2 && $status -ne 3 ]]; then
        echo "cargo mutants failed for $group (exit $status)" >&2
        exit "$status"
    fi
    out="mutants.out/$group/mutants.out"
    count() {
        local n
        n=$(grep -c . "$out/$1.txt" 2>/dev/null) || true
        echo "${n:-0}"
    }
    summary+=("$group: caught $(count caught), missed $(count missed), timeout $(count timeout), unviable $(count unviable)")
done
printf '%s\n' "=== mutation counts" "${summary[@]}"
