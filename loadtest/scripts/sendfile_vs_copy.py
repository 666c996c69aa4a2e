#!/usr/bin/env python3
"""Kernel CPU per send: sendmsg of a user buffer vs sendfile from a memfd, to N loopback sockets.

The sender (pinned to CPU 0) writes CHUNK bytes to each of N sockets, ROUNDS times; a
forked reader (pinned to CPU 1) drains them with epoll. Reports the sender's system CPU
time per send and per byte (the loopback receive path is charged to the sender, as in the
broker). Used to choose ringcast's SENDFILE_MIN_BYTES (src/broker/frame_file.rs).

    python3 loadtest/scripts/sendfile_vs_copy.py send 65536 40
    python3 loadtest/scripts/sendfile_vs_copy.py sendfile 65536 40
"""
import os
import resource
import select
import socket
import sys
import time

N = 2000
MODE = sys.argv[1]  # send | sendfile
CHUNK = int(sys.argv[2]) if len(sys.argv) > 2 else 6600
ROUNDS = int(sys.argv[3]) if len(sys.argv) > 3 else 200

listener = socket.socket()
listener.bind(("127.0.0.1", 0))
listener.listen(4096)
port = listener.getsockname()[1]
reader = os.fork()
if reader == 0:
    os.sched_setaffinity(0, {1})
    clients = []
    for _ in range(N):
        client = socket.create_connection(("127.0.0.1", port))
        client.setblocking(False)
        clients.append(client)
    poller = select.epoll()
    by_fd = {}
    for client in clients:
        poller.register(client.fileno(), select.EPOLLIN)
        by_fd[client.fileno()] = client
    buffer = bytearray(1 << 20)
    while True:
        for fd, _ in poller.poll(1.0):
            try:
                if by_fd[fd].recv_into(buffer) == 0:
                    os._exit(0)
            except BlockingIOError:
                pass

os.sched_setaffinity(0, {0})
sockets = [listener.accept()[0] for _ in range(N)]
for sock in sockets:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
payload = os.urandom(CHUNK)
frames = os.memfd_create("frames")
RING = 64 << 20
offset, sent = 0, 0
before = resource.getrusage(resource.RUSAGE_SELF)
started = time.time()
for _ in range(ROUNDS):
    if MODE == "sendfile":
        if offset + CHUNK > RING:
            offset = 0
        os.pwrite(frames, payload, offset)
    for sock in sockets:
        while True:
            try:
                if MODE == "send":
                    sent += sock.send(payload)
                else:
                    sent += os.sendfile(sock.fileno(), frames, offset, CHUNK)
                break
            except BlockingIOError:
                time.sleep(0.0005)
    offset += CHUNK
after = resource.getrusage(resource.RUSAGE_SELF)
system = after.ru_stime - before.ru_stime
print(
    f"{MODE} {CHUNK} B x {N} sockets x {ROUNDS}: sys {system:.2f} s, "
    f"{system * 1e6 / (ROUNDS * N):.2f} us/send, {system * 1e9 / sent:.3f} ns/byte, "
    f"wall {time.time() - started:.2f} s"
)
for sock in sockets:
    sock.close()
os.waitpid(reader, 0)
