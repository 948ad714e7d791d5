"""The error answers of the reference service, in ArcGIS's shape."""

from __future__ import annotations


class ApiError(Exception):
    """Answered as `{"error": {"code", "message", "details"}}` (HTTP 200 unless http_status is set)."""

    def __init__(
        self, code: int, message: str, details: list[str] | None = None, http_status: int = 200
    ):
        super().__init__(message)
        self.code = code
        self.message = message
        self.details = list(details or [])
        self.http_status = http_status

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "details": self.details}}


class EditError(Exception):
    """One edit (feature or attachment) that cannot be applied; reported in its edit result."""

    def __init__(self, code: int, description: str):
        super().__init__(description)
        self.code = code
        self.description = description

    def body(self) -> dict:
        return {"code": self.code, "description": self.description}


def bad_request(message: str, *details: str) -> ApiError:
    return ApiError(400, message, list(details))
