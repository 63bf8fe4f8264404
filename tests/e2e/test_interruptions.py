"""Uploads that do not finish: a client that disappears, a server that stops or dies, a full disk."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from pathlib import Path

import pytest

from conftest import Ferry, curl, make_random_file, sha256_file, wait_for_log
from test_uploads import wait_for_no_temporary_files, wait_for_temporary_bytes


def test_c01_client_that_disconnects_at_40_percent_leaves_nothing(ferry, tmp_path):
    size = 1 << 30
    big = tmp_path / "big"
    subprocess.run(["truncate", "-s", str(size), str(big)], check=True)
    client = subprocess.Popen(["curl", "-sS", "--limit-rate", "100M", "-T", str(big),
                               ferry.url("/api/files/c01.bin")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_temporary_bytes(ferry, int(size * 0.4), timeout=60)
    client.kill()
    client.wait()
    wait_for_no_temporary_files(ferry)
    assert not (ferry.root / "c01.bin").exists()
    assert curl(ferry.url("/api/files/c01.bin")).status == 404
    aborted = wait_for_log(ferry, "event=upload_aborted")
    received = int(re.search(r"bytes_received=(\d+)", aborted).group(1))
    assert size * 0.4 <= received < size
    assert f"declared_bytes={size}" in aborted
    assert "path=/api/files/c01.bin" in aborted


def test_short_body_then_close_is_an_aborted_upload(ferry):
    with socket.create_connection(("127.0.0.1", ferry.port)) as sock:
        sock.sendall(b"PUT /api/files/short.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000000\r\n\r\n" + b"x" * 1000)
        time.sleep(0.2)
    wait_for_no_temporary_files(ferry)
    assert not (ferry.root / "short.bin").exists()


def start_slow_upload(ferry, tmp_path, name):
    """Starts a 1 GiB upload at 50 MB/s and returns the curl process once 8 MiB have arrived."""
    big = tmp_path / "big"
    subprocess.run(["truncate", "-s", str(1 << 30), str(big)], check=True)
    client = subprocess.Popen(["curl", "-sS", "--limit-rate", "50M", "-T", str(big), ferry.url(f"/api/files/{name}")],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_temporary_bytes(ferry, 8 << 20)
    return client


def test_sigterm_during_an_upload_removes_its_temporary_file(start_ferry, tmp_path):
    ferry = start_ferry()
    client = start_slow_upload(ferry, tmp_path, "cut.bin")
    assert ferry.stop(signal.SIGTERM) == 0
    client.kill()
    client.wait()
    assert list((ferry.root / ".ferry/tmp").iterdir()) == []
    assert not (ferry.root / "cut.bin").exists()
    assert "event=stopped" in ferry.logs()


def test_temporary_files_left_by_a_crash_are_swept_at_start(start_ferry, tmp_path):
    ferry = start_ferry()
    client = start_slow_upload(ferry, tmp_path, "crash.bin")
    ferry.stop(signal.SIGKILL)
    client.kill()
    client.wait()
    assert len(list((ferry.root / ".ferry/tmp").iterdir())) == 1
    again = start_ferry(root=ferry.root)
    assert list((again.root / ".ferry/tmp").iterdir()) == []
    assert "event=swept_temporary_files count=1" in again.logs()
    assert not (again.root / "crash.bin").exists()


def test_a_second_server_on_the_same_root_is_refused(ferry):
    second = subprocess.run([os.environ.get("FERRY_BINARY", ""), "serve", "--listen", "127.0.0.1:0",
                             "--root", str(ferry.root)], capture_output=True, text=True, timeout=20)
    assert second.returncode == 1
    assert "another ferry process" in second.stderr


@pytest.fixture
def small_disk(tmp_path):
    """A 64 MiB tmpfs the test owns, so a full disk is real and harmless."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs for the full-disk test (needs root): {result.stderr.decode()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_c04_declared_upload_larger_than_the_disk_gets_507_before_the_body(start_ferry, small_disk, tmp_path):
    ferry = start_ferry(root=small_disk / "root")
    big = tmp_path / "big"
    subprocess.run(["truncate", "-s", str(200 << 20), str(big)], check=True)
    reply = curl("-T", str(big), ferry.url("/api/files/big.bin"))
    assert reply.status == 507
    assert reply.error_code() == "insufficient_storage"
    assert reply.json()["error"]["needed"] == 200 << 20
    assert "log" not in reply.json()["error"]["message"].lower()
    assert not (ferry.root / "big.bin").exists()
    assert list((ferry.root / ".ferry/tmp").iterdir()) == []


def test_c04_disk_that_fills_mid_stream_gets_507_and_keeps_serving(start_ferry, small_disk, tmp_path):
    ferry = start_ferry(root=small_disk / "root")
    (tmp_path / "small").write_bytes(b"still here")
    assert curl("-T", str(tmp_path / "small"), ferry.url("/api/files/small.txt")).status == 201
    big = tmp_path / "big"
    make_random_file(big, 100 << 20)
    # Chunked: no declared length, so the disk can only fill during the stream.
    reply = curl("-H", "Transfer-Encoding: chunked", "-T", str(big), ferry.url("/api/files/big.bin"))
    assert reply.status == 507, reply.body
    assert reply.error_code() == "insufficient_storage"
    assert not (ferry.root / "big.bin").exists()
    wait_for_no_temporary_files(ferry)
    # The partial data is gone, so the disk has room again and the server still answers.
    assert curl(ferry.url("/api/files/small.txt")).body == b"still here"
    (tmp_path / "after").write_bytes(b"after" * 1000)
    assert curl("-T", str(tmp_path / "after"), ferry.url("/api/files/after.txt")).status == 201
    # Multipart fills the disk the same way.
    multi = curl("-F", f"f=@{big}", ferry.url("/api/files/"))
    assert multi.status == 507
    wait_for_no_temporary_files(ferry)


def test_a_large_upload_logs_start_progress_and_end(ferry, tmp_path):
    size = 64 << 20
    source = tmp_path / "slow.bin"
    make_random_file(source, size)
    # 64 MiB at 10 MiB/s: a little over six seconds, so at least one progress line (every 5 s).
    reply = curl("--limit-rate", "10M", "-T", str(source), ferry.url("/api/files/slow.bin"))
    assert reply.status == 201
    log = ferry.logs()
    request_id = reply.headers["x-request-id"]
    start = wait_for_log(ferry, "event=upload_start")
    assert f"id={request_id}" in start and f"declared_bytes={size}" in start
    progress = wait_for_log(ferry, "event=upload_progress")
    assert f"id={request_id}" in progress and "rate_mib_s=" in progress
    assert 0 < int(re.search(r" bytes=(\d+)", progress).group(1)) < size
    end = wait_for_log(ferry, "event=upload_end")
    assert f"bytes={size}" in end and "status=201" in end


def test_tus_creation_checks_space_but_does_not_hold_it(start_ferry, small_disk, tmp_path):
    """Creating uploads must not reserve the disk for a day: only PATCHes reserve what they send."""
    from tus_client import Tus, metadata

    ferry = start_ferry(root=small_disk / "root")
    tus = Tus(ferry.port)
    for index in range(3):
        status, _, _ = tus.create(50 << 20, metadata(filename=f"idle-{index}.bin"))
        assert status == 201
    status, _, body = tus.create(200 << 20, metadata(filename="too-big.bin"))
    assert status == 507
    (tmp_path / "30m").write_bytes(os.urandom(30 << 20))
    assert curl("-T", str(tmp_path / "30m"), ferry.url("/api/files/fits.bin")).status == 201


@pytest.mark.parametrize("cut", ["client_killed", "server_killed"])
def test_a_cut_patch_gives_back_the_space_it_reserved_and_the_upload_resumes(start_ferry, small_disk, tmp_path, cut):
    """A PATCH with Content-Length reserves its whole length; cut early, it must give back what it did not
    fill at once (or, after a crash, when the server starts again), not when or if the upload is resumed:
    seen, a 64 MiB disk stayed full and every resume sending the rest in one request (as tus-js-client
    does) got 507. Then the resume completes with the right SHA-256."""
    import hashlib

    from tus_client import Tus, metadata

    ferry = start_ferry(root=small_disk / "root")
    tus = Tus(ferry.port)
    data = os.urandom(40 << 20)
    source = tmp_path / "data"
    source.write_bytes(data)
    status, headers, _ = tus.create(len(data), metadata(filename="resumed.bin"))
    assert status == 201
    url = tus.url_of(headers["location"])
    upload_file = ferry.root / ".ferry/uploads" / url.rsplit("/", 1)[1]
    client = subprocess.Popen(
        ["curl", "-sS", "-o", "/dev/null", "--limit-rate", "4M", "-X", "PATCH", "-H", "Tus-Resumable: 1.0.0",
         "-H", "Upload-Offset: 0", "-H", "Content-Type: application/offset+octet-stream", "-T", str(source),
         ferry.url(url)], stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while upload_file.stat().st_size < 4 << 20:
        assert time.time() < deadline, "the PATCH never got going"
        time.sleep(0.05)
    if cut == "server_killed":
        ferry.stop(signal.SIGKILL)
        ferry = start_ferry(root=ferry.root)
        tus = Tus(ferry.port)
    client.kill()
    client.wait()
    status, headers, _ = tus.head(url)  # waits for a cut PATCH to record what it stored
    offset = int(headers["upload-offset"])
    assert status == 200 and 0 < offset < len(data)
    # What the disk holds for the upload is what HEAD counts, not the 40 MiB the PATCH had reserved.
    assert upload_file.stat().st_blocks * 512 < offset + (1 << 20)
    assert shutil.disk_usage(small_disk).free > len(data) - offset
    status, headers, body = tus.patch(url, offset, data[offset:])
    assert status == 204, body
    assert headers["ferry-file"] == "/api/files/resumed.bin"
    assert sha256_file(ferry.root / "resumed.bin") == hashlib.sha256(data).hexdigest()


def test_concurrent_declared_uploads_that_each_fit_alone_get_one_201_and_one_507(start_ferry, small_disk, tmp_path):
    """Two 40 MiB PUTs at once on a 64 MiB disk: each fits alone, both together do not. One must be
    stored and the other refused before its body with 507 and the space it needs (seen: both refused, when
    both passed the free-space check and then split the disk between their reservations)."""
    ferry = start_ferry(root=small_disk / "root")
    source = tmp_path / "40m"
    make_random_file(source, 40 << 20)
    for attempt in range(5):
        clients = [subprocess.Popen(["curl", "-sS", "-o", "-", "-w", "\n%{http_code}", "-T", str(source),
                                     ferry.url(f"/api/files/{name}-{attempt}.bin")], stdout=subprocess.PIPE)
                   for name in ("a", "b")]
        replies = [client.communicate(timeout=60)[0].decode().rsplit("\n", 1) for client in clients]
        statuses = sorted(int(status) for _, status in replies)
        assert statuses == [201, 507], replies
        refusal = json.loads(next(body for body, status in replies if status == "507"))["error"]
        assert refusal["code"] == "insufficient_storage" and refusal["needed"] == 40 << 20, refusal
        stored = [name for name in ("a", "b") if (ferry.root / f"{name}-{attempt}.bin").exists()]
        assert len(stored) == 1 and sha256_file(ferry.root / f"{stored[0]}-{attempt}.bin") == sha256_file(source)
        (ferry.root / f"{stored[0]}-{attempt}.bin").unlink()
        wait_for_no_temporary_files(ferry)


def test_sigterm_while_bodies_are_paused_cuts_them_and_stops(start_ferry, tmp_path):
    """Bodies faster than the disk are paused (here the hashing is slowed to ~6 MB/s per upload, so they
    always are). A stop must resume them only to cut them: the server exits at once rather than when they
    end, no connection is left suspended (libmicrohttpd aborts the process if one is), nothing partial is
    left, and a tus PATCH cut this way keeps the bytes it had stored."""
    source = tmp_path / "64m.bin"
    make_random_file(source, 64 * 1024 * 1024)
    for attempt in range(3):
        ferry = start_ferry(env={"FERRY_TEST_HASH_DELAY_MS": "20"})
        created = curl("-X", "POST", "-H", "Tus-Resumable: 1.0.0", "-H", f"Upload-Length: {64 * 1024 * 1024}",
                       "-H", "Upload-Metadata: filename dHVzLmJpbg==", ferry.url("/api/uploads/"))
        assert created.status == 201
        location = urllib.parse.urljoin("/api/uploads/", created.headers["location"])
        upload_url = ferry.url(location)
        clients = [subprocess.Popen(["curl", "-sS", "-o", "/dev/null", "-T", str(source),
                                     ferry.url(f"/api/files/p{index}.bin")], stderr=subprocess.DEVNULL)
                   for index in range(3)]
        clients.append(subprocess.Popen(
            ["curl", "-sS", "-o", "/dev/null", "-X", "PATCH", "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Offset: 0",
             "-H", "Content-Type: application/offset+octet-stream", "-T", str(source), upload_url],
            stderr=subprocess.DEVNULL))
        wait_for_temporary_bytes(ferry, 1024 * 1024)
        # The PATCH too has bytes stored before the stop (its writes go in 512 KiB batches, and the PUTs can
        # get there first): only then can the restart show what it kept.
        upload_file = ferry.root / ".ferry/uploads" / location.rsplit("/", 1)[1]
        deadline = time.time() + 10
        while not upload_file.exists() or upload_file.stat().st_size == 0:
            assert time.time() < deadline, "the PATCH stored nothing"
            time.sleep(0.01)
        time.sleep(0.3 * attempt)
        # Uploaded at ~6 MB/s each, the bodies would take over 10 s to end: the stop must not wait for them.
        assert ferry.stop(signal.SIGTERM, timeout=8) == 0, ferry.logs()[-2000:]
        for client in clients:
            client.wait(10)
        logs = ferry.logs()
        assert "event=stopped" in logs and "Fatal error" not in logs
        assert list((ferry.root / ".ferry/tmp").iterdir()) == []
        assert not any((ferry.root / f"p{index}.bin").exists() for index in range(3))
        again = start_ferry(root=ferry.root)
        head = curl("-I", "-H", "Tus-Resumable: 1.0.0", again.url(location))
        assert head.status == 200 and 0 < int(head.headers["upload-offset"]) < 64 * 1024 * 1024
        again.stop()
        shutil.rmtree(ferry.root)


def test_tus_patch_that_fills_the_disk_leaves_the_file_agreeing_with_head(start_ferry, small_disk, tmp_path):
    """A chunked PATCH (no declared length, so no reservation) runs the disk full. Whether or not the
    database could still record the bytes that made it, HEAD's offset must equal what the upload's file
    holds: bytes that could not be recorded are dropped, not left to fill the disk while HEAD says 0 (seen
    on tmpfs: HEAD 0, a 52 MB file, and every resume refused for want of space). Once space is freed, the
    upload resumes from HEAD's offset and completes with the right SHA-256."""
    import hashlib

    from tus_client import Tus, metadata

    ferry = start_ferry(root=small_disk / "root")
    tus = Tus(ferry.port)
    (tmp_path / "filler").write_bytes(os.urandom(10 << 20))
    assert curl("-T", str(tmp_path / "filler"), ferry.url("/api/files/filler-1.bin")).status == 201
    data = os.urandom(40 << 20)
    (tmp_path / "data").write_bytes(data)
    status, headers, _ = tus.create(len(data), metadata(filename="full.bin", sha256=hashlib.sha256(data).hexdigest()))
    assert status == 201
    # Creation checked the space; then the disk fills with other files before the bytes arrive.
    (tmp_path / "filler-2").write_bytes(os.urandom(20 << 20))
    assert curl("-T", str(tmp_path / "filler-2"), ferry.url("/api/files/filler-2.bin")).status == 201
    url = tus.url_of(headers["location"])
    upload_file = ferry.root / ".ferry/uploads" / url.rsplit("/", 1)[1]
    reply = curl("-X", "PATCH", "-H", "Tus-Resumable: 1.0.0", "-H", "Upload-Offset: 0", "-H", "Expect:",
                 "-H", "Content-Type: application/offset+octet-stream", "-H", "Transfer-Encoding: chunked",
                 "-T", str(tmp_path / "data"), ferry.url(url))
    assert reply.status == 507 and reply.error_code() == "insufficient_storage", reply.body
    status, headers, _ = tus.head(url)
    offset = int(headers["upload-offset"])
    assert status == 200 and upload_file.stat().st_size == offset
    for name in ("filler-1.bin", "filler-2.bin"):
        assert curl("-X", "DELETE", ferry.url(f"/api/files/{name}")).status == 204
    status, headers, _ = tus.patch(url, offset, data[offset:])
    assert status == 204 and headers["ferry-file"] == "/api/files/full.bin"
    assert sha256_file(ferry.root / "full.bin") == hashlib.sha256(data).hexdigest()
