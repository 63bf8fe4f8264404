"""Uploads by PUT and multipart POST: the collision policy, names, empty files, limits."""

import hashlib
import json
import os
import re
import subprocess
import threading
import urllib.parse

import pytest

from conftest import curl, make_random_file, sha256_file

NAMES = ["#1 hit.flac", "what? - why.txt", "90%hello.txt", "naïve café ünï 日本語.bin", "a;b\"c'd.txt",
         "  spaced  .txt"]


def quote(name):
    return urllib.parse.quote(name, safe="")


def filename_star(disposition: str) -> str:
    match = re.search(r"filename\*=UTF-8''([^;]+)", disposition)
    assert match, disposition
    return urllib.parse.unquote(match.group(1), errors="strict")


@pytest.mark.parametrize("name", NAMES)
def test_c05_names_round_trip_through_put_listing_download_and_disposition(ferry, tmp_path, name):
    source = tmp_path / "source"
    source.write_bytes(name.encode() * 3)
    put = curl("-T", str(source), ferry.url("/api/files/names/" + quote(name)))
    assert put.status == 201, put.body
    assert put.json()["path"] == "names/" + name
    assert (ferry.root / "names" / name).read_bytes() == name.encode() * 3
    listing = curl(ferry.url("/api/files/names/")).json()
    assert [e["name"] for e in listing["entries"]] == [name]
    get = curl(ferry.url("/api/files/names/" + quote(name)))
    assert get.body == name.encode() * 3
    assert filename_star(get.headers["content-disposition"]) == name


def test_c05_names_round_trip_through_multipart(ferry, tmp_path):
    args = []
    for index, name in enumerate(NAMES):
        path = tmp_path / f"file{index}"
        path.write_bytes(f"content {index}".encode())
        # In -F, a quoted filename escapes '"' and '\\' with a backslash; curl sends the rest as UTF-8.
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        args += ["-F", f'file{index}=@{path};filename="{escaped}"']
    reply = curl(*args, ferry.url("/api/files/multi/"))
    assert reply.status == 201, reply.body
    stored = {f["path"]: f for f in reply.json()["files"]}
    for index, name in enumerate(NAMES):
        assert (ferry.root / "multi" / name).read_bytes() == f"content {index}".encode(), name
        assert stored["multi/" + name]["sha256"] == hashlib.sha256(f"content {index}".encode()).hexdigest()


def test_c03_empty_files_by_put_and_multipart(ferry, tmp_path):
    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    put = curl("-T", str(empty), ferry.url("/api/files/empty.bin"))
    assert put.status == 201
    assert put.json()["size"] == 0
    assert put.json()["sha256"] == hashlib.sha256(b"").hexdigest()
    assert (ferry.root / "empty.bin").stat().st_size == 0
    explicit = curl("-X", "PUT", "-H", "Content-Length: 0", ferry.url("/api/files/empty2.bin"))
    assert explicit.status == 201
    multi = curl("-F", f"f=@{empty};filename=zero.bin", ferry.url("/api/files/"))
    assert multi.status == 201
    assert multi.json()["files"][0]["size"] == 0
    assert (ferry.root / "zero.bin").stat().st_size == 0
    get = curl(ferry.url("/api/files/zero.bin"))
    assert get.status == 200 and get.body == b"" and get.headers["content-length"] == "0"


def upload_three_ways(ferry, tmp_path, name, data, query=""):
    """PUT and multipart POST of `data` as `name`; returns both replies."""
    source = tmp_path / "payload"
    source.write_bytes(data)
    put = curl("-T", str(source), ferry.url(f"/api/files/{quote(name)}{query}"))
    post = curl("-F", f"f=@{source};filename={name}", ferry.url(f"/api/files/{query}"))
    return put, post


def test_c08_one_collision_policy_for_put_and_multipart(ferry, tmp_path):
    (tmp_path / "orig").write_bytes(b"original")
    assert curl("-T", str(tmp_path / "orig"), ferry.url("/api/files/report.pdf")).status == 201

    put, post = upload_three_ways(ferry, tmp_path, "report.pdf", b"second")
    for reply in (put, post):
        assert reply.status == 409
        assert reply.error_code() == "file_exists"
        message = reply.json()["error"]["message"]
        assert "report.pdf" in message and "overwrite=1" in message and "rename=1" in message
    assert (ferry.root / "report.pdf").read_bytes() == b"original"

    put, post = upload_three_ways(ferry, tmp_path, "report.pdf", b"renamed", "?rename=1")
    assert put.status == 201 and put.json()["path"] == "report (1).pdf"
    assert post.status == 201 and post.json()["files"][0]["path"] == "report (2).pdf"
    assert (ferry.root / "report (2).pdf").read_bytes() == b"renamed"

    put, post = upload_three_ways(ferry, tmp_path, "report.pdf", b"replaced", "?overwrite=1")
    assert put.status == 201 and post.status == 201
    assert (ferry.root / "report.pdf").read_bytes() == b"replaced"

    both = curl("-T", str(tmp_path / "orig"), ferry.url("/api/files/report.pdf?overwrite=1&rename=1"))
    assert both.status == 400


def test_c08_rename_keeps_double_extensions(ferry, tmp_path):
    for _ in range(2):
        reply = curl("-T", "/dev/null", ferry.url("/api/files/backup.tar.gz?rename=1"))
    assert reply.json()["path"] == "backup (1).tar.gz"


def test_c08_concurrent_uploads_of_one_name_never_interleave(ferry, tmp_path):
    size = 64 << 20
    sources = []
    for index in range(2):
        path = tmp_path / f"src{index}"
        sources.append((path, make_random_file(path, size)))
    replies = [None, None]

    def upload(index):
        replies[index] = curl("--limit-rate", "200M", "-T", str(sources[index][0]),
                              ferry.url("/api/files/same.bin"))

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted(r.status for r in replies)
    assert statuses == [201, 409], [r.body for r in replies]
    winner = next(i for i in range(2) if replies[i].status == 201)
    assert sha256_file(ferry.root / "same.bin") == sources[winner][1]
    assert replies[1 - winner].error_code() == "file_exists"
    assert list((ferry.root / ".ferry/tmp").iterdir()) == []


def test_c07_overwrite_gives_a_new_inode_and_keeps_other_links(ferry, tmp_path):
    (tmp_path / "old").write_bytes(b"old content")
    (tmp_path / "new").write_bytes(b"new content")
    curl("-T", str(tmp_path / "old"), ferry.url("/api/files/linked.txt"))
    os.link(ferry.root / "linked.txt", ferry.root / "other-link.txt")
    before = os.stat(ferry.root / "linked.txt").st_ino
    assert curl("-T", str(tmp_path / "new"), ferry.url("/api/files/linked.txt?overwrite=1")).status == 201
    assert os.stat(ferry.root / "linked.txt").st_ino != before
    assert (ferry.root / "linked.txt").read_bytes() == b"new content"
    assert (ferry.root / "other-link.txt").read_bytes() == b"old content"


def test_c07_aborted_overwrite_leaves_the_original(ferry, tmp_path):
    (tmp_path / "orig").write_bytes(b"original bytes")
    curl("-T", str(tmp_path / "orig"), ferry.url("/api/files/keep.bin"))
    big = tmp_path / "big"
    make_random_file(big, 256 << 20)
    client = subprocess.Popen(["curl", "-sS", "--limit-rate", "20M", "-T", str(big),
                               ferry.url("/api/files/keep.bin?overwrite=1")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_temporary_bytes(ferry, 4 << 20)
    client.kill()
    client.wait()
    wait_for_no_temporary_files(ferry)
    assert (ferry.root / "keep.bin").read_bytes() == b"original bytes"


def wait_for_temporary_bytes(ferry, at_least, timeout=30):
    import time
    deadline = time.time() + timeout
    while time.time() < deadline:
        sizes = [p.stat().st_size for p in (ferry.root / ".ferry/tmp").iterdir()]
        if sizes and max(sizes) >= at_least:
            return
        time.sleep(0.05)
    raise AssertionError("the upload never started writing")


def wait_for_no_temporary_files(ferry, timeout=10):
    import time
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not list((ferry.root / ".ferry/tmp").iterdir()):
            return
        time.sleep(0.05)
    raise AssertionError(f"temporary files left: {list((ferry.root / '.ferry/tmp').iterdir())}")


def test_c13_multipart_of_1318912_bytes_with_default_settings(ferry, tmp_path):
    source = tmp_path / "c13.bin"
    digest = make_random_file(source, 1_318_912)
    reply = curl("-F", f"file=@{source}", ferry.url("/api/files/"))
    assert reply.status == 201, reply.body
    assert reply.json()["files"][0]["sha256"] == digest
    assert sha256_file(ferry.root / "c13.bin") == digest


def test_many_files_of_odd_sizes_in_one_multipart_body(ferry, tmp_path):
    """Each part is staged and written on its own while the next arrives: 300 parts of sizes around the
    staging buffer's (128 KiB) and the 4 KiB block's edges all land intact, with their own SHA-256."""
    sizes = ([0, 1, 4095, 4096, 4097, 131_071, 131_072, 131_073, 262_143, 262_144, 262_145, 600_001]
             + [(index * 7919) % 70_000 for index in range(288)])
    body = bytearray()
    boundary = "ferry-many-parts"
    expected = {}
    for index, size in enumerate(sizes):
        data = os.urandom(size)
        expected[f"many/f{index:03}.bin"] = hashlib.sha256(data).hexdigest()
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"f\"; filename=\"f{index:03}.bin\"\r\n"
                 "Content-Type: application/octet-stream\r\n\r\n").encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    source = tmp_path / "body"
    source.write_bytes(body)
    reply = curl("-H", f"Content-Type: multipart/form-data; boundary={boundary}", "--data-binary", f"@{source}",
                 ferry.url("/api/files/many/"))
    assert reply.status == 201, reply.body
    assert {f["path"]: f["sha256"] for f in reply.json()["files"]} == expected
    for path, digest in expected.items():
        assert sha256_file(ferry.root / path) == digest, path


def test_multipart_ignores_plain_fields_and_accepts_subfolders_in_names(ferry, tmp_path):
    (tmp_path / "x").write_bytes(b"xx")
    reply = curl("-F", "comment=hello", "-F", f"f=@{tmp_path / 'x'};filename=sub/dir/x.txt",
                 ferry.url("/api/files/up/"))
    assert reply.status == 201, reply.body
    assert [f["path"] for f in reply.json()["files"]] == ["up/sub/dir/x.txt"]
    hostile = curl("-F", f"f=@{tmp_path / 'x'};filename=../../escape.txt", ferry.url("/api/files/up/"))
    assert hostile.status == 400
    assert not (ferry.root.parent / "escape.txt").exists()


def test_truncated_multipart_stores_nothing(ferry, tmp_path):
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"f\"; filename=\"cut.bin\"\r\n\r\n"
            + b"A" * 5000)  # no closing delimiter
    (tmp_path / "body").write_bytes(body)
    reply = curl("-X", "POST", "-H", "Content-Type: multipart/form-data; boundary=XyZ",
                 "--data-binary", f"@{tmp_path / 'body'}", ferry.url("/api/files/"))
    assert reply.status == 400
    assert reply.error_code() == "bad_multipart"
    assert not (ferry.root / "cut.bin").exists()
    wait_for_no_temporary_files(ferry)


def test_max_request_body_answers_413_before_the_body(start_ferry, tmp_path):
    ferry = start_ferry("--max-request-body", "1MiB")
    big = tmp_path / "big"
    make_random_file(big, 50 << 20)
    # curl sends Expect: 100-continue for large bodies; the 413 must come before any body byte.
    reply = curl("-T", str(big), ferry.url("/api/files/big.bin"))
    assert reply.status == 413
    assert reply.error_code() == "request_too_large"
    assert "1048576" in reply.json()["error"]["message"]
    assert not (ferry.root / "big.bin").exists()
    small = tmp_path / "small"
    small.write_bytes(b"s" * 1000)
    assert curl("-T", str(small), ferry.url("/api/files/small.bin")).status == 201
    log = ferry.logs()
    assert re.search(r"event=request id=\S+ method=PUT path=/api/files/big.bin status=413 bytes_in=0 ", log), log


def test_request_log_lines_are_structured(ferry, tmp_path):
    (tmp_path / "f").write_bytes(b"12345")
    curl("-T", str(tmp_path / "f"), ferry.url("/api/files/logged.txt"))
    line = next(l for l in ferry.logs().splitlines() if "path=/api/files/logged.txt" in l and "event=request" in l)
    for field in ["id=", "method=PUT", "status=201", "bytes_in=5", "bytes_out=", "duration_ms=", "client=127.0.0.1"]:
        assert field in line, line


@pytest.mark.parametrize("body", [
    b"--B\nContent-Disposition: form-data; name=\"f\"; filename=\"lf.txt\"\n\nabc\n--B--\n",
    b"--B\r\nContent-Disposition: form-data; name=\"f\"; filename=\"big.txt\"\r\nX-Pad: " + b"p" * 20000
    + b"\r\n\r\nabc\r\n--B--\r\n",
    b"--B\r\nno colon here\r\n\r\nabc\r\n--B--\r\n",
])
def test_malformed_multipart_is_a_400_not_a_500(ferry, tmp_path, body):
    (tmp_path / "body").write_bytes(body)
    reply = curl("-X", "POST", "-H", "Content-Type: multipart/form-data; boundary=B", "--data-binary",
                 f"@{tmp_path / 'body'}", ferry.url("/api/files/mp/"))
    assert reply.status == 400, reply.body
    assert reply.error_code() == "bad_multipart"
    assert not (ferry.root / "mp").exists() or list((ferry.root / "mp").iterdir()) == []


def test_multipart_parts_that_clash_store_nothing(ferry, tmp_path):
    (tmp_path / "x").write_bytes(b"x")
    reply = curl("-F", f"a=@{tmp_path / 'x'};filename=q1", "-F", f"b=@{tmp_path / 'x'};filename=q1/x.txt",
                 ferry.url("/api/files/mq/"))
    assert reply.status == 409 and reply.error_code() == "conflicting_names"
    assert not (ferry.root / "mq").exists() or list((ferry.root / "mq").iterdir()) == []


def test_multipart_filename_star_that_is_not_utf8_is_refused(ferry):
    body = (b"--B\r\nContent-Disposition: form-data; name=\"f\"; filename*=UTF-8''%FF%FE\r\n\r\nabc\r\n--B--\r\n")
    reply = curl("-X", "POST", "-H", "Content-Type: multipart/form-data; boundary=B", "--data-binary", body.decode("latin-1"),
                 ferry.url("/api/files/"))
    assert reply.status == 400 and reply.error_code() == "bad_path"


def test_two_content_lengths_are_refused(ferry):
    from conftest import raw_exchange
    reply = raw_exchange(ferry.port, b"PUT /api/files/smuggle.txt HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 5\r\n"
                                     b"Content-Length: 3\r\n\r\nhello")
    assert reply.startswith(b"HTTP/1.1 400"), reply[:100]
    assert b"bad_content_length" in reply
    assert not (ferry.root / "smuggle.txt").exists()


def test_chunked_body_over_the_limit_gets_a_readable_413(start_ferry, tmp_path):
    ferry = start_ferry("--max-request-body", "1MiB")
    (tmp_path / "2m").write_bytes(os.urandom(2 << 20))
    reply = curl("-H", "Transfer-Encoding: chunked", "-H", "Expect:", "-T", str(tmp_path / "2m"),
                 ferry.url("/api/files/chunked.bin"))
    assert reply.status == 413 and reply.error_code() == "request_too_large"
    assert not (ferry.root / "chunked.bin").exists()
    wait_for_no_temporary_files(ferry)


def test_huge_declared_body_without_expect_is_refused_at_once(ferry):
    import socket
    with socket.create_connection(("127.0.0.1", ferry.port), timeout=10) as sock:
        sock.sendall(b"PUT /api/files/huge.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000000000000\r\n\r\nabc")
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 507"), reply[:200]
    assert not (ferry.root / "huge.bin").exists()


def test_chunked_bodies_faster_than_the_disk_are_paused_and_resumed(ferry, tmp_path):
    """A body that arrives faster than the disk takes it is paused (the connection is not read) until the
    writes catch up. With chunked encoding libmicrohttpd may offer the next chunk before it notices the
    pause; that chunk must wait too, or the connection is never resumed (a hang seen on the third of
    these uploads before the fix)."""
    source = tmp_path / "chunked.bin"
    digest = make_random_file(source, 96 * 1024 * 1024)
    for index in range(6):
        reply = curl("-H", "Transfer-Encoding: chunked", "-T", str(source),
                     ferry.url(f"/api/files/chunked-{index}.bin"), timeout=60)
        assert reply.status == 201, reply.body
        assert reply.json()["sha256"] == digest
        assert sha256_file(ferry.root / f"chunked-{index}.bin") == digest
        (ferry.root / f"chunked-{index}.bin").unlink()
