#!/usr/bin/env bash
# The one test command (README): installs what the tests need into .build/ (ignored),
# then runs every test — Rust unit + black-box tests under io_uring and under the legacy
# epoll driver, then the suites registered below — checks that the run left the working
# tree as it found it, and ends with the tests and suites that did not run, and why. Each
# step's header carries the wall-clock time and the time since the start; the end (or a
# failure) prints how long each step took and the total.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TERM_COLOR=never
# Python writes no __pycache__ next to the suites' scripts (interop/py imports lib.py).
export PYTHONDONTWRITEBYTECODE=1

run_started=$SECONDS
step_started=$SECONDS
step_name=""
step_times=()
duration() { printf '%dm%02ds' $(($1 / 60)) $(($1 % 60)); }
# Closes the running step: its duration joins the list printed at the end.
finish_step() {
  if [ -n "$step_name" ]; then
    step_times+=("$(duration $((SECONDS - step_started)))  $step_name")
  fi
  step_name=""
}
step() {
  finish_step
  step_name="$*"
  step_started=$SECONDS
  printf '\n== [%s, +%s] %s\n' "$(date '+%H:%M:%S')" "$(duration $((SECONDS - run_started)))" "$*"
}
print_times() {
  finish_step
  printf '\n== step times\n'
  printf '%s\n' "${step_times[@]}"
  printf 'total: %s\n' "$(duration $((SECONDS - run_started)))"
}
on_exit() {
  local status=$?
  if [ "$status" -ne 0 ]; then
    local failed="$step_name"
    print_times
    printf '\n== FAILED (exit %s) in step: %s\n' "$status" "$failed"
  fi
}
trap on_exit EXIT

# A test run must leave `git status` as it found it (no stale lock file rewritten, no
# cache or report written into the tree): what it shows now is compared at the end.
in_checkout=false
if git rev-parse --is-inside-work-tree > /dev/null 2>&1; then
  in_checkout=true
  status_before=$(git status --porcelain=v1 --untracked-files=all)
fi

# A test or suite that cannot run (a tool missing) passes, as cargo has no skipped state,
# but appends `SKIPPED <test>: <reason>` to this file (tests/common/skip.rs for Rust tests,
# scripts/skip.sh for suites); the summary at the end lists every line. Absolute: the
# loadtest crate's tests run in loadtest/.
source scripts/skip.sh
mkdir -p .build
export RINGCAST_SKIP_LOG="$PWD/.build/skipped.log"
: > "$RINGCAST_SKIP_LOG"

step "system packages (chromium, tesseract-ocr, a C compiler for aws-lc-sys)"
bash scripts/install-system.sh

step "nats-server for the cluster and loadtest NATS tests (scripts/install-nats.sh)"
RINGCAST_NATS_SERVER=$(bash scripts/install-nats.sh | tail -n 1)
export RINGCAST_NATS_SERVER

# Test builds enable the test-only `fault-injection` feature (tests/worker_panic.rs); a
# release build never has it. Every cargo step below uses the same features, so nothing is
# rebuilt between them.
FEATURES=(--features ringcast/fault-injection)

step "cargo build (debug, all targets)"
cargo build --workspace --all-targets --locked "${FEATURES[@]}"

step "cargo test (io_uring driver, falling back to legacy where io_uring is unavailable)"
cargo test --workspace --locked "${FEATURES[@]}"

step "cargo test (legacy epoll driver forced)"
RINGCAST_TEST_IO_DRIVER=legacy cargo test --locked --tests "${FEATURES[@]}"

# Further suites (official SDK interop, examples) register themselves here: each is an
# executable script under scripts/suites/ that exits non-zero on failure.
if [ -d scripts/suites ]; then
  for suite in scripts/suites/*.sh; do
    [ -e "$suite" ] || continue
    step "suite $(basename "$suite")"
    bash "$suite"
  done
fi

step "the working tree is as the run found it (git status)"
if [ "$in_checkout" = true ]; then
  status_after=$(git status --porcelain=v1 --untracked-files=all)
  changed=$(LC_ALL=C comm -13 <(printf '%s\n' "$status_before" | LC_ALL=C sort) <(printf '%s\n' "$status_after" | LC_ALL=C sort) | sed '/^$/d')
  if [ -n "$changed" ]; then
    echo "the test run changed these paths in the working tree (git status --porcelain):"
    printf '%s\n' "$changed"
    echo "a test or suite must write only under ignored directories (.build/, target/, a temp dir)"
    exit 1
  fi
  echo "clean: the run changed nothing git tracks or would add"
else
  skip "scripts/test.sh: working tree check" "not a git checkout"
fi

print_times
step "skipped tests and suites"
skip_summary "$RINGCAST_SKIP_LOG"
