"""Real processes and a real browser for the dashboard tests.

:class:`DashboardFleet` starts agents and one ``devmig manager`` on a SQLite file (each process
logs its stderr to a file under the fleet's root and announces itself with one JSON line on
stdout) and kills them all on :meth:`DashboardFleet.close`. :func:`chromium` starts headless
Chromium from Debian's ``chromium`` and ``chromium-driver`` packages through Selenium — the system
browser and driver, never a downloaded one (Selenium Manager is never asked).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx2
import pytest

from devmig.fleet import sqlite_url

MANAGER_TOKEN = "dashboard-test-manager-token"
AGENT_TOKEN = "dashboard-test-agent-token"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "dashboard"

NIC = "example.org/devices/nic"
BLK = "example.org/devices/blk"
ACCEL = "example.org/devices/accel"

HOSTS = {
    "old-rack1-a": "nic=1.0.0,blk=1.0.0,accel=1.0.0",
    "cur-rack1-b": "nic=2.0.0,blk=2.0.0,accel=2.0.0",
    "cur-rack2-c": "nic=2.0.0,blk=2.0.0,accel=2.0.0",
    "mid-rack2-d": "nic=2.0.0,blk=1.1.0,accel=2.0.0",
    "edge-new-e": "nic=3.0.0,blk=2.0.0,accel=3.0.0",
    "edge-new-f": "nic=3.0.0,blk=2.0.0,accel=3.0.0",
    "cordoned-g": "nic=2.0.0,blk=2.0.0,accel=2.0.0",
    "gone-rack4-h": "nic=2.0.0,blk=2.0.0,accel=2.0.0",
}
CORDONED = "cordoned-g"
GONE = "gone-rack4-h"
PACED = "cur-rack1-b"
STREAM_RATE = "12M"
"""``--max-stream-rate`` of the paced host: a 64 MiB accelerator takes several seconds to move."""

DEVICES = [
    ("old-rack1-a", NIC, "version=2"),
    ("old-rack1-a", BLK, "version=2"),
    ("cur-rack1-b", NIC, "version=3"),
    ("cur-rack2-c", NIC, "version=3"),
    ("mid-rack2-d", BLK, "version=2"),
    ("edge-new-e", NIC, "version=4"),
    ("edge-new-f", ACCEL, "version=2,mem-size-mib=64"),
    (GONE, NIC, "version=2"),
]


@dataclass
class Proc:
    """One running process and its announced URL."""

    name: str
    process: subprocess.Popen[str]
    log: IO[str]
    url: str = ""

    def kill(self) -> None:
        """SIGKILL it and wait."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(timeout=10)
        if self.process.stdout is not None:
            self.process.stdout.close()
        self.log.close()


class DashboardFleet:
    """Agents and a manager on a SQLite file; :meth:`close` kills them all."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.procs: list[Proc] = []
        self.agents: dict[str, Proc] = {}
        self.manager: Proc | None = None

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> Proc:
        log = open(self.root / f"{name}.log", "w", encoding="utf-8")  # noqa: SIM115 (closed by Proc.kill)
        process = subprocess.Popen([sys.executable, "-m", "devmig", *args], stdout=subprocess.PIPE, stderr=log,
                                   text=True, env={**os.environ, **env})
        proc = Proc(name, process, log)
        self.procs.append(proc)
        return proc

    @staticmethod
    def _announced(proc: Proc, timeout: float = 120.0) -> None:
        assert proc.process.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = proc.process.stdout.readline()
            if line.strip().startswith("{"):
                proc.url = json.loads(line)["url"]
                return
            if proc.process.poll() is not None:
                raise RuntimeError(f"{proc.name} exited {proc.process.returncode}")
        raise RuntimeError(f"{proc.name} did not announce itself")

    def start(self, hosts: dict[str, str], extra: dict[str, list[str]] | None = None) -> None:
        """Start the agents (``name -> releases``, ``extra`` options by name) and the manager at once; register every agent."""
        for name, releases in hosts.items():
            state = self.root / f"agent-{name}"
            state.mkdir(parents=True, exist_ok=True)
            self.agents[name] = self._spawn(name, [
                "agent", "--listen", "127.0.0.1:0", "--json", "--host-name", name, "--release", releases,
                "--state-dir", str(state), *(extra or {}).get(name, [])], {"DEVMIG_TOKEN": AGENT_TOKEN})
        self.manager = self._spawn("manager", [
            "manager", "--db", sqlite_url(self.root / "manager.db"), "--listen", "127.0.0.1:0", "--json",
            "--token", MANAGER_TOKEN, "--poll-interval", "3600", "--agent-token", AGENT_TOKEN], {})
        for proc in self.procs:
            self._announced(proc)
        with self.m() as m:
            for name, agent in self.agents.items():
                response = m.post("/v1/hosts", json={"url": agent.url, "name": name})
                assert response.status_code == 201, response.text

    @property
    def url(self) -> str:
        """The manager's base URL."""
        assert self.manager is not None
        return self.manager.url

    def m(self) -> httpx2.Client:
        """A client of the manager (with its token)."""
        return httpx2.Client(base_url=self.url, headers={"Authorization": f"Bearer {MANAGER_TOKEN}"}, timeout=60)

    def create(self, host: str, model: str, config: str) -> dict[str, Any]:
        """Create a device on a host's agent; return it."""
        with httpx2.Client(base_url=self.agents[host].url, timeout=60,
                           headers={"Authorization": f"Bearer {AGENT_TOKEN}"}) as agent:
            response = agent.post("/v1/devices", json={"model": model, "config": config})
            assert response.status_code == 201, response.text
            device: dict[str, Any] = response.json()
            return device

    def poll(self) -> None:
        """Make the manager poll every host now."""
        with self.m() as m:
            assert m.post("/v1/poll").status_code == 200

    def cli(self, *args: str) -> subprocess.Popen[str]:
        """Start ``devmig ARGS`` against the manager (DEVMIG_MANAGER and DEVMIG_TOKEN set); not waited for."""
        env = {**os.environ, "DEVMIG_MANAGER": self.url, "DEVMIG_TOKEN": MANAGER_TOKEN, "COLUMNS": "200"}
        return subprocess.Popen([sys.executable, "-m", "devmig", *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=env)

    def close(self) -> None:
        """Kill every process."""
        for proc in self.procs:
            proc.kill()


@dataclass
class Dashboard:
    """The fleet and what the tests need to know about it."""

    fleet: DashboardFleet
    mover: dict[str, Any]
    """The accelerator on the paced host that the CLI migration moves."""
    devices: list[dict[str, Any]] = field(default_factory=list)



def browser_available() -> bool:
    """Whether Debian's chromium and chromedriver are installed."""
    return all(os.access(p, os.X_OK) for p in (CHROMIUM, CHROMEDRIVER))


def require_browser() -> None:
    """Skip without the system browser — except under ``CI=true``, where it is a failure."""
    if browser_available():
        return
    message = f"{CHROMIUM} and {CHROMEDRIVER} are needed (apt-get install chromium chromium-driver)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}: the dashboard's browser tests must run in CI")
    pytest.skip(message)


@contextmanager
def chromium(width: int, height: int, log_dir: Path) -> Iterator[Any]:
    """A headless Chromium (Debian's) driven by Debian's chromedriver; quits at exit.

    The browser's console is collected (``goog:loggingPrefs`` browser ``ALL``); chromedriver logs to
    ``log_dir/chromedriver.log``. Selenium Manager is never asked: the binary and the driver are
    given explicitly.
    """
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER, log_output=str(log_dir / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    try:
        set_viewport(driver, width, height)
        yield driver
    finally:
        driver.quit()


def viewport(driver: Any) -> tuple[int, int]:
    """The page's viewport: ``(window.innerWidth, window.innerHeight)``."""
    width, height = driver.execute_script("return [window.innerWidth, window.innerHeight]")
    return int(width), int(height)


def set_viewport(driver: Any, width: int, height: int) -> None:
    """Size the window so that the page's viewport is ``width`` x ``height`` CSS pixels."""
    for _ in range(3):
        inner = viewport(driver)
        if inner == (width, height):
            return
        outer = driver.get_window_size()
        driver.set_window_size(outer["width"] + width - inner[0], outer["height"] + height - inner[1])
    assert viewport(driver) == (width, height), viewport(driver)


def console_errors(driver: Any) -> list[dict[str, Any]]:
    """The browser console's entries of level SEVERE since the last call."""
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def screenshot(driver: Any, name: str, tmp_dir: Path) -> Path:
    """Save a full-page screenshot in ``tmp_dir`` and copy it to ``test-artifacts/dashboard/``."""
    path = tmp_dir / f"{name}.png"
    width, height = viewport(driver)
    page_height = int(driver.execute_script("return document.documentElement.scrollHeight"))
    try:
        set_viewport(driver, width, max(height, page_height))
        assert driver.save_screenshot(str(path)), path
    finally:
        set_viewport(driver, width, height)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copy(path, ARTIFACTS / path.name)
    return path
