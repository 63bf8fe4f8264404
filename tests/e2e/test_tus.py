"""The tus 1.0.0 server at /api/uploads/: the status matrix, metadata, completion, interruptions."""

import hashlib
import json
import os
import re
import signal
import socket
import threading
import time
import urllib.parse

import pytest

from conftest import curl, make_random_file, sha256_file, wait_for_log
from tus_client import Tus, metadata


@pytest.fixture
def tus(ferry):
    return Tus(ferry.port)


def created_url(tus, status, headers):
    assert status == 201, headers
    assert not headers["location"].startswith("http"), "Location must be relative to stay right behind proxies"
    return tus.url_of(headers["location"])


def test_options_advertises_version_extensions_and_limits(start_ferry):
    ferry = start_ferry("--max-request-body", "95MiB", "--max-upload-size", "10GiB")
    status, headers, _ = Tus(ferry.port).request("OPTIONS", "/api/uploads/", tus=False)
    assert status == 204
    assert headers["tus-version"] == "1.0.0"
    assert headers["tus-resumable"] == "1.0.0"
    extensions = headers["tus-extension"].split(",")
    for name in ["creation", "creation-with-upload", "creation-defer-length", "termination", "expiration"]:
        assert name in extensions
    assert headers["tus-max-size"] == str(10 << 30)
    assert headers["ferry-max-request-body"] == str(95 << 20)
    config = curl(ferry.url("/api/config")).json()
    assert config["maxRequestBody"] == 95 << 20
    assert config["tus"]["maxSize"] == 10 << 30
    assert config["tus"]["endpoint"] == "/api/uploads/"


def test_create_patch_head_and_complete(ferry, tus, tmp_path):
    data = os.urandom(300_000)
    status, headers, _ = tus.create(len(data), metadata(filename="report.pdf", folder="docs/2026"))
    url = created_url(tus, status, headers)
    assert headers["upload-offset"] == "0"
    assert "upload-expires" in headers
    status, headers, _ = tus.head(url)
    assert status == 200
    assert headers["upload-offset"] == "0" and headers["upload-length"] == str(len(data))
    assert headers["cache-control"] == "no-store"
    assert headers["upload-metadata"] == metadata(filename="report.pdf", folder="docs/2026")
    status, headers, _ = tus.patch(url, 0, data[:100_000])
    assert status == 204 and headers["upload-offset"] == "100000"
    assert not (ferry.root / "docs/2026/report.pdf").exists(), "nothing partial under the real name"
    status, headers, _ = tus.patch(url, 100_000, data[100_000:])
    assert status == 204 and headers["upload-offset"] == str(len(data))
    assert headers["ferry-file"] == "/api/files/docs/2026/report.pdf"
    assert (ferry.root / "docs/2026/report.pdf").read_bytes() == data
    status, headers, _ = tus.head(url)
    assert status == 200 and headers["upload-offset"] == str(len(data))


def test_patch_to_a_completed_upload_with_an_empty_or_extra_body(ferry, tus):
    """A client that resends the last (empty) PATCH, chunked or not, is told the upload is done; a byte more
    is refused as past the length. Neither may reach the data file, which is gone once the file is placed
    (seen: a chunked PATCH got a 500 naming the server's internal path)."""
    status, headers, _ = tus.create(5, metadata(filename="done.txt"))
    url = created_url(tus, status, headers)
    assert tus.patch(url, 0, b"hello")[0] == 204
    path = urllib.parse.urlsplit(url).path

    def raw_patch(body_part: bytes) -> bytes:
        with socket.create_connection(("127.0.0.1", ferry.port), timeout=10) as connection:
            connection.sendall(f"PATCH {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\n"
                               "Upload-Offset: 5\r\nContent-Type: application/offset+octet-stream\r\n"
                               "Connection: close\r\n".encode() + body_part)
            reply = b""
            while chunk := connection.recv(65536):
                reply += chunk
            return reply

    for empty in (b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n", b"Content-Length: 0\r\n\r\n"):
        reply = raw_patch(empty)
        assert reply.startswith(b"HTTP/1.1 204"), reply
        assert b"Upload-Offset: 5\r\n" in reply and b"Ferry-File: /api/files/done.txt\r\n" in reply
    for extra in (b"Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\n\r\n", b"Content-Length: 1\r\n\r\nx"):
        reply = raw_patch(extra)
        assert reply.startswith(b"HTTP/1.1 413"), reply
        assert json.loads(reply.split(b"\r\n\r\n", 1)[1])["error"]["code"] == "past_upload_length"
        assert b".ferry" not in reply
    assert (ferry.root / "done.txt").read_bytes() == b"hello"


def test_without_metadata_the_upload_gets_a_name_from_its_id(ferry, tus):
    status, headers, _ = tus.create(5)
    url = created_url(tus, status, headers)
    upload_id = url.rsplit("/", 1)[1]
    assert re.fullmatch(r"[0-9a-f]{32}", upload_id)
    status, headers, _ = tus.patch(url, 0, b"hello")
    assert status == 204
    assert (ferry.root / f"upload-{upload_id}").read_bytes() == b"hello"
    assert "upload-metadata" not in tus.head(url)[1]


def test_c03_zero_length_upload_is_complete_at_creation(ferry, tus):
    status, headers, _ = tus.create(0, metadata(filename="empty.txt"))
    url = created_url(tus, status, headers)
    assert headers["ferry-file"] == "/api/files/empty.txt"
    assert (ferry.root / "empty.txt").stat().st_size == 0
    status, headers, _ = tus.head(url)
    assert headers["upload-offset"] == "0" and headers["upload-length"] == "0"


def test_creation_with_upload_and_deferred_length(ferry, tus):
    status, headers, _ = tus.create(11, metadata(filename="with-body.txt"), body=b"hello world")
    assert status == 201 and headers["upload-offset"] == "11"
    assert (ferry.root / "with-body.txt").read_bytes() == b"hello world"
    status, headers, _ = tus.create(meta=metadata(filename="deferred.txt"), headers={"Upload-Defer-Length": "1"})
    url = created_url(tus, status, headers)
    assert tus.head(url)[1]["upload-defer-length"] == "1"
    status, headers, _ = tus.patch(url, 0, b"abc")
    assert status == 204 and headers["upload-offset"] == "3"
    status, headers, _ = tus.patch(url, 3, b"def", {"Upload-Length": "6"})
    assert status == 204, headers
    assert (ferry.root / "deferred.txt").read_bytes() == b"abcdef"


def test_whole_file_sha256_is_checked(ferry, tus):
    good = hashlib.sha256(b"payload").hexdigest()
    status, headers, _ = tus.create(7, metadata(filename="good.bin", sha256=good))
    assert tus.patch(created_url(tus, status, headers), 0, b"payload")[0] == 204
    assert (ferry.root / "good.bin").read_bytes() == b"payload"
    status, headers, _ = tus.create(7, metadata(filename="bad.bin", sha256="0" * 64))
    url = created_url(tus, status, headers)
    status, headers, body = tus.patch(url, 0, b"payload")
    assert status == 460
    error = json.loads(body)["error"]
    assert error["code"] == "checksum_mismatch" and error["actual"] == good
    assert not (ferry.root / "bad.bin").exists()
    assert tus.head(url)[0] == 404


def test_collision_policy_applies_to_tus(ferry, tus):
    (ferry.root / "taken.txt").write_bytes(b"original")
    status, headers, body = tus.create(3, metadata(filename="taken.txt"))
    assert status == 409 and json.loads(body)["error"]["code"] == "file_exists"
    status, headers, _ = tus.create(3, metadata(filename="taken.txt", onconflict="rename"))
    assert tus.patch(created_url(tus, status, headers), 0, b"new")[1]["ferry-file"] == "/api/files/taken%20%281%29.txt"
    status, headers, _ = tus.create(3, metadata(filename="taken.txt"), headers={})
    status, headers, _ = tus.request("POST", "/api/uploads/?overwrite=1", b"",
                                     {"Upload-Length": "3", "Upload-Metadata": metadata(filename="taken.txt")})
    assert tus.patch(created_url(tus, status, headers), 0, b"rep")[0] == 204
    assert (ferry.root / "taken.txt").read_bytes() == b"rep"


def test_termination(ferry, tus):
    status, headers, _ = tus.create(10, metadata(filename="gone.txt"))
    url = created_url(tus, status, headers)
    tus.patch(url, 0, b"12345")
    upload_id = url.rsplit("/", 1)[1]
    assert (ferry.root / ".ferry/uploads" / upload_id).exists()
    assert tus.request("DELETE", url)[0] == 204
    assert tus.head(url)[0] == 404
    assert not (ferry.root / ".ferry/uploads" / upload_id).exists()
    assert tus.request("DELETE", url)[0] == 404


def test_method_override_and_relative_location_without_slash(ferry, tus):
    status, headers, _ = tus.request("POST", "/api/uploads", b"", {"Upload-Length": "2"})
    assert status == 201 and headers["location"].startswith("uploads/")
    url = Tus(ferry.port, "/api/uploads").url_of(headers["location"])
    status, headers, _ = tus.request("POST", url, b"ok", {"X-HTTP-Method-Override": "PATCH", "Upload-Offset": "0",
                                                         "Content-Type": "application/offset+octet-stream"})
    assert status == 204 and headers["upload-offset"] == "2"


# The status matrix: every method's errors, each with a JSON message and nothing written.
def test_status_matrix_errors(ferry, tus):
    status, headers, _ = tus.create(10, metadata(filename="m.txt"))
    url = created_url(tus, status, headers)
    cases = [
        ("POST", "/api/uploads/", {}, b"", 400, "missing_upload_length"),
        ("POST", "/api/uploads/", {"Upload-Length": "-1"}, b"", 400, "bad_upload_length"),
        ("POST", "/api/uploads/", {"Upload-Length": "abc"}, b"", 400, "bad_upload_length"),
        ("POST", "/api/uploads/", {"Upload-Length": "1", "Upload-Defer-Length": "1"}, b"", 400, "bad_upload_length"),
        ("POST", "/api/uploads/", {"Upload-Defer-Length": "2"}, b"", 400, "bad_upload_defer_length"),
        ("POST", "/api/uploads/", {"Upload-Length": "1", "Upload-Metadata": "filename !!!"}, b"", 400,
         "bad_upload_metadata"),
        ("POST", "/api/uploads/", {"Upload-Length": "1", "Upload-Metadata": "a YQ==,a YQ=="}, b"", 400,
         "bad_upload_metadata"),
        ("POST", "/api/uploads/", {"Upload-Length": "1", "Upload-Metadata": metadata(filename="../x")}, b"", 400,
         "bad_path"),
        ("POST", "/api/uploads/", {"Upload-Length": "1", "Upload-Metadata": metadata(sha256="xyz")}, b"", 400,
         "bad_sha256"),
        ("POST", "/api/uploads/", {"Upload-Length": "5", "Content-Type": "text/plain"}, b"hello", 415,
         "unsupported_media_type"),
        ("POST", "/api/uploads/", {"Upload-Length": "2", "Content-Type": "application/offset+octet-stream"},
         b"hello", 413, "past_upload_length"),
        ("POST", "/api/uploads/", {"Upload-Length": str(1 << 60)}, b"", 507, "insufficient_storage"),
        ("PATCH", url, {"Upload-Offset": "0", "Content-Type": "text/plain"}, b"x", 415, "unsupported_media_type"),
        ("PATCH", url, {"Content-Type": "application/offset+octet-stream"}, b"x", 400, "missing_upload_offset"),
        ("PATCH", url, {"Upload-Offset": "-1", "Content-Type": "application/offset+octet-stream"}, b"x", 400,
         "bad_upload_offset"),
        ("PATCH", url, {"Upload-Offset": "5", "Content-Type": "application/offset+octet-stream"}, b"x", 409,
         "offset_mismatch"),
        ("PATCH", url, {"Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}, b"x" * 11, 413,
         "past_upload_length"),
        ("PATCH", "/api/uploads/" + "0" * 32, {"Upload-Offset": "0",
                                              "Content-Type": "application/offset+octet-stream"}, b"x", 404,
         "not_found"),
        ("PATCH", "/api/uploads/../../etc/passwd", {"Upload-Offset": "0"}, b"", 404, "not_found"),
        ("HEAD", "/api/uploads/" + "f" * 32, {}, b"", 404, None),
        ("DELETE", "/api/uploads/" + "f" * 32, {}, b"", 404, "not_found"),
        ("PUT", url, {}, b"", 405, "method_not_allowed"),
    ]
    for method, path, headers, body, expected, code in cases:
        status, response_headers, data = tus.request(method, path, body, headers)
        assert status == expected, (method, path, headers, status, data)
        assert response_headers["tus-resumable"] == "1.0.0"
        if code:
            assert json.loads(data)["error"]["code"] == code, (method, headers, data)
    # Wrong or missing Tus-Resumable: 412 with Tus-Version, for every method but OPTIONS.
    for method in ["POST", "HEAD", "PATCH", "DELETE"]:
        status, headers, _ = tus.request(method, url if method != "POST" else "/api/uploads/", b"",
                                         {"Tus-Resumable": "0.2.2", "Upload-Length": "1"}, tus=False)
        assert status == 412 and headers["tus-version"] == "1.0.0"
    # Nothing was written by any of them.
    status, headers, _ = tus.head(url)
    assert headers["upload-offset"] == "0"


def start_silent_patch(port, url, length, sent, fill=b"a"):
    """Opens a PATCH that declares `length` bytes, sends `sent` of them, then stays silent: what a client
    whose network died looks like to the server. Returns the socket."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall((f"PATCH {url} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
                  f"Content-Type: application/offset+octet-stream\r\nContent-Length: {length}\r\n\r\n").encode()
                 + fill * sent)
    return sock


def test_interrupted_patch_keeps_its_bytes(ferry, tus):
    status, headers, _ = tus.create(10_000_000, metadata(filename="cut.bin"))
    url = created_url(tus, status, headers)
    with start_silent_patch(ferry.port, url, 10_000_000, 3_000_000):
        time.sleep(0.3)
    deadline = time.time() + 10
    while time.time() < deadline and tus.head(url)[1]["upload-offset"] == "0":
        time.sleep(0.05)
    assert tus.head(url)[1]["upload-offset"] == "3000000"
    status, headers, _ = tus.patch(url, 3_000_000, b"b" * 7_000_000)
    assert status == 204
    assert (ferry.root / "cut.bin").read_bytes() == b"a" * 3_000_000 + b"b" * 7_000_000


def test_c10_a_second_request_while_a_patch_still_streams(ferry, tus):
    """The client thinks its connection died and resumes; the server still has the old PATCH open."""
    status, headers, _ = tus.create(20_000_000, metadata(filename="race.bin"))
    url = created_url(tus, status, headers)
    old = start_silent_patch(ferry.port, url, 20_000_000, 2_000_000)
    time.sleep(0.3)  # the old request is open, silent, and holds the upload
    status, headers, _ = tus.head(url)
    assert status == 200, "HEAD must not fail (browser clients restart on any HEAD error but 423)"
    offset = int(headers["upload-offset"])
    assert offset == 2_000_000, "the cut request's durable bytes are kept and counted"
    # The old connection was cut: its client sees it end (EOF or reset), not hang.
    old.settimeout(5)
    ended = False
    try:
        while old.recv(65536):
            pass
        ended = True
    except ConnectionResetError:
        ended = True
    except socket.timeout:
        ended = False
    assert ended, "the old request must be cut off, not left open"
    old.close()
    status, headers, _ = tus.patch(url, offset, b"b" * (20_000_000 - offset))
    assert status == 204
    assert sha256_file(ferry.root / "race.bin") == hashlib.sha256(b"a" * 2_000_000 + b"b" * 18_000_000).hexdigest()


def test_c10_a_second_patch_gets_423_then_succeeds(ferry, tus):
    status, headers, _ = tus.create(4_000_000, metadata(filename="race2.bin"))
    url = created_url(tus, status, headers)
    old = start_silent_patch(ferry.port, url, 4_000_000, 1_000_000)
    time.sleep(0.3)
    status, headers, body = tus.patch(url, 0, b"c" * 4_000_000)
    assert status in (409, 423), body
    if status == 423:
        assert headers["retry-after"] == "1"
    old.close()
    deadline = time.time() + 10
    while True:
        status, headers, _ = tus.head(url)
        if status == 200:
            break
        assert status == 423 and time.time() < deadline
        time.sleep(0.2)
    offset = int(headers["upload-offset"])
    assert offset == 1_000_000
    assert tus.patch(url, offset, b"d" * 3_000_000)[0] == 204
    assert (ferry.root / "race2.bin").read_bytes() == b"a" * 1_000_000 + b"d" * 3_000_000


def test_c12_completion_is_a_rename_not_a_copy(ferry, tus, tmp_path):
    size = 256 << 20
    source = tmp_path / "big.bin"
    digest = make_random_file(source, size)
    status, headers, _ = tus.create(size, metadata(filename="c12.bin", sha256=digest))
    url = created_url(tus, status, headers)
    upload_id = url.rsplit("/", 1)[1]
    with open(source, "rb") as handle:
        assert tus.patch(url, 0, handle.read(size - 1))[0] == 204
        inode = os.stat(ferry.root / ".ferry/uploads" / upload_id).st_ino
        status, headers, _ = tus.patch(url, size - 1, handle.read())
    assert status == 204
    assert os.stat(ferry.root / "c12.bin").st_ino == inode, "the finished file must be the upload's own data file"
    assert sha256_file(ferry.root / "c12.bin") == digest
    line = wait_for_log(ferry, "event=upload_complete")
    assert f"sha256={digest}" in line


@pytest.mark.parametrize("algorithm", ["sha1", "sha256", "md5"])
def test_checksum_extension(ferry, tus, algorithm):
    import base64

    def checksum(data, name=algorithm):
        return f"{name} {base64.b64encode(hashlib.new(name, data).digest()).decode()}"

    status, headers, _ = tus.request("OPTIONS", "/api/uploads/", tus=False)
    assert "checksum" in headers["tus-extension"].split(",")
    assert algorithm in headers["tus-checksum-algorithm"].split(",")
    status, headers, _ = tus.create(8, metadata(filename=f"sum-{algorithm}.bin"))
    url = created_url(tus, status, headers)
    assert tus.patch(url, 0, b"abcd", {"Upload-Checksum": checksum(b"abcd")})[0] == 204
    status, headers, body = tus.patch(url, 4, b"efgh", {"Upload-Checksum": checksum(b"WRONG")})
    assert status == 460
    assert json.loads(body)["error"]["code"] == "checksum_mismatch"
    assert headers["upload-offset"] == "4"
    assert tus.head(url)[1]["upload-offset"] == "4", "nothing of the mismatched request is kept"
    status, headers, _ = tus.patch(url, 4, b"efgh", {"Upload-Checksum": checksum(b"efgh")})
    assert status == 204
    assert (ferry.root / f"sum-{algorithm}.bin").read_bytes() == b"abcdefgh"


def test_checksum_errors(ferry, tus):
    status, headers, _ = tus.create(4, metadata(filename="sum-errors.bin"))
    url = created_url(tus, status, headers)
    for header, code in [("crc32 AAAAAA==", "unsupported_checksum_algorithm"), ("sha1 AAAA", "bad_checksum"),
                         ("sha1", "unsupported_checksum_algorithm"), ("sha1 !!!!", "bad_checksum")]:
        status, _, body = tus.patch(url, 0, b"abcd", {"Upload-Checksum": header})
        assert status == 400 and json.loads(body)["error"]["code"] == code, header
    assert tus.head(url)[1]["upload-offset"] == "0"


def wait_for_assembly(tus, url, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status, headers, _ = tus.head(url)
        assert status == 200
        if headers.get("ferry-assembly") == "done":
            return headers
        assert "upload-offset" not in headers, "a final upload has no offset until it is assembled"
        assert not headers.get("ferry-assembly", "").startswith("failed"), headers
        time.sleep(0.05)
    raise AssertionError("the final upload was never assembled")


def make_partials(tus, pieces):
    urls = []
    for piece in pieces:
        status, headers, _ = tus.create(len(piece), headers={"Upload-Concat": "partial"})
        url = created_url(tus, status, headers)
        assert tus.head(url)[1]["upload-concat"] == "partial"
        urls.append(url)
    return urls


def test_concatenation_of_finished_partials(ferry, tus):
    pieces = [os.urandom(300_000), os.urandom(5), os.urandom(1_000_000)]
    urls = make_partials(tus, pieces)
    for url, piece in zip(urls, pieces):
        assert tus.patch(url, 0, piece)[0] == 204
    assert [p.name for p in ferry.root.iterdir() if p.name != ".ferry"] == [], "partial uploads are never stored as files"
    whole = b"".join(pieces)
    concat = "final;" + " ".join(urls[:2]) + " " + ferry.url(urls[2])  # relative and absolute URLs both work
    status, headers, _ = tus.create(meta=metadata(filename="joined.bin", sha256=hashlib.sha256(whole).hexdigest()),
                                    headers={"Upload-Concat": concat})
    final = created_url(tus, status, headers)
    assert "upload-offset" not in headers
    headers = wait_for_assembly(tus, final)
    assert headers["upload-offset"] == str(len(whole)) and headers["upload-length"] == str(len(whole))
    assert headers["upload-concat"] == concat
    assert headers["ferry-file"] == "/api/files/joined.bin"
    assert (ferry.root / "joined.bin").read_bytes() == whole
    assert all(tus.head(url)[0] == 404 for url in urls), "partials are removed after concatenation"
    assert tus.patch(final, len(whole), b"x")[0] == 403


def test_concatenation_unfinished(ferry, tus):
    pieces = [b"first-", b"second-", b"third"]
    urls = make_partials(tus, pieces)
    assert tus.patch(urls[0], 0, pieces[0])[0] == 204
    status, headers, _ = tus.create(meta=metadata(filename="early.txt"), headers={"Upload-Concat": "final;" + " ".join(urls)})
    final = created_url(tus, status, headers)
    status, headers, _ = tus.head(final)
    assert headers["ferry-assembly"] == "waiting-for-parts" and "upload-offset" not in headers
    assert headers["upload-length"] == str(sum(map(len, pieces)))
    delete = tus.request("DELETE", urls[1])
    assert delete[0] == 409 and json.loads(delete[2])["error"]["code"] == "partial_in_use"
    assert tus.patch(urls[2], 0, pieces[2])[0] == 204
    assert tus.patch(urls[1], 0, pieces[1])[0] == 204
    wait_for_assembly(tus, final)
    assert (ferry.root / "early.txt").read_bytes() == b"first-second-third"


def test_concatenation_errors(ferry, tus):
    status, headers, _ = tus.create(3, metadata(filename="plain.txt"))
    plain = created_url(tus, status, headers)
    partial = make_partials(tus, [b"abc"])[0]
    for concat, extra, code in [
        ("final;" + plain, {}, "not_a_partial_upload"),
        ("final;/api/uploads/" + "a" * 32, {}, "unknown_partial_upload"),
        ("final;", {}, "bad_upload_concat"),
        ("whole", {}, "bad_upload_concat"),
        ("final;" + partial, {"Upload-Length": "3"}, "bad_upload_length"),
    ]:
        status, _, body = tus.request("POST", "/api/uploads/", b"", {"Upload-Concat": concat, **extra})
        assert status == 400 and json.loads(body)["error"]["code"] == code, (concat, body)


def test_cors_for_allowed_origins_on_success_and_errors(start_ferry):
    ferry = start_ferry("--cors-origins", "https://app.example")
    tus = Tus(ferry.port)
    status, headers, _ = tus.request("OPTIONS", "/api/uploads/", tus=False, headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "upload-length,tus-resumable,upload-metadata"})
    assert status == 204
    assert headers["access-control-allow-origin"] == "https://app.example"
    for name in ["Upload-Length", "Tus-Resumable", "Upload-Metadata", "Upload-Offset"]:
        assert name in headers["access-control-allow-headers"]
    assert "PATCH" in headers["access-control-allow-methods"]
    status, headers, _ = tus.create(3, headers={"Origin": "https://app.example"})
    assert status == 201
    exposed = headers["access-control-expose-headers"]
    for name in ["Location", "Upload-Offset", "Upload-Length", "Tus-Resumable", "Upload-Metadata", "Upload-Expires"]:
        assert name in exposed
    status, headers, _ = tus.head("/api/uploads/" + "0" * 32, headers={"Origin": "https://app.example"})
    assert status == 404 and headers["access-control-allow-origin"] == "https://app.example", "errors carry CORS too"
    status, headers, _ = tus.create(3, headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in headers


def test_idle_unfinished_uploads_expire(start_ferry):
    ferry = start_ferry("--upload-expiry", "2")
    tus = Tus(ferry.port)
    status, headers, _ = tus.create(10, metadata(filename="stale.bin"))
    url = created_url(tus, status, headers)
    tus.patch(url, 0, b"12345")
    expires = tus.head(url)[1]["upload-expires"]
    assert expires.endswith("GMT")
    upload_id = url.rsplit("/", 1)[1]
    deadline = time.time() + 15
    while time.time() < deadline and tus.head(url)[0] == 200:
        time.sleep(0.2)
    assert tus.head(url)[0] == 404
    assert not (ferry.root / ".ferry/uploads" / upload_id).exists()
    assert f"event=upload_expired upload={upload_id}" in ferry.logs()


def test_a_head_does_not_cut_a_patch_that_is_still_sending(ferry, tus):
    """A progress poller (or a second tab) must not abort a healthy upload."""
    import threading

    size = 40 * 65536
    status, headers, _ = tus.create(size, metadata(filename="live.bin"))
    url = created_url(tus, status, headers)
    result = {}

    def slow_patch():
        with socket.create_connection(("127.0.0.1", ferry.port)) as sock:
            sock.sendall((f"PATCH {url} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
                          f"Content-Type: application/offset+octet-stream\r\nContent-Length: {size}\r\n\r\n").encode())
            for _ in range(40):
                sock.sendall(b"L" * 65536)
                time.sleep(0.05)
            result["response"] = sock.recv(65536)

    sender = threading.Thread(target=slow_patch)
    sender.start()
    time.sleep(0.5)
    status, headers, _ = tus.head(url)
    assert status in (200, 423)
    sender.join()
    assert result["response"].startswith(b"HTTP/1.1 204"), result["response"][:200]
    assert (ferry.root / "live.bin").read_bytes() == b"L" * size


def test_sigkill_during_a_checksummed_patch_keeps_none_of_it(start_ferry):
    import base64
    import signal

    ferry = start_ferry()
    tus = Tus(ferry.port)
    status, headers, _ = tus.create(8_000_000, metadata(filename="verified.bin"))
    url = created_url(tus, status, headers)
    upload_id = url.rsplit("/", 1)[1]
    good = os.urandom(8_000_000)
    checksum = "sha1 " + base64.b64encode(hashlib.sha1(good).digest()).decode()
    sock = socket.create_connection(("127.0.0.1", ferry.port))
    sock.sendall((f"PATCH {url} HTTP/1.1\r\nHost: 127.0.0.1\r\nTus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\n"
                  f"Upload-Checksum: {checksum}\r\n"
                  "Content-Type: application/offset+octet-stream\r\nContent-Length: 8000000\r\n\r\n").encode()
                 + b"\xee" * 3_000_000)  # bytes that will never match
    data = ferry.root / ".ferry/uploads" / upload_id
    deadline = time.time() + 10
    while data.stat().st_size < 2_000_000:  # most of the bad bytes are in the file
        assert time.time() < deadline
        time.sleep(0.01)
    ferry.stop(signal.SIGKILL)
    sock.close()
    again = start_ferry(root=ferry.root)
    status, headers, _ = Tus(again.port).head(url)
    assert status == 200 and headers["upload-offset"] == "0", "unverified bytes must not count after a crash"
    assert data.stat().st_size == 0
    status, headers, _ = Tus(again.port).patch(url, 0, good, {"Upload-Checksum": checksum})
    assert status == 204
    assert (again.root / "verified.bin").read_bytes() == good


def test_metadata_that_is_not_utf8_is_refused(ferry, tus):
    status, _, body = tus.create(3, "filename //4=")
    assert status == 400 and json.loads(body)["error"]["code"] == "bad_upload_metadata"


def test_a_name_taken_during_the_upload_can_still_be_placed(ferry, tus):
    status, headers, _ = tus.create(4, metadata(filename="late.bin", folder="t5"))
    url = created_url(tus, status, headers)
    (ferry.root / "t5").mkdir()
    (ferry.root / "t5/late.bin").write_bytes(b"other")
    status, headers, body = tus.patch(url, 0, b"mine")
    assert status == 409
    message = json.loads(body)["error"]["message"]
    assert "Upload-Offset: 4" in message and "rename=1" in message
    assert tus.head(url)[1]["upload-offset"] == "4"
    status, headers, _ = tus.request("PATCH", url + "?rename=1", b"", {
        "Upload-Offset": "4", "Content-Type": "application/offset+octet-stream"})
    assert status == 204 and headers["ferry-file"] == "/api/files/t5/late%20%281%29.bin"
    assert (ferry.root / "t5/late (1).bin").read_bytes() == b"mine"
    assert (ferry.root / "t5/late.bin").read_bytes() == b"other"


def uploads_row(root, upload_id):
    """The upload's record in Ferry's database: (offset, bytes its saved digest state covers). The state is
    OpenSSL's SHA256_CTX: eight 32-bit words of hash, then the message length in bits as Nl, Nh."""
    import sqlite3
    import struct

    with sqlite3.connect(f"file:{root / '.ferry/ferry.db'}?mode=ro", uri=True) as database:
        offset, state = database.execute("SELECT offset, hash_state FROM uploads WHERE id = ?", (upload_id,)).fetchone()
    low, high = struct.unpack_from("<II", state, 32)
    return offset, ((high << 32) | low) // 8


SLOW_HASHING = {"FERRY_TEST_HASH_DELAY_MS": "40"}


def test_each_recorded_offset_comes_with_the_digest_of_exactly_its_bytes(start_ferry):
    """With the hashing slowed down (40 ms per 256 KiB), a PATCH is answered only once its bytes are both
    durable and hashed: the record never has an offset ahead of its digest, so a crash right after the
    answer loses nothing, and the whole-file SHA-256 from the metadata is checked against every byte."""
    ferry = start_ferry(env=SLOW_HASHING)
    tus = Tus(ferry.port)
    data = os.urandom(6 * 1024 * 1024 + 12345)
    status, headers, _ = tus.create(len(data), metadata(filename="slow.bin", sha256=hashlib.sha256(data).hexdigest()))
    url = created_url(tus, status, headers)
    upload_id = url.rsplit("/", 1)[1]
    offset = 0
    for size in (1_000_003, 2 * 1024 * 1024):  # unaligned, then aligned lengths from an unaligned offset
        status, headers, _ = tus.patch(url, offset, data[offset:offset + size])
        offset += size
        assert status == 204 and int(headers["upload-offset"]) == offset
        assert uploads_row(ferry.root, upload_id) == (offset, offset)
    ferry.stop(signal.SIGKILL)
    again = start_ferry(root=ferry.root)
    status, headers, _ = Tus(again.port).head(url)
    assert status == 200 and headers["upload-offset"] == str(offset)
    status, headers, _ = Tus(again.port).patch(url, offset, data[offset:])
    assert status == 204 and headers["ferry-file"] == "/api/files/slow.bin"
    assert sha256_file(again.root / "slow.bin") == hashlib.sha256(data).hexdigest()


def test_heads_waiting_on_live_writers_hold_no_worker(ferry, tus):
    """Many HEADs waiting for silent PATCHes to be cut (3 s of silence) must not hold the threads that
    other requests' blocking work (a PUT's fsync and rename) needs: the PUT is answered while they wait."""
    silent = []
    urls = []
    for index in range(12):
        status, headers, _ = tus.create(10_000_000, metadata(filename=f"held-{index}.bin"))
        url = created_url(tus, status, headers)
        urls.append(url)
        silent.append(start_silent_patch(ferry.port, url, 10_000_000, 1_000_000))
    time.sleep(0.3)
    answered = []

    def head(url):
        status, headers, _ = Tus(ferry.port).head(url)
        answered.append((time.time(), status, headers.get("upload-offset")))

    waiting = [threading.Thread(target=head, args=(url,)) for url in urls]
    for thread in waiting:
        thread.start()
    time.sleep(0.3)
    put = curl("--data-binary", "m" * 100_000, "-X", "PUT", ferry.url("/api/files/meanwhile.bin"))
    put_done = time.time()
    assert put.status == 201
    for thread in waiting:
        thread.join(30)
    assert len(answered) == 12
    assert all(status == 200 and offset == "1000000" for _, status, offset in answered), answered
    assert put_done < min(when for when, _, _ in answered), "the PUT waited for the HEADs"
    for sock in silent:
        sock.close()
