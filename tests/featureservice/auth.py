"""Users and tokens. Auth is on when users are configured; then every request under
/rest/services and the portal's content needs a token (499 when missing, 498 when invalid or
expired). Tokens travel as the `token` parameter or an `X-Esri-Authorization: Bearer` header."""

from __future__ import annotations

import hmac
import secrets
import threading
import time

from .errors import ApiError
from .params import Params

DEFAULT_MINUTES = 60
MAX_MINUTES = 60 * 24 * 14


class Auth:
    def __init__(self, users: dict[str, str] | None = None):
        self.users = dict(users or {})
        self._tokens: dict[str, tuple[str, float]] = {}
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return bool(self.users)

    def generate_token(self, params: Params) -> dict:
        username = params.get("username") or ""
        password = params.get("password") or ""
        expected = self.users.get(username)
        if expected is None or not hmac.compare_digest(expected.encode(), str(password).encode()):
            raise ApiError(400, "Unable to generate token.", ["Invalid username or password."])
        minutes = params.get_int("expiration", DEFAULT_MINUTES) or DEFAULT_MINUTES
        minutes = max(1, min(minutes, MAX_MINUTES))
        token = self.issue(username, minutes * 60)
        with self._lock:
            expires = self._tokens[token][1]
        return {"token": token, "expires": int(expires * 1000), "ssl": False}

    def issue(self, username: str, seconds: float) -> str:
        """A new token for `username`, valid for `seconds` (generateToken and OAuth use it)."""
        token = secrets.token_urlsafe(32)
        with self._lock:
            self._tokens[token] = (username, time.time() + seconds)
        return token

    def token_of(self, request, params: Params) -> str | None:
        token = params.get("token")
        if token:
            return str(token)
        for header in ("X-Esri-Authorization", "Authorization"):
            value = request.headers.get(header, "")
            if value.lower().startswith("bearer "):
                return value[7:].strip()
        return None

    def user_for(self, request, params: Params) -> str | None:
        """The request's user; raises 499/498 when auth is on and the token is missing or bad."""
        token = self.token_of(request, params)
        if not self.enabled:
            return None
        if not token:
            raise ApiError(499, "Token Required", ["A token is required to access this resource."])
        with self._lock:
            entry = self._tokens.get(token)
        if entry is None:
            raise ApiError(498, "Invalid Token", ["The token is not valid."])
        user, expires = entry
        if expires <= time.time():
            raise ApiError(498, "Invalid Token", ["The token has expired."])
        return user

    def expire_all(self) -> None:
        with self._lock:
            self._tokens = {token: (user, 0.0) for token, (user, _) in self._tokens.items()}
