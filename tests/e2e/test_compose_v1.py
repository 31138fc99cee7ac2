"""The same tracking with Compose v1 (`docker-compose`), which pgod uses where v2 is
missing (forced here with PGO_COMPOSE=v1)."""

from __future__ import annotations

from tests.e2e import harness as h


def test_v1_deploy_redeploy_and_reload_false(base, upstream, projects, pgods):
    name = h.unique()
    projects.append(name)
    pgod = h.Pgod(base, [{"name": name, "user": h.USER, "repository": upstream.url}],
                  env={"PGO_COMPOSE": "v1"})
    pgods.append(pgod.start())
    pgod.wait_log(r"compose is `docker-compose`")
    first = h.wait_until(lambda: h.container_ids(name), what="first deploy")
    assert h.http_get_in(name, "web").strip() == "hello from pgo"
    upstream.write("compose.yaml", h.WEB.replace('"8080"]', '"8080"]\n    environment: [V=2]'))
    commit = upstream.commit("v2")
    pgod.wait_log(rf"\[{name}\] deploying commit {commit[:8]}")
    second = h.wait_until(lambda: h.container_ids(name) - first, what="a new container")
    assert "V=2" in h.inspect(next(iter(second)))["Config"]["Env"]
    upstream.write("compose.yaml", h.WEB.replace('"8080"]', '"8080"]\n    environment: [V=3]')
                   + "x-pgo:\n  reload: false\n")
    commit = upstream.commit("v3, no reload")
    pgod.wait_log(rf"\[{name}\] commit {commit[:8]} taken; x-pgo reload is false")
    assert h.container_ids(name) == second
