#!/usr/bin/env python3
"""A lean tus 1.0.0 client for the benchmark: the server, not the client, should be what is measured.

One keep-alive HTTP/1.1 connection on a raw socket: a POST creates the upload (Upload-Length and
Upload-Metadata filename), then PATCHes of `chunk` bytes each. Every request head is written by hand and
every PATCH body is read from the file and sent in 256 KiB blocks, as curl -T does (os.sendfile measured 5 to
10% slower than read + send over loopback on the 2-core machine, so it would charge the client's cost to tus
in a comparison with curl's PUT). Each answer's
status line and headers are parsed; the POST's Location (relative) is resolved against the endpoint URL,
and every 204 must carry the Upload-Offset just reached.

Used by bench/run.py (`upload`), or on its own:
    python3 bench/tus_upload.py http://127.0.0.1:8080/api/uploads/ FILE [--chunk-mib 64] [--name NAME]
which prints the seconds taken and the MB/s.
"""

from __future__ import annotations

import argparse
import base64
import os
import socket
import struct
import time
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

MiB = 1 << 20
SEND_BLOCK = 256 << 10  # bytes read and sent at a time (curl -T sends 64 KiB to 256 KiB at a time)
IO_TIMEOUT = 300  # seconds any one send or receive may block (a chunk's fsync included)


class TusError(RuntimeError):
    pass


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


class Connection:
    """One HTTP/1.1 connection to `host:port`, with a buffered reader of the answers."""

    def __init__(self, host: str, port: int):
        self.host = host
        self.port = port
        self.sock = socket.create_connection((host, port), timeout=IO_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Blocking mode, with the kernel's timeouts as a guard against a hang.
        self.sock.settimeout(None)
        timeval = struct.pack("ll", IO_TIMEOUT, 0)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
        self.buffer = b""
        self.open = True

    def close(self) -> None:
        self.sock.close()
        self.open = False

    def send_head(self, method: str, path: str, headers: dict[str, str | int]) -> None:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}",
                 *(f"{name}: {value}" for name, value in headers.items()), "", ""]
        self.sock.sendall("\r\n".join(lines).encode("latin-1"))

    def send_file(self, file_descriptor: int, offset: int, count: int) -> None:
        while count > 0:
            block = os.pread(file_descriptor, min(count, SEND_BLOCK), offset)
            if not block:
                raise TusError("the file ended before the chunk did")
            self.sock.sendall(block)
            offset += len(block)
            count -= len(block)

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise TusError("the server closed the connection before it answered")
        self.buffer += data

    def _line(self) -> bytes:
        while b"\r\n" not in self.buffer:
            self._fill()
        line, self.buffer = self.buffer.split(b"\r\n", 1)
        return line

    def _exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            self._fill()
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    def read_answer(self, method: str) -> Answer:
        status_line = self._line().decode("latin-1")
        parts = status_line.split(" ", 2)
        if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
            raise TusError(f"not an HTTP status line: {status_line!r}")
        status = int(parts[1])
        headers: dict[str, str] = {}
        while line := self._line():
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        if status == 100:  # not asked for, but harmless
            return self.read_answer(method)
        # The body: none for HEAD, 1xx, 204 and 304; else chunked, Content-Length, or up to the close.
        body = b""
        if method == "HEAD" or status in (204, 304):
            pass
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            chunks = []
            while size := int(self._line().split(b";")[0], 16):
                chunks.append(self._exactly(size))
                self._line()
            while self._line():  # trailers
                pass
            body = b"".join(chunks)
        elif "content-length" in headers:
            body = self._exactly(int(headers["content-length"]))
        else:
            try:
                while True:
                    self._fill()
            except TusError:
                pass
            body, self.buffer = self.buffer, b""
            headers["connection"] = "close"
        if parts[0] == "HTTP/1.0" or headers.get("connection", "").lower() == "close":
            self.close()
        return Answer(status, headers, body)


def metadata(**pairs: str) -> str:
    return ",".join(f"{key} {base64.b64encode(value.encode()).decode()}" for key, value in pairs.items())


@dataclass
class Result:
    seconds: float
    upload_url: str
    requests: int
    connections: int  # connections opened (1 unless the server closed one)
    file_url: str  # Ferry-File from the last answer, if the server sent it


def upload(endpoint: str, path: str, chunk: int = 64 * MiB, name: str | None = None) -> Result:
    """Uploads the file at `path` to the tus `endpoint` (e.g. http://127.0.0.1:8080/api/uploads/) in
    PATCHes of `chunk` bytes. Returns the seconds from the connection's start to the last answer."""
    if chunk <= 0:
        raise ValueError("the chunk size must be positive")
    size = os.path.getsize(path)
    name = name or os.path.basename(path)
    connections: dict[tuple[str, int], Connection] = {}
    opened = 0

    def connection_to(url: str) -> tuple[Connection, str]:
        nonlocal opened
        parts = urlsplit(url)
        if parts.scheme != "http":
            raise TusError(f"only http:// URLs are supported, not {url}")
        key = (parts.hostname or "127.0.0.1", parts.port or 80)
        current = connections.get(key)
        if current is None or not current.open:
            current = connections[key] = Connection(*key)
            opened += 1
        return current, (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

    start = time.perf_counter()
    requests = 0
    try:
        with open(path, "rb") as file:
            connection, target = connection_to(endpoint)
            connection.send_head("POST", target, {
                "Tus-Resumable": "1.0.0", "Upload-Length": size, "Upload-Metadata": metadata(filename=name),
                "Content-Length": 0,
            })
            created = connection.read_answer("POST")
            requests += 1
            if created.status != 201 or "location" not in created.headers:
                raise TusError(f"POST {endpoint} answered {created.status} {created.body[:500]!r}")
            upload_url = urljoin(endpoint, created.headers["location"])
            offset = int(created.headers.get("upload-offset", "0"))
            last = created
            while offset < size:
                count = min(chunk, size - offset)
                connection, target = connection_to(upload_url)
                connection.send_head("PATCH", target, {
                    "Tus-Resumable": "1.0.0", "Upload-Offset": offset,
                    "Content-Type": "application/offset+octet-stream", "Content-Length": count,
                })
                try:
                    connection.send_file(file.fileno(), offset, count)
                except OSError as error:  # the server may have refused the body early: say what it answered
                    try:
                        early = connection.read_answer("PATCH")
                    except (OSError, TusError, ValueError):
                        raise TusError(f"PATCH at {offset}: {error}") from error
                    raise TusError(f"PATCH at {offset} answered {early.status} {early.body[:500]!r} "
                                   f"while its body was sent ({error})") from error
                last = connection.read_answer("PATCH")
                requests += 1
                if last.status != 204:
                    raise TusError(f"PATCH at {offset} answered {last.status} {last.body[:500]!r}")
                reached = int(last.headers.get("upload-offset", "-1"))
                if reached != offset + count:
                    raise TusError(f"PATCH at {offset} of {count} bytes answered Upload-Offset {reached}, "
                                   f"not {offset + count}")
                offset = reached
            seconds = time.perf_counter() - start
    finally:
        for connection in connections.values():
            if connection.open:
                connection.close()
    return Result(seconds, upload_url, requests, opened, last.headers.get("ferry-file", ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("endpoint", help="the tus endpoint, e.g. http://127.0.0.1:8080/api/uploads/")
    parser.add_argument("file")
    parser.add_argument("--chunk-mib", type=int, default=64, help="bytes per PATCH, in MiB (default 64)")
    parser.add_argument("--name", help="the filename sent in Upload-Metadata (default: the file's own)")
    arguments = parser.parse_args()
    result = upload(arguments.endpoint, arguments.file, arguments.chunk_mib * MiB, arguments.name)
    size = os.path.getsize(arguments.file)
    print(f"{size} bytes in {result.requests} requests on {result.connections} connection(s), {result.seconds:.3f} s, "
          f"{size / result.seconds / 1e6:.1f} MB/s; upload {result.upload_url}; file {result.file_url}")


if __name__ == "__main__":
    main()
