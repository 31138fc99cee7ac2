"""Which images a Dockerfile makes the builder read: its FROM lines (not an earlier stage),
`--from=` of COPY and ADD, a RUN mount's `from=`, the same in ONBUILD lines, and the
frontend image of a `# syntax=` directive (or of the BUILDKIT_SYNTAX build arg).

The Dockerfile is parsed by BuildKit's own parser (the `dockerfile` package), so lines join
and split as the builder joins them. A name written with variables is expanded with every
value the file and the build could give each variable (ARG defaults, ENV values, build
args, or unset), and each result counts; a name the policy can not expand that way (quotes,
escapes, other ${...} forms) raises Unjudgeable: the caller refuses the build.
"""

from __future__ import annotations

import csv
import functools
import itertools
import re
from collections.abc import Iterator, Mapping
from typing import Any

# The most expansions of one name (each variable's possible values multiplied), and the
# most names of one Dockerfile, expanded.
MAX_EXPANSIONS = 256
MAX_NAMES = 4096
_VAR = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])([^${}]*))?\}"
                  r"|([A-Za-z_][A-Za-z0-9_]*))")
_DIRECTIVE = re.compile(r"^#\s*([A-Za-z][A-Za-z0-9]*)\s*=\s*(.*?)\s*$")


class Unjudgeable(ValueError):
    """A Dockerfile whose images can not be told; str() says why."""


def images(text: str, args: Mapping[str, Any] | None = None) -> list[tuple[str, str]]:
    """(what, image reference) of every image the Dockerfile `text` reads, built with the
    build args `args` (compose's `build.args`)."""
    import dockerfile  # (BuildKit's parser: loaded only where a Dockerfile is judged)

    args = {str(k): v for k, v in (args or {}).items()}
    out = [("syntax directive", v) for k, v in _directives(text) if k == "syntax"]
    if args.get("BUILDKIT_SYNTAX"):
        out.append(("build arg BUILDKIT_SYNTAX", str(args["BUILDKIT_SYNTAX"])))
    try:
        commands = list(dockerfile.parse_string(text))
    except dockerfile.GoParseError as e:
        raise Unjudgeable(f"does not parse ({e})") from None
    values = _values(commands, args)
    stages: set[str] = set()
    for cmd, ref in _references(commands, dockerfile):
        if cmd == "stage":
            stages.add(ref.lower())
            continue
        for name in expand(ref, values):
            if name and name.lower() not in stages and not name.isdigit():
                out.append((cmd, name))
        if len(out) > MAX_NAMES:
            raise Unjudgeable(f"names more than {MAX_NAMES} images")
    return out


def _directives(text: str) -> Iterator[tuple[str, str]]:
    """The parser directives at the top of a Dockerfile (`# syntax=...`), keys lower case."""
    for line in text.splitlines():
        m = _DIRECTIVE.match(line.strip())
        if m is None:
            return
        yield m.group(1).lower(), m.group(2)


def _references(commands: list[Any], parser: Any) -> Iterator[tuple[str, str]]:
    """(instruction, name as written) of the images the commands name, in order, and
    ("stage", name) after a FROM that names its stage."""
    for c in commands:
        cmd = str(c.cmd).upper()
        if cmd == "ONBUILD":  # its flags are not given apart: parse the line it holds
            inner = str(c.original).split(None, 1)[1:]
            try:
                yield from ((f"ONBUILD {w}", r) for w, r in _references(
                    list(parser.parse_string(inner[0])) if inner else [], parser))
            except parser.GoParseError as e:
                raise Unjudgeable(f"ONBUILD line does not parse ({e})") from None
            continue
        if cmd == "FROM":
            if c.value:
                yield "FROM", str(c.value[0])
            if len(c.value) >= 3 and str(c.value[1]).upper() == "AS":
                yield "stage", str(c.value[2])
            continue
        for flag in c.flags:
            text = str(flag)
            if text.startswith("--from="):
                yield f"{cmd} --from", text.removeprefix("--from=")
            elif text.startswith("--mount="):  # CSV fields, as BuildKit reads them
                for row in csv.reader([text.removeprefix("--mount=")]):
                    for opt in row:
                        key, _, val = opt.partition("=")
                        if key.strip().lower() == "from":
                            yield f"{cmd} --mount from", val.strip()


def _values(commands: list[Any], args: Mapping[str, Any]) -> dict[str, set[str | None]]:
    """Every value a variable may have anywhere in the file: its ARG defaults, its ENV
    values, its build arg, or none (None: unset)."""
    values: dict[str, set[str | None]] = {}

    def put(name: str, value: str | None) -> None:
        got = values.setdefault(name, {None})
        if value is not None:
            got.update({value, value.strip("\"'")})

    for c in commands:
        cmd = str(c.cmd).upper()
        if cmd == "ARG":
            for word in c.value:
                name, sep, default = str(word).partition("=")
                put(name, default if sep else None)
        elif cmd == "ENV":
            pairs = [str(w) for w in c.value]
            for name, value in zip(pairs[::2], pairs[1::2], strict=False):
                put(name, value)
    for name, value in args.items():
        put(name, None if value is None else str(value))
    return values


def expand(ref: str, values: Mapping[str, set[str | None]]) -> list[str]:
    """Every name `ref` may stand for (`$X`, `${X}`, `${X:-word}`, `${X-word}`,
    `${X:+word}`, `${X+word}` with each value X may have)."""
    if any(c in ref for c in "\"'\\`"):
        raise Unjudgeable(f"names {ref}, with quotes or escapes")
    if "$" not in ref:
        return [ref]
    found = list(_VAR.finditer(ref))
    rest = _VAR.sub("", ref)
    if "$" in rest or "{" in rest or "}" in rest:
        raise Unjudgeable(f"names {ref}, with a ${{...}} form the policy does not expand")
    names = sorted({m.group(1) or m.group(4) for m in found})
    choices = [sorted(values.get(n, {None}), key=lambda v: (v is None, v or "")) for n in names]
    count = 1
    for c in choices:
        count *= len(c)
    if count > MAX_EXPANSIONS:
        raise Unjudgeable(f"names {ref}, which may stand for more than {MAX_EXPANSIONS} names")
    out = []
    for combo in itertools.product(*choices):
        env = dict(zip(names, combo, strict=True))
        name = _VAR.sub(functools.partial(_one, env=env), ref)
        if "$" in name:
            raise Unjudgeable(f"names {ref}, whose variables hold variables")
        out.append(name)
    return list(dict.fromkeys(out))


def _one(m: re.Match[str], env: Mapping[str, str | None]) -> str:
    value = env.get(m.group(1) or m.group(4))
    op, word = m.group(2), m.group(3) or ""
    if op in (":-", "-"):
        unset = value is None or (op == ":-" and value == "")
        return word if unset else str(value)
    if op in (":+", "+"):
        use = value is not None and (op == "+" or value != "")
        return word if use else ""
    return value or ""
