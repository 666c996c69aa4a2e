#!/usr/bin/env bash
# Two ringcast nodes on a secured NATS (README "Cluster on a secured NATS"): generates a
# private CA with openssl (a server certificate for 127.0.0.1, a client certificate for the
# nodes), starts nats-server (nats.conf: TLS with client certificates verified, a user
# limited to `ringcast.>`), checks and starts node-a and node-b (node-*.json: `auth` +
# `tls`), subscribes on node B, publishes through node A's HTTP API and shows the message
# arriving across the bus.
#
#   examples/secured-cluster/run.sh [WORK_DIR]
#
# WORK_DIR (default: a new temp directory, removed at the end) receives certs/, the
# configs and the logs. Ports: NATS_PORT (14222), NODE_A_PORT (18080), NODE_B_PORT (18081).
# Binaries: RINGCAST_BIN, else `ringcast` on PATH, else this checkout's
# target/{release,debug}; RINGCAST_NATS_SERVER, else `nats-server` on PATH, else
# .build/nats/bin/nats-server (scripts/install-nats.sh). Exits 3 when openssl or
# nats-server is missing, 1 when the message does not arrive.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repository="$(cd "$here/../.." && pwd)"
nats_port="${NATS_PORT:-14222}"
a_port="${NODE_A_PORT:-18080}"
b_port="${NODE_B_PORT:-18081}"

first_executable() {
  local candidate
  for candidate in "$@"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then echo "$candidate"; return 0; fi
  done
  return 1
}
ringcast="$(first_executable "${RINGCAST_BIN:-}" "$(command -v ringcast || true)" \
  "$repository/target/release/ringcast" "$repository/target/debug/ringcast")" \
  || { echo "no ringcast binary: cargo build, or set RINGCAST_BIN" >&2; exit 2; }
nats_server="$(first_executable "${RINGCAST_NATS_SERVER:-}" "$(command -v nats-server || true)" \
  "$repository/.build/nats/bin/nats-server")" \
  || { echo "no nats-server: run scripts/install-nats.sh, or set RINGCAST_NATS_SERVER" >&2; exit 3; }
command -v openssl > /dev/null || { echo "openssl is needed to generate the example CA" >&2; exit 3; }

if [ -n "${1:-}" ]; then
  work="$1"; mkdir -p "$work"; keep=true
else
  work="$(mktemp -d "${TMPDIR:-/tmp}/ringcast-secured-cluster.XXXXXX")"; keep=false
fi
background=()
cleanup() {
  local pid
  for pid in "${background[@]}"; do kill "$pid" 2> /dev/null || true; done
  for pid in "${background[@]}"; do wait "$pid" 2> /dev/null || true; done
  [ "$keep" = true ] || rm -rf "$work"
}
trap cleanup EXIT
cd "$work"

echo "== a private CA, a server certificate for 127.0.0.1, a client certificate for the nodes"
mkdir -p certs
ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
openssl req -x509 "${ec[@]}" -keyout certs/ca-key.pem -out certs/ca.pem -days 30 \
  -subj "/CN=ringcast example CA" 2> /dev/null
leaf() { # NAME SUBJECT EXTENSIONS
  openssl req "${ec[@]}" -keyout "certs/$1-key.pem" -out "certs/$1.csr" -subj "/CN=$2" 2> /dev/null
  printf '%s\n' "$3" > "certs/$1.ext"
  openssl x509 -req -in "certs/$1.csr" -CA certs/ca.pem -CAkey certs/ca-key.pem \
    -CAcreateserial -days 30 -out "certs/$1-cert.pem" -extfile "certs/$1.ext" 2> /dev/null
}
leaf nats nats "subjectAltName=IP:127.0.0.1,DNS:localhost
extendedKeyUsage=serverAuth"
leaf node ringcast-node "extendedKeyUsage=clientAuth"
chmod 600 certs/*-key.pem

# The committed configs, with the ports of this run.
cp "$here/nats.conf" nats.conf
for node in a b; do
  sed -e "s/127.0.0.1:14222/127.0.0.1:$nats_port/" \
      -e "s/127.0.0.1:18080/127.0.0.1:$a_port/" -e "s/127.0.0.1:18081/127.0.0.1:$b_port/" \
      "$here/node-$node.json" > "node-$node.json"
done

echo "== check-config reads the credentials and certificates without connecting"
"$ringcast" check-config node-a.json
"$ringcast" check-config node-b.json

wait_for() { # SECONDS DESCRIPTION COMMAND...
  local deadline=$((SECONDS + $1)) what="$2"
  shift 2
  until "$@" > /dev/null 2>&1; do
    if [ "$SECONDS" -ge "$deadline" ]; then echo "gave up waiting until $what" >&2; return 1; fi
    sleep 0.2
  done
}

echo "== nats-server on 127.0.0.1:$nats_port (TLS + user/password)"
"$nats_server" -c nats.conf -p "$nats_port" > nats.log 2>&1 &
background+=("$!")
wait_for 20 "nats-server listens" grep -q "Listening for client connections" nats.log

for node in a b; do
  "$ringcast" --config "node-$node.json" > "node-$node.log" 2>&1 &
  background+=("$!")
done
connected() { curl --silent --max-time 1 "http://127.0.0.1:$1/metrics" | grep -q '^ringcast_bus_connected 1'; }
wait_for 30 "node-a's bus is connected" connected "$a_port" || { tail -n 20 node-a.log; exit 1; }
wait_for 30 "node-b's bus is connected" connected "$b_port" || { tail -n 20 node-b.log; exit 1; }
echo "== both nodes connected to NATS: ringcast_bus_connected 1"

app=secured-demo
client_token="$("$ringcast" token --config node-b.json --app "$app" --sub example-subscriber \
  --permission 'realtime:subscriber:read:topic:*' --ttl 10m)"
admin_token="$("$ringcast" token --config node-a.json --app "$app" --admin --sub example-publisher \
  --permission 'realtime:publisher:write:topic:*' --ttl 10m)"
"$ringcast" subscribe --url "ws://127.0.0.1:$b_port" --app "$app" --token "$client_token" \
  news > subscriber.out 2> subscriber.err &
background+=("$!")
wait_for 20 "the subscriber on node-b is subscribed" grep -q "subscribed to" subscriber.err

publish() { # MESSAGE_TYPE MESSAGE
  "$ringcast" publish --http --url "http://127.0.0.1:$a_port" --app "$app" \
    --token "$admin_token" --type "$1" news "$2" > /dev/null
}
# Node B's interest reaches node A once NATS has carried it: probe until one arrives.
probe() { publish probe probe; sleep 0.2; grep -q '"probe"' subscriber.out; }
wait_for 30 "a probe crosses from node-a to node-b" probe || { tail -n 20 node-a.log node-b.log; exit 1; }

message="hello across the secured bus $(date +%T)"
publish text-message "$message"
if wait_for 20 "the message arrives on node-b" grep -q "$message" subscriber.out; then
  echo "== published on node-a (HTTP), received on node-b (WebSocket):"
  grep "$message" subscriber.out
else
  echo "the message did not arrive" >&2
  tail -n 20 node-a.log node-b.log >&2
  exit 1
fi
