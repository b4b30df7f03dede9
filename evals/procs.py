"""Helpers for driving real server processes on loopback: shared by the tests and
the benchmarks, which both start `citeqa serve`, `chroma run` and llama.cpp."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Until `url` answers below 500; fails early if `proc` exits first, and stops
    `proc` if it never answers."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    if proc is not None:
        stop(proc)  # a server that never came up is not left running
    raise TimeoutError(f"{url} did not answer within {timeout}s")


def start_chroma(path: Path, port: int) -> subprocess.Popen:
    """A `chroma run` server on a loopback port, answering."""
    chroma = shutil.which("chroma", path=str(Path(sys.executable).parent)) or "chroma"
    proc = subprocess.Popen(
        [chroma, "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_http(f"http://127.0.0.1:{port}/api/v2/heartbeat", proc=proc)
    return proc


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


# -- Ray nodes (the Ray ingestion test and benchmark) ------------------------------------


def ray_env(env: dict[str, str], root: str) -> dict[str, str]:
    """The environment of a Ray node or driver started here: workers import this
    checkout's code, no usage reports, and no token auth (a loopback-only cluster;
    otherwise Ray turns it on whenever ~/.ray/auth_token exists)."""
    out = dict(env)
    out["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    out["RAY_USAGE_STATS_ENABLED"] = "0"
    out["RAY_AUTH_MODE"] = "disabled"
    return out


def start_ray_node(
    ray: str,
    temp_dir: str,
    ip: str,
    num_cpus: float,
    env: dict[str, str],
    log: Path,
    *,
    head_address: str | None = None,
    timeout: float = 90.0,
) -> tuple[subprocess.Popen, str]:
    """One Ray node as its own process group (`ray start --block`): the head when
    `head_address` is None, else a node joining it. Every port is a free one, so it
    never meets another cluster on this machine. Returns the process and the head's
    address. `stop_ray_node` ends it and everything it started, and nothing else
    (`ray stop` would end every Ray process on the machine)."""
    cmd = [
        ray, "start", "--block", "--node-ip-address", ip, "--num-cpus", str(num_cpus),
        "--object-store-memory", "300000000", "--disable-usage-stats",
        "--temp-dir", temp_dir, "--dashboard-agent-listen-port", str(free_port()),
    ]  # fmt: skip
    if head_address is None:
        port = free_port()
        address = f"{ip}:{port}"
        cmd += [
            "--head", "--port", str(port), "--include-dashboard=false",
            "--dashboard-port", str(free_port()), "--ray-client-server-port", str(free_port()),
        ]  # fmt: skip
    else:
        address = head_address
        cmd += ["--address", head_address]
    out = open(log, "ab")
    proc = subprocess.Popen(
        cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + timeout
    while "Ray runtime started" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_ray_node(proc)
            raise RuntimeError(f"Ray node {ip} did not start; see {log}")
        time.sleep(0.5)
    return proc, address


def _session_members(sid: int) -> list[int]:
    """Processes in session `sid` (Linux /proc): a node's workers get a process group
    of their own but stay in the session their node started."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[3]) == sid:  # state, ppid, pgrp, session
            pids.append(int(entry))
    return pids


def stop_ray_node(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """End a node from `start_ray_node` and every process of its session."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in _session_members(proc.pid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.2)
    proc.wait(10)
