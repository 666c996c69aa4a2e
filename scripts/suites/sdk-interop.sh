#!/usr/bin/env bash
# Official SDK interop suite (issue 3): the public Realtime Pub/Sub SDKs, installed from the
# registries and used UNMODIFIED, against a freshly started ringcast (2 workers, 7 apps).
#   JS:     npm realtime-pubsub-client@1.0.0 on Node 20 (--experimental-websocket), npm jsonwebtoken
#   Python: PyPI realtime-pubsub-client==1.0.0, websockets 13.x, PyJWT + cryptography
# Scenarios live in interop/ (see interop/README.md). Run from anywhere; registered in
# scripts/test.sh, which runs it after the Rust tests. Prints a scenario × SDK table and ends
# with the line `N passed, N failed`; exits non-zero on any failure.
# RINGCAST_TEST_IO_DRIVER=legacy|uring runs the broker with that io driver (default: auto).
# RINGCAST_INTEROP_KEEP=1 keeps the temporary directory (keys, config, logs) for debugging.
set -euo pipefail
cd "$(dirname "$0")/../.."
started_at=$SECONDS

bash scripts/install-sdks.sh

bin=target/debug/ringcast
if [ ! -x "$bin" ]; then
  cargo build --bin ringcast
fi

py=.build/venv/bin/python
node_flags=()
# Node 20 needs the flag for the standard WebSocket (Blob binary frames); newer Nodes have it.
if ! node -e 'process.exit(typeof WebSocket === "undefined" ? 1 : 0)' 2>/dev/null; then
  node_flags=(--experimental-websocket)
fi

io_args=()
if [ -n "${RINGCAST_TEST_IO_DRIVER:-}" ]; then
  io_args=(--io-driver "$RINGCAST_TEST_IO_DRIVER")
fi

work=$(mktemp -d "${TMPDIR:-/tmp}/ringcast-interop.XXXXXX")
broker_pid=""
cleanup() {
  if [ -n "$broker_pid" ] && kill -0 "$broker_pid" 2>/dev/null; then
    kill "$broker_pid" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$broker_pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$broker_pid" 2>/dev/null || true
  fi
  if [ "${RINGCAST_INTEROP_KEEP:-0}" = 1 ]; then
    echo "interop work directory kept: $work" >&2
  else
    rm -rf "$work"
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

bash interop/make-config.sh "$work"
"$bin" check-config "$work/config.json" >/dev/null

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

health() { # GET /health answers 200 {"status":"ok"}
  python3 - "$1" <<'PY' 2>/dev/null
import sys, urllib.request
with urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/health", timeout=1) as response:
    sys.exit(0 if response.status == 200 and b'"ok"' in response.read() else 1)
PY
}

# Start the broker on a free port (a port taken between probe and bind: try again, 3 times).
up=0
for _attempt in 1 2 3; do
  port=$(free_port)
  "$bin" --config "$work/config.json" --listen "127.0.0.1:$port" --workers 2 "${io_args[@]}" >"$work/broker.log" 2>&1 &
  broker_pid=$!
  for _ in $(seq 100); do # 10 s
    if health "$port"; then
      up=1
      break
    fi
    kill -0 "$broker_pid" 2>/dev/null || break
    sleep 0.1
  done
  [ "$up" = 1 ] && break
  kill "$broker_pid" 2>/dev/null || true
  wait "$broker_pid" 2>/dev/null || true
  broker_pid=""
done
if [ "$up" != 1 ]; then
  echo "ringcast did not answer GET /health within 10 s; its log:" >&2
  cat "$work/broker.log" >&2 || true
  exit 1
fi
echo "ringcast up on 127.0.0.1:$port (2 workers, $(grep -c '"appId"' "$work/config.json") apps, $(sed 's/\x1b\[[0-9;]*m//g' "$work/broker.log" | grep -o 'io_driver=[^ ]*' | tail -n 1))"

export RINGCAST_ADDR="127.0.0.1:$port" INTEROP_DIR="$work"

run() { # results-file log-file seconds command...
  local results=$1 log=$2 limit=$3 rc=0
  shift 3
  timeout -k 5 "$limit" "$@" >>"$results" 2>>"$log" || rc=$?
  echo "EXIT|$(basename "${@: -1}")|$rc" >>"$results"
}

echo "JS scenarios (Node $(node --version) ${node_flags[*]})"
run "$work/js.results" "$work/js.log" 60 node "${node_flags[@]}" interop/js/scenarios.js
echo "Python scenarios ($("$py" --version))"
run "$work/py.results" "$work/py.log" 60 "$py" interop/py/scenarios.py

echo "cross-SDK scenario (both SDKs at once)"
run "$work/js.results" "$work/js-cross.log" 40 node "${node_flags[@]}" interop/js/cross.js &
js_cross=$!
run "$work/py.results" "$work/py-cross.log" 40 "$py" interop/py/cross.py &
py_cross=$!
wait "$js_cross" "$py_cross" || true

broker_alive=1
kill -0 "$broker_pid" 2>/dev/null || broker_alive=0

report_rc=0
python3 interop/report.py "$work/js.results" "$work/py.results" >"$work/report.txt" || report_rc=$?

if [ "$report_rc" != 0 ] || [ "$broker_alive" != 1 ]; then
  for log in js.log py.log js-cross.log py-cross.log; do
    if [ -s "$work/$log" ]; then
      echo "---- $log (last 40 lines)"
      tail -n 40 "$work/$log"
    fi
  done
  echo "---- broker.log (last 40 lines)"
  tail -n 40 "$work/broker.log" || true
fi
if [ "$broker_alive" != 1 ]; then
  echo "ringcast exited during the suite (crash?) — see broker.log above"
  report_rc=1
fi

echo
echo "SDK interop: JS = npm realtime-pubsub-client@1.0.0, Python = PyPI realtime-pubsub-client==1.0.0" \
  "($((SECONDS - started_at)) s)"
cat "$work/report.txt"
exit "$report_rc"
