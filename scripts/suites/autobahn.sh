#!/usr/bin/env bash
# Autobahn|Testsuite conformance suite (issue 5, item 1), registered with scripts/test.sh.
# Installs autobahntestsuite 0.8.2 (Python 2.7, pins in conformance/requirements-py2.txt)
# into .build/autobahn-venv, starts the debug broker with one echo app
# (`echoForConformanceTests`), runs `wstest -m fuzzingclient`, and compares every case's
# behaviour with conformance/expected.json: any regression (e.g. OK -> FAILED) fails.
#   AUTOBAHN_CASES=ci (default)  the CI selection (conformance/README.md says which and why)
#   AUTOBAHN_CASES=full          every case of sections 1-7, 9, 10, 12, 13 (~see README)
#   AUTOBAHN_RECORD=1            rewrite conformance/expected.json from this run (full only)
#   AUTOBAHN_BINARY=PATH         broker binary (default target/debug/ringcast)
# Reports stay in .build/autobahn/reports (index.html). Skips only when no Python 2.7
# interpreter exists on the machine: it then reports `SKIPPED autobahn.sh: …` (scripts/skip.sh,
# summarised at the end of scripts/test.sh) and prints "0 passed, 0 failed".
# Ends with "N passed, N failed"; exits non-zero on any regression.
set -uo pipefail
cd "$(dirname "$0")/../.."
repository="$PWD"
source scripts/skip.sh
started_at=$SECONDS
cases_mode="${AUTOBAHN_CASES:-ci}"

python2=""
if command -v pyenv >/dev/null 2>&1 && [ -x "$(pyenv root)/versions/2.7.18/bin/python" ]; then
  python2="$(pyenv root)/versions/2.7.18/bin/python"
elif command -v python2.7 >/dev/null 2>&1; then
  python2="$(command -v python2.7)"
fi
if [ -z "$python2" ]; then
  skip autobahn.sh "no Python 2.7 interpreter (pyenv 2.7.18 or python2.7): Autobahn|Testsuite did not run"
  echo "0 passed, 0 failed"
  exit 0
fi

venv=.build/autobahn-venv
requirements=conformance/requirements-py2.txt
if ! cmp -s "$requirements" "$venv/.installed-requirements" 2>/dev/null; then
  echo "installing Autobahn|Testsuite into $venv (Python 2.7)"
  rm -rf "$venv" .build/py2-virtualenv
  "$python2" -m pip install --disable-pip-version-check -q --target .build/py2-virtualenv \
    'virtualenv==20.15.1' 2>&1 | grep -v DEPRECATION
  PYTHONPATH=.build/py2-virtualenv "$python2" -m virtualenv -q "$venv" || exit 1
  "$venv/bin/pip" install --disable-pip-version-check -q -r "$requirements" 2>&1 \
    | grep -v DEPRECATION
  "$venv/bin/wstest" --help >/dev/null 2>&1 || { echo "FAIL - wstest does not run"; echo "0 passed, 1 failed"; exit 1; }
  cp "$requirements" "$venv/.installed-requirements"
fi

binary="${AUTOBAHN_BINARY:-$repository/target/debug/ringcast}"
[ -x "$binary" ] || cargo build --locked --bin ringcast || exit 1

work="$(mktemp -d "${TMPDIR:-/tmp}/ringcast-autobahn.XXXXXX")"
broker_pid=""
cleanup() {
  if [ -n "$broker_pid" ]; then
    kill "$broker_pid" 2>/dev/null
    wait "$broker_pid" 2>/dev/null
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
secret="$(python3 -c 'import secrets; print(secrets.token_hex(32))')"
# Limits as Autobahn needs them: 16 MiB messages (section 9 sends up to 16 MiB), 64 MiB of
# queued echo, no server pings (an unsolicited ping would break the expected frame
# sequences), no message rate limit.
cat > "$work/config.json" <<JSON
{
  "server": {
    "listen": "127.0.0.1:$port",
    "workers": 2,
    "pinWorkers": false,
    "pingIntervalSeconds": 0,
    "maxMessageBytes": 16777216,
    "maxPendingBytes": 67108864
  },
  "apps": [{
    "appId": "autobahn",
    "authKey": {"source": "raw", "key": "$secret", "algorithms": ["HS256"]},
    "echoForConformanceTests": true
  }]
}
JSON
token="$("$binary" token --config "$work/config.json" --app autobahn --ttl 1d)" || exit 1

case "$cases_mode" in
  full) cases='["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "9.*", "10.*", "12.*", "13.*"]' ;;
  ci) cases="$(cat conformance/ci-cases.json)" ;;
  *) echo "AUTOBAHN_CASES must be ci or full"; exit 2 ;;
esac
reports="$repository/.build/autobahn/reports"
rm -rf "$reports"
mkdir -p "$reports"
cat > "$work/fuzzingclient.json" <<JSON
{
  "outdir": "$reports",
  "servers": [{"agent": "ringcast", "url": "ws://127.0.0.1:$port/apps/autobahn?access_token=$token"}],
  "cases": $cases,
  "exclude-cases": [],
  "exclude-agent-cases": {}
}
JSON

"$binary" --config "$work/config.json" > "$work/broker.log" 2>&1 &
broker_pid=$!
for _ in $(seq 100); do
  (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
  sleep 0.1
done

echo "running wstest -m fuzzingclient ($cases_mode cases) against $binary"
(cd "$work" && "$repository/$venv/bin/wstest" -m fuzzingclient -s fuzzingclient.json) \
  > "$work/wstest.log" 2>&1
wstest_status=$?
echo "wstest finished in $((SECONDS - started_at)) s (exit $wstest_status)"
if [ "$wstest_status" -ne 0 ] || [ ! -f "$reports/index.json" ]; then
  tail -n 30 "$work/wstest.log"
  tail -n 20 "$work/broker.log"
  echo "0 passed, 1 failed"
  exit 1
fi
if ! kill -0 "$broker_pid" 2>/dev/null; then
  echo "FAIL - the broker exited during the run"
  tail -n 20 "$work/broker.log"
  echo "0 passed, 1 failed"
  exit 1
fi

if [ "${AUTOBAHN_RECORD:-0}" = 1 ]; then
  [ "$cases_mode" = full ] || { echo "AUTOBAHN_RECORD=1 needs AUTOBAHN_CASES=full"; exit 2; }
  python3 conformance/compare.py record "$reports/index.json" conformance/expected.json
fi
python3 conformance/compare.py check "$reports/index.json" conformance/expected.json
