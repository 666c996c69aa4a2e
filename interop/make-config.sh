#!/usr/bin/env bash
# Generates fresh key material (openssl CLI) and a multi-app ringcast config into DIR.
#   DIR/keys/*.pem   private + public keys for every algorithm family of PROTOCOL.md §1,
#                    plus an unrelated "other" key per family (wrong-key tokens)
#   DIR/secrets.json the HS client secret and the admin secret (signers read them)
#   DIR/config.json  the broker configuration (apps listed below)
# Usage: interop/make-config.sh DIR
set -euo pipefail
dir=${1:?usage: make-config.sh DIR}
mkdir -p "$dir/keys"
k=$dir/keys

gen() { # name, openssl genpkey args...
  local name=$1; shift
  openssl genpkey "$@" -out "$k/$name.pem" 2>/dev/null
  openssl pkey -in "$k/$name.pem" -pubout -out "$k/$name.pub.pem" 2>/dev/null
}
gen rsa         -algorithm RSA -pkeyopt rsa_keygen_bits:2048
gen rsa_other   -algorithm RSA -pkeyopt rsa_keygen_bits:2048
gen ec256       -algorithm EC -pkeyopt ec_paramgen_curve:P-256
gen ec256_other -algorithm EC -pkeyopt ec_paramgen_curve:P-256
gen ec384       -algorithm EC -pkeyopt ec_paramgen_curve:P-384
gen ec521       -algorithm EC -pkeyopt ec_paramgen_curve:P-521
gen ed25519       -algorithm ED25519
gen ed25519_other -algorithm ED25519

python3 - "$dir" <<'PY'
import json, sys, os
d = sys.argv[1]
def pub(name):
    with open(os.path.join(d, "keys", name + ".pub.pem")) as f:
        return f.read()
# HS secrets are used as their UTF-8 bytes (PROTOCOL.md §1) — non-ASCII on purpose.
secret = "cX1$wJT71Mölsd98.r97dC4DX-interop"
admin_secret = "admin-sécret-interop"
json.dump({"secret": secret, "admin": admin_secret}, open(os.path.join(d, "secrets.json"), "w"))
admin = {"source": "raw", "key": admin_secret, "algorithms": ["HS256"]}
def app(app_id, key, algs, **extra):
    a = {"appId": app_id, "name": app_id,
         "authKey": {"source": "raw", "key": key, "algorithms": algs, "issuer": []},
         "adminKey": admin}
    a.update(extra)
    return a
apps = [
    # main scenario app: HS keys, inbound topic (send / RPC / presence) enabled
    app("interop-main", secret, ["HS256", "HS384", "HS512"], enableWebSocketInboundTopic=True),
    # allow-list of one algorithm: an HS512 token with the right secret is a wrong-alg token
    app("interop-hs256only", secret, ["HS256"]),
    app("interop-rsa", pub("rsa"), ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512"]),
    app("interop-es256", pub("ec256"), ["ES256"]),
    app("interop-es384", pub("ec384"), ["ES384"]),
    app("interop-es512", pub("ec521"), ["ES512"]),
    app("interop-eddsa", pub("ed25519"), ["EdDSA"]),
]
# pingIntervalSeconds 2: the server pings every 2 s and closes connections silent for 4 s,
# so the keepalive scenario sees several ping/pong rounds within a short run.
config = {"server": {"listen": "127.0.0.1:0", "workers": 2, "pinWorkers": False, "pingIntervalSeconds": 2},
          "apps": apps}
json.dump(config, open(os.path.join(d, "config.json"), "w"), indent=2, ensure_ascii=False)
PY
