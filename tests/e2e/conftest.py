"""Fixtures that start the real `ferry` binary on an ephemeral loopback port and drive it with curl."""

import hashlib
import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

BINARY = os.environ.get("FERRY_BINARY") or str(Path(__file__).resolve().parents[2] / ".build/release/ferry")


class Ferry:
    """A running `ferry serve` process with a temporary root."""

    def __init__(self, root: Path, log_path: Path, extra_args=(), env=None):
        self.root = root
        self.log_path = log_path
        self.log_file = open(log_path, "w")
        self.process = subprocess.Popen(
            [BINARY, "serve", "--listen", "127.0.0.1:0", "--root", str(root), *extra_args],
            stdout=self.log_file, stderr=self.log_file, env={**os.environ, **(env or {})},
        )
        deadline = time.time() + 20
        self.port = None
        while time.time() < deadline and self.port is None:
            first = log_path.read_text().splitlines()[:1]
            if first:
                match = re.search(r"event=listening address=127\.0\.0\.1:(\d+)", first[0])
                assert match, f"the first log line must name the address: {first[0]}"
                self.port = int(match.group(1))
            elif self.process.poll() is not None:
                raise RuntimeError(f"ferry exited: {log_path.read_text()}")
            else:
                time.sleep(0.02)
        assert self.port, "ferry did not report its address"
        self.base = f"http://127.0.0.1:{self.port}"

    def url(self, path: str) -> str:
        return self.base + path

    def logs(self) -> str:
        return self.log_path.read_text()

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log_file.close()
        return self.process.returncode


class Reply:
    def __init__(self, status: int, headers: dict, body: bytes, raw_headers: str):
        self.status = status
        self.headers = headers
        self.body = body
        self.raw_headers = raw_headers

    def json(self):
        return json.loads(self.body)

    def error_code(self):
        return self.json()["error"]["code"]


def curl(*args, timeout=600) -> Reply:
    """Runs curl and returns the final response (status, lower-cased headers, body)."""
    return _curl_with_body(args, timeout)


def _curl_with_body(args, timeout) -> Reply:
    import tempfile

    with tempfile.NamedTemporaryFile() as body_file, tempfile.NamedTemporaryFile() as header_file:
        completed = subprocess.run(
            ["curl", "-sS", "--globoff", "-D", header_file.name, "-o", body_file.name, *args],
            capture_output=True, timeout=timeout,
        )
        raw = Path(header_file.name).read_bytes().decode("utf-8", errors="replace")
        body = Path(body_file.name).read_bytes()
    blocks = [b for b in raw.split("\r\n\r\n") if b.strip() and not b.startswith("HTTP/1.1 100")]
    if not blocks:
        raise AssertionError(f"curl got no final response (exit {completed.returncode}): {completed.stderr.decode()}")
    last = blocks[-1]
    lines = last.split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    return Reply(status, headers, body, last)


def raw_exchange(port: int, request: bytes, timeout=10) -> bytes:
    """Sends `request` as is on a new connection and returns everything the server sends until it closes."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(request)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def wait_for_log(server, needle: str, timeout=10) -> str:
    """Waits until a log line containing `needle` appears and returns it."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for line in server.logs().splitlines():
            if needle in line:
                return line
        time.sleep(0.02)
    raise AssertionError(f"no log line with {needle!r}:\n{server.logs()}")


def sha256_file(path: Path, chunk=1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def make_random_file(path: Path, size: int) -> str:
    """Writes `size` random bytes (fast: a repeated-free stream from os.urandom) and returns the SHA-256."""
    digest = hashlib.sha256()
    with open(path, "wb") as handle:
        remaining = size
        while remaining:
            block = os.urandom(min(remaining, 8 << 20))
            handle.write(block)
            digest.update(block)
            remaining -= len(block)
    return digest.hexdigest()


@pytest.fixture
def ferry(tmp_path):
    server = Ferry(tmp_path / "root", tmp_path / "ferry.log")
    yield server
    server.stop()


@pytest.fixture
def start_ferry(tmp_path):
    """Starts servers with extra arguments; all are stopped at the end."""
    started = []

    def start(*extra_args, root=None, env=None):
        index = len(started)
        server = Ferry(root or tmp_path / "root", tmp_path / f"ferry-{index}.log", extra_args, env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
