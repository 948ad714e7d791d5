"""The portal's sign-in page "shown in a browser" by a plain HTTP client: it reads the sign-in
form, submits it with a built-in account, and follows the redirect to the plugin's loopback
listener. Needs only the standard library and requests, so the screenshot walk can use it
inside the QGIS desktop too (chromium.py is the real browser)."""

from __future__ import annotations

import re
import threading
from html.parser import HTMLParser
from typing import Callable

import requests


class _Form(HTMLParser):
    def __init__(self):
        super().__init__()
        self.fields: dict[str, str] = {}

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "input" and attrs.get("name"):
            self.fields[attrs["name"]] = attrs.get("value") or ""


def form_browser(
    username: str, password: str, *, cancel: bool = False, state: str | None = None
) -> Callable[[str], None]:
    """An `open_browser` that fills the portal's sign-in form and follows the redirect."""

    def open_browser(url: str) -> None:
        page = requests.get(url, timeout=10)
        form = _Form()
        form.feed(page.text)
        fields = dict(form.fields, username=username, password=password)
        if cancel:
            fields["cancel"] = "1"
        answer = requests.post(url.split("?")[0], data=fields, allow_redirects=False, timeout=10)
        location = answer.headers["Location"]
        if state is not None:
            location = re.sub(r"state=[^&]+", f"state={state}", location)
        # The browser follows the redirect to the plugin's listener (in the background, as a
        # browser would while the plugin waits).
        threading.Thread(target=requests.get, args=(location,), daemon=True).start()

    return open_browser
