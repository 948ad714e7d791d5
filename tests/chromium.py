"""A real browser for the sign-in tests: Debian's chromium, headless, driven by selenium
through chromium-driver, with a fresh profile per test. Tests that need it skip (saying why)
only where chromium cannot start."""

from __future__ import annotations

import shutil
import tempfile
import threading

import pytest

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@pytest.fixture
def chromium():
    """A selenium WebDriver on headless chromium (skips when chromium cannot start)."""
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.skip("selenium is not installed (make setup installs it)")
    binary = shutil.which("chromium")
    driver_path = shutil.which("chromedriver")
    if not binary or not driver_path:
        pytest.skip("chromium and chromium-driver are not installed (make setup installs them)")
    profile = tempfile.mkdtemp(prefix="oms-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile}")
    try:
        driver = webdriver.Chrome(service=Service(driver_path), options=options)
    except WebDriverException as error:
        shutil.rmtree(profile, ignore_errors=True)
        pytest.skip(
            f"chromium cannot start here: {error.msg.splitlines()[0] if error.msg else error}"
        )
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


class BrowserUser:
    """Someone at the browser: opens the URL the plugin hands over, fills the portal's sign-in
    form and submits it (or cancels), in a thread of its own as a real browser would be."""

    def __init__(self, driver, username: str, password: str, *, cancel: bool = False):
        self.driver = driver
        self.username = username
        self.password = password
        self.cancel = cancel
        self.opened: list[str] = []
        self.final_page = ""
        self.error: BaseException | None = None
        self._thread: threading.Thread | None = None

    def __call__(self, url: str) -> None:  # the plugin's open_browser
        self.opened.append(url)
        self._thread = threading.Thread(target=self._act, args=(url,), daemon=True)
        self._thread.start()

    def _act(self, url: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            self.driver.get(url)
            if self.cancel:
                self.driver.find_element(By.ID, "cancel").click()
            else:
                self.driver.find_element(By.ID, "user_username").send_keys(self.username)
                self.driver.find_element(By.ID, "user_password").send_keys(self.password)
                self.driver.find_element(By.ID, "signIn").click()
            WebDriverWait(self.driver, 30).until(
                expected_conditions.url_contains("offline-map-sync/callback")
            )
            self.final_page = self.driver.find_element(By.TAG_NAME, "body").text
        except BaseException as error:  # reported by the test through wait()
            self.error = error

    def wait(self) -> str:
        """The text of the page the browser ended on (the plugin's "you can close" page)."""
        assert self._thread is not None, "the plugin never opened the browser"
        self._thread.join(60)
        if self.error is not None:
            raise self.error
        return self.final_page
