"""Prometheus metrics, served on -m as `GET /metrics` (see httpd.py).

`pgo_command_count` and `pgo_command_error_count` {service, cmd, subcmd} keep the original
Go pgo's exact names and type (a counter without the `_total` suffix that prometheus_client
would add), so its dashboards keep working: they are rendered here by hand. The rest are
pgo's own and follow the library's conventions (counters end in `_total`).
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from pgo.runner import command_labels

REGISTRY = CollectorRegistry(auto_describe=True)


class LegacyCounter:
    """A counter family exposed under its exact name (no `_total`), as client_golang does."""

    def __init__(self, name: str, documentation: str, labelnames: Sequence[str]) -> None:
        self.name = name
        self.documentation = documentation
        self.labelnames = tuple(labelnames)
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, *labels: str, amount: float = 1.0) -> None:
        assert len(labels) == len(self.labelnames)
        self.values[labels] = self.values.get(labels, 0.0) + amount

    def get(self, *labels: str) -> float:
        return self.values.get(labels, 0.0)

    def text(self) -> str:
        lines = [f"# HELP {self.name} {self.documentation}", f"# TYPE {self.name} counter"]
        for labels, value in sorted(self.values.items()):
            pairs = ",".join(f'{k}="{_escape(v)}"' for k, v in zip(self.labelnames, labels,
                                                                   strict=True))
            lines.append(f"{self.name}{{{pairs}}} {_number(value)}")
        return "\n".join(lines) + "\n"


def _number(value: float) -> str:
    return str(int(value)) if value.is_integer() and abs(value) < 2**53 else repr(value)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


COMMANDS = LegacyCounter(
    "pgo_command_count", "External commands pgod ran, by service, command and subcommand",
    ["service", "cmd", "subcmd"])
COMMAND_ERRORS = LegacyCounter(
    "pgo_command_error_count",
    "External commands that failed (non-zero exit, timeout)",
    ["service", "cmd", "subcmd"])
RECONCILES = Counter("pgo_reconcile_total", "Reconcile passes by outcome",
                     ["service", "outcome"], registry=REGISTRY)
REFUSALS = Counter("pgo_policy_refusals_total", "Commits refused by the compose policy",
                   ["service"], registry=REGISTRY)
DURATION = Histogram("pgo_reconcile_duration_seconds", "Time one reconcile pass took",
                     ["service"], registry=REGISTRY,
                     buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300))
DEPLOYS = Counter("pgo_deploys_total", "Deploy attempts by outcome (deployed, rolled back, "
                  "failed, refused)", ["service", "outcome"], registry=REGISTRY)
ROLLBACKS = Counter("pgo_rollbacks_total", "Rollbacks pgod carried out: to the last good commit "
                    "after a failed deploy", ["service"], registry=REGISTRY)
DEPLOY_DURATION = Histogram("pgo_deploy_duration_seconds", "Time a deploy attempt took, from "
                            "its start to its end, health gate and rollback included",
                            ["service"], registry=REGISTRY,
                            buckets=(1, 2.5, 5, 10, 20, 30, 60, 120, 180, 300, 600, 1800))
APPLIED_TIME = Gauge("pgo_applied_commit_timestamp_seconds",
                     "Commit time of the commit last brought up", ["service"], registry=REGISTRY)
APPLIED_AT = Gauge("pgo_applied_timestamp_seconds", "When the service was last brought up",
                   ["service"], registry=REGISTRY)


def observe_command(service: str, argv: Sequence[str], returncode: int) -> None:
    cmd, sub = command_labels(argv)
    COMMANDS.inc(service, cmd, sub)
    if returncode != 0:
        COMMAND_ERRORS.inc(service, cmd, sub)


WEBHOOKS = Counter("pgo_webhooks_total", "Webhook requests by service and result "
                   "(accepted, unauthorized, not_found; service is empty for unknown names)",
                   ["service", "result"], registry=REGISTRY)
HTTP_REQUESTS = Counter("pgo_http_requests_total", "Requests to the metrics/webhook listener",
                        ["route", "code"], registry=REGISTRY)
SSH_REQUESTS = Counter("pgo_ssh_requests_total", "SSH requests by service, command and exit "
                       "status (400/401/404/406: refused)", ["service", "command", "status"],
                       registry=REGISTRY)
DRIFT_REPAIRS = Counter("pgo_drift_repairs_total", "Drift repairs: a project's containers "
                        "brought back to the model pgod brought up", ["service"],
                        registry=REGISTRY)
NOTIFICATIONS = Counter("pgo_notifications_total", "Notifications by event kind and result "
                        "(delivered, failed: per URL)", ["kind", "result"], registry=REGISTRY)
RELOADS = Counter("pgo_config_reloads_total", "Configuration reloads by result "
                  "(applied, unchanged, invalid)", ["result"], registry=REGISTRY)


def exposition() -> bytes:
    """Everything, in the Prometheus text format (0.0.4)."""
    return generate_latest(REGISTRY) + (COMMANDS.text() + COMMAND_ERRORS.text()).encode()
