"""HTTP publisher in Python with the standard library (urllib) and PyJWT.

    .build/venv/bin/python examples/python/http_publish.py DIR [TOPIC] [MESSAGE]

DIR is a `ringcast init` output directory (default: $RINGCAST_DIR, else .): its
client_config.py gives the publish URL, and mint_token(admin=True) signs an HTTP API token
with the app's admin key. $RINGCAST_ADDRESS=host:port points at another broker.
"""
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path


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


def main():
    args = sys.argv[1:]
    directory = Path(args[0] if args else os.environ.get("RINGCAST_DIR", ".")).resolve()
    topic = args[1] if len(args) > 1 else "chat"
    message = args[2] if len(args) > 2 else f"hello from Python at {time.strftime('%X')}"
    config = load_client_config(directory)

    body = json.dumps({"topic": topic, "messageType": "text-message", "message": message})
    request = urllib.request.Request(
        config.PUBLISH_URL,
        data=body.encode(),
        method="POST",
        headers={
            "Authorization": f"Bearer {config.mint_token(admin=True, subject='python-publisher')}",
            "Content-Type": "application/json",
        },
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            print(response.status, response.read().decode())
    except urllib.error.HTTPError as error:
        sys.exit(f"publish refused: {error.code} {error.read().decode()}")


if __name__ == "__main__":
    main()
