"""Big files: 1 GiB of random bytes by PUT and multipart, downloads whole and by ranges; sizes past
2^31 and 2^32 (case C02)."""

import hashlib
import os
import re
import socket
import subprocess
import threading
import time

import pytest

from conftest import curl, make_random_file, sha256_file


@pytest.fixture(scope="module")
def gib_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("gib") / "random-1GiB.bin"
    digest = make_random_file(path, 1 << 30)
    return path, digest


def test_1gib_by_put_and_multipart_then_download_whole_and_by_ranges(ferry, gib_file, tmp_path):
    path, digest = gib_file
    put = curl("-T", str(path), ferry.url("/api/files/big/put.bin"))
    assert put.status == 201
    assert put.json()["sha256"] == digest and put.json()["size"] == 1 << 30
    post = curl("-F", f"f=@{path};filename=multi.bin", ferry.url("/api/files/big/"))
    assert post.status == 201, post.body
    assert post.json()["files"][0]["sha256"] == digest
    assert sha256_file(ferry.root / "big/multi.bin") == digest

    out = tmp_path / "download.bin"
    get = subprocess.run(["curl", "-sS", "-f", "-o", str(out), ferry.url("/api/files/big/put.bin")], check=True)
    assert sha256_file(out) == digest

    # Four ranges, fetched separately and reassembled.
    quarter = (1 << 30) // 4
    pieces = []
    for index in range(4):
        start, end = index * quarter, (index + 1) * quarter - 1
        reply = subprocess.run(["curl", "-sS", "-D", "-", "-o", str(tmp_path / f"part{index}"),
                                "-H", f"Range: bytes={start}-{end}", ferry.url("/api/files/big/multi.bin")],
                               capture_output=True, text=True, check=True)
        assert reply.stdout.startswith("HTTP/1.1 206")
        assert f"Content-Range: bytes {start}-{end}/{1 << 30}" in reply.stdout
        pieces.append(tmp_path / f"part{index}")
    whole = hashlib.sha256()
    for piece in pieces:
        whole.update(piece.read_bytes())
    assert whole.hexdigest() == digest
    # Resume: curl -C - continues a partial download with a Range request.
    partial = tmp_path / "resumed.bin"
    with open(path, "rb") as source, open(partial, "wb") as target:
        target.write(source.read(300_000_000))
    subprocess.run(["curl", "-sS", "-f", "-C", "-", "-o", str(partial), ferry.url("/api/files/big/put.bin")],
                   check=True)
    assert sha256_file(partial) == digest


def test_small_get_is_answered_while_another_upload_is_being_made_durable(start_ferry, gib_file):
    """One event-loop thread, and a disk made slow (a 3 s pause before each upload's fsync): were the
    fsync and rename done on the event loop, the GET would wait for the PUT's answer."""
    path, digest = gib_file
    ferry = start_ferry("--threads", "1", env={"FERRY_TEST_COMMIT_DELAY_MS": "3000"})
    (ferry.root / "tiny.txt").write_bytes(b"tiny")
    size = path.stat().st_size
    upload = socket.create_connection(("127.0.0.1", ferry.port))
    upload.sendall(f"PUT /api/files/durable.bin HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {size}\r\n\r\n".encode())
    with open(path, "rb") as source:
        upload.sendfile(source)
    # Every byte has arrived once the temporary file is whole: the upload is now being made durable.
    tmp = ferry.root / ".ferry/tmp"
    deadline = time.time() + 60
    while not any(p.stat().st_size == size for p in tmp.iterdir()):
        assert time.time() < deadline, "the upload never arrived"
        time.sleep(0.01)
    get = curl(ferry.url("/api/files/tiny.txt"))
    assert get.status == 200 and get.body == b"tiny"
    upload.setblocking(False)
    try:
        answered = upload.recv(1) != b""
    except BlockingIOError:
        answered = False
    assert not answered, "the GET was answered only after the upload's commit"
    upload.setblocking(True)
    response = b""
    while b"\r\n\r\n" not in response:
        response += upload.recv(65536)
    upload.close()
    assert response.startswith(b"HTTP/1.1 201")
    assert sha256_file(ferry.root / "durable.bin") == digest


def test_small_get_is_answered_during_a_long_recursive_delete(start_ferry):
    """Real slow work on a worker: deleting a folder of 30,000 files, with one event-loop thread."""
    ferry = start_ferry("--threads", "1")
    (ferry.root / "tiny.txt").write_bytes(b"tiny")
    many = ferry.root / "many"
    many.mkdir()
    for index in range(30_000):
        (many / f"f{index}").touch()
    result = {}

    def delete():
        result["reply"] = curl("-X", "DELETE", ferry.url("/api/files/many?recursive=1"))

    worker = threading.Thread(target=delete)
    worker.start()
    deadline = time.time() + 30
    while len(os.listdir(many)) == 30_000:
        assert time.time() < deadline
        time.sleep(0.001)
    get = curl(ferry.url("/api/files/tiny.txt"))
    assert get.status == 200
    assert many.exists() and "reply" not in result, "the GET must be answered while the delete is still running"
    worker.join()
    assert result["reply"].status == 204 and not many.exists()


# Sizes around 2^31 and 2^32 (case C02). Sparse sources with distinct bytes at each boundary, so a
# misplaced byte changes the SHA-256.
C02_SIZES = [2**31 - 1, 2**31, 2**31 + 1, 2**32 - 1, 2**32, 2**32 + 1]


def make_marked_sparse_file(path, size):
    subprocess.run(["truncate", "-s", str(size), str(path)], check=True)
    with open(path, "r+b") as handle:
        for offset in (0, 2**31 - 2, 2**31 - 1, 2**31, 2**32 - 1, 2**32, size - 1):
            if offset < size:
                handle.seek(offset)
                handle.write(bytes([(offset * 31 + 7) % 251 + 1]))
    return sha256_file(path, chunk=8 << 20)


@pytest.fixture
def ram_root(tmp_path):
    """The root on tmpfs: these files are 2-4 GiB each and only their bytes matter, not the disk."""
    path = "/dev/shm/ferry-c02-" + str(os.getpid())
    os.makedirs(path, exist_ok=True)
    yield path
    subprocess.run(["rm", "-rf", path], check=False)


def test_c02_sizes_past_2_31_and_2_32_by_put(start_ferry, ram_root, tmp_path):
    ferry = start_ferry(root=tmp_path / "unused")
    ferry.stop()
    from conftest import Ferry
    ferry = start_ferry(root=__import__("pathlib").Path(ram_root) / "root")
    source = __import__("pathlib").Path(ram_root) / "source.bin"
    for size in C02_SIZES:
        digest = make_marked_sparse_file(source, size)
        name = f"s{size}.bin"
        put = curl("-T", str(source), ferry.url(f"/api/files/{name}"))
        assert put.status == 201, put.body
        assert put.json()["size"] == size and put.json()["sha256"] == digest
        head = curl("-I", ferry.url(f"/api/files/{name}"))
        assert head.headers["content-length"] == str(size)
        listing = {e["name"]: e for e in curl(ferry.url("/api/files/")).json()["entries"]}
        assert listing[name]["size"] == size
        tail = curl("-H", f"Range: bytes={size - 3}-", ferry.url(f"/api/files/{name}"))
        assert tail.status == 206
        assert tail.headers["content-range"] == f"bytes {size - 3}-{size - 1}/{size}"
        with open(source, "rb") as handle:
            handle.seek(size - 3)
            assert tail.body == handle.read(3)
        around = curl("-H", "Range: bytes=2147483646-2147483649", ferry.url(f"/api/files/{name}"))
        with open(source, "rb") as handle:
            handle.seek(2**31 - 2)
            assert around.body == handle.read(4)
        os.remove(ferry.root / name)
    # The largest once more, by multipart, and downloaded whole.
    size = C02_SIZES[-1]
    digest = make_marked_sparse_file(source, size)
    post = curl("-F", f"f=@{source};filename=multi.bin", ferry.url("/api/files/"))
    assert post.status == 201, post.body
    assert post.json()["files"][0]["size"] == size and post.json()["files"][0]["sha256"] == digest
    os.remove(source)
    download = subprocess.run(f"curl -sS -f {ferry.url('/api/files/multi.bin')} | sha256sum", shell=True,
                              capture_output=True, text=True, check=True)
    assert download.stdout.split()[0] == digest


def test_c02_tus_upload_of_2_32_plus_1_bytes(start_ferry, ram_root):
    from pathlib import Path

    from tus_client import Tus, metadata, patch_file

    ferry = start_ferry(root=Path(ram_root) / "root")
    source = Path(ram_root) / "tus-source.bin"
    size = 2**32 + 1
    digest = make_marked_sparse_file(source, size)
    tus = Tus(ferry.port)
    status, headers, _ = tus.create(size, metadata(filename="tus-big.bin", sha256=digest))
    assert status == 201
    url = tus.url_of(headers["location"])
    offset = 0
    for chunk in (2**31 - 1, 2**31, 2):  # offsets cross 2^31 and 2^32 exactly
        status, headers = patch_file(ferry.port, url, offset, source, chunk)
        assert status == 204
        offset += chunk
        assert headers["upload-offset"] == str(offset)
        assert tus.head(url)[1]["upload-offset"] == str(offset)
    assert offset == size
    assert headers["ferry-file"] == "/api/files/tus-big.bin"
    os.remove(source)
    assert (ferry.root / "tus-big.bin").stat().st_size == size
    assert sha256_file(ferry.root / "tus-big.bin", chunk=8 << 20) == digest
