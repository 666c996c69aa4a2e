#!/bin/bash
# Handshakes per server CPU-second by algorithm, first connect (token cache off) and
# reconnect (cache on: the harness reuses its tokens), aws-lc-rs backend, 1 worker.
cd "$(dirname "$0")/../../.."
L=target/release/ringcast-loadtest
O=loadtest/results/token-verification
C="--server ringcast --workers 1 --rounds 1 --connections 64 --source-addresses 8 --duration 6 --server-cpus 0 --client-cpus 1"
for cache in off on; do
  S=""; [ $cache = off ] && S="--ringcast-setting tokenCacheEntries=0"
  for alg in HS256 ES256; do  # the harness mints HS256 and ES256 only
    echo "== $alg cache $cache"
    $L connect $C --alg $alg $S --output $O/connect-$alg-cache-$cache.json 2>&1 | grep -E "round 1|warning" | cut -c1-300
  done
done
