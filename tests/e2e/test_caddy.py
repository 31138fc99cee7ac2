"""The Caddy import end to end: a real Caddy (Debian's binary in pgoimg/caddy:1, built by
tests/images.sh) in a root pgo service that imports the snippet pgod writes into its
checkout, and a team's busybox httpd routed by `urls`, both on a shared external network.

Requests come from a throw-away container on that network: nothing is published on the
host. Caddy serves a site address without a scheme over HTTPS (here with its internal CA,
`local_certs`), so the client resolves the site name to Caddy's address and sends it as
both the TLS server name and the Host header."""

from __future__ import annotations

import signal
import subprocess

from tests.e2e import harness as h

CADDYFILE = """\
{
\tlocal_certs
}
import /etc/caddy/Caddyfile-import
"""


def caddy_compose(network: str, name: str) -> str:
    # the directory is mounted, not the file: pgod replaces the import atomically (a new
    # inode), which a single-file bind mount would never show. The compose service is named
    # like the pgo service: the reload line `NAME//exec CMD` runs CMD in compose service NAME
    return f"""\
services:
  {name}:
    image: pgoimg/caddy:1
    command: ["caddy", "run", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"]
    volumes:
      - ./caddy:/etc/caddy:ro
    networks: [proxy]
networks:
  proxy:
    external: true
    name: {network}
"""


def web_compose(network: str) -> str:
    return h.WEB + f"""\
    networks: [default, proxy]
networks:
  proxy:
    external: true
    name: {network}
"""


def fetch(network: str, project: str, site: str) -> str:
    """GET https://SITE/ through Caddy, from a container on the shared network."""
    ids = h.container_ids(project)
    if not ids:
        return ""
    nets = h.inspect(next(iter(ids)))["NetworkSettings"]["Networks"]
    ip = (nets.get(network) or {}).get("IPAddress")
    if not ip:
        return ""
    # (no -T: busybox 1.35's wget crashes on a timeout with https)
    try:
        r = h.run("docker", "run", "--rm", "--network", network, "--add-host", f"{site}:{ip}",
                  h.IMAGE, "wget", "-q", "-O", "-", "--no-check-certificate",
                  "--header", f"Host: {site}", f"https://{site}/", check=False, timeout=60)
    except subprocess.TimeoutExpired:
        return ""
    return r.stdout


def routed(network: str, project: str, site: str, timeout: float = 90) -> None:
    try:
        h.wait_until(lambda: "hello from pgo" in fetch(network, project, site), timeout,
                     f"{site} through caddy")
    except AssertionError as e:
        ids = sorted(h.container_ids(project))
        logs = h.run("docker", "logs", "--tail", "30", ids[0], check=False) if ids else None
        raise AssertionError(f"{e}\n--- caddy ---\n{logs.stderr if logs else 'not running'}"
                             ) from None


def test_caddy_routes_urls_and_follows_a_config_reload(base, projects, pgods):
    assert h.run("docker", "image", "inspect", "pgoimg/caddy:1", check=False).returncode == 0, \
        "pgoimg/caddy:1 is missing: install Debian's caddy and run tests/images.sh"
    network = h.unique("reverseproxy-")
    proxy, web = h.unique("cd"), h.unique("web")
    projects += [proxy, web]
    h.run("docker", "network", "create", network)
    pgod = None
    try:
        cup = h.Upstream(base, "caddy")
        cup.write("compose.yaml", caddy_compose(network, proxy))
        cup.write("caddy/Caddyfile", CADDYFILE)
        cup.write(".gitignore", "caddy/Caddyfile-import\n")
        cup.commit("caddy")
        wup = h.Upstream(base, "web")
        wup.write("compose.yaml", web_compose(network))
        wup.commit("web")

        reload_line = (f"localhost:{proxy}//exec caddy reload "
                       "--config /etc/caddy/Caddyfile --adapter caddyfile")
        caddy_svc = {"name": proxy, "user": "root", "repository": cup.url,
                     "import": "caddy/Caddyfile-import", "reload": reload_line}

        def web_svc(urls: dict[str, str]) -> dict[str, object]:
            return {"name": web, "user": h.USER, "repository": wup.url,
                    "networks": [network], "urls": urls}

        pgod = h.Pgod(base, [caddy_svc, web_svc({"site.test": "web:8080"})], interval="2s")
        pgods.append(pgod)
        pgod.start()
        for name in (proxy, web):
            pgod.wait_log(rf"\[{name}\] reconcile \(start\) done: deployed")
        imp = pgod.dir / proxy / "caddy" / "Caddyfile-import"
        assert imp.read_text() == "site.test {\n\treverse_proxy web:8080\n}\n"
        written = pgod.wait_log(rf"\[{proxy}\] Caddy import caddy/Caddyfile-import written")
        up = pgod.wait_log(rf"\[{proxy}\] reconcile \(start\) done")
        assert pgod.lines.index(written) < pgod.lines.index(up)  # before its first up
        routed(network, proxy, "site.test")
        caddy_ids = h.container_ids(proxy)

        # new urls by a config reload: the import is rewritten, caddy reloaded, not restarted
        pgod.write_config([caddy_svc, web_svc({"new.test": "web:8080"})])
        pgod.proc.send_signal(signal.SIGHUP)
        pgod.wait_log(rf"\[{proxy}\] Caddy import caddy/Caddyfile-import written", count=2)
        pgod.wait_log(rf"\[{proxy}\] reload in {proxy} \(exec caddy reload .*\) done")
        assert imp.read_text() == "new.test {\n\treverse_proxy web:8080\n}\n"
        routed(network, proxy, "new.test")
        h.wait_until(lambda: "hello from pgo" not in fetch(network, proxy, "site.test"), 60,
                     "site.test no longer routed")
        assert h.container_ids(proxy) == caddy_ids

        # upstream moves: git resets the checkout, the (ignored) import stays as it is
        cup.write("README", "the proxy\n")
        cup.commit("readme")
        pgod.wait_log(rf"\[{proxy}\] upstream moved")
        h.next_cycle(pgod, proxy)
        assert imp.read_text() == "new.test {\n\treverse_proxy web:8080\n}\n"
        assert pgod.count(r"Caddy import caddy/Caddyfile-import written") == 2
        assert "changed outside pgod" not in pgod.log()
        assert pgod.count(r"Traceback") == 0
    finally:
        if pgod is not None:
            pgod.stop()
        for p in (proxy, web):
            h.down_project(p)
        h.run("docker", "network", "rm", network, check=False)
