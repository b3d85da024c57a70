"""The UI as a user runs it (`cerebelum ui`, one process per user's kubeconfig), and a real
headless Chromium (Debian's, driven by Selenium through Debian's chromedriver)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.harness.cluster import free_port
from tests.harness.process import ChildProcess

BIN = Path(sys.executable).parent
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"


@dataclass
class UiProcess(ChildProcess):
    kubeconfig: Path
    namespace: str
    log_path: Path
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def start(self) -> None:
        self.port = free_port()
        argv = [str(BIN / "cerebelum"), "ui", "--no-browser", "--port", str(self.port)]
        argv += ["--kubeconfig", str(self.kubeconfig), "-n", self.namespace]
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
        )
        log.close()
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(self.url + "healthz", timeout=1) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
            assert self.proc.poll() is None, self.logs()
        raise AssertionError(f"the UI did not start:\n{self.logs()}")


def browser_missing() -> str | None:
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        return "needs Debian's chromium and chromium-driver (make browser-deps)"
    return None


def chromium(downloads: Path) -> Any:
    """A headless Chromium, its driver pinned to Debian's (Selenium downloads nothing)."""
    missing = browser_missing()
    if missing:
        if os.environ.get("CEREBELUM_REQUIRE_NODE"):
            raise AssertionError(missing)
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1280,900",
        f"--user-data-dir={downloads / 'profile'}",
    ):
        options.add_argument(flag)
    return webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
