"""Prometheus metrics. The names of the original (pgo_command_count, pgo_command_error_count)
are kept; the per-service reconcile metrics are pgo's own."""

from __future__ import annotations

import os
from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

COMMANDS = Counter("pgo_command_count", "External commands run, by service and command",
                   ["service", "cmd", "subcmd"], registry=REGISTRY)
COMMAND_ERRORS = Counter("pgo_command_error_count", "External commands that failed",
                         ["service", "cmd", "subcmd"], registry=REGISTRY)
RECONCILES = Counter("pgo_reconcile_total", "Reconcile passes by outcome",
                     ["service", "outcome"], registry=REGISTRY)
REFUSALS = Counter("pgo_policy_refusals_total", "Commits refused by the compose policy",
                   ["service"], registry=REGISTRY)
DURATION = Histogram("pgo_reconcile_duration_seconds", "Time one reconcile pass took",
                     ["service"], registry=REGISTRY,
                     buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
APPLIED_TIME = Gauge("pgo_applied_commit_timestamp_seconds",
                     "Commit time of the commit last brought up", ["service"], registry=REGISTRY)
APPLIED_AT = Gauge("pgo_applied_timestamp_seconds", "When the service was last brought up",
                   ["service"], registry=REGISTRY)


def command_labels(argv: Sequence[str]) -> tuple[str, str]:
    """(cmd, subcmd) of a command line: `git fetch` -> (git, fetch),
    `docker compose up` -> (compose, up)."""
    words = [os.path.basename(argv[0])] if argv else [""]
    rest = list(argv[1:])
    if words[0] == "docker" and rest[:1] == ["compose"]:
        words, rest = ["compose"], rest[1:]
    elif words[0] == "docker-compose":
        words = ["compose"]
    # skip global options (and their values) to reach the subcommand
    with_value = {"-c", "--project-name", "-p", "--file", "-f", "--env-file", "--project-directory"}
    i = 0
    while i < len(rest) and rest[i].startswith("-"):
        i += 2 if rest[i] in with_value else 1
    sub = rest[i] if i < len(rest) else ""
    return words[0], sub


def observe_command(service: str, argv: Sequence[str], returncode: int) -> None:
    cmd, sub = command_labels(argv)
    COMMANDS.labels(service, cmd, sub).inc()
    if returncode != 0:
        COMMAND_ERRORS.labels(service, cmd, sub).inc()
