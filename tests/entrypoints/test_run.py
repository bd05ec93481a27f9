"""`warden run` as a real process: starts the engine and the API, hides the token, stops on Ctrl-C."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import stat
import sys
from pathlib import Path

import httpx

LAUNCH = "from warden.entrypoints.cli import main; main()"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def wait_healthy(url: str, proc: asyncio.subprocess.Process, within: float = 30.0) -> None:
    """Poll /healthz until it answers 200; fail early if the process died."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    async with httpx.AsyncClient(timeout=1.0) as http:
        while loop.time() < deadline:
            assert proc.returncode is None, "warden run exited before it was healthy"
            try:
                if (await http.get(f"{url}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise AssertionError("warden run did not become healthy")


async def test_run_serves_then_stops_cleanly_on_ctrl_c(tmp_path: Path) -> None:
    """run creates a private token file, serves signals, never prints the token, and exits 0 on SIGINT."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    data = tmp_path / "data"
    args = ["run", "--port", str(port), "--db", f"sqlite:///{tmp_path}/w.db", "--data-dir", str(data)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        LAUNCH,
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        await wait_healthy(url, proc)
        token_file = data / "api-token"
        assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
        token = token_file.read_text().strip()
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}) as http:
            response = await http.post(
                "/api/v1/signals", json={"symbol": "BTC", "side": "short", "qty": "0.01"}
            )
            assert response.status_code == 201, response.text
            assert response.json()["status"] == "protected"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    out, err = stdout.decode(), stderr.decode()
    assert proc.returncode == 0, err
    assert f"API on {url}/api/v1" in out
    assert f"API token: created in {token_file} (print it with `warden token`)" in out
    assert "stopped cleanly" in out
    assert token not in out
    assert token not in err
