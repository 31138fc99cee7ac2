"""The Caddy import: the snippet's text and order, the write into a hostile checkout (never
out of it, atomic, only on change, owned by the service user), and the reload after a
rewrite, recorded at the runner's edge."""

from __future__ import annotations

import asyncio
import logging
import os
import stat
from pathlib import Path

import pytest

from pgo import caddy, config
from pgo.errors import PgoError
from pgo.service import Hooks, TrackedService
from tests.unit.fakes import FakeRunner
from tests.unit.test_nfs import MODEL, ROOTFS, tracked

UID, GID = 4242, 4343


def cfg(*services: config.Service) -> config.Config:
    return config.Config(path="pgo.toml", services=services)


def svc(name: str, urls: dict[str, str], **kw: object) -> config.Service:
    return config.Service(name=name, user="root", repository="/r",
                          urls=tuple(sorted(urls.items())), **kw)  # type: ignore[arg-type]


# -- the snippet ----------------------------------------------------------------------------

def test_snippet_routes_every_url_sorted_by_site() -> None:
    sites, problems = caddy.routes(cfg(
        svc("web", {"www.example.org": "web:8080", "example.org": "web:8080"}),
        svc("api", {"api.example.org": "api:5000"}),
        svc("db", {})))
    assert problems == []
    assert caddy.snippet(sites) == (
        "api.example.org {\n\treverse_proxy api:5000\n}\n"
        "example.org {\n\treverse_proxy web:8080\n}\n"
        "www.example.org {\n\treverse_proxy web:8080\n}\n")
    assert caddy.snippet([]) == ""


def test_a_site_claimed_twice_goes_to_the_first_service_by_name() -> None:
    sites, problems = caddy.routes(cfg(svc("zeta", {"x.org": "zeta:1"}),
                                       svc("alpha", {"x.org": "alpha:1"})))
    assert sites == [("x.org", "alpha:1")]
    assert problems == ["url 'x.org' of service zeta is already routed for service alpha; "
                        "left out of the Caddy import"]


# -- the write ------------------------------------------------------------------------------

@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    p = tmp_path / "checkout"
    p.mkdir()
    return p


def test_written_atomically_owned_by_the_user_only_on_change(checkout: Path) -> None:
    assert caddy.write_import(checkout, "Caddyfile-import", "a {\n}\n", UID, GID) == "created"
    f = checkout / "Caddyfile-import"
    st = f.stat()
    assert f.read_text() == "a {\n}\n"
    assert stat.S_IMODE(st.st_mode) == 0o644
    if os.geteuid() == 0:
        assert (st.st_uid, st.st_gid) == (UID, GID)
    assert caddy.write_import(checkout, "Caddyfile-import", "a {\n}\n", UID, GID) == "unchanged"
    assert f.stat().st_ino == st.st_ino  # not touched
    assert caddy.write_import(checkout, "./Caddyfile-import", "b\n", UID, GID) == "replaced"
    assert f.read_text() == "b\n" and f.stat().st_ino != st.st_ino  # a new file, renamed
    assert sorted(p.name for p in checkout.iterdir()) == ["Caddyfile-import"]  # no temp left


def test_a_symlink_at_the_import_path_is_replaced_not_followed(tmp_path: Path,
                                                               checkout: Path) -> None:
    outside = tmp_path / "outside"
    outside.write_text("precious\n")
    (checkout / "Caddyfile-import").symlink_to(outside)
    assert caddy.write_import(checkout, "Caddyfile-import", "x\n", UID, GID) == "replaced"
    assert outside.read_text() == "precious\n"
    assert not (checkout / "Caddyfile-import").is_symlink()
    assert (checkout / "Caddyfile-import").read_text() == "x\n"


def test_a_symlinked_directory_is_never_entered(tmp_path: Path, checkout: Path) -> None:
    outside = tmp_path / "etc"
    outside.mkdir()
    (checkout / "caddy").symlink_to(outside)
    with pytest.raises(PgoError, match="'caddy' in the checkout is a symlink"):
        caddy.write_import(checkout, "caddy/Caddyfile-import", "x\n", UID, GID)
    assert list(outside.iterdir()) == []


def test_a_missing_directory_is_made_for_the_user(checkout: Path) -> None:
    assert caddy.write_import(checkout, "caddy/conf/import", "x\n", UID, GID) == "created"
    assert (checkout / "caddy" / "conf" / "import").read_text() == "x\n"
    if os.geteuid() == 0:
        assert (checkout / "caddy").stat().st_uid == UID


def test_a_fifo_is_replaced_without_waiting_and_a_directory_is_an_error(checkout: Path
                                                                      ) -> None:
    os.mkfifo(checkout / "Caddyfile-import")
    assert caddy.write_import(checkout, "Caddyfile-import", "x\n", UID, GID) == "replaced"
    assert (checkout / "Caddyfile-import").read_text() == "x\n"
    (checkout / "dir").mkdir()
    (checkout / "dir" / "keep").write_text("k")
    with pytest.raises(PgoError, match="Caddy import dir: can not write it"):
        caddy.write_import(checkout, "dir", "x\n", UID, GID)
    assert sorted(p.name for p in checkout.iterdir()) == ["Caddyfile-import", "dir"]


@pytest.mark.parametrize("bad", ["", "/etc/caddy", "../x", "a/../../x"])
def test_paths_out_of_the_checkout_are_refused(checkout: Path, bad: str) -> None:
    with pytest.raises(PgoError):
        caddy.write_import(checkout, bad, "x\n", UID, GID)


# -- the importer: rewrite, reload, retry -------------------------------------------------

@pytest.fixture
def fake(tmp_path: Path) -> FakeRunner:
    info = tmp_path / "mountinfo"
    info.write_text(ROOTFS)
    fake = FakeRunner(info)
    fake.push(MODEL)
    return fake


RELOAD = "localhost:proxy//exec caddy reload --config /etc/caddy/Caddyfile"


def setup(tmp_path: Path, fake: FakeRunner) -> tuple[caddy.Importer, dict[str, TrackedService],
                                                     list[config.Config]]:
    services: dict[str, TrackedService] = {}
    current = [cfg(svc("proxy", {}, import_="Caddyfile-import",
                       reload=config.parse_reload(RELOAD)),
                   svc("web", {"site.test": "web:8080"}))]
    importer = caddy.Importer(lambda: current[0], services.get)
    hooks = Hooks(before_up=[importer.ensure], after_sync=[importer.ensure],
                  after_deploy=[importer.after_deploy])
    for s in current[0].services:
        services[s.name] = tracked(tmp_path, fake, hooks, name=s.name, urls=s.urls,
                                   import_=s.import_, reload=s.reload)
    return importer, services, current


def execs(fake: FakeRunner) -> list[list[str]]:
    return [c.argv[c.argv.index("exec"):] for c in fake.calls if c.kind == "compose exec"]


def test_written_before_the_first_up_and_reloaded_once_it_runs(tmp_path: Path,
                                                               fake: FakeRunner) -> None:
    importer, services, _ = setup(tmp_path, fake)
    proxy = services["proxy"]
    assert asyncio.run(proxy.reconcile()) == "deployed"
    imp = tmp_path / "pgo" / "proxy" / "Caddyfile-import"
    assert imp.read_text() == "site.test {\n\treverse_proxy web:8080\n}\n"
    kinds = fake.kinds()
    assert kinds.index("compose up") < kinds.index("compose exec")  # not before it runs
    assert execs(fake) == [["exec", "-T", "proxy", "caddy", "reload", "--config",
                            "/etc/caddy/Caddyfile"]]
    exec_call = next(c for c in fake.calls if c.kind == "compose exec")
    assert exec_call.argv[exec_call.argv.index("--project-name") + 1] == "proxy"
    # an unchanged snippet: no rewrite, no reload on the next passes
    assert asyncio.run(proxy.reconcile()) == "unchanged"
    assert len(execs(fake)) == 1


def test_urls_changed_by_a_config_reload(tmp_path: Path, fake: FakeRunner,
                                         caplog: pytest.LogCaptureFixture) -> None:
    importer, services, current = setup(tmp_path, fake)
    proxy = services["proxy"]
    asyncio.run(proxy.reconcile())
    current[0] = cfg(current[0].services[0], svc("web", {"new.test": "web:8080"}))
    asyncio.run(importer.on_reload(current[0]))
    assert proxy.wake.is_set()  # its pass does the rewrite
    assert asyncio.run(proxy.reconcile()) == "unchanged"
    imp = tmp_path / "pgo" / "proxy" / "Caddyfile-import"
    assert imp.read_text() == "new.test {\n\treverse_proxy web:8080\n}\n"
    assert len(execs(fake)) == 2
    proxy.wake.clear()
    asyncio.run(importer.on_reload(current[0]))  # same urls: nothing to do
    assert not proxy.wake.is_set()

    # a reset of the checkout that brought back a tracked version: written again, reloaded
    imp.write_text("committed {\n}\n")
    with caplog.at_level(logging.WARNING):
        asyncio.run(proxy.reconcile())
    assert imp.read_text() == "new.test {\n\treverse_proxy web:8080\n}\n"
    assert "changed outside pgod" in caplog.text and ".gitignore" in caplog.text
    assert len(execs(fake)) == 3


def test_a_reload_target_not_running_is_retried_after_its_up(tmp_path: Path,
                                                             fake: FakeRunner) -> None:
    importer, services, current = setup(tmp_path, fake)
    line = config.parse_reload("localhost:web//exec kill -HUP 1")
    current[0] = cfg(svc("proxy", {}, import_="Caddyfile-import", reload=line),
                     current[0].services[1])
    services["proxy"] = tracked(tmp_path, fake, services["web"].hooks, name="proxy",
                                import_="Caddyfile-import", reload=line)
    asyncio.run(services["proxy"].reconcile())
    assert execs(fake) == []  # web does not run yet: owed, not lost
    asyncio.run(services["proxy"].reconcile())
    assert execs(fake) == []
    asyncio.run(services["web"].reconcile())  # web comes up: the owed reload runs
    assert execs(fake) == [["exec", "-T", "web", "kill", "-HUP", "1"]]


def test_a_failing_reload_is_one_log_line(tmp_path: Path, fake: FakeRunner,
                                          caplog: pytest.LogCaptureFixture) -> None:
    fake.fail["compose exec"] = (1, "adapting config: Caddyfile:3: unknown directive\n")
    _, services, _ = setup(tmp_path, fake)
    with caplog.at_level(logging.INFO):
        assert asyncio.run(services["proxy"].reconcile()) == "deployed"
    failed = [r.getMessage() for r in caplog.records if "reload in proxy" in r.getMessage()]
    assert failed == ["[proxy] reload in proxy (exec caddy reload --config "
                      "/etc/caddy/Caddyfile) failed: exit status 1: adapting config: "
                      "Caddyfile:3: unknown directive"]


def test_a_hostile_import_path_fails_the_pass_in_one_line(tmp_path: Path,
                                                          fake: FakeRunner) -> None:
    _, services, _ = setup(tmp_path, fake)
    proxy = services["proxy"]
    asyncio.run(proxy.reconcile())
    imp = tmp_path / "pgo" / "proxy" / "Caddyfile-import"
    imp.unlink()
    imp.mkdir()
    assert asyncio.run(proxy.reconcile()) == "failed"
    assert proxy.state.last_error.startswith("Caddy import Caddyfile-import: can not write it")
