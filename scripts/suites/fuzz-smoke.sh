#!/usr/bin/env bash
# Fuzzing smoke run (issue 5, item 3), registered with scripts/test.sh: builds the cargo-fuzz
# targets in fuzz/ (libFuzzer; nightly features enabled on the stable toolchain with
# RUSTC_BOOTSTRAP=1) and runs each one briefly from its committed seeds (fuzz/seeds/<target>),
# failing on any crash, panic, failed check, timeout or out-of-memory.
#   FUZZ_SECONDS=N   seconds per target (default 20; 7 targets)
#   FUZZ_TARGETS="a b"  only these targets
# cargo-fuzz is installed into .build/cargo-bin (crates.io). Skips only when cargo-fuzz
# cannot be installed (no network and no copy): it then reports `SKIPPED fuzz-smoke.sh: …`
# (scripts/skip.sh, summarised at the end of scripts/test.sh) and prints "0 passed, 0 failed".
# Long runs: see fuzz/README.md. Ends with "N passed, N failed"; exits non-zero on failure.
set -uo pipefail
cd "$(dirname "$0")/../.."
repository="$PWD"
source scripts/skip.sh
seconds="${FUZZ_SECONDS:-20}"
cargo_fuzz="$repository/.build/cargo-bin/bin/cargo-fuzz"
cargo_fuzz_version=0.13.2

if ! "$cargo_fuzz" --version 2>/dev/null | grep -q "$cargo_fuzz_version"; then
  echo "installing cargo-fuzz $cargo_fuzz_version into .build/cargo-bin"
  if ! CARGO_TARGET_DIR="$repository/.build/cargo-install-target" cargo install --quiet --locked \
    --version "$cargo_fuzz_version" --root .build/cargo-bin cargo-fuzz; then
    skip fuzz-smoke.sh "cargo-fuzz $cargo_fuzz_version could not be installed (crates.io unreachable?)"
    echo "0 passed, 0 failed"
    exit 0
  fi
fi

# Sanitizer `none`: ringcast's parsers are safe Rust, so AddressSanitizer would only slow the
# run; panics, failed assertions, overflow checks (debug assertions are on), timeouts and
# allocations past -rss_limit_mb/-malloc_limit_mb are what a smoke run catches.
fuzz() { (cd fuzz && RUSTC_BOOTSTRAP=1 "$cargo_fuzz" "$@"); }

work="$(mktemp -d "${TMPDIR:-/tmp}/ringcast-fuzz.XXXXXX")"
trap 'rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# cargo fuzz has no --locked: a stale fuzz/Cargo.lock would be re-resolved by the build and
# left modified in the tree. Check it first (cargo fetch --locked fails instead of
# rewriting), so that a stale lock fails here, with what to do.
host="$(rustc -vV | sed -n 's/^host: //p')"
if ! cargo fetch --locked --quiet --target "$host" --manifest-path fuzz/Cargo.toml \
  > "$work/fetch.log" 2>&1; then
  tail -n 20 "$work/fetch.log"
  echo "FAIL - fuzz/Cargo.lock does not match fuzz/Cargo.toml and ../Cargo.lock: update it" \
    "(cargo update --manifest-path fuzz/Cargo.toml --workspace) and commit it"
  echo "0 passed, 1 failed"
  exit 1
fi

echo "building fuzz targets"
build_started=$SECONDS
if ! fuzz build --sanitizer none > "$work/build.log" 2>&1; then
  tail -n 30 "$work/build.log"
  echo "FAIL - cargo fuzz build"
  echo "0 passed, 1 failed"
  exit 1
fi
echo "built in $((SECONDS - build_started)) s"
targets="${FUZZ_TARGETS:-$(fuzz list)}"

passed=0
failed=0
for target in $targets; do
  mkdir -p "$work/$target"
  # 1. Deterministic, decides pass/fail: every committed seed (regressions included) must
  #    run clean (-runs=0 replays the inputs and explores nothing).
  if ! fuzz run --sanitizer none "$target" "seeds/$target" -- -runs=0 -timeout=10 \
    -rss_limit_mb=2048 -malloc_limit_mb=512 > "$work/$target.seeds.log" 2>&1; then
    echo "FAIL - $target (a committed seed fails)"
    grep -v '^#\|^INFO\|^stat::' "$work/$target.seeds.log" | tail -n 40 | sed 's/^/       | /'
    failed=$((failed + 1))
    continue
  fi
  # 2. Time-boxed exploration from the seeds into a scratch corpus. A new finding is a
  #    real lead, so it is printed loudly and kept in fuzz/artifacts/<target>/ (add it to
  #    fuzz/seeds/<target>/ with the fix); it does not fail CI, because random exploration
  #    must not make a submission land or not by chance.
  if fuzz run --sanitizer none "$target" "$work/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=512 \
    -print_final_stats=1 > "$work/$target.log" 2>&1; then
    executions="$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$work/$target.log" | grep -o '[0-9]*$')"
    echo "ok   - $target (seeds clean; ${executions:-?} executions in ${seconds} s)"
  else
    echo "ok   - $target (seeds clean) — NEW FINDING in exploration, see below and fuzz/artifacts/$target/"
    grep -v '^#\|^INFO\|^stat::' "$work/$target.log" | tail -n 40 | sed 's/^/       | /'
  fi
  passed=$((passed + 1))
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
