"""Attacks by a team that owns one repository (or by nobody with a key), where a pure
function or the policy decides. Each test is an attack that once got through."""

from __future__ import annotations

import json
import os
import posixpath
from pathlib import Path
from typing import Any

import pytest

from pgo import compose_model, config
from pgo.compose import Model
from pgo.policy import DATA, NAMES, NETWORKS, Violation, judge, other_services
from pgo.policy.model import image_repository

SERVICE = "web"
CHECKOUT = "/var/lib/pgo/web"
DATADIR = "/var/lib/pgo-data/web"


def lexical(path: str) -> str:
    return "/" + posixpath.normpath(path).lstrip("/")


def check(m: dict[str, Any], others: tuple[str, ...] = (), networks: tuple[str, ...] = (),
          routes: dict[str, str] | None = None, service: str = SERVICE) -> list[Violation]:
    return judge(Model("", m), service, "team", networks, Path(CHECKOUT), Path(DATADIR),
                 routes, others=others, resolve=lexical)


def model(svc: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    return {"name": SERVICE, "services": {"app": {"image": "local/busybox:1", **(svc or {})}},
            **top}


def rules(m: dict[str, Any], others: tuple[str, ...] = (), networks: tuple[str, ...] = (),
          **kw: Any) -> set[str]:
    return {v.rule for v in check(m, others, networks, **kw)}


# -- a project name that is a prefix of another's: `web` and `web_api` -------------------------

def test_volume_of_a_service_whose_name_extends_ours_is_not_ours() -> None:
    others = ("web_api",)
    # web_api's volume `data` is web_api_data; web can name it, declare it external, or
    # get it from compose by the key `api_data`
    for vol in ({"external": True, "name": "web_api_data"}, {"name": "web_api_data"}):
        assert DATA in rules(model({"volumes": ["d:/d"]}, volumes={"d": vol}), others)
    m = model({"volumes": ["api_data:/d"]}, volumes={"api_data": {}})
    assert DATA in rules(m, others)
    # its own volumes, also ones with `_` in the key, stay its own
    m = model({"volumes": ["db_data:/d"]}, volumes={"db_data": {}})
    assert rules(m, others) == set()
    assert rules(m, ("we", "other", "webx_api")) == set()


def test_network_of_a_service_whose_name_extends_ours_is_not_ours() -> None:
    # (with an empty `networks` list in pgo.toml any shared network may be joined)
    m = model({"networks": ["api_default"]}, networks={"api_default": {}})
    assert rules(m, networks=("proxy",)) == set()
    assert rules(m, ("web_api",), ("proxy",)) != set()  # web_api's default network


def test_another_projects_network_is_never_joined_nor_made() -> None:
    """Whatever the `networks` list allows, a network that another pgo service's project
    makes (OTHER_*) is not joined, made first, nor named: a container there reaches that
    project's containers and answers for their names (an alias `db`)."""
    others = ("shop",)
    theirs = {"theirs": {"external": True, "name": "shop_default"}, "default": {}}
    m = model({"networks": {"default": None, "theirs": {"aliases": ["db"]}}}, networks=theirs)
    [v] = check(m, others)
    assert v.rule == NETWORKS and v.message == (
        "network theirs is 'shop_default', a network of service shop's project: its "
        "containers would be reachable from this one, and names there answerable by it")
    assert NETWORKS in rules(m, others, networks=("shop_default",))
    made = model({"networks": ["n"]}, networks={"n": {"name": "shop_default"}})
    assert NETWORKS in rules(made, others)
    assert NETWORKS in rules(model({"network_mode": "shop_default"}), others)
    # a network the administrator made stays joinable, even one called like a service
    proxy = model({"networks": ["default", "proxy"]},
                  networks={"proxy": {"external": True}, "default": {}})
    assert rules(proxy, ("proxy", "shop")) == set()
    # and a network the project makes is named as its own: any other name is one another
    # project could join
    [v] = check(model({"networks": ["n"]}, networks={"n": {"name": "shared"}}))
    assert v.rule == NETWORKS and "would be made as 'shared'" in v.message
    assert rules(model({"networks": ["n"]}, networks={"n": {"name": "web_n"}})) == set()


def test_judge_learns_the_other_services_from_the_data_dirs(tmp_path: Path) -> None:
    datadir, root = tmp_path / "data", tmp_path / "pgo"
    for d in (datadir / "web", datadir / "web_api", root / "web", root / ".pgo"):
        d.mkdir(parents=True)
    m = model({"volumes": ["d:/d"]}, volumes={"d": {"external": True, "name": "web_api_db"}})
    found = judge(Model("", m), "web", "team", (), root / "web", datadir / "web")
    assert [v.rule for v in found] == [DATA]
    assert "web_api_db" in str(found[0])
    assert other_services("web", root / "web", datadir / "web") == ("web_api",)


# -- a bind below a path a container can write: swapped for a symlink before a restart ----------

def bind(source: str, target: str, ro: bool = False) -> dict[str, Any]:
    return {"type": "bind", "source": source, "target": target, "read_only": ro}


def test_bind_below_a_writable_bind_is_refused() -> None:
    m = model({"volumes": [bind(DATADIR, "/data"), bind(f"{DATADIR}/db", "/db", ro=True)]})
    [v] = check(m)
    assert v.rule == DATA and "lies inside" in v.message
    # the same paths side by side, or the outer one read-only: nothing can be swapped
    m = model({"volumes": [bind(DATADIR, "/data", ro=True), bind(f"{DATADIR}/db", "/db")]})
    assert rules(m) == set()
    m = model({"volumes": [bind(f"{DATADIR}/a", "/a"), bind(f"{DATADIR}/ab", "/ab")]})
    assert rules(m) == set()
    m = model({"volumes": [bind(DATADIR, "/data"), bind(DATADIR, "/again")]})
    assert rules(m) == set()


def test_file_or_volume_device_below_a_writable_bind_is_refused() -> None:
    writer = {"volumes": [bind(f"{CHECKOUT}/conf", "/conf")]}
    m = model(writer, secrets={"s": {"file": f"{CHECKOUT}/conf/s.txt"}})
    assert DATA in rules(m)
    m = model(writer, volumes={"v": {"driver_opts": {
        "type": "none", "o": "bind", "device": f"{CHECKOUT}/conf/v"}}})
    assert DATA in rules(m)
    # a volume that binds the data dir is as writable as a bind of it
    m = model({"volumes": [bind(f"{DATADIR}/x", "/x", ro=True)]}, volumes={"v": {
        "driver_opts": {"type": "none", "o": "bind", "device": DATADIR}}})
    assert DATA in rules(m)


def test_a_volume_device_is_absolute_plain_and_never_the_checkouts_git() -> None:
    """dockerd takes a local volume's bind device as written: relative from its own working
    directory (/ under systemd), `..` after whatever symlink is on the way; and any
    container that mounts the volume may write it."""
    def vol(device: str) -> dict[str, Any]:
        return model({"volumes": ["v:/v"]}, volumes={"v": {"driver_opts": {
            "type": "none", "o": "bind", "device": device}}})
    assert rules(vol(f"{DATADIR}/v")) == set()
    assert rules(vol(f"{CHECKOUT}/conf")) == set()
    for device in ("etc", "./conf", "~/x", f"{CHECKOUT}/src/../../../etc", f"{DATADIR}/./v",
                   f"{CHECKOUT}/.git", f"{CHECKOUT}/.git/hooks", CHECKOUT, "/var/lib/pgo"):
        assert DATA in rules(vol(device)), device
    [v] = check(vol("etc"))
    assert v.message == ("volume v binds 'etc', a relative path: dockerd would take it from "
                         "its own working directory, not the checkout; write it absolute "
                         "(${PGO_DATA}/..., here /var/lib/pgo-data/web/...) or use a bind "
                         "mount")
    [v] = check(vol(f"{CHECKOUT}/.git"))
    assert "holds the checkout's .git" in v.message


def test_volume_subpath_may_not_leave_the_volume() -> None:
    def sub(path: str) -> dict[str, Any]:
        return model({"volumes": [{"type": "volume", "source": "v", "target": "/v",
                                   "volume": {"subpath": path}}]}, volumes={"v": {}})
    assert rules(sub("a/b")) == set()
    assert DATA in rules(sub("../other_vol"))
    assert DATA in rules(sub("/etc"))


# -- machine-wide names: image tags and container names -----------------------------------------

def test_a_build_can_not_replace_an_image_another_project_runs() -> None:
    built = {"build": {"context": CHECKOUT}}
    # the shared base image, an official image, another team's image, through a registry
    for image in ("local/busybox:1", "postgres:16", "web-api-app", "docker.io/library/web:1"):
        assert NAMES in rules(model({**built, "image": image}), ("web-api",)), image
    assert NAMES in rules(model({**built, "image": "web-app", "build": {
        "context": CHECKOUT, "tags": ["web-app:2", "local/busybox:1"]}}))
    # compose's own name for it, web-app, and names under the project's own
    for image in (None, "web-app:3", "web_app", "web/app", "localhost:5000/web/app@sha256:ab"):
        m = model({**built, "image": image})
        if image is None:
            del m["services"]["app"]["image"]
        assert rules(m, ("web-api", "we")) == set(), image


def test_a_project_whose_name_extends_ours_owns_its_names() -> None:
    # `web` must not name a compose service so that its containers and built images are
    # `web-api`'s (web-api-app-1, image web-api-app)
    m = {"name": SERVICE, "services": {"api-app": {"image": "local/busybox:1"}}}
    assert NAMES in rules(m, ("web-api",))
    assert rules(m, ("web-apix", "api")) == set()
    m = {"name": SERVICE, "services": {"x": {"image": "web-api-x", "build": {"context": "."}}}}
    assert NAMES in rules(m, ("web-api",))


def test_another_services_built_image_is_neither_run_nor_built_from() -> None:
    """Images a project builds may hold its code and baked-in configuration: another project
    runs none of them (`image: shop-web:latest`, the name compose gives shop's build), nor
    builds from them."""
    others = ("shop",)
    for image in ("shop-web:latest", "shop_web", "shop/web:2", "registry.example.org/shop-web"):
        [v] = check(model({"image": image}), others)
        assert v.rule == NAMES and v.message == (
            f"runs image {image}, a name of service shop's own: an image a project builds may "
            "hold its code and baked-in configuration")
    # official images and the project's own stay fine, even beside a service called postgres
    for image in ("postgres:16", "local/busybox:1", "web-app", "shopping/cart"):
        assert rules(model({"image": image}), ("shop", "postgres")) == set(), image
    for build in ({"cache_from": ["shop-web:latest"]},
                  {"cache_from": ["type=registry,ref=shop-web"]},
                  {"additional_contexts": {"base": "docker-image://shop-web"}},
                  {"dockerfile_inline": "FROM shop-web\nRUN true"},
                  {"dockerfile_inline": "FROM local/busybox:1\nCOPY --from=shop-api /a /a"},
                  {"dockerfile_inline": "FROM x\nRUN --mount=type=bind,from=shop-x true"}):
        m = model({"image": "web-app", "build": {"context": CHECKOUT, **build}})
        assert NAMES in rules(m, others), build
    m = model({"image": "web-app", "build": {"context": CHECKOUT, "cache_from": ["web-app"],
                                             "dockerfile_inline": "FROM a AS b\nFROM b"}})
    assert rules(m, others) == set()
    # and a service called postgres does not own the official image: it can not build it
    m = {"name": "postgres", "services": {"db": {"image": "postgres:16",
                                                 "build": {"context": CHECKOUT}}}}
    assert NAMES in rules(m, service="postgres")


def test_container_name_of_another_project() -> None:
    assert NAMES in rules(model({"container_name": "mail-web-1"}), ("mail",))
    assert NAMES in rules(model({"container_name": "web_api_app_1"}), ("web_api",))
    for name in ("web-app", "postgres", "webmail"):
        assert rules(model({"container_name": name}), ("mail", "web_api")) == set()


def test_image_repository() -> None:
    for ref, repo in (("postgres", "postgres"), ("postgres:16", "postgres"),
                      ("Team/App:1@sha256:ab", "team/app"), ("localhost/web", "web"),
                      ("registry.example.org:5000/web/app:2", "web/app"),
                      ("localhost:5000/web", "web"), ("web/app:x/y", "web/app:x/y")):
        assert image_repository(ref) == repo, ref


# -- files the compose tool reads on the host into the container ---------------------------------

def test_env_and_label_files_outside_are_refused() -> None:
    for key in ("env_file", "label_file"):
        assert DATA in rules(model({key: ["/etc/os-release"]}))
        assert DATA in rules(model({key: [f"{CHECKOUT}/${{F:-../../../etc/passwd}}"]}))
        assert rules(model({key: [f"{CHECKOUT}/app.env", f"{DATADIR}/x.env"]})) == set()


def test_the_files_compose_read_are_put_back_into_the_model() -> None:
    printed = {"services": {"app": {"environment": {"A": "1"}}, "db": {}}}
    raw = {"services": {"app": {"env_file": [{"path": "/etc/os-release", "required": True}],
                                "label_file": ["/x/l"]},
                        "db": {"image": "x"}, "gone": {"env_file": ["/y"]}}}
    out = compose_model.with_read_files(printed, raw)
    assert out["services"]["app"]["env_file"] == ["/etc/os-release"]
    assert out["services"]["app"]["label_file"] == ["/x/l"]
    assert out["services"]["db"] == {} and "gone" not in out["services"]
    assert compose_model.with_read_files(printed, "not a model") is printed


def test_env_file_paths_are_the_ones_compose_opens() -> None:
    """Before interpolation compose makes `${PGO_DATA}/a.env` relative to the project
    (/co/${PGO_DATA}/a.env); after it, the path is absolute. The path judged is the one
    compose opens: pgod's own variables put in, the rest refused as written."""
    env = {"PGO_DATA": "/data/web", "PGO_SERVICE": "web", "OTHER": "/etc"}
    written = ["${PGO_DATA}/a.env", "./${PGO_DATA}/b.env", "conf/$PGO_SERVICE.env",
               "${OTHER}/passwd", "$${PGO_DATA}/c.env", "plain.env"]
    raw = ["/co/${PGO_DATA}/a.env", "/co/${PGO_DATA}/b.env", "/co/conf/$PGO_SERVICE.env",
           "/co/${OTHER}/passwd", "/co/$${PGO_DATA}/c.env", "/co/plain.env"]
    printed: dict[str, Any] = {"services": {"app": {}}}
    out = compose_model.with_read_files(printed, {"services": {"app": {"env_file": raw}}},
                                  {"services": {"app": {"env_file": written}}}, env)
    assert out["services"]["app"]["env_file"] == [
        "/data/web/a.env", "/co/data/web/b.env", "/co/conf/web.env", "/co/${OTHER}/passwd",
        "/co/$${PGO_DATA}/c.env", "/co/plain.env"]
    assert DATA in rules(model({"env_file": ["/co/${OTHER}/passwd"]}))


def test_env_file_texts_are_interpolated_by_compose_not_by_pgod() -> None:
    """Beyond pgod's own variables, what a path holding ${...} stands for is asked of compose
    (a document of label values it interpolates as it does the project): the result is
    taken as compose gives it, and judged like any path."""
    written = {"services": {"app": {"env_file": ["${A:-.}/x.env", "plain.env",
                                                 {"path": "$${A}/y", "required": False}],
                                    "label_file": ["${A:-.}/x.env"]}, "db": "odd"}}
    texts = compose_model.read_file_texts(written)
    assert texts == ["${A:-.}/x.env", "$${A}/y"]
    doc = json.loads(compose_model.interpolation_doc(texts))
    assert doc["services"]["pgo-interpolate"]["labels"] == {"pgo.0": "${A:-.}/x.env",
                                                            "pgo.1": "$${A}/y"}
    printed = {"services": {"pgo-interpolate": {"labels": {"pgo.0": "conf/x.env",
                                                           "pgo.1": "${A}/y"}}}}
    got = compose_model.interpolated_texts(texts, printed)
    assert got == {"${A:-.}/x.env": "conf/x.env", "$${A}/y": "${A}/y"}
    assert compose_model.interpolated_texts(texts, {"services": []}) == {}
    raw = {"services": {"app": {"env_file": ["/co/${A:-.}/x.env", "/co/$${A}/y"]}}}
    out = compose_model.with_read_files({"services": {"app": {}}}, raw,
                                        {"services": {"app": {"env_file": texts}}}, {}, got)
    # relative: joined to the directory compose made it relative to; still `$`: as written
    assert out["services"]["app"]["env_file"] == ["/co/conf/x.env", "/co/$${A}/y"]


# -- names on a shared network ---------------------------------------------------------------

def test_a_container_can_not_answer_for_another_services_url_target() -> None:
    """Caddy sends shop's urls to `frontend:8080` on the shared network `proxy`. Docker's DNS
    answers there for every project's service names, container names and aliases: a
    container of `web` called `frontend` would get part of shop's traffic."""
    routes = {"frontend": "shop"}
    p: dict[str, Any] = {"networks": ("proxy",), "routes": routes}
    proxy = {"proxy": {"external": True}, "default": {}}

    def on_proxy(name: str, svc: dict[str, Any]) -> dict[str, Any]:
        return {"name": SERVICE, "networks": proxy, "services": {
            name: {"image": "local/busybox:1", "networks": {"default": None, "proxy": None},
                   **svc}}}

    assert NETWORKS in rules(on_proxy("frontend", {}), **p)
    assert NETWORKS in rules(on_proxy("Frontend", {}), **p)
    assert NETWORKS in rules(on_proxy("app", {"container_name": "frontend"}), **p)
    m = on_proxy("app", {})
    m["services"]["app"]["networks"]["proxy"] = {"aliases": ["www", "frontend"]}
    assert NETWORKS in rules(m, **p)
    m["services"]["app"]["network_mode"] = "proxy"
    del m["services"]["app"]["networks"]
    m["services"]["app"]["container_name"] = "frontend"
    assert NETWORKS in rules(m, **p)
    # the same names on the project's own network only, or its own url targets: fine
    own = {"name": SERVICE, "services": {"frontend": {"image": "local/busybox:1"}}}
    assert rules(own, **p) == set()
    assert rules(on_proxy("app", {}), **p) == set()
    assert rules({**on_proxy("frontend", {}), "name": "shop"}, networks=("proxy",),
                 service="shop") == set()


def test_routes_of_others_come_from_the_config() -> None:
    def svc(name: str, **urls: str) -> config.Service:
        return config.Service(name=name, user="u", repository="/r",
                              urls=tuple(urls.items()))
    cfg = config.Config(path="pgo.toml", services=(
        svc("shop", a="Frontend:8080", b="api:9000"), svc("web", c="web:80"), svc("x")))
    assert cfg.routes_of_others("web") == {"frontend": "shop", "api": "shop"}
    assert cfg.routes_of_others("shop") == {"web": "web"}


# -- labels compose acts on: a container of another project ---------------------------------

def test_labels_that_tell_compose_the_project_are_refused() -> None:
    """Compose v1 lets a service's `labels` override its own com.docker.compose.project:
    the container is then another project's (listed, stopped and removed by it, counted by
    pgod as its). Any com.docker.compose.* or com.docker.stack.* label is refused, on a
    service, its build or deploy, a volume or a network; other labels are the team's."""
    for labels in ({"com.docker.compose.project": "shop"},
                   ["com.docker.compose.service=db"],
                   {"COM.DOCKER.COMPOSE.ONEOFF": "True"},
                   {"com.docker.stack.namespace": "shop"}):
        assert rules(model({"labels": labels})) == {NAMES}, labels
        assert rules(model({"build": {"context": CHECKOUT, "labels": labels},
                            "image": "web-app"})) == {NAMES}, labels
        assert rules(model({"deploy": {"labels": labels}})) == {NAMES}, labels
        assert rules(model(volumes={"v": {"labels": labels}})) == {NAMES}, labels
        assert rules(model(networks={"n": {"labels": labels}})) == {NAMES}, labels
    [v] = check(model({"labels": {"com.docker.compose.project": "shop"}}))
    assert v.message == ("label com.docker.compose.project: a label compose or docker stack "
                         "sets itself, to tell which project a container, volume or network "
                         "is of; name yours otherwise")
    ok = {"org.opencontainers.image.source": "x", "traefik.enable": "true",
          "com.docker.composer": "x", "com.example.compose.project": "y"}
    assert rules(model({"labels": ok})) == set()


# -- logs: the host's rotation ------------------------------------------------------------------

def test_log_options_keep_the_hosts_disk_bounded() -> None:
    def log(driver: str | None = None, **options: Any) -> set[str]:
        logging: dict[str, Any] = {"options": options} if options else {}
        if driver:
            logging["driver"] = driver
        return rules(model({"logging": logging}))
    from pgo.policy import PRIVILEGES, UNKNOWN
    # bounded: the host's default, the local driver's own, or sizes within 1 GiB in all
    for ok in (log(), log("local"), log("journald"), log("none"), log("syslog"),
               log("json-file", **{"max-size": "10m", "max-file": "3"}),
               log("json-file", **{"max-size": "200m"}),  # (max-file 1; 5 assumed at most)
               log(**{"max-size": "10m"}), log(**{"max-size": "50M", "max-file": 20}),
               log("local", **{"max-size": "100m", "max-file": "10", "compress": "false"}),
               log("local", **{"max-file": "10"}),
               log(**{"mode": "non-blocking", "max-buffer-size": "4m"}),
               log("json-file", **{"max-size": "1k", "tag": "{{.Name}}", "labels": "a"})):
        assert ok == set()
    for driver, options in (("json-file", {}),  # grows without end
                            ("json-file", {"max-file": "3"}),
                            ("json-file", {"max-size": "-1"}),
                            ("json-file", {"max-size": "1g", "max-file": "10"}),
                            (None, {"max-size": "500m"}),  # x 5 files the host may keep
                            (None, {"max-file": "100"}),
                            ("local", {"max-size": "2g"}),
                            ("local", {"max-file": "1000"}),
                            (None, {"mode": "non-blocking", "max-buffer-size": "1g"})):
        assert log(driver, **options) == {PRIVILEGES}, (driver, options)
    for driver, options in (("json-file", {"max-size": "ten"}),
                            ("json-file", {"max-size": "10m", "max-file": "x"}),
                            (None, {"mode": "sometimes"}),
                            ("local", {"fluentd-address": "x"}),
                            ("syslog", {"syslog-tls-cert": "/etc/shadow"})):
        assert UNKNOWN in log(driver, **options), (driver, options)
    [v] = check(model({"logging": {"driver": "json-file", "options": {
        "max-size": "1g", "max-file": "10"}}}))
    assert v.message == ("log driver json-file: max-size 1g x max-file 10 lets the logs take "
                         "10.0 GiB of the host's disk; at most 1024 MiB of logs per container "
                         "(max-size x max-file)")


# -- Dockerfiles in the build context: FROM another service's image -----------------------------

def build_in(tmp_path: Path, dockerfile: str, build: dict[str, Any] | None = None,
             name: str = "Dockerfile") -> tuple[Path, list[Violation]]:
    checkout, data = tmp_path / "pgo" / "web", tmp_path / "data" / "web"
    (checkout / "app").mkdir(parents=True, exist_ok=True)
    data.mkdir(parents=True, exist_ok=True)
    (checkout / "app" / name).write_text(dockerfile)
    m = model({"image": "web-app", "build": {"context": f"{checkout}/app",
                                             "dockerfile": name, **(build or {})}})
    return checkout, judge(Model("", m), "web", "team", (), checkout, data,
                           others=("shop",))


def test_a_dockerfile_in_the_context_may_not_build_from_another_services_image(
        tmp_path: Path) -> None:
    for text in ("FROM shop-web\n",
                 "FROM local/busybox:1\nCOPY --from=shop-api:2 /app /app\n",
                 "FROM local/busybox:1\nRUN --mount=type=bind,from=shop-db,target=/x true\n",
                 "# syntax=shop-frontend:1\nFROM local/busybox:1\n",
                 "ARG BASE=shop-web\nFROM ${BASE}\n",
                 "ARG BASE\nFROM ${BASE:-shop-web}\n",
                 "FROM local/busybox:1\nONBUILD COPY --from=shop-web / /\n",
                 # BuildKit's own parser: an escape directive, a comment inside a continuation
                 "# escape=`\nFROM `\n# the base\n  shop-web\n",
                 "FROM \\\n# the base\n  shop-web\n"):
        _, found = build_in(tmp_path, text)
        assert [v.rule for v in found] == [NAMES], text
        assert "a name of service shop's own" in found[0].message, text
    _, found = build_in(tmp_path, "FROM local/busybox:1\n", {"args": {
        "BUILDKIT_SYNTAX": "shop-frontend"}})
    assert [v.rule for v in found] == [NAMES]
    _, found = build_in(tmp_path, "ARG BASE=local/busybox:1\nFROM ${BASE}\n",
                        {"args": {"BASE": "shop-web"}})
    assert [v.rule for v in found] == [NAMES]
    # its own stages, official images and its own are fine; so is a heredoc saying FROM
    for text in ("FROM local/busybox:1 AS shop-web\nFROM shop-web\nCOPY --from=0 / /\n",
                 "FROM postgres:16\nCOPY --from=web-base / /\n",
                 "FROM local/busybox:1\nRUN <<EOF\nFROM shop-web\nEOF\n"):
        assert build_in(tmp_path, text)[1] == [], text
    # a name the policy can not expand is refused, not guessed
    for text in ('FROM "shop-web"\n', "ARG B=shop-web\nFROM ${B#x}\n", "\n"):
        _, found = build_in(tmp_path, text)
        assert [v.rule for v in found] == [NAMES], text
        assert "the policy can not tell which images the build reads" in found[0].message


def test_a_dockerfile_is_read_where_it_really_lies_and_never_through_a_new_symlink(
        tmp_path: Path) -> None:
    from pgo.policy import Unresolvable, read_file
    checkout, found = build_in(tmp_path, "FROM local/busybox:1\n")
    assert found == []
    dockerfile = checkout / "app" / "Dockerfile"
    assert read_file(str(dockerfile)) == b"FROM local/busybox:1\n"
    assert read_file(str(checkout / "app" / "missing")) is None
    # the real path, resolved before: a symlink put on the way since is not followed
    (checkout / "app" / "link").symlink_to(dockerfile)
    (checkout / "dirlink").symlink_to(checkout / "app")
    for path in (checkout / "app" / "link", checkout / "dirlink" / "Dockerfile"):
        with pytest.raises(Unresolvable, match="a symlink on the way"):
            read_file(str(path))
    os.mkfifo(checkout / "app" / "fifo")
    with pytest.raises(Unresolvable, match="not a regular file"):
        read_file(str(checkout / "app" / "fifo"))  # (opened as a bare handle: no wait)
    with pytest.raises(Unresolvable, match="larger than"):
        read_file(str(dockerfile), limit=4)
    # a Dockerfile committed as a symlink within the checkout is judged where it leads
    (checkout / "app" / "Other").write_text("FROM shop-web\n")
    (checkout / "app" / "Dockerfile.link").symlink_to("Other")
    m = model({"image": "web-app", "build": {"context": f"{checkout}/app",
                                             "dockerfile": "Dockerfile.link"}})
    found = judge(Model("", m), "web", "team", (), checkout, tmp_path / "data" / "web",
                  others=("shop",))
    assert [v.rule for v in found] == [NAMES]
    # one outside the checkout is refused as such, and never read
    (checkout / "app" / "Dockerfile.out").symlink_to("/etc/passwd")
    m["services"]["app"]["build"]["dockerfile"] = "Dockerfile.out"
    found = judge(Model("", m), "web", "team", (), checkout, tmp_path / "data" / "web",
                  others=("shop",))
    assert [v.rule for v in found] == [DATA]


def test_a_dockerfile_a_container_may_write_is_refused() -> None:
    """The build reads the Dockerfile again after its judgement, while the old containers
    run: one in a writable mount could be rewritten in between."""
    m = model({"image": "web-app", "volumes": [bind(f"{CHECKOUT}/app", "/app")],
               "build": {"context": f"{CHECKOUT}/app", "dockerfile": "Dockerfile"}})
    found = check(m)
    assert [v.rule for v in found] == [DATA]
    assert "make that mount read-only" in found[0].message
    m["services"]["app"]["volumes"] = [bind(f"{CHECKOUT}/app", "/app", ro=True)]
    assert check(m) == []


def test_the_dockerfiles_of_one_model_are_parsed_within_a_budget() -> None:
    """Every judgement runs in the one pgod: a model of many builds parses each Dockerfile
    text once, and 1 MiB of them at most."""
    line = "RUN echo " + "x" * 90 + "\n"
    services = {f"b{i}": {"image": f"web-b{i}", "build": {
        "context": CHECKOUT, "dockerfile_inline": f"FROM local/busybox:{i}\n" + line * 2500}}
        for i in range(5)}
    found = check({"name": SERVICE, "services": services})
    assert [v.rule for v in found] == [NAMES]
    assert "more than 1 MiB" in found[0].message
    same = {k: {**v, "build": {**v["build"], "dockerfile_inline": "FROM a\n" + line * 2500}}
            for k, v in services.items()}
    assert check({"name": SERVICE, "services": same}) == []
    many = "FROM a\n" + "".join(f"COPY --from=img{i} / /\n" for i in range(5000))
    [v] = check(model({"image": "web-app", "build": {"context": CHECKOUT,
                                                     "dockerfile_inline": many}}))
    assert v.rule == NAMES and "names more than 4096 images" in v.message
