#!/usr/bin/env python3
"""Writes the committed starting inputs, fuzz/seeds/<target>/<name>, one file per input.

Run from anywhere: python3 fuzz/make_seeds.py. Standard library only. The input layouts
are documented at the top of each fuzz_targets/<target>.rs.
"""
import base64
import json
import os
import struct
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures", "jwt")
MASK = b"\x37\xfa\x21\x3d"


def write(target, name, data):
    folder = os.path.join(HERE, "seeds", target)
    os.makedirs(folder, exist_ok=True)
    if isinstance(data, str):
        data = data.encode()
    with open(os.path.join(folder, name), "wb") as handle:
        handle.write(data)


def client_frame(opcode, payload, fin=True, rsv1=False, length_override=None):
    """A masked client frame, as RFC 6455 §5.2 lays it out."""
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    length = len(payload) if length_override is None else length_override
    if length < 126:
        header = bytes([first, 0x80 | length])
    elif length <= 0xFFFF:
        header = bytes([first, 0x80 | 126]) + struct.pack(">H", length)
    else:
        header = bytes([first, 0x80 | 127]) + struct.pack(">Q", length)
    masked = bytes(byte ^ MASK[index % 4] for index, byte in enumerate(payload))
    return header + MASK + masked


def deflate_body(data):
    """permessage-deflate body: raw deflate, sync flush, the 00 00 ff ff tail stripped."""
    compressor = zlib.compressobj(6, zlib.DEFLATED, -15)
    body = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert body.endswith(b"\x00\x00\xff\xff")
    return body[:-4]


def frame_decoder():
    # Byte 0: bit 0 deflate, bits 1-3 limit index (3 = 1000 B, 5 = 64 KiB); byte 1: splits.
    def seed(name, stream, deflate=False, limit=5, splits=b""):
        write("frame_decoder", name, bytes([(limit << 1) | deflate, len(splits)]) + splits + stream)

    hello = client_frame(1, b"Hello")
    seed("text", hello)
    seed("text_split", hello, splits=b"\x01\x02\x03")
    seed("binary_126", client_frame(2, bytes(range(200))))
    seed("binary_64k_header", client_frame(2, b"", length_override=70000), limit=7)
    seed("too_big", client_frame(2, b"x" * 1001), limit=3)
    seed("ping_pong", client_frame(9, b"ping") + client_frame(10, b""))
    seed("close", client_frame(8, struct.pack(">H", 1000) + b"bye"))
    seed("close_bad_code", client_frame(8, struct.pack(">H", 1005)))
    seed("fragments", client_frame(1, b"Hel", fin=False) + client_frame(9, b"") + client_frame(0, b"lo"))
    seed("utf8_split_codepoint", client_frame(1, "κό".encode()[:3], fin=False) + client_frame(0, "κό".encode()[3:]))
    seed("invalid_utf8", client_frame(1, b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited"))
    seed("compressed", client_frame(1, deflate_body(b"Hello"), rsv1=True), deflate=True)
    seed("compressed_fragments",
         client_frame(2, deflate_body(b"abc" * 100)[:5], fin=False, rsv1=True)
         + client_frame(0, deflate_body(b"abc" * 100)[5:]), deflate=True)
    seed("compressed_bomb", client_frame(2, deflate_body(b"\x00" * 200000), rsv1=True), deflate=True, limit=3)
    seed("rsv1_without_deflate", client_frame(1, b"x", rsv1=True))
    seed("unmasked", b"\x81\x05Hello")


def http_request():
    upgrade = (
        "GET /apps/demo?access_token=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ1In0.c2lnbmF0dXJlc2lnbmF0dXJl HTTP/1.1\r\n"
        "Host: localhost:8080\r\n"
        "Upgrade: websocket\r\n"
        "Connection: keep-alive, Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        "\r\n"
    )
    write("http_request", "upgrade", upgrade)
    write("http_request", "upgrade_bearer", upgrade.replace(
        "Host:", "Authorization: Bearer abcdefghijklmnopqrstuvwxyz0123456789\r\nHost:"))
    write("http_request", "publish_post",
          "POST /api/apps/demo/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
          "Content-Length: 27\r\nConnection: close\r\n\r\n{\"topic\":\"t\",\"payload\":1}")
    write("http_request", "chunked", "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n")
    write("http_request", "http10", "GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
    write("http_request", "percent_query", "GET /a?x=%41%zz%&access_token=%2B%20&=&&y HTTP/1.1\r\n\r\n")
    write("http_request", "partial", "GET /apps/demo HTTP/1.1\r\nHost: x\r\n")
    write("http_request", "forwarded_lines",
          "GET /apps/x HTTP/1.1\r\nHost: t\r\nX-Forwarded-For: 192.0.2.1\r\n"
          "X-Forwarded-For: 203.0.113.7, [2001:db8::1]:443, 10.0.0.2\r\nX-Forwarded-For: unknown\r\n\r\n")


def command_json():
    commands = {
        "subscribe": {"type": "subscribe", "data": {"topic": "notifications"}},
        "unsubscribe": {"type": "unsubscribe", "data": {"topic": "notifications"}},
        "publish": {"type": "publish", "data": {"topic": "chat", "messageType": "text-message",
                                                  "compress": False, "payload": {"a": [1, 2.5, None]},
                                                  "id": "k3j9x0a1b2"}},
        "message": {"type": "message", "data": {"messageType": "gettime", "compress": True,
                                                  "payload": "hi", "id": 7}},
        "publish_nulls": {"type": "publish", "data": {"topic": "t", "messageType": None,
                                                        "compress": None, "payload": None, "id": None}},
    }
    for name, command in commands.items():
        write("command_json", name, json.dumps(command))
    write("command_json", "duplicate", '{"type":"subscribe","type":"publish","data":{"topic":"a"}}')
    write("command_json", "escaped_topic", '{"type":"subscribe","data":{"topic":"\\u0063hat\\ud83d\\ude00"}}')
    write("command_json", "regression_huge_number_id",
          '{"type":"message","data":{"messageType":"t","id":3337333333333333e3337}}')
    write("command_json", "control_topic", '{"type":"subscribe","data":{"topic":"a\\u0085b"}}')


def jwt():
    with open(os.path.join(FIXTURES, "tokens.json")) as handle:
        tokens = json.load(handle)
    for group in ("valid", "expired", "alg_none"):
        value = tokens[group]
        if isinstance(value, dict):
            for algorithm in ("HS256", "RS256", "ES512"):
                if algorithm in value:
                    write("jwt", "raw_%s_%s" % (group, algorithm), b"\x00" + value[algorithm].encode())
        else:
            write("jwt", "raw_" + group, b"\x00" + value.encode())
    claims = {"sub": "user-01", "exp": 1700000100, "nbf": 1699999990, "iss": "https://issuer.example",
              "aud": ["x", "ringcast-fuzz"], "permissions": ["realtime:publisher:write:topic:*"],
              "scope": "a b a"}
    write("jwt", "signed_header_claims",
          b"\x01" + b'{"alg":"HS256","typ":"JWT"}\n' + json.dumps(claims).encode())
    write("jwt", "signed_crit", b"\x01" + b'{"alg":"HS256","crit":["exp"]}\n{}')
    write("jwt", "signed_alg_rs256", b"\x01" + b'{"alg":"RS256"}\n{"sub":"x"}')
    write("jwt", "signed_float_exp", b"\x01" + b'{"alg":"HS256"}\n{"exp":1.7e9,"aud":"ringcast-fuzz"}')
    write("jwt", "minted", b"\x02" + json.dumps(claims).encode())
    write("jwt", "minted_max_clock", b"\x82" + b'{"exp":1e308,"nbf":-1e308}')


def patterns():
    write("patterns", "mixed", "chat/*\n*\nsecure/*/x\na*b*c\n**\nexact\n\nchat/1\nsecure/a/x\nabc\nexact\n\n")
    write("patterns", "overlap", "*aa*aa*\naa*a\n\naaaa\naaa\nxaaaayaa\n")
    write("patterns", "unicode", "κ*ό\n*😀\n\nκxό\n😀\nκό\n")
    write("patterns", "grants", "realtime:publisher:write:topic:a*\nrealtime:admin:manage:connections\n\na1\n")


def config():
    with open(os.path.join(FIXTURES, "rsa_public.pem")) as handle:
        rsa_public = handle.read()
    full = {
        "server": {"listen": "127.0.0.1:0", "workers": 2, "pinWorkers": False, "ioDriver": "legacy",
                   "pingIntervalSeconds": 30, "trustedProxies": ["10.0.0.0/8", "::1"],
                   "maxMessageBytes": 65536, "maxPendingBytes": 4194304},
        "apps": [
            {"appId": "demo", "name": "Demo", "authKey": {"source": "raw", "key": "0123456789abcdef0123456789",
                                                          "algorithms": ["HS256", "HS512"],
                                                          "issuer": ["i"], "audience": "a"},
             "adminKey": {"source": "raw", "key": rsa_public, "algorithms": ["RS256", "PS256"]},
             "clientSourceAddress": ["0.0.0.0/0", "::ffff:10.0.0.1"], "maxMessageBytes": 1024,
             "enableWebSocketInboundTopic": True},
            {"appId": "echo", "authKey": {"source": "raw", "key": "s", "algorithms": ["HS256"]},
             "echoForConformanceTests": True},
        ],
    }
    write("config", "full", json.dumps(full, indent=1))
    write("config", "empty", "{}")
    write("config", "bad_key", json.dumps({"apps": [{"appId": "x", "authKey": {
        "source": "raw", "key": "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n",
        "algorithms": ["ES512"]}}]}))
    write("config", "jwks", json.dumps({"apps": [{"appId": "x", "authKey": {
        "source": "jwks", "key": "https://example/jwks", "algorithms": ["RS256"]}}]}))


def inflate():
    write("inflate", "hello", b"\x02" + deflate_body(b"Hello"))
    write("inflate", "rfc7692_hello", b"\x02" + bytes.fromhex("f248cdc9c90700"))
    write("inflate", "bomb", b"\x03" + deflate_body(b"\x00" * 1000000))
    write("inflate", "stored_block", b"\x02" + bytes.fromhex("0005 00faff") + b"hello")
    write("inflate", "truncated", b"\x01" + deflate_body(b"abc" * 1000)[:-3])
    # Found by this target: inflates to 33,006 zeros, but a reused inflater (more room in
    # its output buffer) returned only 32,768 of them.
    write("inflate", "regression_held_back_output", base64.b64decode(
        "A+zBAQEAAACCIP+vbkhAAQAAAAAAAAAAQABAAAAAAMIpKSkpKSkpKSkpKSkpKSkCAAD/AAAA////"))


def server_frame(opcode, payload, rsv1=False):
    """An unmasked server frame, as ringcast builds it."""
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    length = len(payload)
    if length < 126:
        head = bytes([first, length])
    elif length < 65536:
        head = bytes([first, 126]) + struct.pack(">H", length)
    else:
        head = bytes([first, 127]) + struct.pack(">Q", length)
    return head + payload


def bus_publication(plain, deflated=None, origin=b"node-b", app=b"app", topic=b"chat"):
    """cluster::wire::encode_publication's layout, behind selector byte 0."""
    out = bytes([1, 1 if deflated is not None else 0, len(origin)]) + origin
    out += bytes([len(app)]) + app + struct.pack(">H", len(topic)) + topic
    out += struct.pack(">I", len(plain)) + plain
    if deflated is not None:
        out += struct.pack(">I", len(deflated)) + deflated
    return b"\x00" + out


def bus_input():
    envelope = b'{"topic":"chat","messageType":"m","data":{"payload":[1,{"a":"b"}]}}'
    write("bus_input", "publication", bus_publication(server_frame(1, envelope)))
    compressed = deflate_body(envelope)
    write("bus_input", "publication_deflated", bus_publication(
        server_frame(2, envelope), server_frame(2, compressed, rsv1=True)))
    write("bus_input", "injected_close", bus_publication(server_frame(8, b"\x03\xe8bye")))
    write("bus_input", "masked", bus_publication(
        bytes([0x81, 0x80 | 2]) + MASK + b"{}"))
    write("bus_input", "deep", bus_publication(server_frame(1, b"[" * 200 + b"]" * 200)))
    write("bus_input", "hello", b"\x01" + json.dumps({
        "node": "b", "number": 7, "instance": 1, "answer": False}).encode())
    write("bus_input", "admin", b"\x02" + json.dumps({
        "op": "unsubscribe", "origin": "b", "app": "app", "subject": "u",
        "patterns": ["chat/*"]}).encode())
    write("bus_input", "terminate", b"\x03" + json.dumps({
        "app": "app", "connection": "0123456789ab"}).encode())
    # Found by this target: invalid UTF-8 inside a JSON string of a text frame passed the
    # validator (serde_json does not look inside the strings of an ignored value).
    write("bus_input", "regression_invalid_utf8_in_string", base64.b64decode(
        "AAEABm5vZGUtYgNhcHAABGNoYXQAAABFgUN7IoSQj5ZjIjoiY2hhdCIsIm1lc3NhZ2VUeXBlIjoibSIsImRh"
        "dGEiOnsicGF5bG9hZCI6WzEseyJhIjoiYiJ9XX19"))


if __name__ == "__main__":
    for make in (frame_decoder, http_request, command_json, jwt, patterns, config, inflate,
                 bus_input):
        make()
