#!/usr/bin/env bash
# Examples suite (registered with scripts/test.sh): runs every example in examples/ end to
# end against a broker started from a fresh `ringcast init`, with hard timeouts.
#   - init output passes check-config;
#   - the JS subscriber receives what the JS publisher, curl and Python (urllib) publish;
#   - the RPC requester (JS SDK) gets the replies of the replier (Python SDK);
#   - the secured 2-node cluster delivers across nodes (nats-server and openssl needed,
#     otherwise reported skipped);
#   - the browser page shows a published message, in headless Chromium when
#     /usr/bin/chromium exists (otherwise reported skipped: scripts/skip.sh), watched over
#     DevTools.
# Ends with "N passed, N failed"; exits non-zero when anything failed.
set -uo pipefail
cd "$(dirname "$0")/../.."
repository="$PWD"
source scripts/skip.sh

bash scripts/install-sdks.sh
binary="$repository/target/debug/ringcast"
[ -x "$binary" ] || cargo build --locked --bin ringcast

work="$(mktemp -d "${TMPDIR:-/tmp}/ringcast-examples.XXXXXX")"
background=()
cleanup() {
  local pid
  for pid in "${background[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${background[@]}"; do wait "$pid" 2>/dev/null; done
  # Chromium's helper processes may still be leaving its profile: retry once, quietly.
  rm -rf "$work" 2> /dev/null || { sleep 1; rm -rf "$work" 2> /dev/null; }
}
trap cleanup EXIT
trap 'exit 130' INT TERM

passed=0
failed=0
pass() { passed=$((passed + 1)); echo "ok   - $1"; }
fail() {
  failed=$((failed + 1)); echo "FAIL - $1"
  shift
  local file
  for file in "$@"; do [ -f "$file" ] && sed 's/^/       | /' "$file" | tail -n 20; done
}

# Waits up to $3 seconds for a line matching $2 in file $1.
wait_for_line() {
  local deadline=$((SECONDS + $3))
  until grep -q -- "$2" "$1" 2>/dev/null; do
    [ "$SECONDS" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

node_run() { timeout "$1" node --experimental-websocket "${@:2}"; }
python_run() { timeout "$1" "$repository/.build/venv/bin/python" "${@:2}"; }

demo="$work/demo"
if "$binary" init --dir "$demo" > "$work/init.log" 2>&1 \
  && "$binary" check-config "$demo/ringcast.json" > "$work/check.log" 2>&1; then
  pass "ringcast init output passes check-config"
else
  fail "ringcast init output passes check-config" "$work/init.log" "$work/check.log"
  echo "$passed passed, $failed failed"
  exit 1
fi

port="$(free_port)"
export RINGCAST_ADDRESS="127.0.0.1:$port" RINGCAST_BIN="$binary" RINGCAST_DIR="$demo"
"$binary" --config "$demo/ringcast.json" --listen "$RINGCAST_ADDRESS" --workers 2 \
  > "$work/broker.log" 2>&1 &
background+=("$!")
deadline=$((SECONDS + 30))
until curl --silent --max-time 1 "http://$RINGCAST_ADDRESS/health" > /dev/null; do
  if [ "$SECONDS" -ge "$deadline" ]; then
    fail "broker starts from the init config" "$work/broker.log"
    echo "$passed passed, $failed failed"
    exit 1
  fi
  sleep 0.2
done

# Starts the JS subscriber on topic $1 for $2 messages; its pid is in $subscriber.
start_subscriber() {
  node_run 40 examples/js/subscriber.js "$demo" "$1" "$2" \
    > "$work/subscriber-$1.out" 2> "$work/subscriber-$1.err" &
  subscriber=$!
  background+=("$subscriber")
  wait_for_line "$work/subscriber-$1.err" "subscribed to" 20
}

# $1 name, $2 topic, $3… the publishing command (its messages are "<topic>-1", "<topic>-2").
subscriber_receives() {
  local name="$1" topic="$2"
  shift 2
  if ! start_subscriber "$topic" 2; then
    fail "$name: subscriber ready" "$work/subscriber-$topic.err"
    return
  fi
  if ! "$@" > "$work/publisher-$topic.out" 2>&1; then
    fail "$name: publisher exits 0" "$work/publisher-$topic.out"
    return
  fi
  if wait "$subscriber" \
    && grep -q "\"payload\":\"$topic-1\"" "$work/subscriber-$topic.out" \
    && grep -q "\"payload\":\"$topic-2\"" "$work/subscriber-$topic.out"; then
    pass "$name"
  else
    fail "$name" "$work/subscriber-$topic.out" "$work/subscriber-$topic.err" "$work/publisher-$topic.out"
  fi
}

publish_twice_with_curl() {
  timeout 20 examples/http/publish.sh "$demo" "$1" "$1-1" && timeout 20 examples/http/publish.sh "$demo" "$1" "$1-2"
}
publish_twice_with_python() {
  python_run 20 examples/python/http_publish.py "$demo" "$1" "$1-1" \
    && python_run 20 examples/python/http_publish.py "$demo" "$1" "$1-2"
}

subscriber_receives "JS subscriber receives the JS publisher's messages" js-topic \
  node_run 20 examples/js/publisher.js "$demo" js-topic js-topic-1 js-topic-2
subscriber_receives "JS subscriber receives curl's HTTP publications" curl-topic \
  publish_twice_with_curl curl-topic
subscriber_receives "JS subscriber receives Python's HTTP publications" python-topic \
  publish_twice_with_python python-topic

# RPC: the Python replier answers two requests of the JS requester.
python_run 40 examples/rpc/replier.py "$demo" 2 > "$work/replier.out" 2> "$work/replier.err" &
replier=$!
background+=("$replier")
if ! wait_for_line "$work/replier.err" "replier ready" 20; then
  fail "RPC replier ready" "$work/replier.err"
elif node_run 20 examples/rpc/requester.js "$demo" 2 > "$work/requester.out" 2>&1 \
  && grep -q '^reply 2: .*"status":"ok"' "$work/requester.out" \
  && grep -q '"time"' "$work/requester.out" \
  && wait "$replier"; then
  pass "RPC requester (JS) gets the replies of the replier (Python)"
else
  fail "RPC requester (JS) gets the replies of the replier (Python)" \
    "$work/requester.out" "$work/replier.out" "$work/replier.err"
fi

# Browser page: headless Chromium while curl keeps publishing a marker. `--dump-dom` with a
# virtual time budget returns before a WebSocket message can arrive (virtual time does not
# wait for sockets), so a small DevTools-protocol client watches the live DOM instead.
chromium=/usr/bin/chromium
if [ -x "$chromium" ]; then
  marker="browser-marker-$RANDOM$RANDOM"
  page="$(examples/browser/open.sh "$demo" browser-topic)"
  (
    for _ in $(seq 1 120); do
      timeout 10 examples/http/publish.sh "$demo" browser-topic "$marker" > /dev/null 2>&1
      sleep 0.5
    done
  ) &
  background+=("$!")
  cat > "$work/watch-dom.js" <<'WATCH'
// node watch-dom.js CHROMIUM PAGE PROFILE EXPECTED: exits 0 once the page's #messages list
// contains EXPECTED (printing it), 1 after 40 s.
const { spawn } = require('child_process')
const fs = require('fs')
const [chromium, page, profile, expected] = process.argv.slice(2)
const browser = spawn(chromium, ['--headless', '--no-sandbox', '--disable-gpu',
  '--disable-background-networking', '--no-first-run', `--user-data-dir=${profile}`,
  '--remote-debugging-port=0', '--remote-allow-origins=*', page], { stdio: 'ignore' })
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms))
const finish = (code, text) => {
  console.log(text)
  // Exit once Chromium has (its helpers follow it), or after 5 s regardless.
  browser.once('exit', () => process.exit(code))
  browser.kill('SIGTERM')
  setTimeout(() => { browser.kill('SIGKILL'); process.exit(code) }, 5000)
}
setTimeout(() => finish(1, 'timed out waiting for the message in the page'), 40000).unref()
;(async () => {
  const portFile = `${profile}/DevToolsActivePort`
  while (!fs.existsSync(portFile) || !fs.readFileSync(portFile, 'utf8').includes('\n')) await sleep(100)
  const port = fs.readFileSync(portFile, 'utf8').split('\n')[0]
  let target
  while (!target) {
    const targets = await (await fetch(`http://127.0.0.1:${port}/json/list`)).json()
    target = targets.find((candidate) => candidate.type === 'page' && candidate.url.startsWith('file:'))
    if (!target) await sleep(100)
  }
  const devtools = new WebSocket(target.webSocketDebuggerUrl)
  await new Promise((resolve, reject) => { devtools.onopen = resolve; devtools.onerror = reject })
  let next = 1
  const pending = new Map()
  devtools.onmessage = (event) => {
    const reply = JSON.parse(event.data)
    if (pending.has(reply.id)) { pending.get(reply.id)(reply); pending.delete(reply.id) }
  }
  const evaluate = (expression) => new Promise((resolve) => {
    const id = next++
    pending.set(id, (reply) => resolve(reply.result && reply.result.result && reply.result.result.value))
    devtools.send(JSON.stringify({ id, method: 'Runtime.evaluate', params: { expression } }))
  })
  for (;;) {
    const text = await evaluate(`document.getElementById('status').textContent + '\\n' + Array.from(document.querySelectorAll('li.message'), (item) => item.textContent).join('\\n')`)
    if (text && text.includes(expected)) finish(0, text.split('\n').slice(0, 3).join('\n'))
    await sleep(200)
  }
})().catch((error) => finish(1, `devtools client failed: ${error.message}`))
WATCH
  if node_run 60 "$work/watch-dom.js" "$chromium" "$page" "$work/chromium-profile" \
    "browser-topic text-message: \"$marker\"" > "$work/browser.out" 2>&1; then
    pass "browser page shows a published message (headless Chromium)"
  else
    fail "browser page shows a published message (headless Chromium)" "$work/browser.out"
  fi
else
  skip "examples.sh: browser page shows a published message" \
    "$chromium not found (install chromium to run this check)"
fi

# The secured 2-node cluster (nats-server with TLS + user/password): needs nats-server
# (scripts/test.sh exports RINGCAST_NATS_SERVER) and openssl; run.sh exits 3 without them.
secured_status=0
timeout 120 env NATS_PORT="$(free_port)" NODE_A_PORT="$(free_port)" NODE_B_PORT="$(free_port)" \
  examples/secured-cluster/run.sh > "$work/secured-cluster.out" 2>&1 || secured_status=$?
case "$secured_status" in
  0) pass "secured cluster: a message crosses two nodes through a TLS + password NATS" ;;
  3) skip "examples.sh: secured cluster" "$(tail -n 1 "$work/secured-cluster.out")" ;;
  *) fail "secured cluster: a message crosses two nodes through a TLS + password NATS" \
       "$work/secured-cluster.out" ;;
esac

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
