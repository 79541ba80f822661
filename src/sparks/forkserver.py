"""A fork server for local runs: each ``sparks <stage>`` job starts from a process that has already
imported torch, transformers and the other heavy libraries, instead of importing them anew.

Importing them takes about 4.5 s of every job on a laptop core, and the embedded default runs
about 65 such jobs. Snakemake still runs every job as its own ``sparks <stage> ...`` command with
its own log, exit status and targets. The command (the client) hands its arguments, working
folder, environment and standard streams to the server; the server forks a child, which runs the
stage exactly as ``sparks.cli.main`` would in a new process and sends back the exit status.

The child is a copy of a process that imported third-party libraries and ran nothing else; the
sparks code itself is imported in the child, fresh for every job. The server serves a job only when
the job's environment is the server's, up to what Snakemake sets per job (thread counts, temporary
folder), which the child applies. Anything else (no server, a refused environment, a socket that
does not answer) and the command runs in its own process as before: the server only saves time.

The workflow starts a server for local execution (``onstart`` in rules/common.smk) and names its
socket in ``SPARKS_FORKSERVER`` for the jobs; ``SPARKS_FORKSERVER=off`` turns it off. The server
stops with the workflow, or when the Snakemake process that started it is gone.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ENV = "SPARKS_FORKSERVER"
PRELOAD = (  # what the stages import; sparks itself is imported in each child
    "numpy",
    "polars",
    "pyarrow.parquet",
    "tqdm.auto",
    "torch",
    "transformers",
    "transformers.models.qwen2.modeling_qwen2",
    "accelerate",
    "datasets",
    "trl",
    "nnsight",
    "seaborn",
)
PER_JOB = frozenset(  # what Snakemake and the job's shell set for each job; the rest must match
    {
        "OMP_NUM_THREADS",
        "GOTO_NUM_THREADS",
        "OPENBLAS_NUM_THREADS",
        "MKL_NUM_THREADS",
        "VECLIB_MAXIMUM_THREADS",
        "NUMEXPR_NUM_THREADS",
        "TMPDIR",
        "TMP",
        "TEMP",
        "TEMPDIR",
        "PWD",  # the shell's own: bash sets these and drops the prompts when it runs a command
        "OLDPWD",
        "SHLVL",
        "_",
        "PS1",
        "PS2",
        "PS3",
        "PS4",
        "PROMPT_COMMAND",
    }
)
_HEADER = struct.Struct("!I")


def _send(sock: socket.socket, message: dict, fds: list[int] | None = None) -> None:
    data = json.dumps(message).encode()
    header = _HEADER.pack(len(data))
    if fds:
        socket.send_fds(sock, [header], fds)
    else:
        sock.sendall(header)
    sock.sendall(data)


def _receive(sock: socket.socket, n_fds: int = 0) -> tuple[dict | None, list[int]]:
    """One message and the file descriptors sent with it; the message is None when the peer has gone."""
    header, fds, _, _ = socket.recv_fds(sock, _HEADER.size, n_fds) if n_fds else (sock.recv(_HEADER.size), [], 0, None)
    while header and len(header) < _HEADER.size:
        more = sock.recv(_HEADER.size - len(header))
        if not more:
            return None, fds
        header += more
    if not header:
        return None, fds
    (size,) = _HEADER.unpack(header)
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            return None, fds
        data += chunk
    return json.loads(data), fds


# The client: a ``sparks`` command line.


def run_via_server(argv: list[str]) -> int | None:
    """Run ``sparks argv`` in a child of the server named by SPARKS_FORKSERVER and return its exit
    status; None when there is no server to use (the caller then runs the stage itself)."""
    path = os.environ.get(ENV)
    if not path or path == "off":
        return None
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(path)
        _send(sock, {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ)}, [0, 1, 2])
        reply, _ = _receive(sock)
    except OSError:
        sock.close()
        return None
    if reply is None or "pid" not in reply:
        if reply is not None:
            print(f"sparks: not using the fork server ({reply.get('refused')}); starting a new process", file=sys.stderr)
        sock.close()
        return None
    pid = reply["pid"]

    def forward(signum, frame):  # Snakemake stopping the job stops the stage
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            pass

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, forward)
    try:
        reply, _ = _receive(sock)
    except OSError:
        reply = None
    sock.close()
    if reply is None:
        print(f"sparks: the stage's process (pid {pid}, forked by the fork server) ended without an exit status", file=sys.stderr)
        return 1
    return int(reply["exit"])


# The server.


def _refusal(env: dict[str, str], own: dict[str, str]) -> str | None:
    differ = sorted(k for k in set(env) | set(own) if k not in PER_JOB and env.get(k) != own.get(k))
    return f"the job's environment differs from the server's in {', '.join(differ)}" if differ else None


def _serve_one(conn: socket.socket, entry: str, own_env: dict[str, str], imported_env: dict[str, str]) -> int:
    """In the forked child: take the job, become it, run it, report its exit status. The job's
    environment is its own, plus what the preloaded imports set (as they would in a new process)."""
    request, fds = _receive(conn, 3)
    if request is None or len(fds) != 3:
        return 1
    refused = _refusal(request["env"], own_env)
    if refused:
        _send(conn, {"refused": refused})
        return 1
    _send(conn, {"pid": os.getpid()})
    print(f"pid {os.getpid()}: {' '.join(request['argv'])}", file=sys.stderr, flush=True)  # the server's log: see forked()

    def watch() -> None:  # the client gone (its job killed): so is the stage
        try:
            conn.recv(1)
        except OSError:
            pass
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watch, daemon=True).start()
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for key, value in imported_env.items():
        os.environ.setdefault(key, value)
    tempfile.tempdir = None  # found again from TMPDIR
    sys.argv = ["sparks", *request["argv"]]
    if "OMP_NUM_THREADS" in os.environ:
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
    try:
        module, _, function = entry.partition(":")
        code = getattr(importlib.import_module(module), function)(request["argv"])
    except SystemExit as stop:  # argparse and the stages exit as a command line would
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
        if not isinstance(stop.code, int | None):
            print(stop.code, file=sys.stderr)
    except BaseException:  # noqa: BLE001 - reported as the interpreter would, then the exit status
        import traceback

        traceback.print_exc()
        code = 1
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    _send(conn, {"exit": code})
    return code


def serve(path: str, parent: int, entry: str) -> None:
    """Import PRELOAD, then fork a child per connection on the socket ``path``, which calls the
    command's ``entry`` point (``module:function``, given the arguments) until the process ``parent``
    (the workflow) is gone or a signal stops the server."""
    own_env = dict(os.environ)  # before importing: torch sets variables of its own
    for module in PRELOAD:
        try:
            importlib.import_module(module)
        except Exception as err:  # noqa: BLE001 - a library that fails to import is imported (and fails) in the job
            print(f"fork server: not preloading {module}: {err}", file=sys.stderr)
    imported_env = {k: v for k, v in os.environ.items() if own_env.get(k) != v}  # what the imports set
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    partial = f"{path}.{os.getpid()}"
    listener.bind(partial)
    listener.listen(64)
    os.replace(partial, path)  # jobs see the socket only once it is served
    listener.settimeout(1.0)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # children are reaped by the kernel
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        while os.getppid() == parent:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            if os.fork() == 0:
                listener.close()
                for signum in (signal.SIGCHLD, signal.SIGTERM):
                    signal.signal(signum, signal.SIG_DFL)
                conn.settimeout(None)
                code = 1
                try:
                    code = _serve_one(conn, entry, own_env, imported_env)
                finally:
                    os._exit(code)
            conn.close()
    finally:
        Path(path).unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            Path(path).parent.rmdir()  # the folder Server made for it, if nothing else is there


def forked(log: Path) -> list[tuple[int, list[str]]]:
    """The jobs a server has forked, from its log: (pid, the command's arguments) in order."""
    jobs = []
    for line in log.read_text().splitlines():
        if line.startswith("pid ") and ": " in line:
            pid, argv = line.removeprefix("pid ").split(": ", 1)
            jobs.append((int(pid), argv.split()))
    return jobs


class Server:
    """A running fork server, for the workflow's onstart/onsuccess/onerror hooks."""

    def __init__(self, log: Path, entry: str, env: dict[str, str] | None = None) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="sparks-fork-"))  # short: socket paths have a length limit
        self.path = str(self.folder / "socket")
        if env is None:  # the workflow's own: its jobs inherit it, SPARKS_FORKSERVER included
            os.environ[ENV] = self.path
        env = {**(os.environ if env is None else env), ENV: self.path}  # what the jobs' environment must match
        self.log = log  # the server's messages and one line per job it forks
        log.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "w") as stream:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "sparks.forkserver", self.path, str(os.getpid()), entry],
                stdin=subprocess.DEVNULL,
                stdout=stream,
                stderr=subprocess.STDOUT,
                env=env,
            )

    def wait(self, timeout: float = 120.0) -> None:
        """Return once the server takes jobs (it preloads first); raise if it ended or took too long."""
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.path):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the fork server is not serving after {timeout:.0f} s; its log: {self.log}")
            time.sleep(0.05)

    def stop(self) -> None:
        if os.environ.get(ENV) == self.path:  # set by __init__ for the workflow's own jobs
            del os.environ[ENV]
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        shutil.rmtree(self.folder, ignore_errors=True)


def start(log: Path, entry: str, env: dict[str, str] | None = None) -> Server | None:
    """A fork server for the jobs this process starts, commands whose ``entry`` point is
    ``module:function`` (``sparks.cli:main``), in environment ``env`` (by default this process's
    own); None when SPARKS_FORKSERVER=off, or off Linux (macOS frameworks are not safe to fork once
    loaded, which is why Python itself spawns there)."""
    if os.environ.get(ENV) == "off" or not sys.platform.startswith("linux"):
        return None
    return Server(log, entry, env)


if __name__ == "__main__":
    serve(sys.argv[1], int(sys.argv[2]), sys.argv[3])
