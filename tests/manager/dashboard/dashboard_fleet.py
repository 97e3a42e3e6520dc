"""Real processes and a real browser for the dashboard tests.

:class:`DashboardFleet` starts agents and one ``devmig manager`` on a SQLite file (each process
logs its stderr to a file under the fleet's root and announces itself with one JSON line on
stdout) and kills them all on :meth:`DashboardFleet.close`. :func:`chromium` starts headless
Chromium from Debian's ``chromium`` and ``chromium-driver`` packages through Selenium — the system
browser and driver, never a downloaded one (Selenium Manager is never asked).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from devmig_procs import DevmigFleet, devmig_command

from devmig.inventory import sqlite_url

MANAGER_TOKEN = "dashboard-test-manager-token"
AGENT_TOKEN = "dashboard-test-agent-token"
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "dashboard"

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


class DashboardFleet(DevmigFleet):
    """Agents and a manager on a SQLite file; :meth:`close` kills them all."""

    def __init__(self, root: Path) -> None:
        super().__init__(root, manager_token=MANAGER_TOKEN, agent_token=AGENT_TOKEN, announce_timeout=120.0)

    def start(self, hosts: Mapping[str, str], extra: Mapping[str, Sequence[str]] | None = None) -> None:
        """Start the agents (``name -> releases``, ``extra`` options by name) and the manager at once.

        Every agent is registered with the manager.
        """
        self.launch(sqlite_url(self.root / "manager.db"), hosts, extra)

    def cli(self, *args: str) -> subprocess.Popen[str]:
        """Start ``devmig ARGS`` against the manager (DEVMIG_MANAGER and DEVMIG_TOKEN set); not waited for."""
        return subprocess.Popen(devmig_command(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=self.cli_env())

    @contextmanager
    def cli_running(self, *args: str) -> Iterator[subprocess.Popen[str]]:
        """:meth:`cli`, for a ``with`` block: at its end a ``devmig`` still running is killed.

        (It is still running when the test failed first.)
        """
        process = self.cli(*args)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()


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
