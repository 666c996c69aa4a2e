"""Scenario 9, Python side: run concurrently with interop/js/cross.js against the same broker.

Same protocol as interop/js/cross.js, mirrored (this side is `py`, the other `js`).
Results: 9.receive (Python received the JS publication intact), 9.rpc (JS answered Python).
"""

import asyncio
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import lib as L  # noqa: E402
from lib import MAIN_APP, PUBLISH_ALL, READ_INBOUND, check  # noqa: E402

ME, OTHER = "py", "js"


def hello(sender):
    return {"from": sender, "text": "ünïcode ✓ 日本語 🚀", "nested": {"list": [1, 2, {"k": "v"}], "empty": ""}}


async def until(condition, seconds):
    for _ in range(int(seconds / 0.05)):
        if condition():
            return True
        await asyncio.sleep(0.05)
    return condition()


async def main():
    state = {"client": None, "hello": None, "got": False, "done": False}

    async def receive():
        client = await L.connect(MAIN_APP, L.client_token(f"cross-{ME}", [PUBLISH_ALL, READ_INBOUND]))
        state["client"] = client

        def on_hello(message, reply):
            if state["hello"] is None:
                state["hello"] = message
            asyncio.ensure_future(client.publish(f"cross/{OTHER}", {"re": message["data"]["id"]}, message_type="got"))

        def on_ask(message, reply):
            reply({"answer": f"from {ME}", "echo": message["data"]["payload"]}, "ok")

        client.on(f"cross/{ME}.hello", on_hello)
        client.on(f"cross/{ME}.got", lambda message, reply: state.update(got=True))
        client.on(f"cross/{ME}.done", lambda message, reply: state.update(done=True))
        client.on(f"secure/inbound.ask-{ME}", on_ask)
        await client.subscribe_remote_topic(f"cross/{ME}")
        await client.subscribe_remote_topic("secure/inbound")
        await L.sync(client)
        for _ in range(75):
            if state["got"] and state["hello"]:
                break
            if not state["got"]:
                await client.publish(f"cross/{OTHER}", hello(ME), message_type="hello")
            await asyncio.sleep(0.2)
        check(state["hello"] is not None, f"no hello from {OTHER} within 15 s")
        check(state["got"], f"{OTHER} never confirmed our hello within 15 s")
        received = state["hello"]["data"]
        check(received["payload"] == hello(OTHER), f"payload {received['payload']!r}")
        check(received["client"]["subject"] == f"cross-{OTHER}", f"subject {received['client']['subject']!r}")
        return "Python subscriber received the JS publication intact (and JS received Python's)"

    async def rpc():
        check(state["client"] and state["hello"] and state["got"], "handshake with the other SDK failed")
        waiter = await state["client"].send({"q": f"from {ME}"}, message_type=f"ask-{OTHER}")
        (response,) = await waiter.wait_for_reply(5)
        check(response["status"] == "ok", f"status {response['status']!r}")
        check(response["data"] == {"answer": f"from {OTHER}", "echo": {"q": f"from {ME}"}}, f"data {response['data']!r}")
        return "Python send → JS reply() → Python wait_for_reply resolved"

    await L.scenario("9.receive", receive, seconds=18)
    await L.scenario("9.rpc", rpc)
    if state["client"] is not None:
        try:
            await state["client"].publish(f"cross/{OTHER}", "bye", message_type="done")
        except Exception as error:  # noqa: BLE001
            print(f"cross {ME}: could not publish done: {error}", file=sys.stderr)
        if not await until(lambda: state["done"], 8):
            print(f"cross {ME}: no 'done' from {OTHER}", file=sys.stderr)
    await L.close_all()


if __name__ == "__main__":
    try:
        asyncio.run(asyncio.wait_for(main(), 35))
    except BaseException as error:  # noqa: BLE001
        print(f"python cross crashed or timed out: {error!r}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
