"""OAuth 2.0 of the reference portal: `/sharing/rest/oauth2/authorize` (an HTML sign-in form),
`/oauth2/token` (authorization_code with PKCE S256, refresh_token) and `/oauth2/revokeToken`,
shaped as ArcGIS documents them.

Access tokens are issued by the service's `Auth`, so the feature services accept them exactly
like `generateToken` tokens. Lifetimes are attributes (`access_seconds`, `refresh_seconds`,
`code_seconds`) so that tests can make a token expire during a job.

Registered apps: `client_ids`; any loopback redirect URI (http://127.0.0.1:<port>/...) is
accepted for them, as for a native app. Everything the sign-in page echoes is HTML-escaped.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import secrets
import threading
import time
from dataclasses import dataclass
from urllib.parse import urlencode, urlsplit

from werkzeug.wrappers import Response

from .auth import Auth
from .params import Params

#: The client ID the plugin's tests register with the reference portal.
DEFAULT_CLIENT_ID = "offline-map-sync-tests"


@dataclass
class _Code:
    username: str
    client_id: str
    redirect_uri: str
    challenge: str
    expires: float


@dataclass
class _Refresh:
    username: str
    client_id: str
    expires: float


class OAuthError(Exception):
    """An error of the token endpoint (HTTP 400, ArcGIS's OAuth error body)."""

    def __init__(self, error: str, description: str):
        super().__init__(description)
        self.error = error
        self.description = description

    def response(self) -> Response:
        body = {
            "error": {
                "code": 400,
                "error": self.error,
                "error_description": self.description,
                "message": self.description,
                "details": [],
            }
        }
        return _json(body, 400)


def _json(body: dict, status: int = 200) -> Response:
    return Response(json.dumps(body), status=status, mimetype="application/json")


def _is_loopback_redirect(uri: str) -> bool:
    parts = urlsplit(uri)
    return parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")


def s256(verifier: str) -> str:
    """The PKCE S256 challenge of a code verifier (RFC 7636 section 4.2)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OAuth:
    """Authorization codes, refresh tokens and the two OAuth endpoints of the portal."""

    def __init__(self, auth: Auth, enabled: bool = True):
        self.auth = auth
        self.enabled = enabled
        self.client_ids = {DEFAULT_CLIENT_ID}
        self.access_seconds = 1800
        self.refresh_seconds = 14 * 24 * 3600
        self.code_seconds = 120
        self._codes: dict[str, _Code] = {}
        self._refresh: dict[str, _Refresh] = {}
        self._lock = threading.Lock()
        #: Tokens issued per grant type, for tests that want to see a refresh happen.
        self.grants = {"authorization_code": 0, "refresh_token": 0}

    # --- authorize (the browser's part) --------------------------------------------------------

    def authorize(self, request, params: Params) -> Response:
        if not self.enabled:
            return _page("OAuth is not enabled on this portal.", status=404)
        client_id = str(params.get("client_id") or "")
        redirect_uri = str(params.get("redirect_uri") or "")
        if client_id not in self.client_ids:
            return _page("Invalid client_id: the application is not registered.", status=400)
        if not _is_loopback_redirect(redirect_uri):
            return _page("Invalid redirect_uri for this application.", status=400)
        state = str(params.get("state") or "")
        if str(params.get("response_type") or "") != "code":
            return _redirect(redirect_uri, error="unsupported_response_type", state=state)
        if params.get("code_challenge_method") != "S256" or not params.get("code_challenge"):
            return _redirect(
                redirect_uri,
                error="invalid_request",
                error_description="code_challenge with code_challenge_method=S256 is required",
                state=state,
            )
        if request.method == "GET":
            return self._form(params)
        if params.get("cancel"):
            return _redirect(
                redirect_uri,
                error="access_denied",
                error_description="The user denied your request.",
                state=state,
            )
        username = str(params.get("username") or "")
        password = str(params.get("password") or "")
        expected = self.auth.users.get(username)
        if expected is None or not hmac.compare_digest(expected.encode(), password.encode()):
            return self._form(params, message="Invalid username or password.")
        code = secrets.token_urlsafe(24)
        with self._lock:
            self._codes[code] = _Code(
                username,
                client_id,
                redirect_uri,
                str(params.get("code_challenge")),
                time.time() + self.code_seconds,
            )
        return _redirect(redirect_uri, code=code, state=state)

    def _form(self, params: Params, message: str = "") -> Response:
        hidden = "".join(
            f'<input type="hidden" name="{name}" value="{html.escape(str(params.get(name) or ""))}">'
            for name in (
                "client_id",
                "response_type",
                "redirect_uri",
                "state",
                "code_challenge",
                "code_challenge_method",
                "expiration",
            )
        )
        error = f'<p id="errorMessage" role="alert">{html.escape(message)}</p>' if message else ""
        user = html.escape(str(params.get("username") or ""))
        body = (
            "<h1>Sign in to the reference portal</h1>"
            f"<p>Application: {html.escape(str(params.get('client_id') or ''))}</p>{error}"
            '<form method="post" id="oauth">'
            f"{hidden}"
            '<label>Username <input id="user_username" name="username" '
            f'autocomplete="username" value="{user}"></label>'
            '<label>Password <input id="user_password" name="password" type="password" '
            'autocomplete="current-password"></label>'
            '<button id="signIn" type="submit">Sign In</button>'
            '<button id="cancel" name="cancel" value="1" type="submit">Cancel</button>'
            "</form>"
        )
        return _page(body, raw=True)

    # --- token (the app's part) ----------------------------------------------------------------

    def token(self, params: Params) -> Response:
        try:
            if not self.enabled:
                raise OAuthError("invalid_client", "Invalid client_id")
            grant = str(params.get("grant_type") or "")
            client_id = str(params.get("client_id") or "")
            if client_id not in self.client_ids:
                raise OAuthError("invalid_client", "Invalid client_id")
            if grant == "authorization_code":
                return _json(self._from_code(params, client_id))
            if grant == "refresh_token":
                return _json(self._from_refresh(params, client_id))
            raise OAuthError("unsupported_grant_type", "Unsupported grant_type")
        except OAuthError as error:
            return error.response()

    def _from_code(self, params: Params, client_id: str) -> dict:
        code = str(params.get("code") or "")
        with self._lock:
            entry = self._codes.pop(code, None)  # one use only, even when it fails
        if entry is None or entry.expires <= time.time():
            raise OAuthError("invalid_grant", "Invalid authorization code")
        if entry.client_id != client_id or entry.redirect_uri != params.get("redirect_uri"):
            raise OAuthError("invalid_grant", "Invalid redirect_uri")
        verifier = str(params.get("code_verifier") or "")
        if not verifier or not hmac.compare_digest(s256(verifier), entry.challenge):
            raise OAuthError("invalid_grant", "Invalid code_verifier")
        refresh = secrets.token_urlsafe(32)
        with self._lock:
            self._refresh[refresh] = _Refresh(
                entry.username, client_id, time.time() + self.refresh_seconds
            )
            self.grants["authorization_code"] += 1
        return {
            **self._access(entry.username),
            "refresh_token": refresh,
            "refresh_token_expires_in": int(self.refresh_seconds),
        }

    def _from_refresh(self, params: Params, client_id: str) -> dict:
        refresh = str(params.get("refresh_token") or "")
        with self._lock:
            entry = self._refresh.get(refresh)
        if entry is None or entry.client_id != client_id or entry.expires <= time.time():
            raise OAuthError("invalid_request", "Invalid refresh_token")
        with self._lock:
            self.grants["refresh_token"] += 1
        return self._access(entry.username)

    def _access(self, username: str) -> dict:
        token = self.auth.issue(username, self.access_seconds)
        return {
            "access_token": token,
            "expires_in": max(1, int(self.access_seconds)),
            "username": username,
            "ssl": False,
        }

    def revoke(self, params: Params) -> Response:
        """`/oauth2/revokeToken`: forget a refresh token (auth_token, token_type_hint)."""
        token = str(params.get("auth_token") or "")
        with self._lock:
            found = self._refresh.pop(token, None) is not None
        return _json({"success": found})

    # --- test switches -------------------------------------------------------------------------

    def expire_refresh_tokens(self) -> None:
        with self._lock:
            for entry in self._refresh.values():
                entry.expires = 0.0

    def refresh_token_count(self) -> int:
        """Refresh tokens that are still valid."""
        now = time.time()
        with self._lock:
            return sum(1 for entry in self._refresh.values() if entry.expires > now)


def _redirect(redirect_uri: str, **query: str) -> Response:
    separator = "&" if "?" in redirect_uri else "?"
    location = redirect_uri + separator + urlencode({k: v for k, v in query.items() if v})
    return Response("", status=302, headers={"Location": location})


def _page(body: str, status: int = 200, raw: bool = False) -> Response:
    content = body if raw else f"<p>{html.escape(body)}</p>"
    document = (
        '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Reference portal</title>'
        f"</head><body>{content}</body></html>"
    )
    return Response(document, status=status, mimetype="text/html")
