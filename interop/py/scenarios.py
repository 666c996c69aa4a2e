"""Scenarios 1–8 and the token matrix for the Python SDK (PyPI realtime-pubsub-client==1.0.0).

Run: RINGCAST_ADDR=127.0.0.1:PORT INTEROP_DIR=DIR .build/venv/bin/python interop/py/scenarios.py
Prints one `RESULT|<id>|PASS|FAIL|SKIP|<detail>` line per scenario (see interop/report.py).
"""

import asyncio
import base64
import json
import os
import secrets
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib as L  # noqa: E402
from lib import MAIN_APP, PUBLISH_ALL, PUBLISH_PRIV, READ_INBOUND, check  # noqa: E402

TOPIC = "py-chat"


async def until(condition, what, seconds=5):
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    if not condition():
        raise AssertionError(f"no {what}")


async def main():
    ctx = {}

    # ---- 1. connect / session.started ---------------------------------------------------
    async def s1():
        client = await L.connect(MAIN_APP, L.client_token("py-session", []))
        info = client.info
        await L.disconnect(client)
        check(isinstance(info["id"], str) and len(info["id"]) == 12
              and all(c in "0123456789abcdef" for c in info["id"]), f"id {info['id']!r}")
        check(info["appId"] == MAIN_APP, f"appId {info['appId']!r}")
        check(info["remoteAddress"] == "127.0.0.1", f"remoteAddress {info['remoteAddress']!r}")
        return f"id={info['id']} appId={info['appId']} remoteAddress={info['remoteAddress']}"

    await L.scenario("1", s1)

    # An idle client for scenario 10 (keepalive), checked at the end of the run.
    async def open_idle():
        client = await L.connect(MAIN_APP, L.client_token("py-idle", [PUBLISH_PRIV]))
        client.opened_at = asyncio.get_running_loop().time()
        client.closes = []
        client.on("close", lambda event: client.closes.append(event))
        return client

    idle_task = asyncio.ensure_future(open_idle())

    # Shared clients for 2–8: a publisher, a subscriber and an RPC "server".
    async def setup():
        ctx["pub"] = await L.connect(MAIN_APP, L.client_token("py-publisher", [PUBLISH_ALL]))
        ctx["sub"] = sub = await L.connect(MAIN_APP, L.client_token("py-subscriber", [PUBLISH_PRIV]))
        ctx["server"] = server = await L.connect(
            MAIN_APP, L.client_token("py-backend", [PUBLISH_PRIV, READ_INBOUND]))
        await sub.subscribe_remote_topic(TOPIC)
        await L.sync(sub)  # the subscription is in place before anyone publishes

        def on_gettime(message, reply):
            reply({"time": 1712000000000, "echo": message["data"]["payload"], "by": "py-backend"}, "ok")

        server.on("secure/inbound.gettime", on_gettime)
        server.presence = []
        server.on("secure/inbound.presence", lambda message, reply: server.presence.append(message["data"]))
        await server.subscribe_remote_topic("secure/inbound")
        await L.sync(server)

    setup_task = asyncio.ensure_future(setup())

    async def ready():
        await asyncio.wait_for(asyncio.shield(setup_task), 10)

    # ---- 2. publish → on('<topic>.<messageType>') with the payload intact ---------------------
    payloads = {
        "string": "Hello, ringcast!",
        "object": {"a": 1, "b": "two", "c": True, "d": None, "e": 1.5},
        "nested": {"l1": {"l2": {"l3": {"arr": [1, [2, [3, {"deep": "yes"}]]], "empty": {}, "none": []}}},
                   "n": -0.0125},
        "unicode": 'Ünïcödé ✓ 日本語 🚀 "quoted" \\ back\nslash\u0001 ẞ',
        "empty": "",
    }
    for kind, payload in payloads.items():
        async def s2(kind=kind, payload=payload):
            await ready()
            pub, sub = ctx["pub"], ctx["sub"]
            message_id = f"py-{kind}-{secrets.token_hex(4)}"
            message_type = f"payload-{kind}"
            got = L.wait_event(sub, f"{TOPIC}.{message_type}", lambda m: m["data"]["id"] == message_id)
            await pub.publish(TOPIC, payload, message_type=message_type, message_id=message_id)
            message = await asyncio.wait_for(got, 5)
            check(message["topic"] == TOPIC, f"topic {message['topic']!r}")
            check(message["messageType"] == message_type, f"messageType {message['messageType']!r}")
            check(message["data"]["payload"] == payload and type(message["data"]["payload"]) is type(payload),
                  f"payload {message['data']['payload']!r}")
            check(message["data"]["client"]["connectionId"] == pub.info["id"], "client.connectionId")
            check(message["data"]["client"]["subject"] == "py-publisher", "client.subject")
            check(message["compression"] is False, "text frame expected")
            return f"received {json.dumps(payload, ensure_ascii=False)[:40]} on '{TOPIC}.{message_type}'"

        await L.scenario(f"2.{kind}", s2)

    # ---- 3. wait_for_ack for publish and send ----------------------------------------------------
    async def s3_publish():
        await ready()
        waiter = await ctx["pub"].publish(TOPIC, "ack me", message_type="ack-test")
        await waiter.wait_for_ack(5)
        return "publish(...).wait_for_ack() resolved"

    async def s3_send():
        await ready()
        waiter = await ctx["pub"].send({"hello": "backend"}, message_type="ack-test")
        await waiter.wait_for_ack(5)
        return "send(...).wait_for_ack() resolved"

    await L.scenario("3.publish", s3_publish)
    await L.scenario("3.send", s3_send)

    # ---- 4. RPC: send → backend reply() → wait_for_reply -------------------------------------------
    async def s4():
        await ready()
        requester = await L.connect(MAIN_APP, L.client_token("py-requester", []))
        waiter = await requester.send({"question": "what time is it?", "n": [1, 2]}, message_type="gettime")
        (response,) = await waiter.wait_for_reply(5)
        await L.disconnect(requester)
        check(response["status"] == "ok", f"status {response['status']!r}")
        expected = {"time": 1712000000000, "echo": {"question": "what time is it?", "n": [1, 2]}, "by": "py-backend"}
        check(response["data"] == expected, f"data {response['data']!r}")
        return f"wait_for_reply resolved with {json.dumps(response['data'])[:50]}"

    await L.scenario("4", s4)

    # ---- 5. compress=True → binary frame ---------------------------------------------------------------
    async def s5():
        await ready()
        pub, sub = ctx["pub"], ctx["sub"]
        message_id = "py-zip-" + secrets.token_hex(4)
        payload = {"text": "ü" * 3000, "list": [1, 2, 3]}
        got = L.wait_event(sub, f"{TOPIC}.zipped", lambda m: m["data"]["id"] == message_id)
        waiter = await pub.publish(TOPIC, payload, message_type="zipped", compress=True, message_id=message_id)
        await waiter.wait_for_ack(5)
        message = await asyncio.wait_for(got, 5)
        check(message["compression"] is True, "expected a binary frame (compression True)")
        check(message["data"]["payload"] == payload, "payload differs")
        return "binary frame, compression True, payload parsed intact"

    await L.scenario("5", s5)

    async def s5_http():
        await ready()
        sub = ctx["sub"]
        message = {"zipped": "ü" * 2000, "via": "http"}
        got = L.wait_event(sub, f"{TOPIC}.http-zipped", lambda m: isinstance(m["data"], dict) and m["data"].get("via") == "http")
        status, body = await L.http_publish({"topic": TOPIC, "message": message, "messageType": "http-zipped", "compress": True})
        check(status == 200, f"HTTP {status} {body}")
        received = await asyncio.wait_for(got, 5)
        check(received["compression"] is True, "expected a binary frame (compression True)")
        check(received["data"] == message, "data differs")
        return "HTTP publish with compress: true → binary frame, parsed intact"

    await L.scenario("5.http", s5_http)

    # ---- 6. forbidden secure subscribe → close 1008 with the exact reason ----------------------------
    async def s6():
        client = await L.connect(MAIN_APP, L.client_token("py-nosecure", [PUBLISH_PRIV]))
        closed = L.wait_event(client, "close")
        restarted = L.wait_event(client, "session.started")
        await client.subscribe_remote_topic("secure/x")
        event = await asyncio.wait_for(closed, 5)
        # The SDK reconnects by design after an abnormal close: wait for that, then close it.
        note = ""
        try:
            await asyncio.wait_for(restarted, 5)
            note = "; SDK then reconnected (its design) and was closed"
        except asyncio.TimeoutError:
            note = "; SDK did not reconnect within 5 s"
        await L.disconnect(client)
        frame = getattr(event, "rcvd", None)
        check(frame is not None, f"close event without a received close frame: {event!r}")
        check(frame.code == 1008, f"close code {frame.code}")
        check(frame.reason == "Subscription to secure topic is forbidden!", f"reason {frame.reason!r}")
        return f"'close' event: {frame.code} \"{frame.reason}\"{note}"

    await L.scenario("6", s6, seconds=15)

    # ---- 7. HTTP publish (urllib, admin token) reaches the SDK subscriber ------------------------------
    async def s7():
        await ready()
        sub = ctx["sub"]
        message = {"msg": "Hello subscribers from HTTP", "time": 1712000000000, "nested": {"ü": ["✓", 2]}}
        got = L.wait_event(sub, f"{TOPIC}.greeting", lambda m: isinstance(m["data"], dict) and m["data"].get("msg") == message["msg"])
        status, body = await L.http_publish({"topic": TOPIC, "message": message, "messageType": "greeting"})
        check(status == 200, f"HTTP {status} {body}")
        received = await asyncio.wait_for(got, 5)
        check(received["data"] == message, f"data {received['data']!r}")
        return f"urllib POST → {status} {body}; subscriber got data intact"

    await L.scenario("7", s7)

    # ---- 8. presence on secure/inbound --------------------------------------------------------------------
    async def s8():
        await ready()
        server = ctx["server"]

        def find(status, connection_id):
            for data in server.presence:
                if data["client"]["connectionId"] == connection_id and data["payload"]["status"] == status:
                    return data
            return None

        visitor = await L.connect(MAIN_APP, L.client_token("py-visitor", []))
        connection_id = visitor.info["id"]
        await until(lambda: find("connected", connection_id), "presence connected")
        await L.disconnect(visitor)
        await until(lambda: find("disconnected", connection_id), "presence disconnected")
        connected, disconnected = find("connected", connection_id), find("disconnected", connection_id)
        check(connected["payload"] == {"code": 0, "status": "connected"}, f"{connected['payload']!r}")
        check(disconnected["payload"] == {"code": -1, "status": "disconnected"}, f"{disconnected['payload']!r}")
        check(connected["client"]["subject"] == "py-visitor", "presence subject")
        return f"connected {{code:0}} and disconnected {{code:-1}} for {connection_id}"

    await L.scenario("8", s8)

    # ---- token matrix: accepted (PyJWT signs every algorithm of PROTOCOL.md §1, EdDSA included) ------
    rsa = L.key("rsa")
    accepted = [
        ("HS256", MAIN_APP, None), ("HS384", MAIN_APP, None), ("HS512", MAIN_APP, None),
        ("RS256", "interop-rsa", rsa), ("RS384", "interop-rsa", rsa), ("RS512", "interop-rsa", rsa),
        ("PS256", "interop-rsa", rsa), ("PS384", "interop-rsa", rsa), ("PS512", "interop-rsa", rsa),
        ("ES256", "interop-es256", L.key("ec256")), ("ES384", "interop-es384", L.key("ec384")),
        ("ES512", "interop-es512", L.key("ec521")), ("EdDSA", "interop-eddsa", L.key("ed25519")),
    ]
    for alg, app, signing_key in accepted:
        async def accept(alg=alg, app=app, signing_key=signing_key):
            token = L.client_token(f"py-{alg}", [], alg=alg, signing_key=signing_key)
            header = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "=="))
            check(header["alg"] == alg, f"header alg {header['alg']}")
            client = await L.connect(app, token)
            await L.disconnect(client)
            check(client.info["appId"] == app, f"appId {client.info['appId']}")
            return f"session.started on {app}"

        await L.scenario(f"T.{alg}", accept)

    # ---- token matrix: refused — the SDK's connect fails with HTTP 401 (it then retries forever
    # with backoff, so the connect is cancelled once the first failure has been reported) ----------
    async def refused(app, token):
        client = L.make_client(app, token)
        started = []
        client.on("session.started", lambda info: started.append(info))
        failed = L.wait_event(client, "error")
        task = asyncio.ensure_future(client.connect())
        try:
            error = await asyncio.wait_for(failed, 5)
        finally:
            task.cancel()
            try:
                await task
            except BaseException:  # noqa: BLE001 — cancelled on purpose
                pass
            await L.disconnect(client)
        status = getattr(error, "status_code", None)
        if status is None and getattr(error, "response", None) is not None:
            status = error.response.status_code
        check(status == 401, f"SDK error {type(error).__name__}: {error}")
        check(not started, "session.started was emitted")
        return f"{app}: SDK 'error' {type(error).__name__} (HTTP {status})"

    async def n_expired():
        return await refused(MAIN_APP, L.client_token("py-expired", [], exp=L.now() - 300))

    async def n_wrong_key():
        return "; ".join([
            await refused(MAIN_APP, L.client_token("py-wk", [], signing_key="not-the-secret-but-just-as-long-as-one")),
            await refused("interop-rsa", L.client_token("py-wk", [], alg="RS256", signing_key=L.key("rsa_other"))),
            await refused("interop-es256", L.client_token("py-wk", [], alg="ES256", signing_key=L.key("ec256_other"))),
            await refused("interop-eddsa", L.client_token("py-wk", [], alg="EdDSA", signing_key=L.key("ed25519_other"))),
        ])

    async def n_wrong_alg():
        return "; ".join([
            # right secret, but HS512 is not in the app's allow-list ["HS256"]
            await refused("interop-hs256only", L.client_token("py-wa", [], alg="HS512")),
            # right RSA key, but an ES app
            await refused("interop-es256", L.client_token("py-wa", [], alg="RS256", signing_key=rsa)),
        ])

    async def n_confusion():
        # HS256 whose HMAC secret is the app's RSA public PEM. PyJWT refuses to build such a
        # token (it rejects PEM keys as HMAC secrets), so it is assembled with PyJWT's own
        # HMAC algorithm object, bypassing only that guard.
        from jwt.algorithms import HMACAlgorithm
        from jwt.utils import base64url_encode
        header = base64url_encode(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
        claims = base64url_encode(json.dumps({"sub": "py-confused", "exp": L.now() + 600}).encode())
        signing_input = header + b"." + claims
        signature = HMACAlgorithm(HMACAlgorithm.SHA256).sign(signing_input, L.key("rsa.pub").encode())
        token = (signing_input + b"." + base64url_encode(signature)).decode()
        return await refused("interop-rsa", token)

    async def n_none():
        token = L.jwt.encode({"sub": "py-none", "exp": L.now() + 600}, None, algorithm="none")
        return await refused(MAIN_APP, token)

    await L.scenario("N.expired", n_expired)
    await L.scenario("N.wrong-key", n_wrong_key, seconds=20)
    await L.scenario("N.wrong-alg", n_wrong_alg)
    await L.scenario("N.alg-confusion", n_confusion)
    await L.scenario("N.none", n_none)

    # ---- 10. keepalive: the server pings every 2 s (config) and cuts connections silent for 2
    # intervals; the SDK sends no pings itself, so an idle connection lives on its pong replies.
    async def s10():
        client = await asyncio.wait_for(asyncio.shield(idle_task), 5)
        loop = asyncio.get_running_loop()
        left = 7.0 - (loop.time() - client.opened_at)
        if left > 0:
            await asyncio.sleep(left)
        check(not client.closes, f"idle connection was closed: {client.closes!r}")
        await L.sync(client)
        return f"idle for {loop.time() - client.opened_at:.1f} s (pings every 2 s), still open and working"

    await L.scenario("10", s10, seconds=15)

    # ---- 11. permessage-deflate (PROTOCOL.md §3: negotiated when the client offers it; websockets
    # 13 offers `permessage-deflate; client_max_window_bits` by default, the SDK keeps that) ----
    async def s11():
        await ready()
        names = [getattr(extension, "name", str(extension)) for extension in ctx["pub"].ws.extensions]
        check("permessage-deflate" in names,
              f"offered permessage-deflate, the broker's 101 accepted no extension (extensions={names})")
        return f"negotiated: {names}"

    await L.scenario("11", s11)

    setup_task.cancel()
    await L.close_all()


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(), 55))
    except BaseException as error:  # noqa: BLE001
        print(f"python scenarios crashed or timed out: {error!r}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    # The SDK may hold reconnect tasks; never let them keep the process alive.
    os._exit(0)
