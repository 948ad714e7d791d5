"""REST client for ArcGIS feature services and portals (protocol spec §1-3, §5-6).

One :class:`ArcGISClient` wraps a ``requests`` session with timeouts, retries for idempotent
reads, credentials, and the protocol's quirks: errors inside HTTP-200 bodies, asynchronous jobs
whose URLs must be followed verbatim, result files streamed to disk, and the spelling variants
servers use (``URL``/``resultUrl``, ``statusUrl``/``statusURL``, ``supportsAsync``/
``supportsASync``, generations as strings).

Tokens never appear in exceptions or logs: URLs are logged without their query string and
request parameters are never logged.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional
from urllib.parse import urlsplit

import requests

from . import jsonstream
from .errors import (
    AuthenticationError,
    CancelledError,
    NetworkError,
    OfflineMapSyncError,
    ServiceError,
    UnusableAnswerError,
)
from .service import supports_async, supports_attachments_sync_direction
from .sites import CredentialScope, Site, same_site
from .transport import (
    DEFAULT_LIMITS,
    MAX_REDIRECTS,
    CancelCallback,
    ReadLimits,
    body_chunks,
    host_of,
    read_answer,
    redirect_target,
)

log = logging.getLogger(__name__)

_TOKEN_IN_TEXT = re.compile(r"((?:token|password)=)[^&\s\"']+", re.IGNORECASE)


class _RedactTokens(logging.Filter):
    """urllib3 logs every request line at DEBUG, query string included: hide tokens there."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.args:
            args = record.args if isinstance(record.args, tuple) else (record.args,)
            record.args = tuple(
                _TOKEN_IN_TEXT.sub(r"\1***", a) if isinstance(a, str) else a for a in args
            )
        if isinstance(record.msg, str):
            record.msg = _TOKEN_IN_TEXT.sub(r"\1***", record.msg)
        return True


logging.getLogger("urllib3.connectionpool").addFilter(_RedactTokens())

ProgressCallback = Callable[[Optional[float], str], None]

#: ArcGIS error codes that mean "credentials missing, wrong, expired or not allowed".
AUTH_CODES = {401, 403, 498, 499}
#: HTTP statuses worth retrying for an idempotent read.
RETRY_STATUSES = {500, 502, 503, 504}
#: Final job states (status of ``statusUrl``); anything else means "still working".
JOB_DONE = {"completed", "completedwitherrors", "esrijobsucceeded", "succeeded"}
JOB_FAILED = {"failed", "esrijobfailed", "cancelled", "canceled", "esrijobcancelled", "timedout"}

_USER_AGENT = "QGIS-OfflineMapSync"


class BadAnswerError(ServiceError):
    """The server (or a proxy in front of it) sent something that is not an ArcGIS answer:
    an HTML page, a cut-off body, an HTTP 5xx without an error body.

    For a request that changes data the outcome is unknown: the server may or may not have
    applied it.
    """


def _listed_layers(body: dict, service_url: str) -> dict[int, dict] | None:
    """The definitions a ``.../layers`` answer lists, by id; None when it lists none (a
    server that answers that resource with something else)."""
    entries = [
        entry
        for key in ("layers", "tables")
        if isinstance(body.get(key), list)
        for entry in body[key]
    ]
    if not entries:
        return None
    found = {}
    for entry in entries:
        try:
            found[int(entry["id"])] = entry
        except (TypeError, KeyError, ValueError):
            raise BadAnswerError(
                f"The layer list of {_safe_url(service_url)} is not understood: a layer "
                "without a numeric id.",
                url=_safe_url(service_url) + "/layers",
            ) from None
    return found


def _safe_url(url: str) -> str:
    """The URL without its query string, for messages and logs (queries may hold tokens)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


# ---------------------------------------------------------------------------------------------
# Credentials


class CredentialProvider:
    """Supplies credentials for requests. The base class sends none.

    ``token_for(url)`` returns the token to send as the ``token`` parameter (or None),
    ``refresh(url)`` is called once after the server answered 498 (invalid/expired token),
    ``headers(url)`` returns extra HTTP headers (e.g. an OAuth2 ``Authorization``).
    Implementations must be thread-safe: a job thread and the UI may ask at the same time.
    ``scope`` is where the credential may go (None: it goes nowhere).
    """

    scope: CredentialScope | None = None

    def token_for(self, url: str) -> str | None:
        return None

    def refresh(self, url: str) -> None:
        return None

    def headers(self, url: str) -> dict:
        return {}


class StaticTokenCredentials(CredentialProvider):
    """A token obtained elsewhere (e.g. from QGIS's authentication manager); cannot refresh.

    The token only goes to the sites of ``scope`` (a web map may list services of other
    organisations, which must not receive it).
    """

    def __init__(self, token: str, scope: CredentialScope) -> None:
        self._token = token
        self.scope = scope

    def token_for(self, url: str) -> str | None:
        return self._token if self.scope.allows(url) else None

    def __repr__(self) -> str:
        return "StaticTokenCredentials(token=***)"


class HeaderCredentials(CredentialProvider):
    """Fixed HTTP headers, e.g. ``{"Authorization": "Bearer ..."}`` for OAuth2, only sent to
    the sites of ``scope``."""

    def __init__(self, headers: dict, scope: CredentialScope) -> None:
        self._headers = dict(headers)
        self.scope = scope

    def headers(self, url: str) -> dict:
        return dict(self._headers) if self.scope.allows(url) else {}

    def __repr__(self) -> str:
        return f"HeaderCredentials(headers={sorted(self._headers)})"


class TokenCredentials(CredentialProvider):
    """Username and password exchanged for a token at ``token_url`` (``generateToken``).

    Without a ``token_url`` the token service is discovered on first use from ``site_url``'s
    server (``/rest/info``) or portal (``/sharing/rest/info``), see :func:`discover_token_url`.
    The token is cached until shortly before it expires and renewed on 498. The password only
    goes to the token service and the token only to the sites of ``scope`` (default: the site
    of ``site_url``, over https; ``plain_http_hosts`` names hosts the user allowed plain http
    for). Raises :class:`InsecureConnectionError` or :class:`SiteNotApprovedError` when the
    site or the token service is not allowed, before anything is sent there.
    """

    def __init__(
        self,
        token_url: str | None,
        username: str,
        password: str,
        *,
        site_url: str | None = None,
        expiration_minutes: int = 60,
        referer: str = _USER_AGENT,
        session: requests.Session | None = None,
        timeout: float = 60,
        verify: bool = True,
        scope: CredentialScope | None = None,
        plain_http_hosts: Iterable[str] = (),
    ) -> None:
        if not token_url and not site_url:
            raise ValueError("TokenCredentials needs a token_url or a site_url")
        site_url = site_url or token_url
        self.scope = scope or CredentialScope.of([site_url], plain_http_hosts=plain_http_hosts)
        self.scope.check_all([site_url, token_url or ""], username)
        self.token_url = token_url
        self.site_url = site_url or token_url
        self.username = username
        self._password = password
        self._expiration = expiration_minutes
        self._referer = referer
        self._session = session or requests.Session()
        self._timeout = timeout
        self._verify = verify
        self._lock = threading.Lock()
        self._token: str | None = None
        self._expires_at = 0.0

    def __repr__(self) -> str:
        return f"TokenCredentials({self.token_url!r}, {self.username!r}, password=***)"

    def resolve_token_url(self) -> str:
        """The generateToken URL, discovered from the site's server or portal if not given
        (it must be within the credential's scope: the password goes there)."""
        if not self.token_url:
            self.token_url = discover_token_url(
                self.site_url,
                scope=self.scope,
                session=self._session,
                timeout=self._timeout,
                verify=self._verify,
            )
        return self.token_url

    def token_for(self, url: str) -> str | None:
        if not self.scope.allows(url):
            return None
        with self._lock:
            # Renew a minute early so a long request does not start with a dying token.
            if self._token is None or time.time() > self._expires_at - 60:
                self._generate()
            return self._token

    def refresh(self, url: str) -> None:
        with self._lock:
            self._generate()

    def _generate(self) -> None:
        token_url = self.resolve_token_url()
        data = {
            "username": self.username,
            "password": self._password,
            "client": "referer",
            "referer": self._referer,
            "expiration": str(self._expiration),
            "f": "json",
        }
        try:
            response = self._session.post(
                token_url,
                data=data,
                timeout=self._timeout,
                verify=self._verify,
                headers={"Referer": self._referer, "User-Agent": _USER_AGENT},
                allow_redirects=False,
                stream=True,
            )
            _refuse_redirect(response, token_url)
        except requests.RequestException as error:
            raise NetworkError(
                f"Could not reach the sign-in server at {host_of(token_url)}: {type(error).__name__}."
            ) from None
        body = _decode_json(response, token_url)
        if "error" in body or not body.get("token"):
            error = body.get("error") or {}
            raise AuthenticationError(
                f"Signing in as '{self.username}' failed: "
                f"{error.get('message') or 'the server gave no token'} "
                "Check the username and password.",
                code=error.get("code"),
                details=error.get("details"),
                url=_safe_url(token_url),
            )
        self._token = body["token"]
        expires = body.get("expires")
        try:
            # generateToken reports expiry in epoch milliseconds.
            self._expires_at = float(expires) / 1000.0 if expires else 0.0
        except (TypeError, ValueError):
            self._expires_at = 0.0
        if self._expires_at <= time.time():
            self._expires_at = time.time() + self._expiration * 60


# ---------------------------------------------------------------------------------------------
# Where tokens come from


def guess_token_url(url: str) -> str:
    """Where ArcGIS Enterprise usually hands out tokens for ``url`` (a service, server or portal
    URL): ``.../rest/services/...`` -> ``.../tokens/generateToken``, ``.../sharing/rest`` ->
    ``.../sharing/rest/generateToken``. Only a fallback: see :func:`discover_token_url`."""
    root, kind = _arcgis_root(url)
    path = "/sharing/rest/generateToken" if kind == "portal" else "/tokens/generateToken"
    return root + path


def info_url_for(url: str) -> str:
    """The public ``info`` resource that describes ``url``'s server or portal."""
    root, kind = _arcgis_root(url)
    return root + ("/sharing/rest/info" if kind == "portal" else "/rest/info")


def _arcgis_root(url: str) -> tuple[str, str]:
    """(``scheme://host/<instance>``, "server" or "portal") of an ArcGIS URL."""
    parts = urlsplit(url)
    path, lower = parts.path, parts.path.lower()
    if "/rest/services" in lower:
        path, kind = path[: lower.index("/rest/services")], "server"
    elif "/sharing/rest" in lower:
        path, kind = path[: lower.index("/sharing/rest")], "portal"
    else:
        path, kind = path.rstrip("/"), "server"
    return f"{parts.scheme}://{parts.netloc}{path}", kind


def token_url_from_info(info: Any) -> str | None:
    """The generateToken URL an ``info`` answer names: ``authInfo.tokenServicesUrl``, or the
    owning portal's (``owningSystemUrl``) for a server federated with a portal."""
    if not isinstance(info, dict):
        return None
    auth = info.get("authInfo")
    named = auth.get("tokenServicesUrl") if isinstance(auth, dict) else None
    if isinstance(named, str) and named.strip():
        return named.strip()
    owner = info.get("owningSystemUrl")
    if isinstance(owner, str) and owner.strip():
        return owner.strip().rstrip("/") + "/sharing/rest/generateToken"
    return None


def discover_token_url(
    url: str,
    *,
    scope: CredentialScope | None = None,
    session: requests.Session | None = None,
    timeout: float = 60,
    verify: bool = True,
) -> str:
    """The token service for ``url``, as its server or portal names it in its ``info`` resource
    (ArcGIS Online hosted services and federated servers sign in at their portal). Falls back
    to :func:`guess_token_url` only when there is no answer. Raises AuthenticationError when
    the named service is outside ``scope`` (default: ``url``'s own site) or not https: the
    password would leave the sites the credentials are for."""
    info_url = info_url_for(url)
    named = None
    try:
        response = (session or requests).get(
            info_url,
            params={"f": "json"},
            headers={"User-Agent": _USER_AGENT},
            timeout=timeout,
            verify=verify,
            allow_redirects=False,
            stream=True,
        )
        if response.status_code == 200:
            named = token_url_from_info(_decode_json(response, info_url))
    except (requests.RequestException, BadAnswerError):
        named = None
    if named is None:
        return guess_token_url(url)
    scheme = urlsplit(named).scheme.lower()
    insecure = scheme != "https" and not (
        scheme == "http" and urlsplit(url).scheme.lower() == "http"
    )
    allowed = scope.allows(named) if scope is not None else same_site(url, named)
    if insecure or not allowed:
        raise AuthenticationError(
            f"{host_of(url)} signs in at {_safe_url(named)}, another site or not over https; "
            "your password is not sent there. Use a token or OAuth2 configuration for this "
            "service instead.",
            url=_safe_url(url),
        )
    return named


# ---------------------------------------------------------------------------------------------
# Result files


class ReplicaResultFile:
    """A downloaded replica result (createReplica / synchronizeReplica) on disk.

    Read it with :meth:`read` (``(header, events)`` from :func:`jsonstream.read_result`), or
    :meth:`header`. The file lives in a temporary folder; :meth:`close` (or the ``with``
    block) closes the readers it handed out and deletes it.
    """

    def __init__(self, path: Path, *, source_url: str | None = None) -> None:
        self.path = Path(path)
        self.source_url = source_url
        self._header: dict | None = None
        self._readers: list[Iterator[jsonstream.Event]] = []

    def read(self) -> tuple[dict, Iterator[jsonstream.Event]]:
        header, events = jsonstream.read_result(self.path)
        self._readers.append(events)
        return header, events

    def header(self) -> dict:
        """All top-level values (reads through the file once if some follow the data)."""
        if self._header is None:
            header, events = self.read()
            for _ in events:
                pass
            self._header = header
        return self._header

    def copy_to(self, dest: str | Path) -> Path:
        dest = Path(dest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.path, dest)
        return dest

    def close(self) -> None:
        """Delete the file. Never raises: on Windows a reader still holding the file open
        makes this fail, and a leftover temporary file must not mask the real error."""
        # Readers not read to the end still hold the file open (Windows refuses to delete it).
        for events in self._readers:
            close = getattr(events, "close", None)
            if close is not None:
                close()
        self._readers.clear()
        try:
            self.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as error:
            log.warning("Could not delete the temporary result file %s: %s", self.path, error)
            return
        try:
            self.path.parent.rmdir()
        except OSError:
            pass

    def __enter__(self) -> ReplicaResultFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ReplicaResultFile({str(self.path)!r})"


def _temp_result_path() -> Path:
    return Path(tempfile.mkdtemp(prefix="offline-map-sync-")) / "result.json"


# ---------------------------------------------------------------------------------------------
# The client


def _encode_params(params: dict | None) -> dict:
    """Form values: JSON for dicts/lists, ``true``/``false`` for booleans, None dropped."""
    encoded = {}
    for key, value in (params or {}).items():
        if value is None:
            continue
        if isinstance(value, bool):
            encoded[key] = "true" if value else "false"
        elif isinstance(value, (dict, list, tuple)):
            encoded[key] = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
        else:
            encoded[key] = value
    encoded.setdefault("f", "json")
    return encoded


def _decode_json(
    response: requests.Response,
    url: str,
    *,
    limits: ReadLimits = DEFAULT_LIMITS,
    cancel: CancelCallback | None = None,
) -> Any:
    """The JSON body (read under ``limits``), or a BadAnswerError saying what came instead."""
    text = read_answer(response, url, limits=limits, cancel=cancel)
    stripped = text.lstrip()
    if not stripped:
        raise BadAnswerError(
            f"The server at {host_of(url)} sent an empty answer (HTTP {response.status_code}).",
            code=response.status_code if response.status_code >= 400 else None,
            url=_safe_url(url),
        )
    if stripped[0] == "<":
        raise BadAnswerError(
            f"The server at {host_of(url)} answered with a web page instead of data "
            f"(HTTP {response.status_code}). It may be down, or a proxy or sign-in page is in "
            "the way.",
            code=response.status_code if response.status_code >= 400 else None,
            url=_safe_url(url),
        )
    try:
        return _loads(text, url)
    except ValueError:
        raise BadAnswerError(
            f"The answer from {host_of(url)} was cut off or is not valid JSON "
            f"(HTTP {response.status_code}). Trying again usually helps.",
            code=response.status_code if response.status_code >= 400 else None,
            url=_safe_url(url),
        ) from None


def _loads(text: str, url: str) -> Any:
    """``json.loads`` for server text: nesting too deep for Python becomes an error the user
    can read instead of a RecursionError; invalid JSON still raises ValueError."""
    try:
        return json.loads(text)
    except RecursionError:
        raise UnusableAnswerError(
            f"The server's answer from {host_of(url)} is not usable: it is nested too deeply to "
            "be an ArcGIS answer. Check the service address.",
            url=_safe_url(url),
        ) from None


def _loads_or_none(text: str, url: str) -> Any:
    try:
        return _loads(text, url)
    except ValueError:
        return None


def _error_from_body(body: Any, url: str, http_status: int | None = None) -> ServiceError | None:
    """The ServiceError an ArcGIS error body describes (None when it is no error). An error
    without a code takes the HTTP status when that is an authentication status (a 403 with a
    bare message is still "your account may not do this")."""
    if not isinstance(body, dict) or "error" not in body:
        return None
    error = body["error"] or {}
    if not isinstance(error, dict):
        error = {"message": str(error)}
    code = error.get("code")
    try:
        code = int(code) if code is not None else None
    except (TypeError, ValueError):
        code = None
    if code is None and http_status in AUTH_CODES:
        code = http_status
    message = error.get("message") or error.get("description") or "Unknown error"
    details = [str(d) for d in (error.get("details") or []) if d]
    text = f"{message}"
    if details:
        text += " (" + "; ".join(details) + ")"
    if code in AUTH_CODES:
        hint = {
            498: "The sign-in has expired or is invalid; sign in again.",
            499: "This service needs you to sign in.",
            403: (
                "The account you signed in with lacks access to this. Sign in with another "
                "account (choose another authentication configuration), or ask the owner to "
                "share it with yours."
            ),
            401: "This service needs you to sign in.",
        }[code]
        return AuthenticationError(
            f"{hint} The server said: {text}", code=code, details=details, url=_safe_url(url)
        )
    return ServiceError(
        f"The server at {host_of(url)} refused the request: {text}",
        code=code,
        details=details,
        url=_safe_url(url),
    )


def _pick(mapping: dict, *keys: str) -> Any:
    """The first present value among spelling variants (``URL``/``resultUrl``...)."""
    lowered = {k.lower(): v for k, v in mapping.items()}
    for key in keys:
        if mapping.get(key):
            return mapping[key]
        if lowered.get(key.lower()):
            return lowered[key.lower()]
    return None


def create_replica_request(
    service_info: dict,
    *,
    replica_name: str,
    layer_queries: dict[str, dict],
    sync_model: str,
    sync_direction: str,
    return_attachments: bool,
    attachments_sync_direction: str,
    area: tuple[str, dict] | None = None,
    sync_data_options: int | None = None,
) -> dict:
    """``createReplica`` parameters (spec section 2) for the layers of ``layer_queries``
    (wire values for the model and directions; ``area`` is ``(geometryType, geometry)``;
    ``sync_data_options`` the ``syncDataOptions`` bitmask, sent when given).

    Attachments come inline, the job runs async where the service supports it, the attachment
    direction is sent only to services that take it, and the replica is asked for in the
    service's spatial reference (the geodatabase is created in that one).
    """
    request: dict[str, Any] = {
        "replicaName": replica_name,
        "layers": sorted(int(layer_id) for layer_id in layer_queries),
        "layerQueries": layer_queries,
        "returnAttachments": return_attachments,
        "returnAttachmentsDataByUrl": False,
        "async": supports_async(service_info),
        "syncModel": sync_model,
        "syncDirection": sync_direction,
        "transportType": "esriTransportTypeUrl",
        "dataFormat": "json",
    }
    if supports_attachments_sync_direction(service_info):
        request["attachmentsSyncDirection"] = attachments_sync_direction
    if sync_data_options is not None:
        request["syncDataOptions"] = int(sync_data_options)
    if area is not None:
        geometry_type, geometry = area
        request["geometry"] = geometry
        request["geometryType"] = geometry_type
        if geometry.get("spatialReference"):
            request["inSR"] = geometry["spatialReference"]
    if service_info.get("spatialReference"):
        request["replicaSR"] = service_info["spatialReference"]
    return request


def status_url_of(answer: dict) -> str | None:
    return _pick(answer, "statusUrl", "statusURL")


def result_url_of(answer: dict) -> str | None:
    return _pick(answer, "URL", "resultUrl", "resultURL")


class ArcGISClient:
    """HTTP access to ArcGIS feature services and portals.

    ``get_json`` retries idempotent reads (connection errors, HTTP 5xx, proxy pages, cut-off
    answers) with exponential backoff; ``post_json`` never retries on its own because the
    server may already have applied the request. Both turn ArcGIS error bodies into
    :class:`ServiceError` / :class:`AuthenticationError` (with ``.code``), connection problems
    into :class:`NetworkError`, and renew the token once on 498.
    """

    def __init__(
        self,
        credentials: CredentialProvider | None = None,
        *,
        timeout: float = 60,
        retries: int = 3,
        session: requests.Session | None = None,
        verify: bool = True,
        backoff: float = 0.5,
        poll_interval: float = 0.1,
        max_poll_interval: float = 0.25,
        job_timeout: float | None = 6 * 3600,
        limits: ReadLimits = DEFAULT_LIMITS,
    ) -> None:
        self.credentials = credentials or CredentialProvider()
        self.timeout = timeout
        self.retries = max(0, retries)
        self.session = session or requests.Session()
        self.verify = verify
        self.backoff = backoff
        self.poll_interval = poll_interval
        self.max_poll_interval = max_poll_interval
        self.job_timeout = job_timeout
        #: Bounds on answers: size of a JSON answer, minimum speed of every body.
        self.limits = limits
        #: Requests sent, for benchmarks and tests.
        self.request_count = 0

    # -- plumbing --------------------------------------------------------------------------
    def _headers(self, url: str) -> dict:
        headers = {"User-Agent": _USER_AGENT}
        headers.update(self.credentials.headers(url))
        return headers

    def _with_token(self, url: str, params: dict) -> dict:
        if "token" not in params:
            token = self.credentials.token_for(url)
            if token:
                params = dict(params, token=token)
        return params

    def _send(self, method: str, url: str, params: dict) -> requests.Response:
        """Send a request with its credentials, following GET redirects by hand; the answer's
        body is not read yet (see :meth:`_read_json`)."""
        try:
            if method != "GET":
                # A form may carry a token: never resend it to wherever a redirect points.
                response = self._send_once(method, url, self._with_token(url, params))
                _refuse_redirect(response, url)
                return response
            return self._get_following_redirects(url, params)
        except requests.exceptions.SSLError:
            raise NetworkError(
                f"The secure connection to {host_of(url)} failed (certificate problem)."
            ) from None
        except requests.RequestException as error:
            raise NetworkError(
                f"The connection to {host_of(url)} failed ({type(error).__name__}). "
                "Check the network and try again."
            ) from None

    def _get_following_redirects(self, url: str, params: dict) -> requests.Response:
        # requests would carry headers such as X-Esri-Authorization (and the token in the
        # query) to wherever a redirect points: each hop gets the credentials of its own site.
        hop_url, hop_params = url, params
        for _hop in range(MAX_REDIRECTS + 1):
            response = self._send_once("GET", hop_url, self._with_token(hop_url, hop_params))
            target = redirect_target(response, hop_url)
            if target is None:
                return response
            response.close()
            log.debug("Redirected from %s to %s", _safe_url(hop_url), _safe_url(target))
            hop_url, hop_params = target, {}
        raise ServiceError(
            f"The server at {host_of(url)} redirected the request more than {MAX_REDIRECTS} "
            "times; its address may be wrong.",
            url=_safe_url(url),
        )

    def _send_once(self, method: str, url: str, params: dict) -> requests.Response:
        self.request_count += 1
        log.debug("%s %s", method, _safe_url(url))
        form = {"data": params} if method == "POST" else {"params": params}
        return self.session.request(
            method,
            url,
            headers=self._headers(url),
            timeout=self.timeout,
            verify=self.verify,
            stream=True,
            allow_redirects=False,
            **form,
        )

    def _read_json(
        self, response: requests.Response, url: str, cancel: CancelCallback | None
    ) -> Any:
        return _decode_json(response, url, limits=self.limits, cancel=cancel)

    def _read_json_or_none(
        self, response: requests.Response, url: str, cancel: CancelCallback | None
    ) -> Any:
        """The body as JSON, None when it is not JSON (an error page)."""
        text = read_answer(response, url, limits=self.limits, cancel=cancel)
        return _loads_or_none(text, url)

    def _request_json(
        self, method: str, url: str, params: dict | None, cancel: CancelCallback | None = None
    ) -> dict:
        base = _encode_params(params)
        refreshed = False
        while True:
            _check_cancel(cancel)
            response = self._send(method, url, base)
            try:
                body = self._answer_body(response, url, cancel)
            except requests.RequestException as error:
                raise NetworkError(
                    f"The answer from {host_of(url)} was interrupted ({type(error).__name__})."
                ) from None
            finally:
                response.close()
            error = _error_from_body(body, url, response.status_code)
            if error is None:
                return body
            if error.code == 498 and not refreshed:
                # Expired token: the server did nothing; renew once and repeat.
                refreshed = True
                self.credentials.refresh(url)
                continue
            raise self._explain_withheld_credentials(error, url)

    def _explain_withheld_credentials(self, error: ServiceError, url: str) -> ServiceError:
        """A sign-in demanded by a site the credential is not bound to: say why none was sent."""
        scope = self.credentials.scope
        if error.code not in (401, 499) or scope is None or scope.allows(url) or not scope.sites:
            return error
        return AuthenticationError(
            f"{error} Your credential was not sent to {Site.of(url)}: it is only used with "
            f"{', '.join(sorted(map(str, scope.sites)))}. If you trust {Site.of(url)}, approve "
            "it for the credential (the panel asks when a map lists it; Processing: "
            "APPROVE_NEW_SITES).",
            code=error.code,
            details=error.details,
            url=error.url,
        )

    def _answer_body(
        self, response: requests.Response, url: str, cancel: CancelCallback | None
    ) -> Any:
        if response.status_code in RETRY_STATUSES:
            error = _error_from_body(self._read_json_or_none(response, url, cancel), url)
            # A 5xx is transient whatever its body says; for a write the outcome is unknown.
            raise BadAnswerError(
                f"The server at {host_of(url)} had a problem (HTTP {response.status_code})"
                + (f": {error}" if error else "."),
                code=response.status_code,
                url=_safe_url(url),
            )
        if response.status_code == 404:
            body = self._read_json_or_none(response, url, cancel)
            if _error_from_body(body, url) is None:
                raise ServiceError(
                    f"Not found on the server: {_safe_url(url)} (HTTP 404).",
                    code=404,
                    url=_safe_url(url),
                )
            return body
        try:
            return self._read_json(response, url, cancel)
        except BadAnswerError:
            if response.status_code not in AUTH_CODES:
                raise
            # A sign-in page or an empty 401/403: still an authentication problem.
            return {"error": {"code": response.status_code, "message": response.reason}}

    # -- generic requests ------------------------------------------------------------------
    def get_json(
        self, url: str, params: dict | None = None, *, cancel: CancelCallback | None = None
    ) -> dict:
        """GET a JSON resource; retried with exponential backoff when the failure is transient.
        ``cancel()`` is also checked while the answer is read."""
        attempt = 0
        while True:
            try:
                return self._request_json("GET", url, params, cancel)
            except (NetworkError, BadAnswerError) as error:
                if attempt >= self.retries:
                    raise
                delay = self.backoff * (2**attempt)
                log.info("Retrying %s in %.1fs after: %s", _safe_url(url), delay, error)
                attempt += 1
                time.sleep(delay)

    def post_json(self, url: str, data: dict | None = None) -> dict:
        """POST a form; no automatic retry (the request may not be idempotent)."""
        return self._request_json("POST", url, data)

    # -- service description ---------------------------------------------------------------
    def service_info(self, service_url: str) -> dict:
        return self.get_json(service_url)

    def layer_info(self, service_url: str, layer_id: int) -> dict:
        return self.get_json(f"{service_url.rstrip('/')}/{int(layer_id)}")

    def all_layer_infos(
        self, service_url: str, service_info: dict | None = None
    ) -> dict[int, dict]:
        """Every layer and table definition of the service, by id: in one request
        (``.../FeatureServer/layers``) where the service offers it, else one request per layer
        the service description (``service_info``, read when not given) lists. An answer that
        is not ArcGIS JSON raises :class:`BadAnswerError`; refused credentials raise
        :class:`AuthenticationError` (neither is taken for a missing resource)."""
        try:
            body = self.get_json(f"{service_url.rstrip('/')}/layers")
        except ServiceError as error:
            if isinstance(error, (AuthenticationError, BadAnswerError)):
                raise
            body = None
        listed = _listed_layers(body, service_url) if isinstance(body, dict) else None
        if listed is not None:
            return listed
        info = service_info if service_info is not None else self.service_info(service_url)
        wanted = sorted(
            int(e["id"]) for e in (info.get("layers") or []) + (info.get("tables") or [])
        )
        return {layer_id: self.layer_info(service_url, layer_id) for layer_id in wanted}

    # -- jobs and result files ---------------------------------------------------------------
    def poll_job(
        self,
        status_url: str,
        *,
        progress: ProgressCallback | None = None,
        cancel: CancelCallback | None = None,
    ) -> dict:
        """Poll an asynchronous job until it ends; returns the final status JSON.

        Raises :class:`ServiceError` if the job failed (with the server's message) and
        :class:`CancelledError` if ``cancel()`` turns true between polls.
        """
        started = time.monotonic()
        interval = self.poll_interval
        while True:
            _check_cancel(cancel)
            status = self.get_json(status_url, cancel=cancel)
            # Feature services say "status", geoprocessing-style jobs (exportTiles) "jobStatus".
            shown = status.get("status") or status.get("jobStatus")
            state = str(shown or "").replace(" ", "").lower()
            if progress:
                progress(None, f"Server job: {shown or 'waiting'}")
            if state in JOB_DONE:
                return status
            if state in JOB_FAILED:
                error = _error_from_body(status, status_url)
                reason = str(error) if error else _job_failure(status, shown)
                raise ServiceError(
                    f"The server could not complete the job: {reason}",
                    code=error.code if error else None,
                    details=error.details if error else None,
                    url=_safe_url(status_url),
                )
            if self.job_timeout is not None and time.monotonic() - started > self.job_timeout:
                raise NetworkError(
                    "The server job did not finish in time. Syncing again will pick it up."
                )
            _sleep(interval, cancel)
            interval = _next_pause(interval, time.monotonic() - started, self.max_poll_interval)

    def fetch_result(
        self,
        url: str,
        *,
        progress: ProgressCallback | None = None,
        cancel: CancelCallback | None = None,
    ) -> ReplicaResultFile:
        """Download a result file (streamed to a temporary file) and check it is a result."""
        path = _temp_result_path()
        try:
            self.download(url, path, progress=progress, cancel=cancel)
            _check_result_file(path, url)
        except BaseException:
            ReplicaResultFile(path).close()
            raise
        return ReplicaResultFile(path, source_url=_safe_url(url))

    def _finish(
        self,
        answer: dict,
        url: str,
        *,
        on_status_url: Callable[[str], None] | None,
        progress: ProgressCallback | None,
        cancel: CancelCallback | None,
    ) -> ReplicaResultFile:
        """Turn a first answer (result, URL or job) into a result file."""
        status_url = status_url_of(answer)
        if status_url:
            if on_status_url:
                on_status_url(status_url)
            answer = self.poll_job(status_url, progress=progress, cancel=cancel)
        return self.result_from_answer(answer, url, progress=progress, cancel=cancel)

    def result_from_answer(
        self,
        answer: dict,
        url: str = "",
        *,
        progress: ProgressCallback | None = None,
        cancel: CancelCallback | None = None,
    ) -> ReplicaResultFile:
        """The result an answer or final job status points to (``URL``/``resultUrl``) or holds
        itself (embedded transport, or a reply without changes)."""
        result_url = result_url_of(answer)
        if result_url:
            return self.fetch_result(result_url, progress=progress, cancel=cancel)
        # Embedded: the answer is the result. Drop job bookkeeping and write it out so the
        # caller reads every result the same way.
        embedded = {
            k: v
            for k, v in answer.items()
            if k not in ("status", "submissionTime", "lastUpdatedTime", "transportType")
        }
        path = _temp_result_path()
        with open(path, "w", encoding="utf-8") as out:
            json.dump(embedded, out, ensure_ascii=False)
        return ReplicaResultFile(path, source_url=_safe_url(url) if url else None)

    # -- sync operations ---------------------------------------------------------------------
    def create_replica(
        self,
        service_url: str,
        params: dict,
        *,
        progress: ProgressCallback | None = None,
        cancel: CancelCallback | None = None,
        on_status_url: Callable[[str], None] | None = None,
    ) -> ReplicaResultFile:
        """``createReplica`` (sync or async as ``params["async"]`` says) and its result file."""
        url = f"{service_url.rstrip('/')}/createReplica"
        params = dict(params)
        params.setdefault("transportType", "esriTransportTypeUrl")
        params.setdefault("dataFormat", "json")
        if progress:
            progress(None, "Asking the server to prepare the data")
        answer = self.post_json(url, params)
        return self._finish(
            answer, url, on_status_url=on_status_url, progress=progress, cancel=cancel
        )

    def start_synchronize_replica(self, service_url: str, params: dict) -> dict:
        """Send ``synchronizeReplica`` and return the server's first answer as it is."""
        url = f"{service_url.rstrip('/')}/synchronizeReplica"
        params = dict(params)
        params.setdefault("transportType", "esriTransportTypeUrl")
        params.setdefault("dataFormat", "json")
        return self.post_json(url, params)

    def synchronize_replica(
        self,
        service_url: str,
        params: dict,
        *,
        on_status_url: Callable[[str], None] | None = None,
        progress: ProgressCallback | None = None,
        cancel: CancelCallback | None = None,
    ) -> ReplicaResultFile:
        """``synchronizeReplica`` through to the result file.

        ``on_status_url(url)`` is called with the job URL before polling starts, so a caller
        can journal it and resume after a crash.
        """
        url = f"{service_url.rstrip('/')}/synchronizeReplica"
        answer = self.start_synchronize_replica(service_url, params)
        return self._finish(
            answer, url, on_status_url=on_status_url, progress=progress, cancel=cancel
        )

    def unregister_replica(self, service_url: str, replica_id: str) -> dict:
        return self.post_json(
            f"{service_url.rstrip('/')}/unRegisterReplica", {"replicaID": replica_id}
        )

    def replicas(self, service_url: str) -> list[dict]:
        body = self.get_json(f"{service_url.rstrip('/')}/replicas")
        if isinstance(body, list):
            return body
        return list(body.get("replicas") or [])

    def replica_info(self, service_url: str, replica_id: str) -> dict:
        return self.get_json(f"{service_url.rstrip('/')}/replicas/{replica_id}")

    # -- portal ------------------------------------------------------------------------------
    def portal_item(self, portal_url: str, item_id: str) -> dict:
        return self.get_json(f"{portal_url.rstrip('/')}/content/items/{item_id}")

    def portal_item_data(self, portal_url: str, item_id: str) -> dict:
        return self.get_json(f"{portal_url.rstrip('/')}/content/items/{item_id}/data")

    def portal_related_items(
        self, portal_url: str, item_id: str, relationship_type: str, direction: str | None = None
    ) -> list[dict]:
        params = {"relationshipType": relationship_type, "direction": direction}
        body = self.get_json(
            f"{portal_url.rstrip('/')}/content/items/{item_id}/relatedItems", params
        )
        return list(body.get("relatedItems") or [])

    def portal_item_resources(self, portal_url: str, item_id: str) -> list[dict]:
        body = self.get_json(f"{portal_url.rstrip('/')}/content/items/{item_id}/resources")
        return list(body.get("resources") or [])

    def get_bytes(self, url: str, limit: int) -> bytes | None:
        """A small file (a thumbnail) in memory; None when it is missing, an error, or larger
        than ``limit`` bytes. Never raises for the file itself, only for the connection."""
        response = self._send("GET", url, {})
        try:
            if response.status_code != 200 or "json" in response.headers.get("Content-Type", ""):
                return None
            data = bytearray()
            for chunk in body_chunks(response, url, limits=self.limits, max_bytes=limit):
                data.extend(chunk)
            return bytes(data)
        except (UnusableAnswerError, NetworkError, requests.RequestException):
            return None
        finally:
            response.close()

    def get_tile(
        self, url: str, *, limit: int, cancel: CancelCallback | None = None
    ) -> bytes | None:
        """One map tile (``.../tile/{level}/{row}/{col}``), at most ``limit`` bytes; None when
        the service has no tile there (HTTP 404, or an empty answer). Retries transient
        failures like ``get_json``; other errors raise ServiceError/AuthenticationError."""
        attempt = 0
        refreshed = False
        while True:
            _check_cancel(cancel)
            try:
                response = self._send("GET", url, {})
                try:
                    status = response.status_code
                    if status == 404:
                        return None
                    if status >= 400:
                        body = self._read_json_or_none(response, url, cancel)
                        error = _error_from_body(body, url, status) or ServiceError(
                            f"The tile {_safe_url(url)} could not be read (HTTP {status}).",
                            code=status,
                            url=_safe_url(url),
                        )
                        if status in RETRY_STATUSES:
                            raise BadAnswerError(str(error), code=status, url=_safe_url(url))
                        raise error
                    data = bytearray()
                    for chunk in body_chunks(
                        response, url, limits=self.limits, cancel=cancel, max_bytes=limit
                    ):
                        data += chunk
                finally:
                    response.close()
            except requests.RequestException as error:
                failure: OfflineMapSyncError = NetworkError(
                    f"The tile from {host_of(url)} was interrupted ({type(error).__name__})."
                )
            except (NetworkError, BadAnswerError) as error:
                failure = error
            except ServiceError as error:
                if error.code == 498 and not refreshed:
                    refreshed = True
                    self.credentials.refresh(url)
                    continue
                raise
            else:
                if "json" in response.headers.get("Content-Type", "") and data[:1] == b"{":
                    # An ArcGIS error inside an HTTP 200 answer.
                    error = _error_from_body(
                        _loads_or_none(data.decode("utf-8", "replace"), url), url
                    )
                    if error is not None:
                        if error.code == 404:
                            return None
                        raise error
                return bytes(data) or None
            if attempt >= self.retries:
                raise failure
            _sleep(self.backoff * (2**attempt), cancel)
            attempt += 1

    # -- downloads ---------------------------------------------------------------------------
    def download(
        self,
        url: str,
        dest_path: str | Path,
        *,
        progress: ProgressCallback | None = None,
        cancel: CancelCallback | None = None,
    ) -> Path:
        """Stream ``url`` to ``dest_path`` (via a ``.part`` file, renamed when complete).

        Retries transient failures like ``get_json``; an HTTP error or an ArcGIS error body
        raises :class:`ServiceError` (``code`` 404 when the file is gone).
        """
        dest = Path(dest_path)
        attempt = 0
        while True:
            try:
                return self._download_once(url, dest, progress, cancel)
            except (NetworkError, BadAnswerError):
                if attempt >= self.retries:
                    raise
                time.sleep(self.backoff * (2**attempt))
                attempt += 1

    def _download_once(
        self,
        url: str,
        dest: Path,
        progress: ProgressCallback | None,
        cancel: CancelCallback | None,
    ) -> Path:
        part = dest.with_name(dest.name + ".part")
        refreshed = False
        while True:
            _check_cancel(cancel)
            response = self._send("GET", url, {})
            try:
                if response.status_code >= 400:
                    error = _error_from_body(self._read_json_or_none(response, url, cancel), url)
                    if error is not None and error.code == 498 and not refreshed:
                        refreshed = True
                        self.credentials.refresh(url)
                        continue
                    if error is not None:
                        raise error
                    if response.status_code in RETRY_STATUSES:
                        raise BadAnswerError(
                            f"The server at {host_of(url)} had a problem while sending a file "
                            f"(HTTP {response.status_code}).",
                            code=response.status_code,
                            url=_safe_url(url),
                        )
                    if response.status_code in AUTH_CODES:
                        raise AuthenticationError(
                            f"The server at {host_of(url)} refused the download "
                            f"(HTTP {response.status_code}); sign in again.",
                            code=response.status_code,
                            url=_safe_url(url),
                        )
                    raise ServiceError(
                        f"The file {_safe_url(url)} could not be downloaded "
                        f"(HTTP {response.status_code}). It may have expired.",
                        code=response.status_code,
                        url=_safe_url(url),
                    )
                total = _content_length(response)
                received = 0
                dest.parent.mkdir(parents=True, exist_ok=True)
                with open(part, "wb") as out:
                    for chunk in body_chunks(response, url, limits=self.limits, cancel=cancel):
                        out.write(chunk)
                        received += len(chunk)
                        _check_cancel(cancel)
                        if progress:
                            progress(received / total if total else None, "Downloading")
                if total and received < total and not response.headers.get("Content-Encoding"):
                    raise NetworkError(
                        f"The download from {host_of(url)} was cut off ({received} of {total} bytes)."
                    )
            except requests.RequestException as error:
                _unlink(part)
                raise NetworkError(
                    f"The download from {host_of(url)} was interrupted ({type(error).__name__})."
                ) from None
            except OSError as error:
                # Disk full, folder not writable: not retried, said in words.
                _unlink(part)
                raise OfflineMapSyncError(
                    f"The download from {host_of(url)} could not be saved in {dest.parent}: "
                    f"{error.strerror or error}. Free some disk space, then try again."
                ) from None
            except BaseException:
                _unlink(part)
                raise
            finally:
                response.close()
            try:
                retry = _small_error_body(part, url, refreshed)
            except BaseException:
                _unlink(part)
                raise
            if retry:
                refreshed = True
                self.credentials.refresh(url)
                continue
            os.replace(part, dest)
            return dest


def _job_failure(status: dict, shown: Any) -> str:
    # Geoprocessing-style jobs give their reasons as messages, not as an error body.
    texts = [
        str(m.get("description") or "")
        for m in status.get("messages") or ()
        if isinstance(m, dict) and "error" in str(m.get("type") or "").lower()
    ]
    reason = "; ".join(t for t in texts if t)
    return reason or f"the job ended as '{shown}'"


def _small_error_body(path: Path, url: str, refreshed: bool) -> bool:
    """Raise if a small downloaded file is an ArcGIS error body (HTTP 200 with ``error``).

    Returns True when it is a 498 that deserves one token refresh and another try.
    """
    if path.stat().st_size > 16384:
        return False
    try:
        body = _loads(path.read_text(encoding="utf-8-sig"), url)
    except (ValueError, UnicodeDecodeError):
        return False
    error = _error_from_body(body, url)
    if error is None:
        return False
    _unlink(path)
    if error.code == 498 and not refreshed:
        return True
    raise error


def _check_result_file(path: Path, url: str) -> None:
    with open(path, "rb") as f:
        start = f.read(512).lstrip(b"\xef\xbb\xbf \t\r\n")
    if not start:
        raise BadAnswerError(f"The result file from {host_of(url)} is empty.", url=_safe_url(url))
    if start[:1] == b"<":
        raise BadAnswerError(
            f"The server at {host_of(url)} sent a web page instead of the result file.",
            url=_safe_url(url),
        )
    if start[:1] != b"{":
        raise BadAnswerError(
            f"The result file from {host_of(url)} is not JSON (was dataFormat=json requested?).",
            url=_safe_url(url),
        )


def _content_length(response: requests.Response) -> int | None:
    try:
        return int(response.headers.get("Content-Length") or 0) or None
    except ValueError:
        return None


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _check_cancel(cancel: CancelCallback | None) -> None:
    if cancel is not None and cancel():
        raise CancelledError("The operation was cancelled.")


def _refuse_redirect(response: requests.Response, url: str) -> None:
    """Raise when a POST was answered with a redirect (its form is not sent on)."""
    if not response.is_redirect:
        return
    target = _safe_url(response.headers.get("Location") or "")
    raise ServiceError(
        f"The server redirected the request to {target or 'another address'}. Use that address "
        "(for example its https:// form) for the service or portal instead.",
        url=_safe_url(url),
    )


#: Seconds during which a job is looked at every ``poll_interval`` (0.1 s): most jobs of a
#: quiet server end by then, and their end is noticed 0.05 s after it on average.
_BRISK_POLLING_S = 2.0


def _next_pause(pause: float, elapsed: float, cap: float) -> float:
    """The pause before the next look at a job that has run ``elapsed`` seconds, the last
    pause having been ``pause``.

    Unchanged for the first :data:`_BRISK_POLLING_S` (at most 20 small status requests), then
    growing by a quarter each time to ``cap`` (0.25 s: the end noticed about 0.1 s after it on
    average). A job running longer than 10 s is looked at less often, at most every 5 s (its
    end noticed within about 1 % of its time), so a long job costs the server few requests.
    """
    if elapsed < _BRISK_POLLING_S:
        return pause
    return min(pause * 1.25, max(cap, min(5.0, elapsed / 40)))


def _sleep(seconds: float, cancel: CancelCallback | None) -> None:
    """Sleep in short slices so cancelling between polls is prompt."""
    end = time.monotonic() + seconds
    while True:
        _check_cancel(cancel)
        left = end - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(left, 0.1))
