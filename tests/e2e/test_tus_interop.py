"""Real clients and a real proxy: tuspy with resume after its process is killed, nginx with a 100 MB
body cap in front of Ferry (case C11), and a server killed with SIGKILL during uploads."""

import hashlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import curl, make_random_file, sha256_file
from tus_client import Tus, metadata

HERE = Path(__file__).resolve().parent
MiB = 1 << 20


def run_tuspy(endpoint, path, chunk_size, store, name, timeout=600):
    return subprocess.run([sys.executable, str(HERE / "tuspy_upload.py"), endpoint, str(path), str(chunk_size),
                           str(store), name], capture_output=True, text=True, timeout=timeout)


def free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def nginx_proxy(ferry, tmp_path):
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    port = free_port()
    config = (HERE / "nginx-proxy.conf").read_text().replace("LISTEN_PORT", str(port)) \
        .replace("FERRY_PORT", str(ferry.port)).replace("PREFIX", str(prefix))
    (prefix / "nginx.conf").write_text(config)
    process = subprocess.Popen(["nginx", "-c", str(prefix / "nginx.conf"), "-p", str(prefix)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 10
    while time.time() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert process.poll() is None, process.stderr.read().decode()
            time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


def test_tuspy_resumes_after_its_process_is_killed(ferry, tmp_path):
    source = tmp_path / "tuspy.bin"
    digest = make_random_file(source, 96 * MiB)
    store = tmp_path / "tuspy-urls.json"
    endpoint = ferry.url("/api/uploads/")
    process = subprocess.Popen([sys.executable, str(HERE / "tuspy_upload.py"), endpoint, str(source), str(8 * MiB),
                                str(store), "tuspy.bin"], stdout=subprocess.PIPE, text=True)
    offsets = []
    for line in process.stdout:
        offsets.append(int(line.split()[1]))
        if offsets[-1] >= 24 * MiB:
            process.kill()
            break
    process.wait()
    assert not (ferry.root / "tuspy.bin").exists()
    resumed = run_tuspy(endpoint, source, 8 * MiB, store, "tuspy.bin")
    assert resumed.returncode == 0, resumed.stderr
    first_offset = int(resumed.stdout.splitlines()[0].split()[1])
    assert first_offset > 24 * MiB, "the second run must continue, not start over"
    assert sha256_file(ferry.root / "tuspy.bin") == digest


def test_c11_single_put_through_capped_proxy_gets_413_but_tus_chunks_pass(ferry, nginx_proxy, tmp_path):
    source = tmp_path / "c11.bin"
    digest = make_random_file(source, 1 << 30)
    put = curl("-T", str(source), nginx_proxy + "/api/files/c11-put.bin")
    assert put.status == 413, "the proxy's 100 MB cap must be real"
    assert not (ferry.root / "c11-put.bin").exists()
    result = run_tuspy(nginx_proxy + "/api/uploads/", source, 64 * MiB, tmp_path / "urls.json", "c11.bin")
    assert result.returncode == 0, result.stderr
    assert sha256_file(ferry.root / "c11.bin") == digest
    download = tmp_path / "back.bin"
    subprocess.run(["curl", "-sS", "-f", "-o", str(download), nginx_proxy + "/api/files/c11.bin"], check=True)
    assert sha256_file(download) == digest


def test_uploads_survive_sigkill_at_random_moments(start_ferry, tmp_path):
    """30 uploads sent in chunks while a timer kills the server with SIGKILL at a random moment, so that at
    least 20 of them are cut mid-request. After each restart every upload resumes from HEAD's offset. All
    complete with the right SHA-256, and no partial file ever appears under a real name."""
    import threading

    rng = random.Random(20261203)
    root = tmp_path / "root"
    server = start_ferry(root=root)
    uploads = []
    for index in range(30):
        data = rng.randbytes(rng.randrange(8 * MiB, 16 * MiB))
        # The whole file's SHA-256 goes along, so the digest Ferry carries across kills is checked too.
        status, headers, _ = Tus(server.port).create(
            len(data), metadata(filename=f"killed-{index}.bin", sha256=hashlib.sha256(data).hexdigest()))
        assert status == 201
        uploads.append({"name": f"killed-{index}.bin", "data": data, "interrupted": False,
                        "url": Tus(server.port).url_of(headers["location"]),
                        "digest": hashlib.sha256(data).hexdigest()})

    def check_no_partial_files():
        for path in root.iterdir():
            if path.name.startswith("killed-"):
                upload = next(u for u in uploads if u["name"] == path.name)
                assert sha256_file(path) == upload["digest"], f"{path.name} appeared before it was complete"

    kills = 0
    pending = list(uploads)
    while pending:
        # Uploads not yet cut by a kill go first, so the kills spread over as many uploads as possible.
        pending.sort(key=lambda upload: upload["interrupted"])
        interrupted = sum(u["interrupted"] for u in uploads)
        keep_killing = kills < 80 and (interrupted < 20 or kills < 20)
        killer = threading.Timer(rng.uniform(0.01, 0.08), server.process.kill) if keep_killing else None
        if killer:
            killer.start()
        tus = Tus(server.port)
        current = None
        try:
            while pending:
                current = pending[0]
                status, headers, _ = tus.head(current["url"])
                assert status == 200, status
                offset = int(headers["upload-offset"])
                chunk = current["data"][offset:offset + rng.randrange(64 * 1024, 512 * 1024)]
                status, headers, _ = tus.patch(current["url"], offset, chunk)
                assert status == 204, status
                if int(headers["upload-offset"]) == len(current["data"]):
                    pending.pop(0)
                    current = None
        except Exception as error:
            if killer is None:
                raise
            assert server.process.wait(10) == -signal.SIGKILL, f"the server failed by itself: {error}"
            if current is not None:
                current["interrupted"] = True
        if killer:
            killer.cancel()
            killer.join()
            if server.process.poll() is None:
                server.process.kill()
            server.stop()
            kills += 1
            check_no_partial_files()
            server = start_ferry(root=root)
    assert sum(u["interrupted"] for u in uploads) >= 20, "at least 20 uploads must have been cut by a kill"
    for upload in uploads:
        assert sha256_file(root / upload["name"]) == upload["digest"], upload["name"]
    assert list((root / ".ferry/uploads").iterdir()) == []
