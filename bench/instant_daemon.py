#!/usr/bin/env python3
"""A Docker Engine API server that does nothing and answers at once.

It serves exactly what `docker run --rm IMAGE CMD` asks of a daemon (ping,
create, attach, wait for removal, start), so timing that command against it
measures the docker CLI's own share of a `docker run`: the floor under any
daemon's end-to-end time. Usage: instant_daemon.py SOCKET_PATH
"""
import os
import socket
import sys
import threading

CONTAINER_ID = "0" * 64
API = b"Api-Version: 1.47\r\nOstype: linux\r\n"
started = threading.Event()


def reply(conn, status, body=b"", ctype=b"application/json"):
    conn.sendall(b"HTTP/1.1 " + status + b"\r\n" + API + b"Content-Type: " + ctype +
                 b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


def read_request(conn, pending):
    """Returns (method, path, rest of the buffer) or None at end of stream."""
    while b"\r\n\r\n" not in pending:
        data = conn.recv(65536)
        if not data:
            return None
        pending += data
    head, pending = pending.split(b"\r\n\r\n", 1)
    lines = head.decode("latin-1").split("\r\n")
    method, target = lines[0].split(" ")[:2]
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    while len(pending) < length:
        data = conn.recv(65536)
        if not data:
            return None
        pending += data
    return method, target.split("?")[0], pending[length:]


def serve(conn):
    global started
    pending = b""
    with conn:
        while True:
            request = read_request(conn, pending)
            if request is None:
                return
            method, path, pending = request
            if path.endswith("/_ping"):
                if method == "HEAD":
                    conn.sendall(b"HTTP/1.1 200 OK\r\n" + API + b"Content-Length: 2\r\n\r\n")
                else:
                    reply(conn, b"200 OK", b"OK", b"text/plain")
            elif path.endswith("/containers/create"):
                started = threading.Event()
                reply(conn, b"201 Created", b'{"Id":"%s","Warnings":[]}' % CONTAINER_ID.encode())
            elif path.endswith("/attach"):
                # The stream ends when the container has run (at once).
                conn.sendall(b"HTTP/1.1 101 UPGRADED\r\nContent-Type: application/vnd.docker.raw-stream\r\n"
                             b"Connection: Upgrade\r\nUpgrade: tcp\r\n\r\n")
                started.wait(10)
                return
            elif path.endswith("/wait"):
                # Headers first: the CLI starts the container once the wait is in place.
                conn.sendall(b"HTTP/1.1 200 OK\r\n" + API +
                             b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
                started.wait(10)
                body = b'{"StatusCode":0}\n'
                conn.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body))
            elif path.endswith("/start"):
                conn.sendall(b"HTTP/1.1 204 No Content\r\n" + API + b"\r\n")
                started.set()
            else:
                reply(conn, b"404 Not Found", b'{"message":"not served here"}')


def main():
    path = sys.argv[1]
    if os.path.exists(path):
        os.unlink(path)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
