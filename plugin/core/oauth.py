"""Signing in to an ArcGIS portal with OAuth 2.0: authorization code with PKCE (S256) in the
system browser, the answer caught by a one-shot listener on 127.0.0.1, then access tokens
renewed with the refresh token before they expire and whenever a server answers 498.

The flow is split so that the browser can be opened on the UI thread while the waiting runs
in a task::

    flow = AuthorizationCodeFlow(portal_url, client_id)
    open_browser(flow.start())        # the authorize URL
    signed_in = flow.finish()         # blocks until the redirect (or timeout / cancel)

Nothing here stores anything: the caller keeps the :class:`SignIn` (QGIS: in its
authentication database) only once ``finish()`` has returned it. Tokens never appear in
messages, logs or ``repr``.
"""

from __future__ import annotations

import base64
import hashlib
import html
import secrets
import threading
import time
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Callable, Iterable
from urllib.parse import parse_qs, urlencode, urlsplit

from .errors import AuthenticationError, CancelledError, NetworkError, ServiceError
from .jobs import Job
from .portal import PortalUser, check_portal, portal_rest_url
from .rest import (
    ArcGISClient,
    BadAnswerError,
    CancelCallback,
    CredentialProvider,
)
from .sites import CredentialScope
from .transport import host_of

#: How long the listener waits for the browser (the user may have to find a password).
DEFAULT_WAIT_SECONDS = 300.0
_CALLBACK_PATH = "/offline-map-sync/callback"
_DONE_PAGE = (
    "<!DOCTYPE html><html><head><meta charset='utf-8'><title>Offline Map Sync</title></head>"
    "<body><p>{0}</p><p>You can close this window and return to QGIS.</p></body></html>"
)


@dataclass(frozen=True)
class SignIn:
    """A user signed in to a portal: what is needed to call it and to renew the access."""

    portal_url: str
    client_id: str
    username: str
    access_token: str
    expires_at: float
    refresh_token: str
    refresh_expires_at: float | None = None
    full_name: str = ""

    def __repr__(self) -> str:
        return (
            f"SignIn({self.portal_url!r}, {self.username!r}, access_token=***, refresh_token=***)"
        )


def pkce_pair() -> tuple[str, str]:
    """A new PKCE code verifier and its S256 challenge (RFC 7636)."""
    verifier = secrets.token_urlsafe(64)[:96]
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")
    return verifier, challenge


# ---------------------------------------------------------------------------------------------
# The loopback listener


class LoopbackRedirect:
    """Listens on ``127.0.0.1`` (a free port) for the one redirect the portal sends back.

    The first request to the callback path ends the wait, whatever it carries: a code with the
    expected ``state``, an error from the portal, or a wrong state (refused). The browser gets
    a plain page saying it can be closed.
    """

    def __init__(self, state: str) -> None:
        self._state = state
        self._done = threading.Event()
        self._result: dict[str, str] = {}
        self._lock = threading.Lock()
        listener = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server API)
                parts = urlsplit(self.path)
                if parts.path != _CALLBACK_PATH or listener._done.is_set():
                    self.send_error(404)
                    return
                query = {k: v[0] for k, v in parse_qs(parts.query).items()}
                message = listener._accept(query)
                body = _DONE_PAGE.format(html.escape(message)).encode("utf-8")
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:  # the query holds the code: never log it
                pass

        self._server = HTTPServer(("127.0.0.1", 0), Handler)
        self._server.timeout = 0.2
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def redirect_uri(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}{_CALLBACK_PATH}"

    def _serve(self) -> None:
        while not self._done.is_set():
            self._server.handle_request()

    def _accept(self, query: dict[str, str]) -> str:
        with self._lock:
            if self._done.is_set():
                return "This sign-in has already finished."
            self._result = query
            self._done.set()
        if query.get("state") != self._state:
            return "Sign-in refused: the answer does not belong to this sign-in."
        if query.get("error"):
            return "Sign-in did not complete."
        return "You are signed in to Offline Map Sync."

    def wait(self, timeout: float, cancel: CancelCallback | None = None) -> str:
        """The authorization code; raises AuthenticationError (portal error, state mismatch,
        timeout) or CancelledError."""
        end = time.monotonic() + timeout
        while not self._done.wait(0.1):
            if cancel is not None and cancel():
                raise CancelledError("Sign-in cancelled; nothing was stored.")
            if time.monotonic() > end:
                raise AuthenticationError(
                    f"No answer from the browser within {int(timeout // 60) or 1} minutes. "
                    "Sign in again; nothing was stored."
                )
        result = self._result
        if result.get("state") != self._state:
            raise AuthenticationError(
                "The answer from the browser does not belong to this sign-in (state mismatch); "
                "it was refused and nothing was stored. Sign in again."
            )
        if result.get("error"):
            if result["error"] == "access_denied":
                raise CancelledError("Sign-in cancelled in the browser; nothing was stored.")
            reason = (result.get("error_description") or result["error"])[:200]
            raise AuthenticationError(f"The portal refused the sign-in: {reason}")
        if not result.get("code"):
            raise AuthenticationError("The portal's answer carries no authorization code.")
        return result["code"]

    def close(self) -> None:
        self._done.set()
        self._server.server_close()
        self._thread.join(timeout=2)


# ---------------------------------------------------------------------------------------------
# The flow


class AuthorizationCodeFlow:
    """One sign-in: :meth:`start` gives the URL for the browser, :meth:`finish` the result."""

    def __init__(
        self,
        portal_url: str,
        client_id: str,
        *,
        client: ArcGISClient | None = None,
        wait_seconds: float = DEFAULT_WAIT_SECONDS,
        plain_http_hosts: Iterable[str] = (),
    ) -> None:
        self.portal_url = portal_rest_url(portal_url)
        self.plain_http_hosts = tuple(plain_http_hosts)
        if not client_id.strip():
            raise AuthenticationError(
                "Enter the client ID of the portal's app registration for QGIS."
            )
        self.client_id = client_id.strip()
        self.client = client or ArcGISClient(retries=1)
        self.wait_seconds = wait_seconds
        self._verifier, self._challenge = pkce_pair()
        self._state = secrets.token_urlsafe(24)
        self._listener: LoopbackRedirect | None = None

    def start(self) -> str:
        """Check the portal offers OAuth, start listening and return the authorize URL."""
        info = check_portal(self.client, self.portal_url, plain_http_hosts=self.plain_http_hosts)
        if not info.get("supportsOAuth", True):
            raise AuthenticationError(
                f"The portal at {host_of(self.portal_url)} does not offer OAuth sign-in. "
                "Use an API key or a built-in account (username and password) instead."
            )
        self._listener = LoopbackRedirect(self._state)
        query = {
            "client_id": self.client_id,
            "response_type": "code",
            "redirect_uri": self._listener.redirect_uri,
            "state": self._state,
            "code_challenge": self._challenge,
            "code_challenge_method": "S256",
        }
        return f"{self.portal_url}/oauth2/authorize?{urlencode(query)}"

    def finish(self, cancel: CancelCallback | None = None) -> SignIn:
        """Wait for the browser, exchange the code and read who signed in. Always closes the
        listener; nothing is kept when it raises."""
        if self._listener is None:
            raise RuntimeError("start() first")
        try:
            code = self._listener.wait(self.wait_seconds, cancel)
        finally:
            self.close()
        answer = _token_request(
            self.client,
            self.portal_url,
            {
                "client_id": self.client_id,
                "grant_type": "authorization_code",
                "code": code,
                "redirect_uri": self._listener.redirect_uri,
                "code_verifier": self._verifier,
            },
        )
        signed_in = _sign_in_from(answer, self.portal_url, self.client_id)
        me = PortalUser.from_json(
            self.client.get_json(
                f"{self.portal_url}/community/self", {"token": signed_in.access_token}
            )
        )
        return replace(
            signed_in, username=me.username or signed_in.username, full_name=me.full_name
        )

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()


def sign_in(
    portal_url: str,
    client_id: str,
    open_browser: Callable[[str], object],
    *,
    client: ArcGISClient | None = None,
    wait_seconds: float = DEFAULT_WAIT_SECONDS,
    plain_http_hosts: Iterable[str] = (),
) -> SignIn:
    """The whole flow in one call, in the calling thread (scripts, tests):
    ``open_browser(url)`` shows the portal's sign-in page."""
    flow = AuthorizationCodeFlow(
        portal_url,
        client_id,
        client=client,
        wait_seconds=wait_seconds,
        plain_http_hosts=plain_http_hosts,
    )
    return SignInJob(flow, open_browser).run()


class SignInJob(Job[SignIn]):
    """The flow as a job (so QGIS runs it as a cancellable task): checks the portal, calls
    ``open_browser(url)`` (from the job's thread: hand it to the UI thread), waits for the
    redirect and exchanges the code. Cancelling stops the wait."""

    def __init__(self, flow: AuthorizationCodeFlow, open_browser: Callable[[str], object]):
        super().__init__()
        self._flow = flow
        self._open_browser = open_browser

    def _execute(self) -> SignIn:
        self._report(0.0, f"Checking the portal {host_of(self._flow.portal_url)}")
        url = self._flow.start()
        try:
            self._report(0.1, "Waiting for the sign-in in the browser")
            self._open_browser(url)
        except BaseException:
            self._flow.close()
            raise
        return self._flow.finish(self._cancel_requested)


def _token_request(client: ArcGISClient, portal_url: str, form: dict) -> dict:
    try:
        return client.post_json(f"{portal_url}/oauth2/token", form)
    except (AuthenticationError, NetworkError, BadAnswerError):
        raise
    except ServiceError as error:
        # The OAuth error body (invalid_grant, invalid_client...): said as a sign-in failure.
        raise AuthenticationError(
            f"The portal refused the sign-in: {error}".replace("The server at ", "").strip(),
            code=error.code,
            url=error.url,
        ) from None


def _sign_in_from(answer: dict, portal_url: str, client_id: str) -> SignIn:
    token = answer.get("access_token")
    refresh = answer.get("refresh_token")
    if not token or not refresh:
        raise AuthenticationError("The portal's answer carries no access or refresh token.")
    now = time.time()
    refresh_in = answer.get("refresh_token_expires_in")
    return SignIn(
        portal_url=portal_url,
        client_id=client_id,
        username=str(answer.get("username") or ""),
        access_token=str(token),
        expires_at=now + _seconds(answer.get("expires_in"), 1800),
        refresh_token=str(refresh),
        refresh_expires_at=now + _seconds(refresh_in, 0) if refresh_in else None,
    )


def _seconds(value: object, default: float) -> float:
    try:
        return max(1.0, float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return default


def refresh_access(client: ArcGISClient, signed_in: SignIn) -> SignIn:
    """A new access token from the refresh token; AuthenticationError ("sign in again")
    when the refresh token has expired or was revoked."""
    try:
        answer = _token_request(
            client,
            signed_in.portal_url,
            {
                "client_id": signed_in.client_id,
                "grant_type": "refresh_token",
                "refresh_token": signed_in.refresh_token,
            },
        )
    except AuthenticationError as error:
        raise AuthenticationError(
            f"The sign-in of {signed_in.username} to {host_of(signed_in.portal_url)} "
            "has expired. Sign in again (Sign in… in the Offline Map Sync panel).",
            code=error.code,
            url=error.url,
        ) from None
    token = answer.get("access_token")
    if not token:
        raise AuthenticationError("The portal's answer carries no access token.")
    return replace(
        signed_in,
        access_token=str(token),
        expires_at=time.time() + _seconds(answer.get("expires_in"), 1800),
    )


def revoke(client: ArcGISClient, signed_in: SignIn) -> bool:
    """Ask the portal to forget the refresh token (``oauth2/revokeToken``); best effort:
    False when the portal could not be asked (signing out locally still counts)."""
    try:
        answer = client.post_json(
            f"{signed_in.portal_url}/oauth2/revokeToken",
            {
                "client_id": signed_in.client_id,
                "auth_token": signed_in.refresh_token,
                "token_type_hint": "refresh_token",
            },
        )
    except (ServiceError, NetworkError):
        return False
    return bool(answer.get("success"))


class OAuthCredentials(CredentialProvider):
    """The access token of a :class:`SignIn`, renewed shortly before it expires and after a
    498. The token only goes to the sites of ``scope`` (default: the portal's site, over
    https); the refresh token only to the portal, which must be within ``scope``
    (:class:`InsecureConnectionError` or :class:`SiteNotApprovedError` otherwise, before
    anything is sent).

    ``on_refresh(sign_in)`` is called (on whatever thread refreshed) with the renewed sign-in.
    """

    def __init__(
        self,
        signed_in: SignIn,
        *,
        scope: CredentialScope | None = None,
        client: ArcGISClient | None = None,
        on_refresh: Callable[[SignIn], None] | None = None,
    ) -> None:
        self.scope = scope or CredentialScope.of([signed_in.portal_url])
        self.scope.check(signed_in.portal_url, signed_in.username)
        self._signed_in = signed_in
        self._client = client or ArcGISClient(retries=1)
        self._on_refresh = on_refresh
        self._lock = threading.Lock()
        self._margin = _margin(signed_in)
        #: Refreshes done, for tests and logs.
        self.refreshes = 0

    @property
    def sign_in(self) -> SignIn:
        return self._signed_in

    def token_for(self, url: str) -> str | None:
        if not self.scope.allows(url):
            return None
        with self._lock:
            if time.time() > self._signed_in.expires_at - self._margin:
                self._refresh()
            return self._signed_in.access_token

    def refresh(self, url: str) -> None:
        with self._lock:
            self._refresh()

    def _refresh(self) -> None:
        self._signed_in = refresh_access(self._client, self._signed_in)
        self._margin = _margin(self._signed_in)
        self.refreshes += 1
        if self._on_refresh is not None:
            self._on_refresh(self._signed_in)

    def __repr__(self) -> str:
        return f"OAuthCredentials({self._signed_in!r})"


def _margin(signed_in: SignIn) -> float:
    # Renew a minute early, or a fifth of a short lifetime early, so that a request does not
    # start with a token about to die.
    return min(60.0, max(0.0, (signed_in.expires_at - time.time()) / 5))
