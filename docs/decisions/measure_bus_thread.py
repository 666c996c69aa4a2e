#!/usr/bin/env python3
"""Cost of the bus thread (docs/decisions/tokio-in-the-bus-thread.md).

Starts ringcast idle with 1 worker, once as a single node and once with server.cluster
pointing at a local nats-server, and prints each process's thread count and RSS from
/proc/<pid>/status two seconds after it is ready (/metrics answers; in cluster mode,
ringcast_bus_connected is 1). Stdlib only.

Usage: python3 docs/decisions/measure_bus_thread.py RINGCAST_BINARY NATS_SERVER_BINARY [ROUNDS]
"""
import json
import os
import socket
import subprocess
import sys
import tempfile
import time


def free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get(port, path):
    """The body of GET path, or None while the server does not answer 200."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as connection:
            request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            connection.sendall(request.encode())
            response = b""
            while chunk := connection.recv(65536):
                response += chunk
    except OSError:
        return None
    head, _, body = response.partition(b"\r\n\r\n")
    return body.decode() if head.startswith(b"HTTP/1.1 200") else None


def threads_and_rss(pid):
    fields = {}
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            fields[key] = value.strip()
    return int(fields["Threads"]), int(fields["VmRSS"].split()[0]) * 1024


def measure(binary, nats_port, clustered):
    port = free_port()
    config = {
        "server": {"listen": f"127.0.0.1:{port}", "workers": 1, "pinWorkers": False},
        "apps": [{"appId": "app",
                  "authKey": {"source": "raw", "key": "s" * 32, "algorithms": ["HS256"]}}],
    }
    if clustered:
        config["server"]["cluster"] = {"nats": [f"nats://127.0.0.1:{nats_port}"], "name": "node-a"}
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as file:
        json.dump(config, file)
    server = subprocess.Popen([binary, "--config", file.name],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            metrics = get(port, "/metrics")
            if metrics is not None and (not clustered or "ringcast_bus_connected 1" in metrics):
                break
            assert time.time() < deadline and server.poll() is None, "ringcast did not get ready"
            time.sleep(0.1)
        time.sleep(2)
        return threads_and_rss(server.pid)
    finally:
        server.terminate()
        server.wait()
        os.remove(file.name)


def main():
    binary, nats_binary = sys.argv[1], sys.argv[2]
    rounds = int(sys.argv[3]) if len(sys.argv) > 3 else 3
    nats_port = free_port()
    nats = subprocess.Popen([nats_binary, "-a", "127.0.0.1", "-p", str(nats_port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1)
        for round_number in range(1, rounds + 1):
            for clustered in (False, True):
                threads, rss = measure(binary, nats_port, clustered)
                name = "cluster" if clustered else "single"
                print(f"round {round_number} {name:7}: {threads} threads, RSS {rss} B")
    finally:
        nats.terminate()
        nats.wait()


if __name__ == "__main__":
    main()
