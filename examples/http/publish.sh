#!/usr/bin/env bash
# HTTP publisher with curl: mints an admin token with `ringcast token` and POSTs one message
# to the broker's HTTP API (POST /api/topics/{appId}/publish).
#
#   examples/http/publish.sh DIR [TOPIC] [MESSAGE]
#
# DIR is a `ringcast init` output directory (default: $RINGCAST_DIR, else .). The broker
# address is $RINGCAST_ADDRESS, else the config's server.listen. The ringcast binary is
# $RINGCAST_BIN, else `ringcast` on PATH, else this checkout's target/{release,debug}.
set -euo pipefail
directory="${1:-${RINGCAST_DIR:-.}}"
topic="${2:-chat}"
message="${3:-hello from curl at $(date +%T)}"
config="$directory/ringcast.json"

repository="$(cd "$(dirname "$0")/../.." && pwd)"
ringcast="${RINGCAST_BIN:-}"
if [ -z "$ringcast" ]; then
  for candidate in "$(command -v ringcast || true)" "$repository/target/release/ringcast" "$repository/target/debug/ringcast"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then ringcast="$candidate"; break; fi
  done
fi
[ -n "$ringcast" ] || { echo "no ringcast binary: \`cargo install --path .\` (or cargo build), or set RINGCAST_BIN" >&2; exit 2; }
[ -f "$config" ] || { echo "no $config: run \`$ringcast init --dir $directory\` first" >&2; exit 2; }

# The starter config has one app; its id and listen address are plain JSON strings.
app_id="$(grep -o '"appId": *"[^"]*"' "$config" | head -n 1 | sed 's/.*"\([^"]*\)"$/\1/')"
listen="$(grep -o '"listen": *"[^"]*"' "$config" | head -n 1 | sed 's/.*"\([^"]*\)"$/\1/')"
address="${RINGCAST_ADDRESS:-${listen:-127.0.0.1:8080}}"

# HS* apps sign with the secret in the config; the others with the admin private key.
key_args=()
[ -f "$directory/admin-private.pem" ] && key_args=(--key "$directory/admin-private.pem")
token="$("$ringcast" token --config "$config" --app "$app_id" --admin "${key_args[@]}" \
  --sub curl-publisher --permission 'realtime:publisher:write:topic:*' --ttl 5m)"

# jq-free JSON: the message is passed as a JSON string with " and \ escaped.
escaped="$(printf '%s' "$message" | sed 's/\\/\\\\/g; s/"/\\"/g')"
body="{\"topic\": \"$topic\", \"messageType\": \"text-message\", \"message\": \"$escaped\"}"
curl --silent --show-error --fail-with-body --max-time 10 \
  -X POST "http://$address/api/topics/$app_id/publish" \
  -H "Authorization: Bearer $token" -H 'Content-Type: application/json' \
  --data "$body"
echo
