"""Notifications: what happened to a service, told through Apprise URLs (Slack, Matrix,
ntfy, Discord, e-mail, JSON and form webhooks, ...), beside the reconcile, never in its way.

    notifier = Notifier(cfg.notify_urls)            # who is told about service NAME
    task = asyncio.create_task(notifier.run())      # delivery, beside everything else
    notifier.notify(Notice("shop", Kind.DEPLOYED, commit, duration=4.2))   # never blocks

One message per event kind and key (default: the commit), never one per pass: a notice
whose kind and key are those of the last one sent for that service is dropped (a deploy
forgets the service's earlier failures; a drift repair with the same description is told
again after REPEAT_AFTER). Delivery runs in a thread per URL (Apprise is blocking) with a
timeout, a few notices at once. URLs may carry credentials: a URL is never logged; a
failing one is named by its scheme and place in the list (`json:// URL #2`), its error
text has every part of the URL taken out, and it is logged once per event kind until it
works again. Apprise's own log lines (which show URLs) go nowhere else.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import enum
import logging
import re
import socket
import threading
import time
import urllib.parse
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from types import ModuleType

log = logging.getLogger("pgo.notifications")

DELIVERY_TIMEOUT = 30.0  # one URL, one message
PARALLEL = 4  # notices delivered at once
QUEUE_SIZE = 1000
REPEAT_AFTER = 3600.0  # a drift repair described the same way is told again after this


class Kind(enum.StrEnum):
    DEPLOYED = "deployed"
    ROLLED_BACK = "rolled back"
    FAILED = "failed"
    REFUSED = "refused"
    DRIFT_REPAIRED = "drift repaired"
    CRASH_LOOP = "crash loop"
    TASK_FAILED = "task failed"  # a swarm task (swarm replaces it: told, not repaired)
    UNREACHABLE = "upstream unreachable"
    TEST = "test"


# Apprise's notify types: the colour or icon a service shows
_LEVEL = {Kind.DEPLOYED: "success", Kind.DRIFT_REPAIRED: "success", Kind.TEST: "info",
          Kind.ROLLED_BACK: "warning", Kind.REFUSED: "warning", Kind.UNREACHABLE: "warning",
          Kind.TASK_FAILED: "warning",
          Kind.FAILED: "failure", Kind.CRASH_LOOP: "failure"}


@dataclass(frozen=True)
class Notice:
    """One thing that happened to a service. `detail` is one line the caller has redacted
    (the service's secrets taken out), e.g. the reason of a failure or what drifted."""

    service: str
    kind: Kind
    commit: str = ""
    detail: str = ""
    duration: float | None = None  # deployed: seconds from start to healthy
    key: str | None = None  # what makes two notices the same event (default: the commit)
    at: float = field(default_factory=time.time)

    @property
    def dedupe_key(self) -> str:
        if self.key is not None:
            return self.key
        if self.kind is Kind.DRIFT_REPAIRED:
            return f"{self.commit} {self.detail}"
        return self.commit

    def title(self, host: str) -> str:
        short = self.commit[:8]
        what = {
            Kind.DEPLOYED: f"deployed {short}",
            Kind.ROLLED_BACK: f"rolled back {short}",
            Kind.FAILED: f"commit {short} failed" if short else "failed",
            Kind.REFUSED: f"commit {short} refused by the policy",
            Kind.DRIFT_REPAIRED: "drift repaired",
            Kind.CRASH_LOOP: "crash loop: left alone",
            Kind.TASK_FAILED: "a swarm task failed",
            Kind.UNREACHABLE: "upstream unreachable for an hour",
            Kind.TEST: "test message",
        }[self.kind]
        return f"{self.service}: {what}" + (f" (on {host})" if host else "")

    def body(self, host: str) -> str:
        lines = []
        if self.kind is Kind.DEPLOYED:
            took = f" in {self.duration:.1f}s" if self.duration is not None else ""
            lines.append(f"Service {self.service} runs commit {self.commit[:12]}{took}.")
        elif self.kind is Kind.TEST:
            lines.append(f"A test message for service {self.service} from pgod on "
                         f"{host or 'this machine'}: this URL works.")
        elif self.commit:
            lines.append(f"Service {self.service}, commit {self.commit[:12]}: {self.kind}.")
        else:
            lines.append(f"Service {self.service}: {self.kind}.")
        if self.detail:
            lines.append(one_line(self.detail))
        lines.append(time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(self.at)))
        return "\n".join(lines)


def one_line(text: str, limit: int = 500) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"


# -- Apprise, loaded on first use ------------------------------------------------------

class _Capture(logging.Handler):
    """Apprise's (and urllib3's) log records, kept for the delivery that caused them and
    shown nowhere else: they hold whole URLs. A delivery's list lives in a context
    variable, which Apprise copies into the worker threads it sends from."""

    collected: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar(
        "pgo_notify_log", default=None)

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        kept = self.collected.get()
        if kept is not None:
            kept.append(record.getMessage())

    def begin(self) -> contextvars.Token[list[str] | None]:
        return self.collected.set([])

    def end(self, token: contextvars.Token[list[str] | None]) -> list[str]:
        kept = self.collected.get() or []
        self.collected.reset(token)
        return kept


_capture = _Capture()
_loaded: ModuleType | None = None
_load_lock = threading.Lock()


def apprise() -> ModuleType:
    """The apprise module, its logger cut off from pgod's (its lines show whole URLs)."""
    global _loaded
    with _load_lock:
        if _loaded is None:
            for name in ("apprise", "urllib3"):  # (urllib3: requests' HTTP, under Apprise)
                logger = logging.getLogger(name)
                logger.propagate = False
                logger.setLevel(logging.WARNING)
                logger.addHandler(_capture)
            with warnings.catch_warnings():
                # (its e-mail plugin imports `imghdr`, deprecated since Python 3.11; the
                # plugins load on the first lookup of a URL: that is done here, once)
                warnings.simplefilter("ignore", DeprecationWarning)
                import apprise as module

                module.Apprise.instantiate("json://localhost", suppress_exceptions=True)

            _loaded = module
        return _loaded


def scheme_of(url: str) -> str:
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]{0,31})://", url)
    return m.group(1).lower() if m else ""


def check_url(url: str) -> str:
    """"" when Apprise understands `url`, else what is wrong (without the URL)."""
    scheme = scheme_of(url)
    if not scheme:
        return "not an Apprise URL (SCHEME://...)"
    ap = apprise()
    token = _capture.begin()
    try:
        plugin = ap.Apprise.instantiate(url, suppress_exceptions=True)
    finally:
        _capture.end(token)
    if plugin is None:
        return f"not a URL Apprise understands (scheme {scheme!r})"
    return ""


def label(url: str, index: int) -> str:
    """How a URL is named in a log line: `json:// URL #2` (the rest may be secret)."""
    return f"{scheme_of(url) or '?'}:// URL #{index}"


def url_parts(url: str) -> list[str]:
    """Every piece of `url` that may be a secret (all but its scheme), longest first."""
    parts = urllib.parse.urlsplit(url)
    rest = url.split("://", 1)[-1]
    pieces = {rest, parts.netloc, parts.username or "", parts.password or "",
              parts.hostname or "", parts.path, parts.query}
    pieces.update(re.split(r"[/@:?&=,;#]", rest))
    pieces.update(urllib.parse.unquote(p) for p in list(pieces))
    return sorted((p for p in pieces if len(p) >= 3), key=len, reverse=True)


def redact_url(text: str, url: str) -> str:
    text = text.replace(url, "***")
    for piece in url_parts(url):
        text = text.replace(piece, "***")
    return text


def deliver(url: str, title: str, body: str, level: str) -> str:
    """Send one message to one URL (blocking): "" when delivered, else why not, redacted."""
    ap = apprise()
    token = _capture.begin()
    try:
        # one URL, sent from this thread where Apprise allows it (no pool of its own)
        sender = ap.Apprise(asset=ap.AppriseAsset(async_mode=False))
        if not sender.add(url):
            return "not a URL Apprise understands"
        ok = sender.notify(body=body, title=title, notify_type=level)
    except Exception as e:  # a plugin of a third-party library may raise anything
        return one_line(redact_url(f"{type(e).__name__}: {e}", url), 300)
    finally:
        said = _capture.end(token)
    if ok:
        return ""
    why = said[-1] if said else "not delivered"
    return one_line(redact_url(why, url), 300)


# -- the notifier ----------------------------------------------------------------------

Deliver = Callable[[str, str, str, str], str]


class Notifier:
    """Dedupes notices and delivers them, beside everything else (see the module)."""

    def __init__(self, urls: Callable[[str], Sequence[str]], *, host: str | None = None,
                 timeout: float = DELIVERY_TIMEOUT, parallel: int = PARALLEL,
                 send: Deliver = deliver, clock: Callable[[], float] = time.monotonic
                 ) -> None:
        self.urls = urls
        self.host = socket.gethostname() if host is None else host
        self.timeout = timeout
        self.parallel = parallel
        self.send = send
        self.clock = clock
        self.queue: asyncio.Queue[Notice] = asyncio.Queue(QUEUE_SIZE)
        self._last: dict[tuple[str, Kind], tuple[str, float]] = {}
        self._failing: set[tuple[str, Kind]] = set()  # (url, kind) already logged
        self._dropped_logged = False
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self.delivered = 0  # messages that reached a URL (for tests and metrics)
        self.failed = 0

    def notify(self, notice: Notice) -> bool:
        """Queue `notice` unless it is one already told; never blocks. True when queued.
        Called from the event loop's thread (the queue is asyncio's)."""
        if not self.urls(notice.service):
            return False
        if notice.kind is not Kind.TEST:
            now = self.clock()
            key = notice.dedupe_key
            last = self._last.get((notice.service, notice.kind))
            if last is not None and last[0] == key and not (
                    notice.kind is Kind.DRIFT_REPAIRED and now - last[1] >= REPEAT_AFTER):
                return False
            if notice.kind is Kind.DEPLOYED:  # things are good again: later failures count
                for kind in (Kind.FAILED, Kind.ROLLED_BACK, Kind.REFUSED, Kind.CRASH_LOOP,
                             Kind.UNREACHABLE):
                    self._last.pop((notice.service, kind), None)
            self._last[(notice.service, notice.kind)] = (key, now)
        try:
            self.queue.put_nowait(notice)
        except asyncio.QueueFull:
            if not self._dropped_logged:
                log.warning("notifications: %d waiting; dropping new ones until they are "
                            "delivered", self.queue.qsize())
                self._dropped_logged = True
            return False
        return True

    async def run(self) -> None:
        """Deliver queued notices until cancelled."""
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=self.parallel * 2, thread_name_prefix="notify")
        try:
            async with asyncio.TaskGroup() as group:
                for _ in range(self.parallel):
                    group.create_task(self._worker())
        finally:
            self._executor.shutdown(wait=False, cancel_futures=True)

    async def _worker(self) -> None:
        while True:
            notice = await self.queue.get()
            try:
                await self.deliver(notice)
            except Exception as e:  # a bug here must not end delivery for everyone
                log.error("[%s] notification (%s) not delivered: %s", notice.service,
                          notice.kind, type(e).__name__)
            finally:
                self.queue.task_done()
                if self.queue.empty():
                    self._dropped_logged = False

    async def deliver(self, notice: Notice) -> list[str]:
        """Send `notice` to each of its service's URLs at once; the reasons of failures
        (redacted), "" for each URL that took it."""
        urls = list(self.urls(notice.service))
        title, body = notice.title(self.host), notice.body(self.host)
        level = _LEVEL[notice.kind]
        results = await asyncio.gather(*(self._one(url, title, body, level) for url in urls))
        from pgo import metrics

        for i, (url, why) in enumerate(zip(urls, results, strict=True), 1):
            marker = (url, notice.kind)
            metrics.NOTIFICATIONS.labels(str(notice.kind), "failed" if why else "delivered").inc()
            if not why:
                self.delivered += 1
                self._failing = {m for m in self._failing if m[0] != url}
                continue
            self.failed += 1
            if marker not in self._failing:
                self._failing.add(marker)
                log.warning("[%s] notification (%s) to %s failed: %s (not logged again for "
                            "this URL and kind until it works)", notice.service, notice.kind,
                            label(url, i), why)
        return results

    async def _one(self, url: str, title: str, body: str, level: str) -> str:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(self.timeout):
                return await loop.run_in_executor(self._executor, self.send, url, title,
                                                  body, level)
        except TimeoutError:
            return f"no answer within {self.timeout:g}s"

    async def drain(self) -> None:
        """Wait until every queued notice has been delivered or has failed."""
        await self.queue.join()


async def send_test(urls: Sequence[str], service: str, *, host: str | None = None,
                    timeout: float = DELIVERY_TIMEOUT, send: Deliver = deliver
                    ) -> list[tuple[str, str]]:
    """`pgod notify-test`: one test message to each URL now; (label, why) per URL, why ""
    when it was delivered."""
    notifier = Notifier(lambda _: urls, host=host, timeout=timeout, send=send)
    notifier._executor = concurrent.futures.ThreadPoolExecutor(
        max_workers=max(1, len(urls)), thread_name_prefix="notify")
    try:
        results = await notifier.deliver(Notice(service, Kind.TEST))
    finally:
        notifier._executor.shutdown(wait=False, cancel_futures=True)
    return [(label(u, i), why) for i, (u, why) in enumerate(zip(urls, results, strict=True), 1)]
