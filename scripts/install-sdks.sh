#!/usr/bin/env bash
# Installs the official Realtime Pub/Sub SDKs (and token libraries) from the public
# registries into .build/ (ignored by git), as a user would. Idempotent: a second run
# finds them installed and returns quickly.
#   .build/npm   npm realtime-pubsub-client@1.0.0, jsonwebtoken (JS SDK + token signing)
#   .build/venv  PyPI realtime-pubsub-client==1.0.0, websockets 13.x, PyJWT, cryptography
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .build

if [ ! -f .build/npm/.installed ]; then
  mkdir -p .build/npm
  (cd .build/npm && [ -f package.json ] || echo '{"name":"ringcast-sdk-tests","private":true}' > package.json)
  npm install --prefix .build/npm --no-audit --no-fund --loglevel=error \
    realtime-pubsub-client@1.0.0 jsonwebtoken@9
  touch .build/npm/.installed
fi

if [ ! -f .build/venv/.installed ]; then
  python3 -m venv .build/venv
  .build/venv/bin/pip install --quiet --disable-pip-version-check \
    'realtime-pubsub-client==1.0.0' 'websockets>=13,<14' 'PyJWT>=2.8' 'cryptography>=42'
  touch .build/venv/.installed
fi
