"""Reading a compose model: what the compose tool printed, and the files it read for it.

pgo.compose.Project.config runs the compose tool; this module holds what that needs besides
running it, as plain functions: the limits on a model (MAX_MODEL, CONFIG_MEMORY), the YAML
reader run as a child, the env and label file paths compose really opens (with_read_files),
and the files compose reads to build the model (.env, include, extends: model_file_refs).
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from pgo.errors import ComposeError
from pgo.runner import PATH

# The largest compose model pgod judges, as compose prints it. Real compose files are tens
# of KiB (a project of 60 services: ~50 KiB), so 2 MiB leaves room for generated ones and
# inline configs, while bounding what one team's commit (or `pgoctl //load`) costs everyone:
# its JSON parses in ~40 ms, and the policy judges the worst model of that size (tens of
# thousands of services or mounts) in about half a second on a 2-core machine. (A 9.5 MB
# file, 800k items under an `x-` key, once held pgod's event loop for 24 s per judgement.)
MAX_MODEL = 2 << 20
# compose loads a model under this limit of its data memory (RLIMIT_DATA, by prlimit): a
# file it reads that never ends (/dev/zero as an env_file or include) ends it within a second
# instead of taking the machine's memory. (Measured: compose v2.40 printing a model of 12,000
# services, 2.7 MB as JSON, peaked at 300 MiB.)
CONFIG_MEMORY = 1 << 30
PRLIMIT = shutil.which("prlimit", path=PATH)
# The child that reads YAML for pgod (compose v1 prints nothing else) and answers in JSON.
YAML_TO_JSON = ("import json, sys, yaml\n"
                "load = getattr(yaml, 'CSafeLoader', yaml.SafeLoader)\n"
                "json.dump(yaml.load(sys.stdin.buffer, Loader=load), sys.stdout, default=str)\n")

# Service keys whose files the compose tool reads on the host (as the service's user) and
# inlines into the model it prints (`environment`, `labels`): the printed model no longer
# says which files they were.
READ_FILE_KEYS = ("env_file", "label_file")
# The variables pgod itself puts in compose's environment: they win over a .env file, so a
# path written with them is known before compose interpolates it.
KNOWN_VARS = ("PGO_DATA", "PGO_SERVICE")
VAR_RE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)\}|([A-Za-z_][A-Za-z0-9_]*))")


def with_read_files(model: dict[str, Any], raw: Any, written: Any = None,
                    env: Mapping[str, str] | None = None,
                    interpolated: Mapping[str, str] | None = None) -> dict[str, Any]:
    """`model` with each service's env_file and label_file paths put back as compose opens
    them, so that the policy can judge which host files the compose tool reads into the
    container. `raw` is compose's view before interpolation (`--no-interpolate`: absolute,
    `${...}` left as written); for a path with `${...}` in it, `written` (the same view with
    `--no-path-resolution`) tells what was written, and `interpolated` what compose made of
    that text (written -> interpolated, see read_file_texts); without it, the variables of
    `env` that pgod sets (PGO_DATA, PGO_SERVICE) are put in. A path that still holds `$` is
    left so (the policy refuses it). Compose v2 only: v1 inlines them even with
    --no-interpolate."""
    raw_services = raw.get("services") if isinstance(raw, dict) else None
    services = model.get("services")
    if not isinstance(raw_services, dict) or not isinstance(services, dict):
        return model
    written_services = written.get("services") if isinstance(written, dict) else None
    known = {k: v for k, v in (env or {}).items() if k in KNOWN_VARS}
    for name, raw_svc in raw_services.items():
        svc = services.get(name)
        if not isinstance(raw_svc, dict) or not isinstance(svc, dict):
            continue
        as_written = written_services.get(name) if isinstance(written_services, dict) else None
        for key in READ_FILE_KEYS:
            paths = _read_file_paths(raw_svc.get(key))
            if not paths:
                continue
            spelled = _read_file_paths(as_written.get(key)) if isinstance(as_written, dict) \
                else []
            if len(spelled) != len(paths):
                spelled = [None] * len(paths)
            svc[key] = [_opened_path(p, w, known, interpolated or {})
                        for p, w in zip(paths, spelled, strict=True)]
    return model


def read_file_texts(written: Any) -> list[str]:
    """The env and label file paths of compose's view as written (`--no-interpolate
    --no-path-resolution`) that hold `$`: the texts compose interpolates to open them."""
    services = written.get("services") if isinstance(written, dict) else None
    if not isinstance(services, dict):
        return []
    return list(dict.fromkeys(
        p for svc in services.values() if isinstance(svc, dict)
        for key in READ_FILE_KEYS for p in _read_file_paths(svc.get(key))
        if isinstance(p, str) and "$" in p))


# The one compose service of the document pgod has compose interpolate texts in.
INTERPOLATE = "pgo-interpolate"


def interpolation_doc(texts: list[str]) -> bytes:
    """A compose document (JSON is YAML) that holds `texts` as label values, for compose to
    interpolate as it interpolates the project's own files."""
    labels = {f"pgo.{i}": text for i, text in enumerate(texts)}
    return json.dumps({"services": {INTERPOLATE: {"image": INTERPOLATE,
                                                  "labels": labels}}}).encode()


def interpolated_texts(texts: list[str], printed: Any) -> dict[str, str]:
    """text -> what compose made of it, from its model of interpolation_doc(texts)."""
    services = printed.get("services") if isinstance(printed, dict) else None
    svc = services.get(INTERPOLATE) if isinstance(services, dict) else None
    labels = svc.get("labels") if isinstance(svc, dict) else None
    if not isinstance(labels, dict):
        return {}
    return {text: labels[f"pgo.{i}"] for i, text in enumerate(texts)
            if isinstance(labels.get(f"pgo.{i}"), str)}


def yaml_model(text: str, what: str) -> dict[str, Any]:
    try:
        return model_dict(yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    except yaml.YAMLError as e:
        lines = str(e).strip().splitlines()
        raise ComposeError(f"{what} printed unreadable YAML: {lines[-1] if lines else e}") \
            from None


def model_dict(data: Any) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ComposeError("compose config printed no model")
    return data


def interpolated_read_files(raw: Any) -> bool:
    """Whether an env or label file path of compose's uninterpolated view holds `$`."""
    services = raw.get("services") if isinstance(raw, dict) else None
    return isinstance(services, dict) and any(
        isinstance(p, str) and "$" in p
        for svc in services.values() if isinstance(svc, dict)
        for key in READ_FILE_KEYS for p in _read_file_paths(svc.get(key)))


def _read_file_paths(entries: Any) -> list[Any]:
    if not entries:
        return []
    return [e.get("path") if isinstance(e, dict) else e
            for e in (entries if isinstance(entries, list) else [entries])]


def _opened_path(resolved: Any, written: Any, env: Mapping[str, str],
                 interpolated: Mapping[str, str]) -> Any:
    """The path compose opens for an env or label file: `resolved` as compose made it
    absolute before interpolation; `written` as the compose file spells it; `interpolated`
    what compose made of written texts."""
    if not isinstance(resolved, str) or "$" not in resolved:
        return resolved
    if not isinstance(written, str):
        return resolved
    value = interpolated.get(written)
    if value is None:
        if "$$" in written:
            return resolved
        value = VAR_RE.sub(lambda m: env.get(m.group(1) or m.group(2), m.group(0)), written)
    if "$" in value:
        return resolved
    if value.startswith("/"):  # interpolated first, then taken as it is (absolute)
        return value
    # compose joined the written path to the directory it is relative to (and cleaned it,
    # as Go's filepath.Join does): take that directory back
    spelled = posixpath.normpath(written)
    if spelled.startswith("..") or not resolved.endswith("/" + spelled):
        return resolved
    return clean(posixpath.join(resolved[:-len(spelled) - 1], value))


def clean(path: str) -> str:
    """Go's filepath.Clean of an absolute path."""
    return "/" + posixpath.normpath(path).lstrip("/")


# The most model files pgod follows includes and extends through.
MAX_MODEL_FILES = 64
# Include paths and extends files compose fetches from the network instead of this machine.
REMOTE = ("git@", "github.com/")


def model_file_refs(doc: Any, wd: str, env: Mapping[str, str]
                     ) -> list[tuple[str, str, str | None]]:
    """(what, path, the directory it is relative to: None when it is not followed) of the
    files a compose file's `include` and `extends` make compose read."""
    if not isinstance(doc, dict):
        return []
    out: list[tuple[str, str, str | None]] = []

    def place(value: Any, base: str) -> tuple[str, bool]:
        text = VAR_RE.sub(lambda m: env.get(m.group(1) or m.group(2), m.group(0)), str(value))
        if "$" in text or "://" in text or text.startswith(REMOTE):
            return str(value), False
        return (text if text.startswith("/") else clean(posixpath.join(base, text))), True

    includes = doc.get("include")
    for entry in includes if isinstance(includes, list) else []:
        entry = {"path": entry} if isinstance(entry, str) else entry
        if not isinstance(entry, dict):
            continue
        paths = [place(p, wd) for p in _strings(entry.get("path"))]
        project = None
        if entry.get("project_directory"):
            project, local = place(entry["project_directory"], wd)
            out.append(("include project_directory", project, None))
            project = project if local else None
        elif paths and paths[0][1]:
            project = posixpath.dirname(paths[0][0])
        for path, local in paths:
            out.append(("include", path, (project or posixpath.dirname(path)) if local
                        else None))
        env_files = _strings(entry.get("env_file"))
        for env_file in env_files:
            out.append(("include env_file", place(env_file, wd)[0], None))
        if not env_files and project is not None:
            out.append((".env", posixpath.join(project, ".env"), None))
    services = doc.get("services")
    for svc in services.values() if isinstance(services, dict) else []:
        ext = svc.get("extends") if isinstance(svc, dict) else None
        if isinstance(ext, dict) and ext.get("file"):
            path, local = place(ext["file"], wd)
            out.append(("extends file", path, posixpath.dirname(path) if local else None))
    return out


def _strings(v: Any) -> list[str]:
    return [str(x) for x in (v if isinstance(v, list) else [v]) if x not in (None, "")]


def discovery_start(file: Path, workdir: Path, data: str | None) -> tuple[str, list[str]]:
    """The compose file, absolute, and the real directories pgod reads model files in."""
    roots = [os.path.realpath(workdir)] + ([os.path.realpath(data)] if data else [])
    return os.path.abspath(file), roots


def read_regular(path: str, roots: list[str]) -> bytes | None:
    """The bytes of a file that really lies in one of `roots` and is a regular file, else
    None; refused when it is larger than MAX_MODEL. Opened without blocking: a FIFO is not
    waited on."""
    real = os.path.realpath(path)
    if not any(real == r or real.startswith(r.rstrip("/") + "/") for r in roots):
        return None
    try:
        fd = os.open(real, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_size > MAX_MODEL:
            raise ComposeError(f"{path} is {st.st_size / 2**20:.1f} MiB; pgod reads compose "
                               f"files up to {MAX_MODEL >> 20} MiB")
        return f.read(MAX_MODEL + 1)


def regular_or_absent(files: list[tuple[str, str]]) -> None:
    """Compose would wait forever on a FIFO, or read a device without end."""
    for what, path in files:
        if "$" in path or "://" in path or path.startswith(REMOTE):
            continue
        try:
            st = os.stat(path)
        except OSError:
            continue
        if stat.S_ISREG(st.st_mode) or (what in (".env", "include project_directory")
                                        and stat.S_ISDIR(st.st_mode)):  # (compose skips those)
            continue
        raise ComposeError(f"{what} {path} is not a regular file: compose would wait on "
                           "it or read it without end")
