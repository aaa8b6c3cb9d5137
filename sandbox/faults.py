"""Fault injection state for the sandbox API server (one process, kept in memory).

The JSON document accepted by ``PUT /_sandbox/faults`` (partial updates merge into the current
state; unknown keys are refused with 422):

    list_v2_disabled    bool   list-v2 answers HTTP 400 FeatureNotEnabled
    latency_ms          int    added before every /storage/v1 and /auth/v1 request
    error_rate          float  0..1: chance that a storage download, a storage listing (object/list,
                               object/list-v2, GET bucket) or an auth users page fails
    error_kinds         list   which failures error_rate picks from (round-robin by the RNG):
                               "http500"  HTTP 500 {"statusCode":"500","code":"InternalError",...}
                               "http503"  HTTP 503 {"statusCode":"503","code":"ServiceUnavailable",...}
                               "body503"  HTTP 400 {"statusCode":"503","code":"S3Error",...}  (real server
                                          style: the code is only in the body)
                               "http544"  HTTP 544 {"statusCode":"544","code":"DatabaseTimeout",...}
                               default ["http500", "http503"]
    seed                int    seed of the RNG used by error_rate/truncate_downloads (reset on every PUT)
    fail_routes         list   substrings of the raw request path (e.g. "/object/list-v2/",
                               "/admin/users", "photos/big.bin"): matching storage/auth requests
                               always answer 503
    truncate_downloads  bool|float  true = every download, a float = that share of downloads: the full
                               headers (with the full Content-Length) are sent, then the connection is
                               closed after half the body
    storage_down        bool   every /storage/v1 request answers 503
    auth_down           bool   every /auth/v1 request answers 503
    hold_listing        bool   object listings (object/list, object/list-v2) wait, unanswered, until it
                               is set false again: a test can act at an exact point of a backup
    hold_downloads_after int   0 = off; N = downloads after the next N (counted from this PUT) wait
                               until it is set to 0
    management_rate_limit int  Management API requests allowed per token, project, endpoint and
                               window (default 120, as the real API); past it, HTTP 429
    management_rate_window_seconds int  the window of that limit (default 60)

``GET /_sandbox/faults`` also reports ``held``: how many requests are waiting at each hold right now,
so a test waits for the backup to reach the hold instead of guessing how long it takes.
"""

from __future__ import annotations

import copy
import json
import os
import random
import threading
from typing import Any

DEFAULTS: dict[str, Any] = {
    "list_v2_disabled": False,
    "latency_ms": 0,
    "error_rate": 0.0,
    "error_kinds": ["http500", "http503"],
    "seed": 0,
    "fail_routes": [],
    "truncate_downloads": False,
    "storage_down": False,
    "auth_down": False,
    "hold_listing": False,
    "hold_downloads_after": 0,
    "management_rate_limit": 120,
    "management_rate_window_seconds": 60,
}
ERROR_KINDS = {"http500", "http503", "body503", "http544"}


class FaultError(ValueError):
    pass


def validate(update: Any) -> dict[str, Any]:
    if not isinstance(update, dict):
        raise FaultError("body must be a JSON object")
    unknown = sorted(set(update) - set(DEFAULTS))
    if unknown:
        raise FaultError(f"unknown fault keys: {unknown}; known: {sorted(DEFAULTS)}")
    out: dict[str, Any] = {}
    for key, value in update.items():
        if key in ("list_v2_disabled", "storage_down", "auth_down", "hold_listing"):
            if not isinstance(value, bool):
                raise FaultError(f"{key} must be a boolean")
        elif key in ("latency_ms", "seed", "hold_downloads_after"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise FaultError(f"{key} must be a non-negative integer")
        elif key in ("management_rate_limit", "management_rate_window_seconds"):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise FaultError(f"{key} must be a positive integer")
        elif key == "error_rate":
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise FaultError("error_rate must be a number in 0..1")
            value = float(value)
        elif key == "truncate_downloads":
            if not isinstance(value, bool):
                if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                    raise FaultError("truncate_downloads must be a boolean or a number in 0..1")
                value = float(value)
        elif key == "fail_routes":
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise FaultError("fail_routes must be a list of non-empty strings")
        elif key == "error_kinds":
            if not isinstance(value, list) or not value or not set(value) <= ERROR_KINDS:
                raise FaultError(f"error_kinds must be a non-empty list drawn from {sorted(ERROR_KINDS)}")
        out[key] = value
    return out


class Faults:
    """Thread-safe fault state, persisted to ``path`` so a restarted server keeps it."""

    def __init__(self, path: str | None, baseline: dict[str, Any] | None = None,
                 baseline_loader=None):
        self.path = path
        self.baseline = {**copy.deepcopy(DEFAULTS), **(baseline or {})}
        self.baseline_loader = baseline_loader
        self.lock = threading.Lock()
        self.state = copy.deepcopy(self.baseline)
        self.counters: dict[str, int] = {}
        self.held: dict[str, int] = {"listing": 0, "download": 0}
        self.downloads_at_hold = 0
        if path and os.path.exists(path):
            try:
                with open(path) as fh:
                    self.state.update(validate(json.load(fh)))
            except (OSError, ValueError):
                pass
        self.rng = random.Random(self.state["seed"])

    def _save(self) -> None:
        if not self.path:
            return
        tmp = self.path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(self.state, fh, indent=2)
        os.replace(tmp, self.path)

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            return {**copy.deepcopy(self.state), "counters": dict(self.counters),
                    "held": dict(self.held)}

    def update(self, update: Any) -> dict[str, Any]:
        clean = validate(update)
        with self.lock:
            self.state.update(clean)
            if "hold_downloads_after" in clean:
                self.downloads_at_hold = self.counters.get("downloads", 0)
            self.rng = random.Random(self.state["seed"])
            self._save()
        return self.snapshot()

    def reset(self) -> dict[str, Any]:
        if self.baseline_loader is not None:
            try:
                self.baseline = {**copy.deepcopy(DEFAULTS), **validate(self.baseline_loader() or {})}
            except (OSError, ValueError):
                pass
        with self.lock:
            self.state = copy.deepcopy(self.baseline)
            self.rng = random.Random(self.state["seed"])
            self.counters = {}
            self._save()
        return self.snapshot()

    def get(self, key: str) -> Any:
        with self.lock:
            return self.state[key]

    def count(self, name: str) -> None:
        with self.lock:
            self.counters[name] = self.counters.get(name, 0) + 1

    def should_hold(self, point: str) -> bool:
        """Whether a request at ``point`` ("listing" or "download") must wait now."""
        with self.lock:
            if point == "listing":
                return bool(self.state["hold_listing"])
            after = self.state["hold_downloads_after"]
            return bool(after) and self.counters.get("downloads", 0) - self.downloads_at_hold > after

    def waiting(self, point: str, change: int) -> None:
        with self.lock:
            self.held[point] += change

    def roll_error(self) -> str | None:
        """Return an error kind if error_rate fires for this request, else None."""
        with self.lock:
            rate = self.state["error_rate"]
            if rate <= 0:
                return None
            if self.rng.random() < rate:
                kinds = self.state["error_kinds"]
                kind = kinds[self.rng.randrange(len(kinds))]
                self.counters["injected_errors"] = self.counters.get("injected_errors", 0) + 1
                return kind
            return None

    def roll_truncate(self) -> bool:
        with self.lock:
            value = self.state["truncate_downloads"]
            if value is True:
                hit = True
            elif not value:
                hit = False
            else:
                hit = self.rng.random() < float(value)
            if hit:
                self.counters["truncated_downloads"] = self.counters.get("truncated_downloads", 0) + 1
            return hit
