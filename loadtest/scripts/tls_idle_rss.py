#!/usr/bin/env python3
"""RSS per idle connection, plain vs TLS (`server.tls`), for the README's TLS figure.

Starts `ringcast` (1 worker, io_uring or whatever `auto` finds) once per mode with a
self-signed certificate made by `openssl`, opens WARMUP connections, reads the server's
RSS, opens COUNT more idle WebSocket connections (each waits for its welcome frame), waits
2 s and reads RSS again: (growth) / COUNT is the marginal memory per idle connection.
Standard library only. Usage:

    cargo build --release -p ringcast
    python3 loadtest/scripts/tls_idle_rss.py target/release/ringcast [COUNT]
"""
import base64, hashlib, hmac, json, os, socket, ssl, subprocess, sys, tempfile, time

SECRET = "tls-idle-rss-secret"
APP = "tls-idle"
WARMUP = 200


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(subject):
    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps({"sub": subject, "exp": int(time.time()) + 3600}).encode())
    signature = hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(signature)}"


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def open_connection(port, context, number):
    raw = socket.create_connection(("127.0.0.1", port))
    sock = context.wrap_socket(raw, server_hostname="localhost") if context else raw
    request = (
        f"GET /apps/{APP}?access_token={token(f'u{number}')} HTTP/1.1\r\nHost: localhost\r\n"
        "Upgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(request.encode())
    data = b""
    while b"welcome" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise RuntimeError(f"closed before the welcome: {data[:200]!r}")
        data += chunk
    if not data.startswith(b"HTTP/1.1 101"):
        raise RuntimeError(data[:200])
    return sock


def measure(binary, directory, tls, count):
    port = free_port()
    server = {"listen": f"127.0.0.1:{port}", "workers": 1, "pinWorkers": False}
    if tls:
        server["tls"] = {"cert": f"{directory}/cert.pem", "key": f"{directory}/key.pem"}
    config = {
        "server": server,
        "apps": [{"appId": APP, "authKey": {"source": "raw", "key": SECRET, "algorithms": ["HS256"]}}],
    }
    path = f"{directory}/config-{'tls' if tls else 'plain'}.json"
    with open(path, "w") as file:
        json.dump(config, file)
    process = subprocess.Popen([binary, "--config", path], stderr=subprocess.DEVNULL)
    try:
        context = None
        if tls:
            context = ssl.create_default_context(cafile=f"{directory}/cert.pem")
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port)).close()
                break
            except OSError:
                time.sleep(0.05)
        sockets = [open_connection(port, context, n) for n in range(WARMUP)]
        time.sleep(2)
        before = rss_bytes(process.pid)
        sockets += [open_connection(port, context, WARMUP + n) for n in range(count)]
        time.sleep(2)
        after = rss_bytes(process.pid)
        return {"mode": "tls" if tls else "plain", "connections": count,
                "rss_before_bytes": before, "rss_after_bytes": after,
                "bytes_per_connection": round((after - before) / count)}
    finally:
        process.terminate()
        process.wait()


def main():
    binary = sys.argv[1]
    count = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    with tempfile.TemporaryDirectory() as directory:
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
             "-nodes", "-days", "1", "-subj", "/CN=localhost",
             "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
             "-keyout", f"{directory}/key.pem", "-out", f"{directory}/cert.pem"],
            check=True, capture_output=True)
        for tls in (False, True):
            print(json.dumps(measure(binary, directory, tls, count)))


if __name__ == "__main__":
    main()
