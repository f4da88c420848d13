"""Where a one-model server's memory goes: RSS at start, after requests, after evicting its engine; by import.

    .venv/bin/python -m benchmarks.memory_profile                               # the server in .venv (all plugins)
    .venv/bin/python -m benchmarks.memory_profile --python .venv-onnx/bin/python  # an ONNX-only install
    .venv/bin/python -m benchmarks.memory_profile --env MODELPORT_X=1 --json out.json
    .venv/bin/python -m benchmarks.memory_profile --root /tmp/before   # git archive COMMIT | tar -x -C /tmp/before

One MLP 784->256->10 (the benchmark's model) is registered on a first server, which is stopped; a fresh server
on the same data dir (``python -m service serve`` under :mod:`benchmarks.import_rss`, pinned to CPU 0 like the
benchmark's servers) is then measured:

- ``start``: ready, nothing served yet, no engine loaded (the version has no alias, so nothing loads it at start;
  calls name it: ``/v2/models/mlp/versions/1/infer``);
- ``first request``: one V2 JSON call, which loads the engine (and imports the backend);
- ``N json``, ``N binary``: N sequential V2 JSON / binary-extension calls on one keep-alive connection;
- ``N x C concurrent``: N calls on each of C connections at once (batches above 1, every worker thread busy);
- ``N grpc``: N ModelInfer calls through ``tritonclient.grpc`` (skipped when the harness cannot import it);
- ``unloaded``: ``POST /v2/repository/models/mlp/unload`` (the engine closed, the heap trimmed);
- ``reloaded, unloaded``: one more call (a load) and unload, for the steady state of a load/evict cycle;
- ``reloaded``: one more call, then the RSS by mapping (``/proc/PID/smaps``) with the engine loaded.

Each row: VmRSS and VmHWM (peak) of the server, the server's CPU per call in the phase (every thread, from
``schedstat``; noisy on a shared machine), and RssAnon / RssFile (heap vs mapped files: shared library
text counts in RssFile). Before the measured server starts, the page cache of the venv's shared libraries is
dropped (``--warm-libs``: not), since how a library's pages are cached changes its RssFile by up to 10 MB, and
the served checkout is byte-compiled (``--no-compile``: not), as an installed package is. Then
the server's own RSS per top-level package, as :mod:`benchmarks.import_rss` attributes it (each package's own
loads, without the packages it imported), and which of a few watched packages were imported at all.
The harness needs ``numpy`` and ``onnx`` (to write the model) and, for the gRPC phase, ``tritonclient[grpc]``;
the server runs in ``--python``'s venv.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if __package__ in (None, ""):
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402

from benchmarks.workload import MLP_INPUT, MLP_OUTPUT, v2_binary_body, v2_json_body, write_mlp  # noqa: E402

__all__ = ("main",)

ADMIN_TOKEN = "memory-profile-admin-token-0123456789"
MODEL = "mlp"
WATCHED = ("grpc", "rich", "torch", "alembic", "onnx", "litestar", "sqlalchemy", "structlog", "pygments", "yaml")
"""Packages whose presence in the server is reported either way."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _status(pid: int) -> dict[str, int]:
    values: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem", "Threads"):
                values[key] = int(rest.split()[0])
    return values


class Server:
    """``python -m benchmarks.import_rss OUT service serve`` in its own session; stopped with SIGTERM."""

    def __init__(
        self,
        python: str,
        data_dir: Path,
        log: Path,
        imports_out: Path | None,
        extra: dict[str, str],
        root: Path | None = None,
    ) -> None:
        self.port, self.grpc_port = _free_port(), _free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELPORT_", "BENCH_"))}
        # another checkout's service/, registry_db/ and plugins ahead of the installed (editable) ones; the import
        # tracker still comes from this one
        paths = [str(root), *(str(src) for src in sorted(root.glob("plugins/*/src")))] if root else []
        paths += [str(ROOT), *(str(src) for src in sorted(ROOT.glob("plugins/*/src")))]
        env["PYTHONPATH"] = os.pathsep.join(paths + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
        env.update(
            MODELPORT_DATA_DIR=str(data_dir),
            MODELPORT_ADMIN_TOKEN=ADMIN_TOKEN,
            MODELPORT_INTRA_OP_THREADS="1",
            MODELPORT_DRAIN_TIMEOUT_S="2",
            MODELPORT_GRPC_PORT=str(self.grpc_port),
        )
        env.update(extra)
        # the tracker by path, so that ``-m``'s cwd entry on sys.path is the served checkout's, not this one's
        tracker = str(Path(__file__).with_name("import_rss.py"))
        main = [tracker, str(imports_out), "service"] if imports_out else ["-m", "service"]
        argv = [python, *main, "serve", "--port", str(self.port)]
        taskset = shutil.which("taskset")
        if taskset and 0 in os.sched_getaffinity(0):
            argv = [taskset, "-c", "0", *argv]
        self.log = log
        self.version = "1"
        """The version calls name (set once registered)."""
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                argv, env=env, cwd=root or ROOT, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
            )

    @property
    def pid(self) -> int:
        return self.process.pid

    def request(
        self, method: str, path: str, body: bytes = b"", headers: dict[str, str] | None = None
    ) -> tuple[int, bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            conn.request(method, path, body=body, headers=headers or {})
            reply = conn.getresponse()
            return reply.status, reply.read()
        finally:
            conn.close()

    def wait_ready(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log.read_text()[-3000:]}")
            with contextlib.suppress(OSError, http.client.HTTPException):
                if self.request("GET", "/v2/health/ready")[0] == 200:
                    return
            time.sleep(0.1)
        raise RuntimeError(f"server not ready in {timeout:.0f} s:\n{self.log.read_text()[-3000:]}")

    def admin(self, method: str, path: str, body: bytes = b"", content_type: str = "application/json") -> bytes:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": content_type}
        status, data = self.request(method, path, body, headers)
        if status not in (200, 201):
            raise RuntimeError(f"{method} {path}: {status} {data[:300]!r}")
        return data

    def stop(self) -> None:
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.pid, signal.SIGKILL)
                self.process.wait(5)


def _register(server: Server, artifact: Path) -> str:
    """Register ``artifact`` as a new version, without an alias: nothing routes to it, so nothing loads it at
    start; calls name the version."""
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="manifest"\r\n\r\n{{"backend": "onnx"}}\r\n'.encode(),
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="artifact"; filename="{artifact.name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        + artifact.read_bytes()
        + b"\r\n",
        f"--{boundary}--\r\n".encode(),
    ]
    reply = json.loads(server.admin("POST", f"/admin/models/{MODEL}/versions", b"".join(parts), _multipart(boundary)))
    return str(reply.get("version", "1"))


def _multipart(boundary: str) -> str:
    return f"multipart/form-data; boundary={boundary}"


def _cpu_ns(pid: int) -> int:
    """CPU time of every thread of ``pid`` so far, ns (``/proc/PID/task/*/schedstat``; exited threads are lost)."""
    total = 0
    for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            total += int(stat.read_text().split()[0])
    return total


def _mappings(pid: int) -> dict[str, int]:
    """RSS (KiB) per mapping name from ``/proc/PID/smaps``: a file's path, ``[heap]``, ``[stack]``, or
    ``[anon]`` for anonymous mappings (malloc's other arenas, thread stacks, mmap'd buffers)."""
    rss: dict[str, int] = {}
    name = "[anon]"
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
            head = line.split(None, 5)
            if head and not head[0].endswith(":"):
                name = head[5].strip() if len(head) > 5 else "[anon]"
            elif head and head[0] == "Rss:":
                rss[name] = rss.get(name, 0) + int(head[1])
    return rss


def _loaded_engines(server: Server) -> int | None:
    status, data = server.request("GET", "/metrics")
    if status != 200:
        return None
    total, seen = 0.0, False
    for line in data.decode().splitlines():
        if line.startswith("modelport_loaded_engines"):
            total, seen = total + float(line.rsplit(" ", 1)[1]), True
    return int(total) if seen else None


def _serve_calls(server: Server, count: int, body: bytes, headers: dict[str, str]) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=120)
    try:
        for _ in range(count):
            conn.request("POST", f"/v2/models/{MODEL}/versions/{server.version}/infer", body=body, headers=headers)
            reply = conn.getresponse()
            data = reply.read()
            if reply.status != 200:
                raise RuntimeError(f"infer answered {reply.status}: {data[:300]!r}")
    finally:
        conn.close()


def _concurrent(server: Server, count: int, clients: int, body: bytes, headers: dict[str, str]) -> None:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            _serve_calls(server, count, body, headers)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _grpc_calls(server: Server, count: int, x: np.ndarray) -> bool:
    try:
        import tritonclient.grpc as grpcclient
    except ImportError:
        return False
    with grpcclient.InferenceServerClient(f"127.0.0.1:{server.grpc_port}") as client:
        tensor = grpcclient.InferInput(MLP_INPUT, list(x.shape), "FP32")
        tensor.set_data_from_numpy(x)
        for _ in range(count):
            client.infer(MODEL, [tensor], model_version=server.version)
    return True


def _evict_libraries(python: str) -> int:
    """Drop the page cache of the shared libraries in ``python``'s venv (``POSIX_FADV_DONTNEED``; clean pages,
    so nothing is lost): how many files.

    A mapped library's RSS is the pages the process faulted in, and on kernels with large page-cache folios a
    fault maps the whole folio: the same onnxruntime ``.so`` counts 3 MB or 15 MB after ``dlopen`` depending on
    how its pages came into the cache (pip's writes, another process's reads). Evicting first makes every run
    read them back the same way, as a fresh container would.
    """
    prefix = Path(python).absolute().parent.parent
    count = 0
    for path in (prefix / "lib").rglob("*.so*"):
        with contextlib.suppress(OSError):
            fd = os.open(path, os.O_RDONLY)
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                count += 1
            finally:
                os.close(fd)
    return count


def _compile(python: str, root: Path) -> None:
    """Byte-compile the served checkout, as ``pip install`` does for an installed package: an editable checkout
    run with ``PYTHONDONTWRITEBYTECODE=1`` otherwise compiles every module at each start (about 0.6 MB more RSS)."""
    targets = [str(root / "service"), str(root / "registry_db"), *(str(p) for p in sorted(root.glob("plugins/*/src")))]
    subprocess.run([python, "-m", "compileall", "-q", *targets], check=True, stdout=subprocess.DEVNULL)


def _settle(seconds: float) -> None:
    time.sleep(seconds)


def _package_table(imports: dict[str, Any], top: int) -> list[tuple[str, int, int]]:
    """(top-level package, own KiB, modules) sorted by KiB."""
    by_package: dict[str, list[int]] = {}
    for name, kb in imports["modules"].items():
        entry = by_package.setdefault(name.split(".", 1)[0], [0, 0])
        entry[0] += kb
        entry[1] += 1
    rows = sorted(((name, kb, n) for name, (kb, n) in by_package.items()), key=lambda r: -r[1])
    return rows[:top]


def profile(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="modelport-memprofile-"))
    extra = dict(item.split("=", 1) for item in args.env)
    rng = np.random.default_rng(0)
    x = rng.random((1, 784), dtype=np.float32)
    artifact = write_mlp(workdir / "mlp-784-256-10.onnx", hidden=256)
    json_body = v2_json_body(MLP_INPUT, x)
    binary_body, head_length = v2_binary_body(MLP_INPUT, x, MLP_OUTPUT)
    json_headers = {"Content-Type": "application/json"}
    binary_headers = {
        "Content-Type": "application/octet-stream",
        "Inference-Header-Content-Length": str(head_length),
    }
    data_dir = workdir / "data"
    data_dir.mkdir()
    root = args.root.resolve() if args.root else None
    registrar = Server(
        args.python, data_dir, workdir / "registrar.log", workdir / "registrar-imports.json", extra, root
    )
    try:
        registrar.wait_ready()
        version = _register(registrar, artifact)
    finally:
        registrar.stop()
    imports_path = None if args.no_imports else workdir / "imports.json"
    if not args.no_compile:
        _compile(args.python, args.root.resolve() if args.root else ROOT)
    if not args.warm_libs:
        _evict_libraries(args.python)
    server = Server(args.python, data_dir, workdir / "server.log", imports_path, extra, root)
    server.version = version
    rows: list[dict[str, Any]] = []
    mappings: dict[str, int] = {}

    cpu_mark = [0]

    def sample(label: str, calls: int = 0) -> None:
        cpu = _cpu_ns(server.pid)  # the calls' CPU, before the settle and the /metrics scrape
        _settle(args.settle)
        row: dict[str, Any] = {"phase": label, **_status(server.pid), "loaded": _loaded_engines(server)}
        if calls:
            row["cpu_us_per_call"] = round((cpu - cpu_mark[0]) / calls / 1000, 1)
        rows.append(row)
        cpu_mark[0] = _cpu_ns(server.pid)
        if not args.quiet:
            print(_format_row(row), flush=True)

    n, c = args.requests, args.concurrency
    try:
        server.wait_ready()
        if not args.quiet:
            print(_HEADER, flush=True)
        sample("start")
        _serve_calls(server, 1, json_body, json_headers)
        sample("first request")
        _serve_calls(server, n, json_body, json_headers)
        sample(f"+{n} json", n)
        _serve_calls(server, n, binary_body, binary_headers)
        sample(f"+{n} binary", n)
        if c > 1:
            _concurrent(server, n, c, binary_body, binary_headers)
            sample(f"+{n} x {c} concurrent", n * c)
        if not args.no_grpc and _grpc_calls(server, n, x):
            sample(f"+{n} grpc", n)
        server.admin("POST", f"/v2/repository/models/{MODEL}/unload", b"{}")
        sample("unloaded")
        _serve_calls(server, 1, json_body, json_headers)
        server.admin("POST", f"/v2/repository/models/{MODEL}/unload", b"{}")
        sample("reloaded, unloaded")
        _serve_calls(server, 1, json_body, json_headers)
        sample("reloaded")
        mappings = _mappings(server.pid)
    finally:
        server.stop()
    found = imports_path is not None and imports_path.exists()
    imports = json.loads(imports_path.read_text()) if found and imports_path else {"modules": {}, "order": []}
    loaded = {name.split(".", 1)[0] for name in imports["modules"]}
    result = {
        "python": args.python,
        "env": extra,
        "requests": n,
        "concurrency": c,
        "rows": rows,
        "packages": [
            {"package": p, "own_mb": round(kb / 1024, 1), "modules": m}
            for p, kb, m in _package_table(imports, args.top)
        ],
        "mappings": [
            {"mapping": name, "rss_mb": round(kb / 1024, 1)}
            for name, kb in sorted(mappings.items(), key=lambda item: -item[1])[: args.top]
        ],
        "served_files": imports.get("files", {}),
        "imported_modules": len(imports["modules"]),
        "import_rss_mb": round(sum(imports["modules"].values()) / 1024, 1),
        "watched": {name: name in loaded for name in WATCHED},
    }
    if args.keep:
        result["workdir"] = str(workdir)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


_HEADER = (
    f"{'phase':<24} {'VmRSS':>7} {'VmHWM':>7} {'RssAnon':>8} {'RssFile':>8} {'threads':>7} {'engines':>7} "
    f"{'CPU us/call':>11}  (MB)"
)


def _format_row(row: dict[str, Any]) -> str:
    def mb(key: str) -> str:
        return f"{row.get(key, 0) / 1024:.1f}"

    return (
        f"{row['phase']:<24} {mb('VmRSS'):>7} {mb('VmHWM'):>7} {mb('RssAnon'):>8} {mb('RssFile'):>8} "
        f"{row.get('Threads', 0):>7} {row['loaded'] if row['loaded'] is not None else '-':>7} "
        f"{row.get('cpu_us_per_call', ''):>11}"
    )


def _print_imports(result: dict[str, Any]) -> None:
    if result["mappings"]:
        print("\nRSS by mapping, engine loaded (the last row):")
        for row in result["mappings"]:
            name = row["mapping"]
            short = name if len(name) <= 70 else "..." + name[-67:]
            print(f"  {row['rss_mb']:6.1f} MB  {short}")
    print(
        f"\nimports: {result['imported_modules']} modules, {result['import_rss_mb']} MB of RSS added while loading "
        "them (each package's own, without the packages it imported):"
    )
    for row in result["packages"]:
        print(f"  {row['package']:<28} {row['own_mb']:6.1f} MB  {row['modules']:4d} modules")
    if result.get("served_files"):
        print("served code: " + ", ".join(f"{name} {path}" for name, path in result["served_files"].items()))
    present = ", ".join(f"{name} {'yes' if seen else 'no'}" for name, seen in result["watched"].items())
    print(f"imported by the server: {present}")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--python", default=sys.executable, help="the server's interpreter (its venv's python)")
    parser.add_argument(
        "--root",
        type=Path,
        default=None,
        help="serve another checkout's code (git archive COMMIT | tar -x -C DIR), for a before/after in one session",
    )
    parser.add_argument("--requests", type=int, default=200, help="calls per phase (200)")
    parser.add_argument("--concurrency", type=int, default=8, help="connections in the concurrent phase (8; 1: skip)")
    parser.add_argument("--settle", type=float, default=1.0, help="seconds to wait before each sample (1)")
    parser.add_argument("--env", action="append", default=[], metavar="K=V", help="extra server environment")
    parser.add_argument(
        "--warm-libs", action="store_true", help="do not evict the venv's shared libraries from the page cache first"
    )
    parser.add_argument("--no-compile", action="store_true", help="do not byte-compile the served checkout first")
    parser.add_argument("--no-imports", action="store_true", help="run the server without the import tracker")
    parser.add_argument("--no-grpc", action="store_true", help="skip the gRPC phase")
    parser.add_argument("--top", type=int, default=20, help="packages listed in the import breakdown (20)")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, imports.json)")
    parser.add_argument("--quiet", action="store_true", help="print only the summary")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    args.python = os.path.abspath(args.python)  # not resolved: a venv's python is a link to the base interpreter
    result = profile(args)
    if args.quiet:
        print(_HEADER)
        for row in result["rows"]:
            print(_format_row(row))
    _print_imports(result)
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
