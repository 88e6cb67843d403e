"""A real headless Chromium driven over the DevTools protocol (no Selenium, no npm).

`Browser(url)` starts Debian's `chromium` with a throw-away profile, opens the
page, and lets a test evaluate JavaScript in it and take a screenshot. The
page's live updates (server-sent events) run for real: nothing is mocked.
"""
from __future__ import annotations

import asyncio
import base64
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


class Browser:
    def __init__(self, url: str, width: int = 1200, height: int = 1600) -> None:
        self.profile = tempfile.mkdtemp(prefix="mailsla-chromium-")
        exe = chromium()
        assert exe, "chromium is not installed (make test installs Debian's chromium package)"
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--remote-debugging-port=0",
             f"--user-data-dir={self.profile}", f"--window-size={width},{height}", url],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.ids = itertools.count(1)
        port_file = Path(self.profile) / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not port_file.exists() or not port_file.read_text().strip():
            assert time.monotonic() < deadline and self.proc.poll() is None, "chromium did not start"
            time.sleep(0.2)
        self.port = int(port_file.read_text().split()[0])

    async def _session(self) -> tuple[aiohttp.ClientSession, Any]:
        session = aiohttp.ClientSession()
        async with session.get(f"http://127.0.0.1:{self.port}/json/list") as resp:
            pages = [p for p in await resp.json() if p["type"] == "page"]
        ws = await session.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)
        return session, ws

    async def _call(self, ws: Any, method: str, **params: Any) -> dict[str, Any]:
        mid = next(self.ids)
        await ws.send_str(json.dumps({"id": mid, "method": method, "params": params}))
        while True:
            msg = json.loads((await ws.receive()).data)
            if msg.get("id") == mid:
                assert "error" not in msg, msg
                return msg["result"]

    def evaluate(self, expression: str) -> Any:
        """The JSON value of `expression` in the page."""
        async def go() -> Any:
            session, ws = await self._session()
            try:
                res = await self._call(ws, "Runtime.evaluate", expression=expression, returnByValue=True)
                return res["result"].get("value")
            finally:
                await ws.close()
                await session.close()
        return asyncio.run(go())

    def wait_for(self, expression: str, timeout: float = 60) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = self.evaluate(expression)
            if value or time.monotonic() > deadline:
                return value
            time.sleep(0.5)

    def screenshot(self, path: Path) -> None:
        async def go() -> None:
            session, ws = await self._session()
            try:
                res = await self._call(ws, "Page.captureScreenshot", format="png", captureBeyondViewport=True)
                path.write_bytes(base64.b64decode(res["data"]))
            finally:
                await ws.close()
                await session.close()
        asyncio.run(go())

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.profile, ignore_errors=True)
