"""Shared helpers for the Python SDK interop scenarios.

The SDK (PyPI realtime-pubsub-client==1.0.0, websockets 13.x) and the token library (PyJWT +
cryptography) are used exactly as installed by scripts/install-sdks.sh into .build/venv.

Environment (set by scripts/suites/sdk-interop.sh):
  RINGCAST_ADDR  host:port of the running broker
  INTEROP_DIR    directory written by interop/make-config.sh (keys/, secrets.json)
"""

import asyncio
import json
import logging
import os
import secrets
import sys
import time
import traceback
import urllib.error
import urllib.request
import warnings

import jwt  # PyJWT
from realtime_pubsub_client import RealtimeClient

ADDR = os.environ.get("RINGCAST_ADDR")
DIR = os.environ.get("INTEROP_DIR")
if not ADDR or not DIR:
    print("RINGCAST_ADDR and INTEROP_DIR must be set", file=sys.stderr)
    sys.exit(3)

with open(os.path.join(DIR, "secrets.json"), encoding="utf-8") as f:
    SECRETS = json.load(f)


def key(name):
    with open(os.path.join(DIR, "keys", name + ".pem"), encoding="ascii") as f:
        return f.read()


MAIN_APP = "interop-main"
PUBLISH_ALL = "realtime:publisher:write:topic:*"
PUBLISH_PRIV = "realtime:publisher:write:topic:priv/*"
READ_INBOUND = "realtime:subscriber:read:topic:secure/inbound"

# The SDK logs connection failures and retries at WARNING/ERROR; keep them on stderr.
logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                    format="%(asctime)s %(name)s %(levelname)s %(message)s")

# The test secrets are deliberately short and non-ASCII; PyJWT's key-length advice is noise here.
warnings.filterwarnings("ignore", message="The HMAC key is")

# ---- results ---------------------------------------------------------------------------


def result(scenario_id, ok, detail=""):
    status = "SKIP" if ok is None else ("PASS" if ok else "FAIL")
    detail = " ".join(str(detail).split())
    print(f"RESULT|{scenario_id}|{status}|{detail}", flush=True)


async def scenario(scenario_id, fn, seconds=10):
    """Runs one scenario with a hard time bound; any exception is a FAIL with its message."""
    try:
        detail = await asyncio.wait_for(fn(), seconds)
        result(scenario_id, True, detail or "")
    except asyncio.TimeoutError as error:  # also the SDK's TimeoutError (same class on 3.11+)
        result(scenario_id, False, f"timeout: {error}" if str(error) else f"timeout: scenario exceeded {seconds} s")
    except Exception as error:  # noqa: BLE001 — every failure is reported, none aborts the run
        frames = [f for f in traceback.extract_tb(error.__traceback__) if os.path.basename(f.filename) != "lib.py"]
        where = f" at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno}" if frames else ""
        result(scenario_id, False, f"{type(error).__name__}: {error}{where}")


def check(condition, message):
    if not condition:
        raise AssertionError(message)


# ---- tokens (PyJWT) ----------------------------------------------------------------------


def now():
    return int(time.time())


def client_token(sub, permissions, alg="HS256", signing_key=None, exp=None):
    claims = {"sub": sub, "permissions": permissions, "exp": now() + 600 if exp is None else exp}
    return jwt.encode(claims, SECRETS["secret"] if signing_key is None else signing_key, algorithm=alg)


def admin_token(permissions=(PUBLISH_ALL,)):
    claims = {"sub": "backend", "permissions": list(permissions), "exp": now() + 600}
    return jwt.encode(claims, SECRETS["admin"], algorithm="HS256")


# ---- SDK clients ---------------------------------------------------------------------------

_clients = set()


def url_for(app, token):
    # The hook that points the unmodified SDK at ringcast: websocket_options.url_provider
    # (a string, a function or a coroutine function returning the URL).
    return f"ws://{ADDR}/apps/{app}?access_token={token}"


def make_client(app, token):
    client = RealtimeClient({"websocket_options": {"url_provider": lambda: url_for(app, token)}})
    client.errors = []
    client.on("error", lambda error: client.errors.append(error))
    _clients.add(client)
    return client


def wait_event(client, event, predicate=lambda message: True):
    """A future for the first (message, ...) of `event` passing `predicate`; register it
    BEFORE triggering the event. Await it under asyncio.wait_for."""
    future = asyncio.get_running_loop().create_future()

    def listener(*args):
        if not future.done() and predicate(args[0] if args else None):
            future.set_result(args[0] if args else None)
            client.off(event, listener)

    client.on(event, listener)
    return future


async def connect(app, token, seconds=5):
    client = make_client(app, token)
    started = wait_event(client, "session.started")
    # connect() retries forever with backoff on refusal: bound it.
    await asyncio.wait_for(client.connect(), seconds)
    client.info = await asyncio.wait_for(started, seconds)
    return client


async def disconnect(client):
    _clients.discard(client)
    try:
        await asyncio.wait_for(client.disconnect(), 3)
    except Exception:  # noqa: BLE001
        pass


async def sync(client):
    """Proves the broker processed everything this connection sent before: publish a marker
    to the connection's own private topic and wait for its delivery and its ack."""
    own = f"priv/{client.info['id']}"
    marker = "sync-" + secrets.token_hex(6)
    seen = wait_event(client, f"{own}.sync", lambda m: m["data"]["payload"] == marker)
    waiter = await client.publish(own, marker, message_type="sync", message_id=marker)
    await waiter.wait_for_ack(5)
    await asyncio.wait_for(seen, 5)


def _http_publish_blocking(body, token):
    request = urllib.request.Request(
        f"http://{ADDR}/api/topics/{MAIN_APP}/publish",
        data=json.dumps(body).encode("utf-8"),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {token}"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=4) as response:
            return response.status, response.read().decode("utf-8")
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode("utf-8", "replace")


async def http_publish(body, token=None):
    return await asyncio.to_thread(_http_publish_blocking, body, token or admin_token())


async def close_all():
    for client in list(_clients):
        await disconnect(client)
