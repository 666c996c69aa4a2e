#!/usr/bin/env bash
# Prints the address that opens examples/browser/index.html connected to the broker, with a
# subscribe-only client token (1 hour) in the URL fragment.
#
#   examples/browser/open.sh DIR [TOPIC]
#
# DIR is a `ringcast init` output directory (default: $RINGCAST_DIR, else .). Same binary and
# address lookup as examples/http/publish.sh ($RINGCAST_BIN, $RINGCAST_ADDRESS).
set -euo pipefail
directory="${1:-${RINGCAST_DIR:-.}}"
topic="${2:-chat}"
config="$directory/ringcast.json"
here="$(cd "$(dirname "$0")" && pwd)"
repository="$(cd "$here/../.." && pwd)"
ringcast="${RINGCAST_BIN:-}"
if [ -z "$ringcast" ]; then
  for candidate in "$(command -v ringcast || true)" "$repository/target/release/ringcast" "$repository/target/debug/ringcast"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then ringcast="$candidate"; break; fi
  done
fi
[ -n "$ringcast" ] || { echo "no ringcast binary: \`cargo install --path .\` (or cargo build), or set RINGCAST_BIN" >&2; exit 2; }
[ -f "$config" ] || { echo "no $config: run \`$ringcast init --dir $directory\` first" >&2; exit 2; }
app_id="$(grep -o '"appId": *"[^"]*"' "$config" | head -n 1 | sed 's/.*"\([^"]*\)"$/\1/')"
listen="$(grep -o '"listen": *"[^"]*"' "$config" | head -n 1 | sed 's/.*"\([^"]*\)"$/\1/')"
address="${RINGCAST_ADDRESS:-${listen:-127.0.0.1:8080}}"
key_args=()
[ -f "$directory/auth-private.pem" ] && key_args=(--key "$directory/auth-private.pem")
token="$("$ringcast" token --config "$config" --app "$app_id" "${key_args[@]}" \
  --sub browser --permission "realtime:subscriber:read:topic:$topic" --ttl 1h)"
echo "file://$here/index.html#url=ws://$address/apps/$app_id&token=$token&topic=$topic"
