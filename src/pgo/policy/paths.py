"""Where a host path really leads: the one function every rule asks.

Compose makes the paths of a model absolute against the project directory; only the file
system knows where they lead: a symlink committed to the repository (`./data -> /etc`), one a
container left in its data directory, a `..` after a symlink. `real_path` walks a path the
way the kernel does when dockerd or compose opens it (each symlink followed where it stands,
`..` taken after it), as it is at this moment. What does not exist yet is taken as written:
dockerd creates it below the real parent. What can not be followed (a directory that may not
be searched, a loop of symlinks) raises Unresolvable, and the policy refuses the path: there is
no second, text-only answer.

Tests may hand the policy another resolver of the same shape (e.g. a text-only one).
"""

from __future__ import annotations

import errno
import os
import posixpath
import stat
from collections.abc import Callable

# the kernel's own limit on symlinks followed in one lookup (MAXSYMLINKS)
MAX_LINKS = 40

# absolute path -> the real path it leads to; raises Unresolvable
Resolver = Callable[[str], str]


class Unresolvable(Exception):
    """A host path whose real place can not be told; str() says why."""


def real_path(path: str) -> str:
    """Where the absolute `path` really leads now, every symlink on the way followed."""
    if not path.startswith("/"):
        raise Unresolvable("not an absolute path")
    todo = [p for p in reversed(path.split("/")) if p]
    done = "/"
    links = 0
    missing = False  # a component did not exist: the rest is taken as written
    while todo:
        part = todo.pop()
        if part == ".":
            continue
        if part == "..":
            done = posixpath.dirname(done)
            continue
        step = posixpath.join(done, part)
        if missing:
            done = step
            continue
        try:
            st = os.lstat(step)
        except (FileNotFoundError, NotADirectoryError):
            missing, done = True, step
            continue
        except OSError as e:
            raise Unresolvable(f"{step}: {e.strerror or e}") from None
        if not stat.S_ISLNK(st.st_mode):
            done = step
            continue
        links += 1
        if links > MAX_LINKS:
            raise Unresolvable(f"{step}: {os.strerror(errno.ELOOP)}")
        try:
            target = os.readlink(step)
        except OSError as e:
            raise Unresolvable(f"{step}: {e.strerror or e}") from None
        if target.startswith("/"):
            done = "/"
        todo.extend(p for p in reversed(target.split("/")) if p)
    return done


def under(path: str, root: str) -> bool:
    """`path` is `root` or lies below it (both absolute and normalized)."""
    if not path.startswith("/") or not root.startswith("/"):
        return False
    return path == root or path.startswith(root.rstrip("/") + "/")
