#!/usr/bin/env bash
# Regenerates every example output quoted in README.md and docs/*.md, and every image in docs/,
# from the current build, so that none of them can drift from what the program really prints.
#
#   docs/regenerate.sh          build, rerun every example, rewrite docs/examples/*.txt,
#                               docs/{curves,profile,confusion,sweep}.png and the generated blocks
#                               of the markdown files; then print the figures the README's table
#                               needs
#   docs/regenerate.sh --check  rerun every example in a scratch directory and compare it with
#                               what is committed, timing figures masked; exit 1 on any drift
#
# A generated block in a markdown file looks like this (the script rewrites what is between the
# two comment lines with the named file, fenced; edit the example, never the block):
#
#   <!-- generated from docs/examples/NAME.txt by docs/regenerate.sh: do not edit -->
#   <!-- end generated -->
#
# Every command runs with --threads 2 (the sweep: two one-thread jobs), so outputs do not depend on
# the core count (results are bitwise the same for any thread count; only the timing figures
# change). It takes several minutes: three 800-batch runs, a profile, the checkpoint walkthrough
# and a sweep of 16 800-batch runs. Needs bash, cargo, awk, sed, grep,
# diff and python3 (for reading the JSON reports).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
mode=write
case "${1-}" in
    "") ;;
    --check) mode=check ;;
    *) echo "usage: docs/regenerate.sh [--check]" >&2; exit 2 ;;
esac

cargo build --release --quiet --manifest-path "$root/Cargo.toml"
bin_dir="${CARGO_TARGET_DIR:-$root/target}/release"
[[ -x "$bin_dir/bnconv" ]] || { echo "no binary at $bin_dir/bnconv" >&2; exit 1; }
export PATH="$bin_dir:$PATH"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
out="$scratch/examples"   # fresh example outputs
work="$scratch/work"      # where the commands run: paths in their output are short and relative
mkdir -p "$out" "$work/docs"
ln -s "$root/data" "$work/data"
cd "$work"

# Prints a command as a reader would type it, then runs it with stderr folded into stdout.
show() {
    printf '$ %s\n' "$*"
    "$@" 2>&1
}

# Same, for a command that must fail: prints its exit status; a success is itself an error.
show_failing() {
    printf '$ %s\n' "$*"
    if "$@" 2>&1; then
        echo "regenerate: '$*' was expected to fail and succeeded" >&2
        exit 1
    else
        echo "(exit status $?)"
    fi
}

json_field() { # FILE EXPR: prints a field of a bnconv JSON report (EXPR indexes `d`)
    python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

echo "regenerate: running the examples in $work (bnconv from $bin_dir)" >&2

# Where and when the examples ran: their timings mean nothing without it (not compared by --check).
{
    commit="$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)"
    if [[ -n "$(git -C "$root" status --porcelain --untracked-files=no -- . ':!docs' ':!*.md' 2>/dev/null)" ]]; then
        commit="$commit with uncommitted changes to the code"
    fi
    echo "date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "bnconv: built from commit $commit"
    echo "cpu: $(grep -m1 '^model name' /proc/cpuinfo 2>/dev/null | sed 's/.*: //' || echo unknown)," \
        "$(nproc) logical CPUs"
    echo "load average at the start: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)"
} > "$out/machine.txt"

# 1. The 800-batch comparison (README "What the output means", docs/curves.png).
echo "regenerate: the 800-batch comparison" >&2
show bnconv --threads 2 --plot docs/curves.png --json compare.json > "$out/compare.txt"
# The README quotes the banner, the first and last log lines of each variant and the summary.
awk '
    /^\$ / || /^bnconv:/ || /^== / { print; next }
    /^Batch: +(0|25|775):/ { print; next }
    /^Batch: +(300|700):/ { print "..."; print; next }
    /^Final|^Accuracy on/ { print; next }
    /^variant/ { print ""; table = 1 }
    table { print }
' "$out/compare.txt" > "$out/compare-excerpt.txt"

# 2. The per-phase profile (docs/profiling.md, docs/profile.png).
echo "regenerate: the profile" >&2
show bnconv profile --threads 1,2 --plot docs/profile.png > "$out/profile.txt"
# docs/profiling.md quotes the agreement line, one layer's rows, the per-phase totals and the sweep.
awk '
    /^\$ / || /^agreement/ || /^phase profile/ || /^layer / { print; next }
    /^conv02 / { layer = 1 }
    /^conv03 / { layer = 0; print "..." }
    layer { print; next }
    /^--------/ || /^all / || /^step,/ || /^profiler overhead/ { print; next }
    /^thread sweep/ { sweep = 1 }
    sweep { print }
' "$out/profile.txt" > "$out/profile-excerpt.txt"

# 3. Checkpoints: save, evaluate, resume (docs/checkpoints.md).
echo "regenerate: the checkpoint walkthrough" >&2
{
    show bnconv train --variant bn --batches 300 --threads 2 --quiet \
        --save bn300.safetensors --json bn300.json
    echo
    show bnconv eval --checkpoint bn300.safetensors --threads 2
    echo
    show bnconv train --variant bn --batches 150 --threads 2 --quiet --save bn150.safetensors
    echo
    show bnconv train --resume bn150.safetensors --batches 300 --threads 1 \
        --save resumed300.safetensors --json resumed300.json
    echo
    show grep -h parameters_sha256 bn300.json resumed300.json
} > "$out/checkpoints.txt"
a="$(json_field bn300.json 'd["runs"][0]["parameters_sha256"]')"
b="$(json_field resumed300.json 'd["runs"][0]["parameters_sha256"]')"
if [[ "$a" != "$b" ]]; then
    echo "regenerate: the resumed run's weights differ from the uninterrupted run's ($a vs $b)" >&2
    exit 1
fi

# 4. Bad input and divergence (docs/testing.md): a clear message and a non-zero exit.
echo "regenerate: error messages" >&2
{
    show_failing bnconv --batch-size 0
    show_failing bnconv train --lr nan
    show_failing bnconv eval --checkpoint missing.safetensors
    show_failing bnconv train --variant bn --batches 20 --lr 1e30 --threads 2 --quiet
} > "$out/errors.txt"

# 5. Per-image predictions and image files (docs/predictions.md, docs/confusion.png).
echo "regenerate: predictions, the confusion matrix and predict" >&2
bnconv train --variant bn --threads 2 --quiet --save bn.safetensors > /dev/null
{
    show bnconv eval --checkpoint bn.safetensors --threads 2 --predictions test.csv \
        --plot docs/confusion.png
    echo
    show head -3 test.csv
    echo
    recount='NR > 1 { n++; if ($2 == $3) ok++ } END { printf "%d of %d: %.5f\n", ok, n, ok / n }'
    printf "\$ awk -F, '%s' test.csv\n" "$recount"
    awk -F, "$recount" test.csv
} > "$out/eval-predictions.txt"
# Image files from test images: four as they are (28x28), one 4x larger and off-centre on a
# bigger canvas (fitted as MNIST was), one dark on light (needs --invert).
python3 - "$root/data/mnist/t10k-images-idx3-ubyte.gz" <<'PY'
import gzip, sys
data = gzip.open(sys.argv[1]).read()[16:]
image = lambda i: data[i * 784:(i + 1) * 784]
def pgm(name, width, height, pixels):
    open(name, "wb").write(b"P5\n%d %d\n255\n" % (width, height) + bytes(pixels))
for i in range(4):
    pgm(f"digit{i}.pgm", 28, 28, image(i))
big = bytearray(160 * 120)
for y in range(112):
    for x in range(112):
        big[(y + 4) * 160 + x + 40] = image(4)[(y // 4) * 28 + x // 4]
pgm("big4.pgm", 160, 120, big)
pgm("ink7.pgm", 28, 28, [255 - p for p in image(7)])
PY
{
    show_failing bnconv predict --checkpoint bn.safetensors --threads 2 \
        digit0.pgm digit1.pgm digit2.pgm digit3.pgm big4.pgm missing.png
    echo
    show bnconv predict --checkpoint bn.safetensors --threads 2 --invert ink7.pgm
} > "$out/predict.txt"

# 6. A seed sweep, 2 variants x 8 seeds as two one-thread jobs at a time (docs/sweeps.md).
echo "regenerate: the seed sweep (16 runs)" >&2
show bnconv sweep --variants plain,bn --seeds 1-8 --jobs 2 --threads-per-job 1 --quiet \
    --plot docs/sweep.png --json sweep.json > "$out/sweep.txt"

echo "load average at the end: $(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)" >> "$out/machine.txt"
mv docs/curves.png docs/profile.png docs/confusion.png docs/sweep.png "$scratch/"

# Rewrites every generated block of markdown file $1 with the files in directory $2.
splice() {
    awk -v dir="$2" '
        /^<!-- generated from docs\/examples\/[^ ]+ / {
            print
            name = $0
            sub(/^<!-- generated from docs\/examples\//, "", name)
            sub(/ .*$/, "", name)
            path = dir "/" name
            print "```text"
            n = 0
            while ((status = (getline line < path)) > 0) { print line; n++ }
            if (status < 0 || n == 0) { print "regenerate: no example " path > "/dev/stderr"; exit 1 }
            close(path)
            print "```"
            skip = 1
            next
        }
        /^<!-- end generated -->/ { skip = 0 }
        !skip { print }
    ' "$1"
}

markdown_files() {
    local f
    for f in "$root"/README.md "$root"/docs/*.md "$root"/docs/*/*.md; do
        if [[ -f "$f" ]]; then echo "${f#"$root"/}"; fi
    done
}

# Timing and memory figures vary from run to run: masked before outputs are compared. Everything else
# (log lines, accuracies, losses, digests, messages, the agreement check) must match exactly.
mask() {
    case "$1" in
        */machine.txt) ;;
        # The profile is timing through and through: only its agreement line is compared.
        *profile*) grep -E '^agreement' "$1" || true ;;
        *)
            sed -E \
                -e 's/SIMD [a-z0-9]+/SIMD <isa>/g' \
                -e 's#(img/s|GFLOP/s per thread|GFLOP/s per core): [0-9.]+#\1: <t>#g' \
                -e 's#[0-9]+(\.[0-9]+)? ?(img/s|images/s|ms|s|GFLOP/s|%|KiB|MiB|GiB)([^A-Za-z/]|$)#<t> \2\3#g' \
                -e 's#over [0-9.]+ GFLOP/s#over <t> GFLOP/s#g' \
                -e 's#(peak memory \(resident set\)): [0-9.]+ MiB#\1: <t> MiB#g' \
                -e 's#[0-9.]+ runs at once#<t> runs at once#g' \
                -e 's#on [0-9]+ core\(s\)#on <n> core(s)#g' \
                "$1" |
                awk '$1 ~ /^(plain|bn|bn-lowlevel)$/ && NF >= 11 { for (i = 5; i < NF; i++) $i = "<t>" } { print }'
            ;;
    esac
}

if [[ "$mode" == write ]]; then
    mkdir -p "$root/docs/examples"
    rm -f "$root"/docs/examples/*.txt
    cp "$out"/*.txt "$root/docs/examples/"
    cp "$scratch"/{curves,profile,confusion,sweep}.png "$root/docs/"
    for f in $(markdown_files); do
        splice "$root/$f" "$root/docs/examples" > "$scratch/spliced.md"
        cat "$scratch/spliced.md" > "$root/$f"
    done
    echo "regenerate: wrote docs/examples/*.txt, docs/{curves,profile,confusion,sweep}.png and the generated blocks" >&2
    c="$work/compare.json"
    for v in 0 1; do
        json_field "$c" "'{:<6} train img/s {:.0f}, ms/step {:.2f}, wall s {:.2f}, eval img/s {:.0f}, val {:.4f}, test {:.4f} ({} threads)'.format(d['runs'][$v]['variant'], d['runs'][$v]['timing']['train_images_per_second'], d['runs'][$v]['timing']['ms_per_step'], d['runs'][$v]['timing']['wall_seconds'], d['runs'][$v]['timing']['eval_images_per_second'], d['runs'][$v]['final_validation']['accuracy'], d['runs'][$v]['test']['accuracy'], d['runs'][$v]['timing']['threads'])"
    done
    cat "$out/machine.txt"
    echo "(figures of this one run; the README's results table is measured on a quiet machine, alternated with TensorFlow)"
    exit 0
fi

# --check
drift=0
for f in "$out"/*.txt; do
    name="$(basename "$f")"
    committed="$root/docs/examples/$name"
    if [[ ! -f "$committed" ]]; then
        echo "drift: docs/examples/$name is not committed"; drift=1; continue
    fi
    if ! diff -u --label "committed docs/examples/$name" --label "current build" \
        <(mask "$committed") <(mask "$f"); then
        drift=1
    fi
done
for committed in "$root"/docs/examples/*.txt; do
    [[ -f "$out/$(basename "$committed")" ]] || { echo "drift: ${committed#"$root"/} is no longer generated"; drift=1; }
done
for f in $(markdown_files); do
    if ! diff -u --label "committed $f" --label "$f with docs/examples spliced in" \
        "$root/$f" <(splice "$root/$f" "$root/docs/examples"); then
        drift=1
    fi
done
for image in curves confusion sweep; do
    if ! cmp -s "$root/docs/$image.png" "$scratch/$image.png"; then
        echo "drift: docs/$image.png differs from the current build's (it plots deterministic results)"
        drift=1
    fi
done
# docs/profile.png plots timings: it is regenerated by the write mode but cannot be compared.
if [[ "$drift" != 0 ]]; then
    echo "regenerate --check: the docs differ from the current build; run docs/regenerate.sh and commit" >&2
    exit 1
fi
echo "regenerate --check: every example and docs/{curves,confusion,sweep}.png match the current build (timings masked)" >&2
