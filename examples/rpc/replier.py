"""RPC replier (a "backend") with the official Python SDK (PyPI realtime-pubsub-client).

    .build/venv/bin/python examples/rpc/replier.py DIR [COUNT]

Clients `send` requests (WebSocket inbound messaging); the broker delivers them on the
`secure/inbound` topic, whose subscribers need `realtime:subscriber:read:topic:secure/inbound`.
This replier answers messageType `gettime` with the server time: the SDK's reply function
publishes `{"data": ..., "status": "ok", "id": <request id>}` with messageType `response` to
`priv/<requester connection id>` (so it needs `realtime:publisher:write:topic:priv/*`).

DIR is a `ringcast init` output directory (default: $RINGCAST_DIR, else .); the app must
have "enableWebSocketInboundTopic": true (the starter config does). With COUNT it exits after
answering COUNT requests; without, it runs until Ctrl-C.
"""
import asyncio
import logging
import os
import sys
import time
from pathlib import Path

from realtime_pubsub_client import RealtimeClient

PERMISSIONS = [
    "realtime:subscriber:read:topic:secure/inbound",
    "realtime:publisher:write:topic:priv/*",
]


def load_client_config(directory):
    if not (directory / "client_config.py").exists():
        sys.exit(
            f"no {directory / 'client_config.py'}: run `ringcast init --dir {directory}` first"
            " (`cargo install --path .` puts ringcast on the PATH; in the checkout,"
            f" `cargo run --release -- init --dir {directory}` works too)"
        )
    sys.path.insert(0, str(directory))
    import client_config

    return client_config


async def main():
    args = sys.argv[1:]
    directory = Path(args[0] if args else os.environ.get("RINGCAST_DIR", ".")).resolve()
    count = int(args[1]) if len(args) > 1 else None
    config = load_client_config(directory)

    # The SDK is pointed at the local broker by its `url_provider` option (called on every
    # (re)connect, so each attempt gets a fresh token).
    client = RealtimeClient({
        "websocket_options": {
            "url_provider": lambda: f"{config.URL}?access_token="
            + config.mint_token(subject="rpc-replier", permissions=PERMISSIONS),
        },
        "logger": logging.getLogger("replier"),
    })
    done = asyncio.Event()
    answered = 0

    async def on_gettime(message, reply):
        nonlocal answered
        requester = message["data"]["client"]["connectionId"]
        # reply() publishes the response; wait for the broker's ack before counting it.
        waiter = await reply({"time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}, "ok")
        await waiter.wait_for_ack(5)
        answered += 1
        print(f"answered gettime from {requester} (request id {message['data']['id']})", flush=True)
        if count is not None and answered >= count:
            done.set()

    client.on("secure/inbound.gettime", on_gettime)
    started = asyncio.ensure_future(client.wait_for("session.started", 10))
    await client.connect()
    (connection,) = await started
    await client.subscribe_remote_topic("secure/inbound")
    # Subscribing has no reply; the ack of a publish to our own private topic comes after
    # the broker handled the subscription, so after it the replier is live.
    own = await client.publish(f"priv/{connection['id']}", "ready", message_type="ready")
    await own.wait_for_ack(5)
    print(f"replier ready as connection {connection['id']}", file=sys.stderr, flush=True)
    await done.wait()
    await client.disconnect()


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
