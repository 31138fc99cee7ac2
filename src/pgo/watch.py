"""The daemon's ears: the engine's events routed to the services they concern, and the
deploy attempts of every service told to people.

    Dispatch.run(stream)        one EngineEvents stream for all services: an event of a
                                tracked project (or swarm stack: its services, its tasks'
                                containers) that drift.decide says calls for a look
                                wakes that service's pass at once (trigger "event"); after a
                                reconnect (events may have been missed, the engine may have
                                restarted) every service is woken once (trigger "engine")
    notice_of(name, attempt)    the notification of one recorded deploy attempt

Nothing here changes a project: a repair is the service's own pass (pgo.repair), under
its lock, which compares what runs with the model and decides for itself. So an event
during pgod's own change of the project (or just after it) is not lost either: it asks
for one pass after that change, which repairs only what differs.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterable, Callable, Collection, Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from pgo import drift
from pgo.events import Connected, ContainerEvent, Event
from pgo.notifications import Kind, Notice
from pgo.state import Attempt, Outcome

if TYPE_CHECKING:
    from pgo.service import TrackedService

log = logging.getLogger("pgo.watch")


class Dispatch:
    def __init__(self, services: Callable[[], Mapping[str, TrackedService]],
                 names: Callable[[], Collection[str]]) -> None:
        self.services = services  # the tracked services now (a reload changes them)
        self.names = names  # every configured service's name (drift.belongs)

    async def run(self, stream: AsyncIterable[Event]) -> None:
        async for event in stream:
            if isinstance(event, Connected):
                if event.reconnect:
                    self.reconnected()
            else:
                self.dispatch(event)

    def reconnected(self) -> None:
        services = self.services()
        log.info("docker engine events: (re)connected; reconciling every service once, for "
                 "the events it may have missed")
        for svc in services.values():
            svc.wake_for("engine")

    def dispatch(self, event: ContainerEvent) -> drift.Decision | None:
        """Wake the pass of the service `event` concerns when it calls for a repair; the
        decision (None: not a tracked service's container)."""
        if event.swarm and not event.project:  # (a swarm service: its stack's by name)
            event = replace(event, project=drift.owner(event.name, self.names()))
        svc = self.services().get(event.project)
        if svc is None or not drift.belongs(event.project, event.name, self.names()) \
                or event.swarm != svc.cfg.is_swarm:
            return None
        intent = svc.intent()
        decision = drift.decide(event, intent)
        if event.action in drift.ENDINGS and event.container and not event.swarm:
            svc.suspects.add(event.container)
        if decision.reconcile:
            svc.log.info("%s: reconciling now", decision.reason)
            svc.wake_for("event")
        elif drift.decide(event, replace(intent, busy=False, quiet_until=0.0)).reconcile:
            # during (or just after) pgod's own change of the project: most likely its own
            # doing, but perhaps not; one pass after it compares, and repairs only drift
            svc.log.debug("engine event: %s; compared with the model once it is done",
                          decision.reason)
            svc.wake_for("event")
        else:
            svc.log.debug("engine event: %s", decision.reason)
        return decision


_KIND = {Outcome.DEPLOYED: Kind.DEPLOYED, Outcome.ROLLED_BACK: Kind.ROLLED_BACK,
         Outcome.FAILED: Kind.FAILED, Outcome.REFUSED: Kind.REFUSED}


def notice_of(service: str, attempt: Attempt, secrets: Collection[str] = ()
              ) -> Notice | None:
    """The notification of a deploy attempt (None for an outcome that tells nobody)."""
    from pgo.runner import redact

    kind = _KIND.get(attempt.outcome)
    if kind is None:
        return None
    detail = "" if kind is Kind.DEPLOYED else redact(attempt.reason, list(secrets))
    trigger = f" ({attempt.trigger})" if attempt.trigger else ""
    if kind is Kind.DEPLOYED and attempt.trigger:
        detail = f"trigger: {attempt.trigger}"
    elif detail:
        detail += trigger
    return Notice(service, kind, attempt.commit, detail, duration=attempt.duration,
                  at=attempt.at)
