"""Exceptions of the core, each carrying a message a GIS user can act on."""

from __future__ import annotations


class OfflineMapSyncError(Exception):
    """Base class of every error the core raises on purpose.

    ``str(error)`` is the message to show the user; it never contains credentials.
    """


class ServiceError(OfflineMapSyncError):
    """The ArcGIS server answered with an error body (or an unusable answer)."""

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        details: list[str] | None = None,
        url: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.details = list(details or [])
        self.url = url


class AuthenticationError(ServiceError):
    """Missing, wrong or expired credentials (ArcGIS codes 498, 499, 403, 401)."""


class NetworkError(OfflineMapSyncError):
    """The server could not be reached or the connection dropped. Retrying later is safe."""


class NotSyncEnabledError(OfflineMapSyncError):
    """A feature service cannot be taken offline for sync (no ``Sync`` capability, no GlobalIDs)."""


class GeodatabaseError(OfflineMapSyncError):
    """A local geodatabase is missing, corrupt or not one of ours."""


class ManifestError(OfflineMapSyncError):
    """An offline map folder's manifest is missing, unreadable or from a newer format."""


class SyncInProgressError(OfflineMapSyncError):
    """Another sync-type operation already holds this geodatabase."""


class CancelledError(OfflineMapSyncError):
    """The user cancelled the operation; nothing was half-applied."""


class UnsupportedGeometryError(OfflineMapSyncError):
    """A geometry that cannot be stored or sent (curves, unknown types)."""


class SchemaChangedError(OfflineMapSyncError):
    """The service's layers changed since the geodatabase was made (a field removed, a type
    changed, a layer gone) in a way that makes syncing unsafe. ``changes``: one line each."""

    def __init__(self, message: str, changes: list[str]) -> None:
        super().__init__(message)
        self.changes = changes


class SiteNotApprovedError(AuthenticationError):
    """A credential would be used for a site it was not made for and the user has not approved.

    ``sites`` lists those sites; the dock asks the user, Processing refuses unless told to
    approve new sites.
    """

    def __init__(self, credential: str, sites: list) -> None:
        names = ", ".join(str(site) for site in sites)
        super().__init__(
            f"The credential '{credential}' has not been used with {names} before. Only use it "
            "there if you trust that server: an offline map copied from someone else may name "
            "any server."
        )
        self.credential = credential
        self.sites = list(sites)


class InsecureConnectionError(AuthenticationError):
    """A password or token would travel over plain http to a host the user did not allow."""


class UnusableAnswerError(ServiceError):
    """The server's answer cannot be used at all (far too large, or nested too deeply);
    trying again would give the same answer, so it is not retried."""
