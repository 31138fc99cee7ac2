"""pgo.toml parsing: the original's format parses; every mistake is one line naming the
file, the service and the key."""

from __future__ import annotations

import pytest

from pgo import config
from pgo.errors import ConfigError

ORIGINAL = '''
[[services]]
name = "pgo"
user = "miek"
repository = "https://github.com/miekg/pgo"
registries = [ "user:authtoken@registry" ]
compose = "compose.yaml"
branch = "main"
env = [ "MYENV=bla", "OTHERENV=bliep" ]
urls = { "pgo.science.ru.nl" = "pgo:5007" }
networks = [ "reverseproxy" ]
# import = "Caddyfile-import"
# reload = "localhost:caddy//exec caddy reload --config /etc/caddy/Caddyfile --adapter caddyfile"
# mount =  "nfs://server.example.org/share"
'''


def parse(text: str) -> config.Config:
    return config.parse(text, "pgo.toml", known_user=lambda u: u != "nobody-here")


def test_original_example_parses() -> None:
    cfg = parse(ORIGINAL)
    (s,) = cfg.services
    assert (s.name, s.user, s.branch, s.compose) == ("pgo", "miek", "main", "compose.yaml")
    assert s.registries == (config.Registry("user", "authtoken", "registry"),)
    assert s.env == (("MYENV", "bla"), ("OTHERENV", "bliep"))
    assert s.urls == (("pgo.science.ru.nl", "pgo:5007"),)
    assert s.networks == ("reverseproxy",)
    assert "authtoken" in s.secrets() and "bla" in s.secrets()
    assert "authtoken" not in repr(s.registries)


def test_commented_keys_parse_when_set() -> None:
    text = ORIGINAL.replace("# import", "import").replace("# reload", "reload") \
        .replace("# mount", "mount")
    (s,) = parse(text).services
    assert s.import_ == "Caddyfile-import"
    assert s.reload == config.Reload(
        "localhost", "caddy",
        ("caddy", "reload", "--config", "/etc/caddy/Caddyfile", "--adapter", "caddyfile"))
    assert s.mount == "nfs://server.example.org/share"


def test_defaults() -> None:
    (s,) = parse('[[services]]\nname = "a"\nuser = "u"\nrepository = "/r"\n').services
    assert s.branch == "main" and s.compose is None and s.env == () and s.registries == ()


def test_token_only_registry_uses_service_user() -> None:
    (s,) = parse('[[services]]\nname="a"\nuser="u"\nrepository="/r"\n'
                 'registries=["tok@127.0.0.1:5000"]\n').services
    assert s.registries == (config.Registry("u", "tok", "127.0.0.1:5000"),)


def test_repository_credentials_are_secret_and_hidden() -> None:
    (s,) = parse('[[services]]\nname="a"\nuser="u"\n'
                 'repository="https://oauth2:tok3n@gitlab.example.org/x.git"\n').services
    assert "oauth2:tok3n" in s.secrets()
    assert "tok3n" not in s.display_repository()


BASE = '[[services]]\nname = "svc"\nuser = "u"\nrepository = "/r"\n'


@pytest.mark.parametrize(("text", "expect"), [
    (BASE + 'colour = "blue"\n', "service svc: key 'colour': unknown key"),
    (BASE + "env = \"A=1\"\n", "service svc: key 'env': must be a list, not string"),
    (BASE + "env = [\"NOEQUALS\"]\n", "service svc: key 'env'"),
    (BASE + "env = [\"1A=x\"]\n", "service svc: key 'env': not a valid variable name"),
    (BASE + BASE, "service svc: key 'name': duplicate service name"),
    ('[[services]]\nuser = "u"\nrepository = "/r"\n', "service #1: key 'name': missing"),
    ('[[services]]\nname = "a"\nrepository = "/r"\n', "service a: key 'user': missing"),
    ('[[services]]\nname = "a"\nuser = "u"\n', "service a: key 'repository': missing"),
    (BASE + 'urls = { "x.org" = "frontend" }\n', "service svc: key 'urls': target of 'x.org'"),
    (BASE + 'urls = { "x.org" = "http://frontend:80" }\n', "key 'urls'"),
    (BASE + 'mount = "smb://server/share"\n', "service svc: key 'mount': must be an nfs://"),
    (BASE + 'reload = "localhost:caddy//ps"\n', "service svc: key 'reload': must be an exec"),
    (BASE + 'reload = "caddy reload"\n', "key 'reload'"),
    (BASE.replace('"u"', '"nobody-here"'), "service svc: key 'user': no such user"),
    (BASE.replace('"svc"', '"Bad Name"'), "key 'name': must be lowercase"),
    (BASE + 'branch = "--upload-pack=x"\n', "key 'branch'"),
    (BASE + 'compose = "../../etc/compose.yaml"\n', "key 'compose'"),
    (BASE + 'registries = ["nohost"]\n', "key 'registries'"),
    (BASE + 'networks = ["ok", 3]\n', "key 'networks'"),
    (BASE + 'webhook_secret = "short"\n', "key 'webhook_secret'"),
    ('verbose = true\n' + BASE, "unknown top-level key 'verbose'"),
    ("[[services]\nname=", "not valid TOML"),
    (BASE.replace('"/r"', '"--upload-pack=touch /x"'), "key 'repository'"),
])
def test_each_mistake_is_one_clear_line(text: str, expect: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse(text)
    msg = str(e.value)
    assert msg.startswith("pgo.toml: ")
    assert expect in msg
    assert "\n" not in msg


def test_name_may_not_start_with_another_services_prefix() -> None:
    text = BASE + BASE.replace('"svc"', '"svc_db"')
    with pytest.raises(ConfigError, match="service svc_db: key 'name': starts with 'svc_'"):
        parse(text)


def test_only_one_import() -> None:
    text = BASE + 'import = "a"\n' + BASE.replace("svc", "two") + 'import = "b"\n'
    with pytest.raises(ConfigError, match="service two: key 'import'"):
        parse(text)


def test_unreadable_file(tmp_path) -> None:
    with pytest.raises(ConfigError, match="can not read"):
        config.load(tmp_path / "missing.toml")


# -- notify ----------------------------------------------------------------------------

SECRET_URL = "json://hookuser:hunter2-pass@127.0.0.1:9/path?-X-Token=t0psecret"


def test_notify_default_and_per_service() -> None:
    text = (f'notify = ["{SECRET_URL}"]\n' + BASE
            + BASE.replace('"svc"', '"own"') + 'notify = ["form://127.0.0.1:9/x"]\n'
            + BASE.replace('"svc"', '"quiet"') + "notify = []\n")
    cfg = parse(text)
    assert cfg.notify == (SECRET_URL,)
    assert cfg.notify_urls("svc") == (SECRET_URL,)  # the default
    assert cfg.notify_urls("own") == ("form://127.0.0.1:9/x",)
    assert cfg.notify_urls("quiet") == ()  # an empty list of its own: none
    assert cfg.notify_urls("nosuch") == ()
    assert cfg.get("svc").notify is None  # type: ignore[union-attr]
    own = cfg.get("own")
    assert own is not None and "form://127.0.0.1:9/x" in own.secrets()
    # URLs may carry credentials: never in a repr (a debug line, a traceback)
    assert "hunter2" not in repr(cfg) and "127.0.0.1:9/x" not in repr(own)


def test_a_go_pgo_file_parses_without_notify() -> None:
    cfg = parse(ORIGINAL)
    assert cfg.notify == () and cfg.notify_urls("pgo") == ()


@pytest.mark.parametrize(("text", "expect"), [
    ('notify = "json://127.0.0.1/"\n' + BASE, "pgo.toml: key 'notify': must be a list"),
    ("notify = [3]\n" + BASE, "pgo.toml: key 'notify': entry 1 must be a string"),
    ('notify = ["json://127.0.0.1/", "https://user:hunter2-pass@example.org/x"]\n' + BASE,
     "pgo.toml: key 'notify': entry 2: not a URL Apprise understands (scheme 'https')"),
    (BASE + 'notify = ["foo://hunter2-pass@x"]\n',
     "pgo.toml: service svc: key 'notify': entry 1: not a URL Apprise understands "
     "(scheme 'foo')"),
    (BASE + 'notify = ["hunter2-pass"]\n',
     "pgo.toml: service svc: key 'notify': entry 1: not an Apprise URL (SCHEME://...)"),
    (BASE + 'notify = ["json://"]\n', "service svc: key 'notify': entry 1: not a URL"),
])
def test_notify_mistakes_name_the_key_never_the_url(text: str, expect: str,
                                                    capsys: pytest.CaptureFixture[str]
                                                    ) -> None:
    with pytest.raises(ConfigError) as e:
        parse(text)
    assert expect in str(e.value)
    assert "hunter2" not in str(e.value)
    out = capsys.readouterr()
    assert "hunter2" not in out.out + out.err  # Apprise's own complaints go nowhere
