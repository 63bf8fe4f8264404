#!/usr/bin/env python3
"""Ferry's upload and download benchmark, against nginx, copyparty and a C sink. See bench/README.md.

Usage (from anywhere; builds Ferry in the repository this file lives in):
    python3 bench/run.py            # the full run, about 15 to 27 minutes on 2 cores
    python3 bench/run.py --quick    # 100 MiB only, 3 runs, 4 concurrent uploads: a smoke test
    python3 bench/run.py --only tus # one section alone (sizes, concurrent, sequential, tus); with --quick too

Writes bench/results/latest.md (and the raw samples to latest.json) and prints the Markdown.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime
import getpass
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import string
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
WORK = BENCH / "work"
RESULTS = BENCH / "results"

sys.path.insert(0, str(BENCH))
import tus_upload  # noqa: E402  (bench/tus_upload.py, the benchmark's own tus client)

MiB = 1 << 20
GiB = 1 << 30
MB = 1_000_000  # throughput is reported in MB/s (10^6 bytes per second)
# A download shorter than this is repeated within a run (3 times) and the run keeps the median: at 100 MiB a
# download takes ~40 ms, and one sample is mostly timing noise.
SHORT_DOWNLOAD = GiB
TRANSFER_TIMEOUT = 900  # seconds; no single curl may take longer
START_TIMEOUT = 30  # seconds for a server to start listening


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]
    runs: dict[int, int]  # interleaved runs per file size
    concurrent_uploads: int
    concurrent_size: int = 256 * MiB
    concurrent_runs: int = 5
    sequential_uploads: int = 10
    sequential_size: int = 200 * MiB
    # Should the planned runs at the largest size not fit in the budget, that size gets `fewest_runs`.
    budget_seconds: float = 25 * 60
    fewest_runs: int = 3
    # Resumable uploads: one file by tus in chunks and by one PUT, each direct and through an nginx proxy.
    tus_size: int = GiB
    tus_chunk: int = 64 * MiB
    # More runs than the sizes: the ratio of two ~1.3 s uploads swings by 10% from one run to the next here.
    tus_runs: int = 9


# More runs where they are cheap: a per-run ratio of two ~0.1 s (100 MiB) or ~1 s (1 GiB) uploads swings by
# 20% or more from one run to the next here, and the median of nine settles where that of five does not.
FULL = Plan(sizes=(100 * MiB, GiB, 4 * GiB), runs={100 * MiB: 9, GiB: 9, 4 * GiB: 5}, concurrent_uploads=16)
QUICK = Plan(sizes=(100 * MiB,), runs={100 * MiB: 3}, concurrent_uploads=4, concurrent_runs=3, tus_runs=3)
# The parts of the benchmark, in the order they run; `--only` picks some of them.
SECTIONS = ("sizes", "concurrent", "sequential", "tus")


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def human_size(size: int) -> str:
    return f"{size // GiB} GiB" if size % GiB == 0 else f"{size // MiB} MiB"


# --- Processes ------------------------------------------------------------------------------------

_libc = ctypes.CDLL(None)
PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """Runs in each child before exec: the kernel sends it SIGTERM should this script die without cleanup."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def run(command: list[str], **options) -> subprocess.CompletedProcess:
    return subprocess.run(command, check=True, text=True, **options)


def free_port() -> int:
    """A port that is free now; for servers that cannot pick their own (a tiny race we accept)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def memory_mib(pid: int) -> tuple[float, float]:
    """(peak RSS, current RSS) of a process in MiB, from VmHWM and VmRSS."""
    values = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmHWM", "VmRSS"):
            values[key] = int(value.split()[0]) / 1024
    return values["VmHWM"], values["VmRSS"]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far, in seconds (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def reset_peak_memory(pid: int) -> bool:
    """Resets VmHWM to the current RSS (Linux 4.0 and later: `5` to /proc/PID/clear_refs); False if refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


# --- The servers ----------------------------------------------------------------------------------


class Server:
    """One server under test, started fresh with an empty data folder under `home`."""

    name = ""
    durable = False  # answers an upload only once its data is on disk (fsync); otherwise `sync` is timed too
    serves_downloads = True

    def __init__(self, home: Path):
        self.home = home
        self.data = home / "data"
        self.process: subprocess.Popen | None = None
        self.port = 0

    def command(self) -> list[str]:
        raise NotImplementedError

    def url(self, file_name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{file_name}"

    def start(self) -> None:
        shutil.rmtree(self.home, ignore_errors=True)
        self.data.mkdir(parents=True)
        self.log_path = self.home / "server.log"
        with open(self.log_path, "w") as log_file:
            self.process = subprocess.Popen(
                self.command(), stdin=subprocess.DEVNULL, stdout=log_file, stderr=log_file,
                preexec_fn=_die_with_parent, env=self.environment(),
            )
        deadline = time.monotonic() + START_TIMEOUT
        while not self.ready():
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited at start:\n{self.log_path.read_text()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not start within {START_TIMEOUT} s:\n{self.log_path.read_text()}")
            time.sleep(0.05)

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def ready(self) -> bool:
        """Whether the server accepts connections on self.port (which subclasses may learn first)."""
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def memory_pid(self) -> int:
        """The process whose memory is reported (nginx: the worker)."""
        return self.process.pid

    def memory(self) -> tuple[float, float]:
        return memory_mib(self.memory_pid())

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def remove_data(self) -> None:
        shutil.rmtree(self.data, ignore_errors=True)


class PortFromLog(Server):
    """A server that binds an ephemeral port and names it in the first line of its log."""

    pattern = re.compile(r"127\.0\.0\.1:(\d+)")

    def ready(self) -> bool:
        first_line = self.log_path.read_text().partition("\n")[0]
        match = self.pattern.search(first_line)
        if match:
            self.port = int(match.group(1))
        return bool(match)


class Ferry(PortFromLog):
    name = "Ferry"
    durable = True

    def __init__(self, home: Path, binary: Path):
        super().__init__(home)
        self.binary = binary

    def command(self) -> list[str]:
        return [str(self.binary), "serve", "--listen", "127.0.0.1:0", "--root", str(self.data)]

    def url(self, file_name: str) -> str:
        return f"http://127.0.0.1:{self.port}/api/files/{file_name}"


class Sink(PortFromLog):
    name = "sink"
    durable = True
    serves_downloads = False

    def __init__(self, home: Path, binary: Path):
        super().__init__(home)
        self.binary = binary

    def command(self) -> list[str]:
        return [str(self.binary), str(self.data)]


class Nginx(Server):
    name = "nginx"
    template = "nginx.conf"

    def placeholders(self) -> dict[str, object]:
        self.port = free_port()
        return {"data": self.data, "port": self.port}

    def command(self) -> list[str]:
        temp = self.home / "temp"  # on the data's filesystem
        temp.mkdir()
        template = string.Template((BENCH / self.template).read_text())
        config = self.home / "nginx.conf"
        config.write_text(template.substitute(
            user=getpass.getuser(), work=self.home, temp=temp, **self.placeholders()))
        return ["nginx", "-c", str(config), "-p", str(self.home), "-e", str(self.home / "error.log")]

    def ready(self) -> bool:
        return bool(children(self.process.pid)) and super().ready()

    def memory_pid(self) -> int:
        (worker,) = children(self.process.pid)
        return worker


class NginxProxy(Nginx):
    """nginx as a reverse proxy in front of `upstream` (bench/nginx-proxy.conf): `port` caps request bodies
    at 100 MiB, like Cloudflare's free plan; `uncapped_port` lets any size through."""

    name = "nginx proxy"
    template = "nginx-proxy.conf"

    def __init__(self, home: Path, upstream: Server):
        super().__init__(home)
        self.upstream = upstream
        self.uncapped_port = 0

    def placeholders(self) -> dict[str, object]:
        self.port = free_port()
        self.uncapped_port = free_port()
        while self.uncapped_port == self.port:
            self.uncapped_port = free_port()
        return {"capped_port": self.port, "uncapped_port": self.uncapped_port, "ferry_port": self.upstream.port}

    def ready(self) -> bool:
        if not super().ready():
            return False
        try:
            socket.create_connection(("127.0.0.1", self.uncapped_port), timeout=1).close()
            return True
        except OSError:
            return False


class Copyparty(Server):
    name = "copyparty"

    def command(self) -> list[str]:
        self.port = free_port()
        return [
            sys.executable, "-m", "copyparty", "-i", "127.0.0.1", "-p", str(self.port), "-v", f"{self.data}::rw",
            "-q", "--http-only", "--no-crt",
        ]

    def environment(self) -> dict[str, str]:
        # copyparty keeps its settings and sessions under $XDG_CONFIG_HOME: keep them in the work folder.
        return {**os.environ, "XDG_CONFIG_HOME": str(self.home / "config")}


class Fleet:
    """Every server started by this script, so that all of them are stopped whatever happens."""

    def __init__(self, ferry_binary: Path, sink_binary: Path):
        self.ferry_binary = ferry_binary
        self.sink_binary = sink_binary
        self.running: list[Server] = []

    def start(self, *kinds: str) -> list[Server]:
        """Fresh servers with empty data folders, in the order asked."""
        servers = []
        for kind in kinds:
            home = WORK / "servers" / kind
            match kind:
                case "ferry": server = Ferry(home, self.ferry_binary)
                case "nginx": server = Nginx(home)
                case "copyparty": server = Copyparty(home)
                case "sink": server = Sink(home, self.sink_binary)
                case _: raise ValueError(f"unknown server {kind}")
            self.running.append(server)
            server.start()
            servers.append(server)
        return servers

    def start_proxy(self, upstream: Server) -> NginxProxy:
        """A fresh nginx reverse proxy in front of `upstream`."""
        proxy = NginxProxy(WORK / "servers" / "nginx-proxy", upstream)
        self.running.append(proxy)
        proxy.start()
        return proxy

    def stop(self, servers: list[Server] | None = None) -> None:
        for server in list(servers if servers is not None else self.running):
            server.stop()
            server.remove_data()
            self.running.remove(server)


# --- Transfers ------------------------------------------------------------------------------------


def timed_sync() -> float:
    start = time.perf_counter()
    os.sync()
    return time.perf_counter() - start


def curl(*arguments: str) -> tuple[int, float, int]:
    """Runs one curl transfer; returns (HTTP status, curl's time_total, bytes downloaded)."""
    completed = subprocess.run(
        ["curl", "-sS", "--max-time", str(TRANSFER_TIMEOUT), "-o", "/dev/null",
         "-w", "%{http_code} %{time_total} %{size_download}", *arguments],
        capture_output=True, text=True, timeout=TRANSFER_TIMEOUT + 30,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"curl {' '.join(arguments)} failed: {completed.stderr.strip()}")
    status, seconds, downloaded = completed.stdout.split()
    return int(status), float(seconds), int(downloaded)


def upload(server: Server, source: Path, file_name: str, url: str | None = None) -> float:
    """Uploads `source` and returns the seconds until it is durable (plus `sync` for servers that do not fsync).
    `url`: where to send it, if not to the server itself (a proxy in front of it)."""
    status, seconds, _ = curl("-T", str(source), url or server.url(file_name))
    if status not in (200, 201, 204):
        raise RuntimeError(f"{server.name}: upload of {file_name} answered {status}")
    if not server.durable:
        seconds += timed_sync()
    stored = server.data / file_name
    if not stored.is_file() or stored.stat().st_size != source.stat().st_size:
        raise RuntimeError(f"{server.name}: {file_name} is not stored with the size sent")
    return seconds


def read_into_page_cache(path: Path) -> None:
    """Reads a file once, so that a download of it measures the server's sending path, not the disk. Servers
    that write through the page cache leave the file there; Ferry writes uploads with direct I/O and does not."""
    with open(path, "rb", buffering=0) as file:
        while file.read(8 * MiB):
            pass


def download(server: Server, file_name: str, size: int) -> float:
    """Seconds to download the file (the median of 3 downloads when it is shorter than SHORT_DOWNLOAD)."""
    read_into_page_cache(server.data / file_name)
    times = []
    for _ in range(3 if size < SHORT_DOWNLOAD else 1):
        status, seconds, received = curl(server.url(file_name))
        if status != 200 or received != size:
            raise RuntimeError(f"{server.name}: download of {file_name} answered {status} with {received} bytes")
        times.append(seconds)
    return statistics.median(times)


def sha256_file(path: Path) -> str:
    with open(path, "rb") as file:
        return hashlib.file_digest(file, "sha256").hexdigest()


def make_random_file(path: Path, size: int) -> None:
    block = 16 * MiB
    with open(path, "wb") as file:
        for offset in range(0, size, block):
            file.write(os.urandom(min(block, size - offset)))
        os.fsync(file.fileno())


# --- Measurements ---------------------------------------------------------------------------------


SIZE_SERVERS = ("ferry", "nginx", "copyparty", "sink")
CONCURRENT_SERVERS = ("ferry", "nginx", "copyparty")


@dataclass
class Results:
    plan_name: str
    runs: dict[int, int] = field(default_factory=dict)  # runs made at each file size
    seconds: dict[int, float] = field(default_factory=dict)  # how long each file size's runs took
    notes: list[str] = field(default_factory=list)
    # throughput samples in MB/s, [size][server] -> one per run, in run order (so runs can be paired)
    uploads: dict[int, dict[str, list[float]]] = field(default_factory=dict)
    downloads: dict[int, dict[str, list[float]]] = field(default_factory=dict)
    # the server's CPU seconds per GiB uploaded, [size][server] -> one per run
    upload_cpu: dict[int, dict[str, list[float]]] = field(default_factory=dict)
    memory: dict[int, dict[str, tuple[float, float]]] = field(default_factory=dict)  # (peak, after) MiB
    concurrent: dict[str, list[float]] = field(default_factory=dict)
    concurrent_memory: dict[str, tuple[float, float]] = field(default_factory=dict)
    sequential_rss: list[float] = field(default_factory=list)  # Ferry's VmRSS after each upload
    load: list[float] = field(default_factory=list)  # 1-minute load average before and after the measurements
    sections: list[str] = field(default_factory=list)  # the parts of the benchmark that ran
    # Resumable uploads: MB/s per case (TUS_CASES), one per run in run order; the highest per-upload peak RSS
    # (MiB) of Ferry and of the proxy's nginx worker per case; how many runs were made.
    tus: dict[str, list[float]] = field(default_factory=dict)
    tus_memory: dict[str, dict[str, float]] = field(default_factory=dict)
    tus_runs: int = 0
    tus_requests: dict[str, int] = field(default_factory=dict)  # HTTP requests per tus upload (POST + PATCHes)


def rotated(servers: list[Server], run_index: int) -> list[Server]:
    """Round-robin order, starting one server later each run, so that no server always goes first."""
    shift = run_index % len(servers)
    return servers[shift:] + servers[:shift]


def affordable_runs(plan: Plan, size: int, results: Results, started: float) -> int:
    """The planned runs at `size`; for the largest size, `plan.fewest_runs` if the rest of the benchmark
    would otherwise overrun the budget, as projected from the time per byte of the size measured before."""
    planned = plan.runs[size]
    if size != max(plan.sizes) or not results.seconds:
        return planned
    previous = max(results.seconds)
    seconds_per_byte = results.seconds[previous] / (results.runs[previous] * len(SIZE_SERVERS) * previous)
    sections = results.sections
    bytes_left = (planned * len(SIZE_SERVERS) * size
                  + ("concurrent" in sections) * plan.concurrent_runs * len(CONCURRENT_SERVERS)
                  * plan.concurrent_uploads * plan.concurrent_size
                  + ("sequential" in sections) * plan.sequential_uploads * plan.sequential_size
                  + ("tus" in sections) * plan.tus_runs * len(TUS_CASES) * plan.tus_size)
    projected = time.monotonic() - started + bytes_left * seconds_per_byte
    if projected <= plan.budget_seconds or planned <= plan.fewest_runs:
        return planned
    results.notes.append(
        f"{plan.fewest_runs} runs at {human_size(size)} instead of {planned}: with {planned}, the whole benchmark "
        f"would have taken about {projected / 60:.0f} minutes, past its {plan.budget_seconds / 60:.0f}-minute budget.")
    log(results.notes[-1])
    return plan.fewest_runs


def measure_size(fleet: Fleet, size: int, runs: int, source: Path, results: Results) -> None:
    start = time.monotonic()
    servers = fleet.start(*SIZE_SERVERS)
    uploads = results.uploads.setdefault(size, {server.name: [] for server in servers})
    downloads = results.downloads.setdefault(size, {server.name: [] for server in servers if server.serves_downloads})
    cpu = results.upload_cpu.setdefault(size, {server.name: [] for server in servers})
    for run_index in range(runs):
        line = []
        for server in rotated(servers, run_index):
            file_name = f"upload-{run_index}.bin"
            os.sync()  # no dirty pages of an earlier run may slow this one
            cpu_before = cpu_seconds(server.memory_pid())
            seconds = upload(server, source, file_name)
            uploads[server.name].append(size / seconds / MB)
            cpu[server.name].append((cpu_seconds(server.memory_pid()) - cpu_before) / (size / GiB))
            line.append(f"{server.name} up {uploads[server.name][-1]:.0f}")
            if server.serves_downloads:
                downloads[server.name].append(size / download(server, file_name, size) / MB)
                line.append(f"down {downloads[server.name][-1]:.0f}")
            (server.data / file_name).unlink()
        log(f"{human_size(size)} run {run_index + 1}/{runs} (MB/s): {', '.join(line)}")
    results.memory[size] = {server.name: server.memory() for server in servers}
    fleet.stop(servers)
    results.runs[size] = runs
    results.seconds[size] = time.monotonic() - start


def measure_concurrent(fleet: Fleet, plan: Plan, source: Path, results: Results) -> None:
    servers = fleet.start(*CONCURRENT_SERVERS)
    count, size = plan.concurrent_uploads, plan.concurrent_size
    for server in servers:
        results.concurrent[server.name] = []
    for run_index in range(plan.concurrent_runs):
        line = []
        for server in rotated(servers, run_index):
            names = [f"concurrent-{run_index}-{number}.bin" for number in range(count)]
            os.sync()
            start = time.perf_counter()
            transfers = [
                subprocess.Popen(
                    ["curl", "-sS", "--max-time", str(TRANSFER_TIMEOUT), "-o", "/dev/null", "-w", "%{http_code}",
                     "-T", str(source), server.url(name)],
                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                )
                for name in names
            ]
            outcomes = [transfer.communicate(timeout=TRANSFER_TIMEOUT + 30) for transfer in transfers]
            if not server.durable:
                os.sync()
            seconds = time.perf_counter() - start
            for name, transfer, (status, error) in zip(names, transfers, outcomes):
                stored = server.data / name
                if transfer.returncode != 0 or status not in ("200", "201", "204") or stored.stat().st_size != size:
                    raise RuntimeError(f"{server.name}: concurrent upload {name} answered {status} {error.strip()}")
                stored.unlink()
            results.concurrent[server.name].append(count * size / seconds / MB)
            line.append(f"{server.name} {results.concurrent[server.name][-1]:.0f}")
        log(f"{count} x {human_size(size)} concurrent, run {run_index + 1}/{plan.concurrent_runs} (MB/s): "
            + ", ".join(line))
    results.concurrent_memory = {server.name: server.memory() for server in servers}
    fleet.stop(servers)


@dataclass(frozen=True)
class TusCase:
    name: str
    tus: bool  # tus in chunks, or one PUT
    proxied: bool  # through the nginx reverse proxy, or direct to Ferry


TUS_CASES = (TusCase("tus direct", True, False), TusCase("PUT direct", False, False),
             TusCase("tus via nginx", True, True), TusCase("PUT via nginx", False, True))


def measure_tus(fleet: Fleet, plan: Plan, source: Path, results: Results) -> None:
    """One file, by tus in `plan.tus_chunk` PATCHes and by one PUT, each direct to Ferry and through nginx
    (tus through its 100 MiB-capped listener, the PUT through its uncapped one), interleaved over the runs.
    Each upload's size is checked, and the SHA-256 of the first of each case. Peak RSS is reset before each
    upload (clear_refs), so that each case gets its own peak from one Ferry."""
    (ferry,) = fleet.start("ferry")
    proxy = fleet.start_proxy(ferry)
    size = source.stat().st_size
    # The cap is real: a single PUT of the file through the capped listener is refused (before its body).
    status, _, _ = curl("-T", str(source), f"http://127.0.0.1:{proxy.port}/api/files/capped.bin")
    if status != 413 or (ferry.data / "capped.bin").exists():
        raise RuntimeError(f"a {human_size(size)} PUT through the 100 MiB-capped proxy answered {status}, not 413")
    digest = sha256_file(source)
    results.tus_runs = plan.tus_runs
    results.tus = {case.name: [] for case in TUS_CASES}
    peaks = {case.name: {"Ferry": 0.0, **({"nginx": 0.0} if case.proxied else {})} for case in TUS_CASES}
    resettable = True
    for run_index in range(plan.tus_runs):
        line = []
        for case in rotated(list(TUS_CASES), run_index):
            slug = case.name.replace(" ", "-")
            file_name = f"{slug}-{run_index}.bin"
            stored = ferry.data / file_name
            os.sync()  # no dirty pages of an earlier upload may slow this one
            pids = [ferry.memory_pid(), *([proxy.memory_pid()] if case.proxied else [])]
            resettable &= all([reset_peak_memory(pid) for pid in pids])
            if case.tus:
                endpoint = f"http://127.0.0.1:{proxy.port if case.proxied else ferry.port}/api/uploads/"
                outcome = tus_upload.upload(endpoint, str(source), plan.tus_chunk, file_name)
                seconds = outcome.seconds
                results.tus_requests[case.name] = outcome.requests
                if outcome.file_url != f"/api/files/{file_name}":
                    raise RuntimeError(f"{case.name}: the last PATCH named the file {outcome.file_url!r}")
                if outcome.connections != 1:
                    note = (f"{case.name}: the server closed the client's connection during an upload "
                            f"({outcome.connections} connections for {outcome.requests} requests).")
                    if note not in results.notes:
                        results.notes.append(note)
                if not stored.is_file() or stored.stat().st_size != size:
                    raise RuntimeError(f"{case.name}: {file_name} is not stored with the size sent")
            else:
                url = (f"http://127.0.0.1:{proxy.uncapped_port}/api/files/{file_name}" if case.proxied
                       else ferry.url(file_name))
                seconds = upload(ferry, source, file_name, url)  # checks the stored size
            results.tus[case.name].append(size / seconds / MB)
            peaks[case.name]["Ferry"] = max(peaks[case.name]["Ferry"], ferry.memory()[0])
            if case.proxied:
                peaks[case.name]["nginx"] = max(peaks[case.name]["nginx"], proxy.memory()[0])
            if run_index == 0 and sha256_file(stored) != digest:
                raise RuntimeError(f"{case.name}: {file_name} is stored with a SHA-256 other than the source's")
            stored.unlink()
            line.append(f"{case.name} {results.tus[case.name][-1]:.0f}")
        log(f"{human_size(size)} tus/PUT run {run_index + 1}/{plan.tus_runs} (MB/s): {', '.join(line)}")
    results.tus_memory = peaks
    if not resettable:
        results.notes.append("This kernel refused to reset the peak RSS (/proc/PID/clear_refs): the resumable "
                             "uploads' peaks are cumulative, each over its case's runs and all uploads before them.")
    fleet.stop([proxy, ferry])


def measure_sequential_rss(fleet: Fleet, plan: Plan, source: Path, results: Results) -> None:
    (ferry,) = fleet.start("ferry")
    for number in range(plan.sequential_uploads):
        file_name = f"sequential-{number}.bin"
        upload(ferry, source, file_name)
        (ferry.data / file_name).unlink()
        results.sequential_rss.append(ferry.memory()[1])
    log(f"Ferry RSS after each of {plan.sequential_uploads} uploads (MiB): "
        + ", ".join(f"{rss:.1f}" for rss in results.sequential_rss))
    fleet.stop([ferry])


# --- Report ---------------------------------------------------------------------------------------


def spread(samples: list[float]) -> str:
    return f"{min(samples):.0f} / {statistics.median(samples):.0f} / {max(samples):.0f}"


def median_ratio(numerators: list[float], denominators: list[float]) -> str:
    return f"{statistics.median(a / b for a, b in zip(numerators, denominators)):.2f}"


def machine() -> str:
    memory_kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    cpu = re.search(r"model name\s*:\s*(.*)", Path("/proc/cpuinfo").read_text())
    source, fstype, target = run(["df", "--output=source,fstype,target", str(WORK)],
                                 capture_output=True).stdout.splitlines()[1].split()
    return (f"{os.cpu_count()} cores ({cpu.group(1) if cpu else platform.machine()}), "
            f"{memory_kib / 1024 / 1024:.1f} GiB memory, Linux {platform.release()}, "
            f"{fstype} ({source} on {target})")


def versions(ferry_binary: Path) -> str:
    commit = run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True).stdout.strip()
    dirty = run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                capture_output=True).stdout.strip()
    ferry = run([str(ferry_binary), "--version"], capture_output=True).stdout.strip()
    nginx = run(["nginx", "-v"], capture_output=True).stderr.strip().replace("nginx version: ", "")
    curl_version = run(["curl", "--version"], capture_output=True).stdout.split()[1]
    return (f"{ferry} (commit {commit}{' + local changes' if dirty else ''}), {nginx}, "
            f"copyparty {importlib.metadata.version('copyparty')}, curl {curl_version}")


def report(results: Results, plan: Plan, ferry_binary: Path, started: float) -> str:
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    command = " ".join(["python3", "bench/run.py", *sys.argv[1:]])
    sections = results.sections
    runs = [f"{runs} at {human_size(size)}" for size, runs in results.runs.items()]
    if "concurrent" in sections:
        runs.append(f"{plan.concurrent_runs} for the concurrent uploads")
    if "tus" in sections:
        runs.append(f"{results.tus_runs} for the resumable uploads")
    lines = [
        f"# Ferry benchmark{' (--quick)' if plan is QUICK else ''}",
        "",
        f"- Date: {now}; the whole run took {(time.monotonic() - started) / 60:.1f} minutes",
        f"- Machine: {machine()}; load average {results.load[0]:.2f} before the measurements, "
        f"{results.load[-1]:.2f} after (other work on the machine makes every number noisier)",
        f"- Software: {versions(ferry_binary)}",
        f"- Reproduce: `{command}` (from the repository's root)",
        *([] if tuple(sections) == SECTIONS else [f"- Sections: only {', '.join(sections)} (`--only`)"]),
        f"- Runs: {'; '.join(runs)}. Each run visits every server (or case) in "
        "turn (round-robin, starting one later each run); cells are min / median / max over the runs, "
        "ratios are the median of the per-run ratios.",
        "- All transfers are over loopback (`curl`, or bench/tus_upload.py for tus), "
        "MB/s = 10^6 bytes per second.",
        *(f"- Note: {note}" for note in results.notes),
    ]
    if "sizes" in sections:
        lines += [
            "",
            "## Uploads, durable (MB/s)",
            "",
            "Time until the data is on disk: Ferry and the sink fsync before answering; nginx and copyparty do not, "
            "so their time is curl's plus a `sync` run right after the answer.",
            "",
            "| size | Ferry | nginx + sync | copyparty + sync | sink | Ferry/nginx | Ferry/sink |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for size, samples in results.uploads.items():
            lines.append(
                f"| {human_size(size)} | {spread(samples['Ferry'])} | {spread(samples['nginx'])} | "
                f"{spread(samples['copyparty'])} | {spread(samples['sink'])} | "
                f"{median_ratio(samples['Ferry'], samples['nginx'])} | "
                f"{median_ratio(samples['Ferry'], samples['sink'])} |")
        lines += [
            "",
            "Each server's own CPU time per GiB uploaded (user + system, median over the runs; nginx: its worker). "
            "The client, curl, takes about as much again, on the same 2 cores. Ferry's includes SHA-256 of every "
            "byte (about 0.6 CPU-s per GiB at OpenSSL's speed here), which the sink does not compute; nginx's and "
            "copyparty's exclude the kernel's writeback, which runs after their answer.",
            "",
            "| size | Ferry | nginx | copyparty | sink |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for size, samples in results.upload_cpu.items():
            cells = " | ".join(f"{statistics.median(samples[name]):.2f}" for name in ("Ferry", "nginx", "copyparty", "sink"))
            lines.append(f"| {human_size(size)} | {cells} |")
        lines += [
            "",
            "## Downloads (MB/s)",
            "",
            "The file just uploaded, read back to /dev/null from the page cache (the script reads the file once first: "
            "Ferry writes uploads with direct I/O, which leaves nothing in the cache). Below 1 GiB each run downloads "
            "the file 3 times and keeps the median.",
            "",
            "| size | Ferry | nginx | copyparty | Ferry/nginx |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for size, samples in results.downloads.items():
            lines.append(
                f"| {human_size(size)} | {spread(samples['Ferry'])} | {spread(samples['nginx'])} | "
                f"{spread(samples['copyparty'])} | {median_ratio(samples['Ferry'], samples['nginx'])} |")
        lines += [
            "",
            "## Memory (MiB)",
            "",
            "Fresh servers for each size: peak RSS (VmHWM) over that size's uploads and downloads, then RSS (VmRSS) "
            "after them. nginx: its worker process.",
            "",
            "| size | Ferry peak / after | nginx peak / after | copyparty peak / after | sink peak / after |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for size, memory in results.memory.items():
            cells = " | ".join(f"{memory[name][0]:.1f} / {memory[name][1]:.1f}"
                               for name in ("Ferry", "nginx", "copyparty", "sink"))
            lines.append(f"| {human_size(size)} | {cells} |")
    if "concurrent" in sections:
        count, size = plan.concurrent_uploads, human_size(plan.concurrent_size)
        concurrent, memory = results.concurrent, results.concurrent_memory
        lines += [
            "",
            f"## {count} concurrent {size} uploads",
            "",
            f"Aggregate: {count} x {size} over the wall time from the first request to the last answer "
            "(plus `sync` for nginx and copyparty). Peak RSS over all runs.",
            "",
            "| | Ferry | nginx + sync | copyparty + sync | Ferry/nginx |",
            "| --- | ---: | ---: | ---: | ---: |",
            f"| aggregate MB/s | {spread(concurrent['Ferry'])} | {spread(concurrent['nginx'])} | "
            f"{spread(concurrent['copyparty'])} | {median_ratio(concurrent['Ferry'], concurrent['nginx'])} |",
            f"| peak RSS MiB | {memory['Ferry'][0]:.1f} | {memory['nginx'][0]:.1f} | {memory['copyparty'][0]:.1f} | |",
        ]
    if "sequential" in sections:
        rss = results.sequential_rss
        growth = rss[-1] - rss[0]
        lines += [
            "",
            f"## Ferry's memory over {plan.sequential_uploads} sequential {human_size(plan.sequential_size)} uploads",
            "",
            f"RSS after the first: {rss[0]:.1f} MiB; after the last: {rss[-1]:.1f} MiB; "
            f"difference {growth:+.1f} MiB ({'within' if abs(growth) <= 2 else 'NOT within'} the 2 MiB claim).",
        ]
    if "tus" in sections:
        lines += tus_report(results, plan)
    lines.append("")
    return "\n".join(lines)


def tus_report(results: Results, plan: Plan) -> list[str]:
    size, chunk = human_size(plan.tus_size), human_size(plan.tus_chunk)
    speed, memory = results.tus, results.tus_memory
    patches = -(-plan.tus_size // plan.tus_chunk)
    return [
        "",
        f"## Resumable uploads: {size} by tus in {chunk} chunks vs one PUT",
        "",
        f"The same {size} of random bytes, uploaded to Ferry (a) by tus 1.0.0: a POST to `/api/uploads/` then "
        f"{patches} PATCHes of {chunk}, each answered only once fsynced and recorded, the last one moving "
        "the file into place; and (b) by one `PUT /api/files/{name}` (`curl -T`). Each both direct and through "
        "nginx as a reverse proxy (`bench/nginx-proxy.conf`: streaming, `proxy_request_buffering off`, "
        "`proxy_buffering off`, HTTP/1.1 upstream, a new upstream connection per request): tus through a "
        "listener that caps bodies at 100 MiB like Cloudflare's free plan (checked: "
        f"it refuses a {size} PUT with 413), the PUT through an uncapped one (`client_max_body_size 0`). The tus client (`bench/tus_upload.py`) "
        "keeps one connection and sends each chunk in 256 KiB blocks read from the file, as curl does. Times run from "
        "the connection to the last answer; Ferry fsyncs before answering, so they are durable. Every "
        "upload's stored size is checked, and the SHA-256 of each case's first upload.",
        "",
        "| MB/s | direct | via nginx | via nginx / direct |",
        "| --- | ---: | ---: | ---: |",
        f"| tus, {patches} x {chunk} | {spread(speed['tus direct'])} | {spread(speed['tus via nginx'])} | "
        f"{median_ratio(speed['tus via nginx'], speed['tus direct'])} |",
        f"| one PUT | {spread(speed['PUT direct'])} | {spread(speed['PUT via nginx'])} | "
        f"{median_ratio(speed['PUT via nginx'], speed['PUT direct'])} |",
        f"| tus / PUT | {median_ratio(speed['tus direct'], speed['PUT direct'])} | "
        f"{median_ratio(speed['tus via nginx'], speed['PUT via nginx'])} | |",
        "",
        "Peak RSS (MiB): the highest VmHWM of one upload (reset before each through `/proc/PID/clear_refs`) "
        "over the runs, for Ferry and for the proxy's nginx worker. One Ferry serves all four cases.",
        "",
        "| peak RSS MiB | Ferry, direct | Ferry, via nginx | nginx worker |",
        "| --- | ---: | ---: | ---: |",
        f"| tus | {memory['tus direct']['Ferry']:.1f} | {memory['tus via nginx']['Ferry']:.1f} | "
        f"{memory['tus via nginx']['nginx']:.1f} |",
        f"| one PUT | {memory['PUT direct']['Ferry']:.1f} | {memory['PUT via nginx']['Ferry']:.1f} | "
        f"{memory['PUT via nginx']['nginx']:.1f} |",
    ]


# --- Setup ----------------------------------------------------------------------------------------


def install_dependencies() -> None:
    """Debian's nginx and a C compiler, copyparty from PyPI, and Ferry's own build dependencies."""
    setup = REPO / "scripts" / "setup"
    if setup.exists():
        run([str(setup)], stdout=sys.stderr)
    missing = [package for package, command in (("nginx-light", "nginx"), ("curl", "curl"), ("gcc", "cc"))
               if shutil.which(command) is None]
    if missing:
        log(f"installing Debian packages: {' '.join(missing)}")
        environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        run(["apt-get", "update", "-qq"], env=environment, stdout=sys.stderr)
        run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing], env=environment,
            stdout=sys.stderr)
    if importlib.util.find_spec("copyparty") is None:
        log("installing copyparty from PyPI")
        run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "copyparty"],
            stdout=sys.stderr)


def build_ferry() -> Path:
    log("building Ferry (release)")
    flags = ["-c", "release", "--product", "ferry"]
    run(["swift", "build", *flags], cwd=REPO, stdout=sys.stderr)
    bin_path = run(["swift", "build", *flags, "--show-bin-path"], cwd=REPO, capture_output=True).stdout.strip()
    return Path(bin_path) / "ferry"


def build_sink() -> Path:
    binary = WORK / "sink"
    run(["cc", "-O2", "-Wall", "-o", str(binary), str(BENCH / "sink.c")])
    return binary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="100 MiB only, 3 runs, 4 concurrent uploads; 3 runs of the resumable uploads")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, metavar="SECTION",
                        help=f"run only these sections ({', '.join(SECTIONS)}); all by default")
    arguments = parser.parse_args()
    plan = QUICK if arguments.quick else FULL
    sections = [section for section in SECTIONS if section in (arguments.only or SECTIONS)]
    started = time.monotonic()
    # SIGTERM (and SIGHUP) unwind like Ctrl-C, through the `finally` that stops the servers.
    for number in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(number, lambda received, frame: sys.exit(128 + received))

    install_dependencies()
    ferry_binary = build_ferry()
    WORK.mkdir(parents=True, exist_ok=True)
    sink_binary = build_sink()

    fleet = Fleet(ferry_binary, sink_binary)
    files = WORK / "files"
    shutil.rmtree(files, ignore_errors=True)
    files.mkdir()
    results = Results(plan_name="quick" if plan is QUICK else "full", sections=sections)
    try:
        log("creating the random files")
        sizes = {
            *(plan.sizes if "sizes" in sections else ()),
            *((plan.concurrent_size,) if "concurrent" in sections else ()),
            *((plan.sequential_size,) if "sequential" in sections else ()),
            *((plan.tus_size,) if "tus" in sections else ()),
        }
        sources = {}
        for size in sizes:
            sources[size] = files / f"random-{human_size(size).replace(' ', '')}.bin"
            make_random_file(sources[size], size)
        results.load.append(os.getloadavg()[0])
        if "sizes" in sections:
            for size in plan.sizes:
                measure_size(fleet, size, affordable_runs(plan, size, results, started), sources[size], results)
        if "concurrent" in sections:
            measure_concurrent(fleet, plan, sources[plan.concurrent_size], results)
        if "sequential" in sections:
            measure_sequential_rss(fleet, plan, sources[plan.sequential_size], results)
        if "tus" in sections:
            measure_tus(fleet, plan, sources[plan.tus_size], results)
        results.load.append(os.getloadavg()[0])
    finally:
        fleet.stop()
        shutil.rmtree(files, ignore_errors=True)

    markdown = report(results, plan, ferry_binary, started)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.md").write_text(markdown)
    (RESULTS / "latest.json").write_text(json.dumps(
        {key: {str(k): v for k, v in value.items()} if isinstance(value, dict) else value
         for key, value in results.__dict__.items()}, indent=1))
    print(markdown)


if __name__ == "__main__":
    main()
