"""A flood of SSH connections from one source address, for tests/e2e/test_attacks.py.

    python sshflood.py PORT SOURCE UNKNOWN_KEY VALID_KEY

Until SIGTERM, from SOURCE (a loopback address) to 127.0.0.1:PORT it keeps open:
RAW plain TCP connections that never speak SSH, UNKNOWN clients that log in again and again
with a key no service holds, and IDLE clients that log in with a valid key and open no
session, each reconnecting when pgod closes it. Then it prints what it saw as JSON.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections import Counter
from typing import Any

import asyncssh

RAW, UNKNOWN, IDLE = 400, 30, 30


async def main(port: int, src: str, unknown_key: str, valid_key: str) -> None:
    seen: Counter[str] = Counter()
    stop = asyncio.Event()
    bad, good = asyncssh.read_private_key(unknown_key), asyncssh.read_private_key(valid_key)

    def connect(key: asyncssh.SSHKey) -> Any:
        return asyncssh.connect("127.0.0.1", port, local_addr=(src, 0), username="mallory",
                                client_keys=[key], known_hosts=None, agent_path=None,
                                config=[], preferred_auth=["publickey"], login_timeout=60)

    async def raw() -> None:
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port,
                                                               local_addr=(src, 0))
            except OSError:
                seen["raw_failed"] += 1
                await asyncio.sleep(0.5)
                continue
            seen["raw_open"] += 1
            try:  # never answer: wait for pgod to drop the connection
                while await reader.read(4096):
                    pass
                seen["raw_dropped"] += 1
            except OSError:
                seen["raw_dropped"] += 1
            finally:
                writer.close()

    async def unknown() -> None:
        while not stop.is_set():
            try:
                async with connect(bad):
                    seen["unknown_let_in"] += 1
            except asyncssh.PermissionDenied:
                seen["unknown_refused"] += 1
            except (OSError, asyncssh.Error):
                seen["unknown_dropped"] += 1  # closed at once: the source is full
                await asyncio.sleep(0.2)

    async def idle() -> None:
        while not stop.is_set():
            try:
                conn = await connect(good)
            except (OSError, asyncssh.Error):
                seen["idle_dropped"] += 1
                await asyncio.sleep(0.2)
                continue
            seen["idle_logged_in"] += 1
            t0 = time.monotonic()
            try:
                await asyncio.wait_for(conn.wait_closed(), 60)
                seen["idle_closed_by_pgod"] += 1
                seen["idle_seconds"] = max(seen["idle_seconds"], int(time.monotonic() - t0))
            except TimeoutError:
                seen["idle_kept"] += 1
                conn.close()

    tasks = [asyncio.create_task(f()) for f, n in ((unknown, UNKNOWN), (idle, IDLE))
             for _ in range(n)]
    await asyncio.sleep(1)  # the logins first, then the silent connections fill the rest
    tasks += [asyncio.create_task(raw()) for _ in range(RAW)]
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    print("flooding", flush=True)
    await stop.wait()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(json.dumps(dict(seen)), flush=True)


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]))
