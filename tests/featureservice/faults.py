"""Fault injection: make the next N requests of an operation fail in a chosen way.

Operations are named after the last path segment of the request (`query`, `createReplica`,
`synchronizeReplica`, `unRegisterReplica`, `applyEdits`, `replicas`, `generateToken`,
`attachments`, ...) plus `service` and `layer` for the two description resources, `jobs` for
job status polls, `result` for result-file downloads, `items` / `data` for portal items, `tile` /
`vectorTile` / `styles` / `exportTiles` / `estimateExportTilesSize` / `results` for the basemap
services (tiles.py), and `*` for any request. Kinds:

- http500 / http502 / http503: answer that HTTP status with an HTML body, do nothing;
- drop_before_commit: close the connection without answering, do nothing;
- drop_after_commit: do the work (and commit it), then close the connection without answering;
- delay: wait `seconds` (default 1) before doing the work;
- hold: wait until the test sets the `threading.Event` given as `release` (at most `seconds`,
  default 60) before doing the work, so a test can see what happens while the server is slow;
- http403: answer HTTP 403 with a JSON error that has a message but no code, do nothing;
- html_error: answer HTTP 200 with an HTML error page instead of JSON, do nothing;
- truncated_json: do the work, answer only the first half of the JSON body;
- json_error: answer HTTP 200 with an ArcGIS JSON error carrying `message` (and `code`, default
  400), do nothing;
- results_by_object_id (synchronizeReplica): do the work, but the edit results name the rows
  by `objectId` only, without their `globalId` (as some servers answer);
- expire_tokens: every token issued so far expires, then the request is handled as usual (so it
  meets the 498 a token that ran out gives);
- slow_job (async createReplica/synchronizeReplica, exportTiles, estimateExportTilesSize): the
  next job reports InProgress (esriJobExecuting) for `polls` (default 3) status polls before
  showing its real status.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

KINDS = (
    "http500",
    "http502",
    "http503",
    "http403",
    "drop_before_commit",
    "drop_after_commit",
    "delay",
    "hold",
    "html_error",
    "truncated_json",
    "json_error",
    "results_by_object_id",
    "slow_job",
    "expire_tokens",
)


@dataclass
class Fault:
    operation: str
    kind: str
    remaining: int
    opts: dict = field(default_factory=dict)


class Faults:
    def __init__(self):
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def inject(self, operation: str, kind: str, count: int = 1, **opts) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown fault kind {kind!r}; use one of {', '.join(KINDS)}")
        if count < 1:
            raise ValueError("count must be at least 1")
        with self._lock:
            self._faults.append(Fault(operation.lower(), kind, int(count), dict(opts)))

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def take(self, operation: str, kinds: tuple[str, ...] | None = None) -> Fault | None:
        """The first armed fault for `operation` (optionally of some kinds); uses up one count."""
        op = operation.lower()
        with self._lock:
            for fault in self._faults:
                if fault.operation not in (op, "*"):
                    continue
                if (kinds is None and fault.kind == "slow_job") or (
                    kinds is not None and fault.kind not in kinds
                ):
                    continue
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def pending(self) -> list[dict]:
        with self._lock:
            return [
                {"operation": f.operation, "kind": f.kind, "remaining": f.remaining, **f.opts}
                for f in self._faults
            ]
