"""Where a host path really leads: the one function every rule asks.

Compose makes the paths of a model absolute against the project directory; only the file
system knows where they lead: a symlink committed to the repository (`./data -> /etc`), one a
container left in its data directory, a `..` after a symlink. `real_path` walks a path the
way the kernel does when dockerd or compose opens it (each symlink followed where it stands,
`..` taken after it), as it is at this moment. What does not exist yet is taken as written:
dockerd creates it below the real parent. What can not be followed (a directory that may not
be searched, a loop of symlinks) raises Unresolvable, and the policy refuses the path: there is
no second, text-only answer.

read_file reads a file the policy must look into (a Dockerfile), at a real path, without
following any symlink that has appeared on the way since: what it reads is the file judged.

Tests may hand the policy another resolver (e.g. a text-only one) or reader of the same shape.
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
# real path -> the bytes of the regular file there, None when there is none; raises
# Unresolvable when it can not be read as it was judged
Reader = Callable[[str], bytes | None]
# The largest file the policy reads (a Dockerfile: real ones are a few KiB).
MAX_READ = 256 << 10


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


def read_file(path: str, limit: int = MAX_READ) -> bytes | None:
    """The bytes of the regular file at the real path `path`, None when it does not exist.
    Every directory on the way is opened without following a symlink, and the file first as
    a bare handle (O_PATH, which opens no device and waits on no FIFO), read only when it is
    a regular file: a symlink or anything else put there since the path was resolved is
    refused (Unresolvable), never followed or opened."""
    parts = path.split("/")[1:]
    if not path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise Unresolvable(f"{path}: not a real path")
    dir_fd = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in parts[:-1]:
            fd = os.open(part, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                         dir_fd=dir_fd)
            os.close(dir_fd)
            dir_fd = fd
        handle = os.open(parts[-1], os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError:
        return None
    except OSError as e:
        why = "a symlink on the way" if e.errno in (errno.ENOTDIR, errno.ELOOP) \
            else e.strerror or str(e)
        raise Unresolvable(f"{path}: {why}") from None
    finally:
        os.close(dir_fd)
    try:
        mode = os.fstat(handle).st_mode
        if not stat.S_ISREG(mode):
            why = "a symlink on the way" if stat.S_ISLNK(mode) else "not a regular file"
            raise Unresolvable(f"{path}: {why}")
        # the same file, now opened for reading (never a path looked up again)
        fd = os.open(f"/proc/self/fd/{handle}", os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise Unresolvable(f"{path}: {e.strerror or e}") from None
    finally:
        os.close(handle)
    with os.fdopen(fd, "rb") as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise Unresolvable(f"{path}: larger than {limit >> 10} KiB")
    return data
