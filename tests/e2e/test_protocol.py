"""HTTP-level behaviour: ranges (case C06), limits on heads and connections, malformed requests, the CLI."""

import json
import os
import re
from pathlib import Path
import socket
import subprocess
import time

import pytest

from conftest import BINARY, curl, raw_exchange

HUNDRED = bytes(range(100))


@pytest.fixture
def hundred(ferry, tmp_path):
    (tmp_path / "h.bin").write_bytes(HUNDRED)
    assert curl("-T", str(tmp_path / "h.bin"), ferry.url("/api/files/h.bin")).status == 201
    return ferry


# Case C06 on a 100-byte file. `bytes=5-2` is syntactically invalid (last < first): RFC 9110 says to
# ignore such a Range, so the whole file comes back with 200.
@pytest.mark.parametrize("range_header, status, content_range, body", [
    ("bytes=0-0", 206, "bytes 0-0/100", HUNDRED[0:1]),
    ("bytes=-500", 206, "bytes 0-99/100", HUNDRED),
    ("bytes=-100", 206, "bytes 0-99/100", HUNDRED),
    ("bytes=100-", 416, "bytes */100", None),
    ("bytes=99-", 206, "bytes 99-99/100", HUNDRED[99:]),
    ("bytes=5-2", 200, None, HUNDRED),
    ("bytes=10-19", 206, "bytes 10-19/100", HUNDRED[10:20]),
    ("bytes=90-200", 206, "bytes 90-99/100", HUNDRED[90:]),
    ("bytes=-0", 416, "bytes */100", None),
    ("items=0-5", 200, None, HUNDRED),
    ("bytes=abc", 200, None, HUNDRED),
])
def test_c06_single_ranges(hundred, range_header, status, content_range, body):
    reply = curl("-H", f"Range: {range_header}", hundred.url("/api/files/h.bin"))
    assert reply.status == status
    assert reply.headers.get("content-range") == content_range
    if body is not None:
        assert reply.body == body
        assert reply.headers["content-length"] == str(len(body))
    else:
        assert reply.error_code() == "range_not_satisfiable"


def test_c06_two_ranges_come_back_as_multipart_byteranges(hundred):
    reply = curl("-H", "Range: bytes=0-1,5-6", hundred.url("/api/files/h.bin"))
    assert reply.status == 206
    content_type = reply.headers["content-type"]
    assert content_type.startswith("multipart/byteranges; boundary=")
    boundary = content_type.split("boundary=")[1].encode()
    parts = reply.body.split(b"--" + boundary)
    assert parts[0] == b"" and parts[-1] == b"--\r\n"
    bodies = []
    for part in parts[1:-1]:
        head, _, data = part.strip(b"\r\n").partition(b"\r\n\r\n")
        bodies.append((head, data))
    assert b"Content-Range: bytes 0-1/100" in bodies[0][0] and bodies[0][1] == HUNDRED[0:2]
    assert b"Content-Range: bytes 5-6/100" in bodies[1][0] and bodies[1][1] == HUNDRED[5:7]
    assert int(reply.headers["content-length"]) == len(reply.body)


def test_if_range_with_a_stale_validator_sends_the_whole_file(hundred):
    etag = curl("-I", hundred.url("/api/files/h.bin")).headers["etag"]
    fresh = curl("-H", "Range: bytes=0-9", "-H", f"If-Range: {etag}", hundred.url("/api/files/h.bin"))
    assert fresh.status == 206 and fresh.body == HUNDRED[:10]
    stale = curl("-H", "Range: bytes=0-9", "-H", 'If-Range: "stale"', hundred.url("/api/files/h.bin"))
    assert stale.status == 200 and stale.body == HUNDRED


def json_error_of(raw: bytes) -> dict:
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"content-type: application/json" in head.lower(), head
    return json.loads(body)["error"]


def test_oversize_head_gets_431_and_oversize_url_gets_414_with_json(ferry):
    big_header = raw_exchange(ferry.port, b"GET /api/files/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 100_000
                              + b"\r\nConnection: close\r\n\r\n")
    assert big_header.startswith(b"HTTP/1.1 431")
    assert json_error_of(big_header)["code"] == "headers_too_large"
    long_url = raw_exchange(ferry.port, b"GET /api/files/" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                            b"Connection: close\r\n\r\n")
    assert long_url.startswith(b"HTTP/1.1 414")
    assert json_error_of(long_url)["code"] == "uri_too_long"
    long_query = raw_exchange(ferry.port, b"GET /api/files/?q=" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              b"Connection: close\r\n\r\n")
    assert long_query.startswith(b"HTTP/1.1 414")
    # A head just under the limits is served.
    assert curl("-H", "X-Fine: " + "a" * 30_000, ferry.url("/api/files/")).status == 200


def test_a_head_past_the_engine_pool_is_still_refused(ferry):
    # Past libmicrohttpd's own buffer (256 KiB) the library answers by itself (its HTML, not our JSON).
    big_header = raw_exchange(ferry.port, b"GET /api/files/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " + b"a" * 300_000
                              + b"\r\nConnection: close\r\n\r\n")
    assert big_header.startswith(b"HTTP/1.1 431")
    long_url = raw_exchange(ferry.port, b"GET /api/files/" + b"a" * 300_000 + b" HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    assert long_url.startswith(b"HTTP/1.1 414")
    # The server is unharmed.
    assert curl(ferry.url("/api/files/")).status == 200


@pytest.mark.parametrize("length, status", [("abc", 400), ("-5", 400), ("99999999999999999999999", 413)])
def test_malformed_content_length_is_refused(ferry, length, status):
    reply = raw_exchange(ferry.port, f"PUT /api/files/z HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\n\r\n"
                         .encode())
    assert reply.startswith(f"HTTP/1.1 {status}".encode())
    assert not (ferry.root / "z").exists()


def test_idle_connections_are_closed(start_ferry):
    ferry = start_ferry("--idle-timeout", "1")
    with socket.create_connection(("127.0.0.1", ferry.port), timeout=15) as idle:
        idle.sendall(b"GET /api/files/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # an unfinished head, then silence
        started = time.time()
        assert idle.recv(1) == b""  # the server closes it
        assert time.time() - started < 14
    assert curl(ferry.url("/api/files/")).status == 200


def test_connections_per_client_are_capped_without_starving_other_clients(start_ferry):
    ferry = start_ferry("--max-connections-per-client", "4")
    hogs = [socket.create_connection(("127.0.0.1", ferry.port)) for _ in range(4)]
    try:
        for hog in hogs:
            hog.sendall(b"GET /api/files/ HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # held open, head unfinished
        time.sleep(0.2)
        result = subprocess.run(["curl", "-sS", "--max-time", "5", "-o", "/dev/null", "-w", "%{http_code}",
                                 ferry.url("/api/files/")], capture_output=True, text=True)
        assert result.stdout in ("000", ""), "a fifth connection from the same address must be refused"
        other = subprocess.run(["curl", "-sS", "--max-time", "5", "--interface", "127.0.0.2", "-o", "/dev/null",
                                "-w", "%{http_code}", ferry.url("/api/files/")], capture_output=True, text=True)
        assert other.stdout == "200", other.stderr
    finally:
        for hog in hogs:
            hog.close()


def test_cli_help_version_and_bad_options():
    help_text = subprocess.run([BINARY, "--help"], capture_output=True, text=True)
    assert help_text.returncode == 0 and "ferry serve" in help_text.stdout
    serve_help = subprocess.run([BINARY, "serve", "--help"], capture_output=True, text=True)
    assert serve_help.returncode == 0
    for flag in ["--root", "--listen", "--max-request-body", "FERRY_ROOT", "FERRY_LISTEN", "FERRY_MAX_REQUEST_BODY"]:
        assert flag in serve_help.stdout
    version = subprocess.run([BINARY, "--version"], capture_output=True, text=True)
    assert version.returncode == 0 and version.stdout.startswith("ferry ")
    bad = subprocess.run([BINARY, "serve", "--max-request-body", "lots"], capture_output=True, text=True)
    assert bad.returncode == 2 and "--max-request-body" in bad.stderr
    unknown = subprocess.run([BINARY, "fly"], capture_output=True, text=True)
    assert unknown.returncode == 2


def test_environment_variables_configure_serve(tmp_path):
    root = tmp_path / "env-root"
    log = tmp_path / "env.log"
    with open(log, "w") as handle:
        process = subprocess.Popen([BINARY, "serve"], stderr=handle,
                                   env={**os.environ, "FERRY_ROOT": str(root), "FERRY_LISTEN": "127.0.0.1:0",
                                        "FERRY_MAX_REQUEST_BODY": "1000"})
        try:
            deadline = time.time() + 10
            while "event=listening" not in log.read_text() and time.time() < deadline:
                time.sleep(0.02)
            first = log.read_text().splitlines()[0]
            assert f"root={root}" in first and "max_request_body=1000" in first
            assert root.is_dir()
        finally:
            process.terminate()
            process.wait(10)


def test_readme_configuration_table_matches_serve_help():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    table_flags = set(re.findall(r"^\| `(--[a-z-]+)", readme, re.MULTILINE))
    help_flags = set(re.findall(r"^  (--[a-z-]+) VALUE", subprocess.run([BINARY, "serve", "--help"],
                                                                           capture_output=True, text=True).stdout,
                                re.MULTILINE))
    assert table_flags == help_flags and help_flags
