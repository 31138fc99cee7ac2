"""pgoctl over the system's OpenSSH client: the same request, key, known-hosts file and
answers as pgoctl's built-in client (asyncssh), without its start-up (the import of
asyncssh alone costs three times the whole round trip).

pgoctl runs `ssh` as a child and keeps to itself what it must decide the way the built-in
client does: which key (it reads and checks the private key itself, and hands it to ssh in
an anonymous file of its own, mode 0600, so ssh's own rules about key files do not apply),
which host keys are known (ssh is given only the lines of pgoctl's known-hosts file that
pgoctl's check looks at, in another such file; a key ssh adds there on first contact is
remembered by pgoctl in its own file), and what a failure means (ssh's log goes to a third
file, which pgoctl turns into its own one line). Nothing of the user's ssh configuration,
agent or known hosts is read. The anonymous files (memfd) are named to ssh as
/proc/PID/fd/N of pgoctl, since ssh closes every descriptor it inherits: Linux only.

Only an unencrypted key in OpenSSH's format (what ssh-keygen writes) takes this way; any
other key, or no ssh, or `PGOCTL_SSH=none`, goes to the built-in client, which also says
what is wrong with a key it can not use. pgoctl reads this module before it starts ssh:
it imports nothing that costs start-up (no asyncio, subprocess, dataclasses or pathlib).
"""

from __future__ import annotations

import binascii
import os
import signal
import sys

from pgo import knownhosts

BEGIN, END = b"-----BEGIN OPENSSH PRIVATE KEY-----", b"-----END OPENSSH PRIVATE KEY-----"
# key types OpenSSH's client signs with by default and pgod accepts
KEY_TYPES = frozenset({b"ssh-ed25519", b"ssh-rsa", b"ecdsa-sha2-nistp256",
                       b"ecdsa-sha2-nistp384", b"ecdsa-sha2-nistp521"})
OPTIONS = (
    "IdentitiesOnly=yes", "IdentityAgent=none", "AddKeysToAgent=no", "BatchMode=yes",
    "PubkeyAuthentication=yes", "PasswordAuthentication=no",
    "KbdInteractiveAuthentication=no", "GSSAPIAuthentication=no",
    "HostbasedAuthentication=no", "PreferredAuthentications=publickey",
    "GlobalKnownHostsFile=/dev/null", "StrictHostKeyChecking=accept-new",
    "HashKnownHosts=no", "CheckHostIP=no", "UpdateHostKeys=no", "VerifyHostKeyDNS=no",
    "ForwardAgent=no", "ForwardX11=no", "ClearAllForwardings=yes", "PermitLocalCommand=no",
    "ControlMaster=no", "ControlPath=none", "ProxyCommand=none", "ProxyJump=none",
    "ConnectTimeout=60", "LogLevel=ERROR",
)


def find_ssh() -> str | None:
    """The OpenSSH client to use: $PGOCTL_SSH ("none": the built-in client), else `ssh`
    on PATH; None when there is none, or this system has no memfd or /proc."""
    wanted = os.environ.get("PGOCTL_SSH")
    if wanted is not None and wanted.strip().lower() in ("", "none"):
        return None
    if not hasattr(os, "memfd_create") or not os.path.isdir("/proc/self/fd"):
        return None
    if wanted:
        return wanted
    for d in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(d or ".", "ssh")
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def _string(data: bytes, pos: int) -> tuple[bytes, int]:
    n = int.from_bytes(data[pos:pos + 4], "big")
    if pos + 4 + n > len(data):
        raise ValueError("truncated")
    return data[pos + 4:pos + 4 + n], pos + 4 + n


def public_key(text: bytes) -> bytes | None:
    """The public key (SSH wire format) of an unencrypted private key in OpenSSH's format,
    checked as ssh will load it; None for anything else."""
    body = text.strip()
    if not body.startswith(BEGIN) or not body.endswith(END):
        return None
    try:
        data = binascii.a2b_base64(body[len(BEGIN):-len(END)])
        if not data.startswith(b"openssh-key-v1\0"):
            return None
        cipher, pos = _string(data, 15)
        kdf, pos = _string(data, pos)
        _, pos = _string(data, pos)  # kdf options
        count = int.from_bytes(data[pos:pos + 4], "big")
        pub, pos = _string(data, pos + 4)
        private, _ = _string(data, pos)
        pub_type, _ = _string(pub, 0)
        priv_type, _ = _string(private, 8)
    except (binascii.Error, ValueError):
        return None
    if cipher != b"none" or kdf != b"none" or count != 1 or private[:4] != private[4:8]:
        return None
    return pub if pub_type == priv_type and pub_type in KEY_TYPES else None


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name)
    os.fchmod(fd, 0o600)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
    return fd


def _contents(fd: int) -> bytes:
    return os.pread(fd, os.fstat(fd).st_size, 0)


def run(ssh: str, host: str, port: int, user: str, remote: str, key: bytes, pub: bytes,
        verbose: bool) -> int:
    """One request through `ssh`; the exit status pgoctl exits with (messages printed
    as the built-in client prints them)."""
    hid = knownhosts.host_id(host, port)
    path = knownhosts.default_path()
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            known = f.read()
    except FileNotFoundError:
        known = ""
    except OSError as e:
        return _fail(f"can not read {path}: {e.strerror}")
    given = knownhosts.lines_for(known, hid).encode()
    if verbose:
        fp = knownhosts.fingerprint("x " + binascii.b2a_base64(pub, newline=False).decode())
        print(f"pgoctl: {hid}: {remote} (key {fp})", file=sys.stderr)
    fds = [_memfd("pgoctl-key", key), _memfd("pgoctl-known-hosts", given),
           _memfd("pgoctl-ssh-log", b"")]
    try:
        keyfile, hostsfile, logfile = (f"/proc/{os.getpid()}/fd/{fd}" for fd in fds)
        argv = [ssh, "-F", "/dev/null", "-T", "-n", "-p", str(port), "-l", user,
                "-i", keyfile, "-E", logfile, "-o", f"UserKnownHostsFile={hostsfile}"]
        for option in OPTIONS:
            argv += ["-o", option]
        argv += ["--", host, remote]
        spawn = os.posix_spawn if os.sep in ssh else os.posix_spawnp
        try:
            pid = spawn(ssh, argv, os.environ)
        except OSError as e:
            return _fail(f"can not run {ssh}: {e.strerror}")
        status, interrupted, signalled = _wait(pid)
        added = _contents(fds[1])[len(given):].decode("utf-8", "replace").split()
        log = _contents(fds[2]).decode("utf-8", "replace")
    finally:
        for fd in fds:
            os.close(fd)
    if len(added) >= 3:  # first contact: ssh took the key (accept-new); keep it as ours
        knownhosts.first_use(path, hid, " ".join(added[1:3]), verbose)
    if signalled:
        signal.signal(signalled, signal.SIG_DFL)
        os.kill(os.getpid(), signalled)
    if interrupted:
        return 130
    if status != 255:
        return status
    reason = failure(log, known, hid, path)
    return _fail(reason) if reason else 255


def _fail(message: str) -> int:
    print(f"pgoctl: {message}", file=sys.stderr)
    return 255


def _wait(pid: int) -> tuple[int, bool, int]:
    """Wait for ssh, passing on SIGTERM, SIGHUP and Ctrl-C. (exit status, whether pgoctl
    was interrupted, the terminating signal pgoctl got)."""
    signalled = 0

    def forward(sig: int, _frame: object) -> None:
        nonlocal signalled
        signalled = sig
        _kill(pid, sig)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, forward)
    interrupted = False
    while True:
        try:
            _, wstatus = os.waitpid(pid, 0)
            break
        except KeyboardInterrupt:
            interrupted = True
            _kill(pid, signal.SIGINT)
    code = os.waitstatus_to_exitcode(wstatus)
    return (code if code >= 0 else 255), interrupted, signalled


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def failure(log: str, known: str, hid: str, path: str) -> str | None:
    """pgoctl's one line for what ssh logged when it exited 255; None when it logged
    nothing (the remote command's own status was 255)."""
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    if not lines:
        return None
    if any("REMOTE HOST IDENTIFICATION HAS CHANGED" in ln for ln in lines):
        fp = next((ln.rstrip(".") for ln in lines if ln.startswith("SHA256:")), "?")
        return knownhosts.changed(hid, fp, knownhosts.check(known, hid, "").line, path)
    for ln in lines:
        if "Permission denied" in ln:
            return f"{hid}: the server refused the key"
        if ln.startswith(("ssh: Could not resolve hostname ", "ssh: connect to host ")):
            return f"{hid}: {ln.rpartition(': ')[2]}"
        if any(m in ln for m in ("Connection closed", "Connection reset", "Broken pipe",
                                 "kex_exchange_identification")):
            return f"{hid}: Connection lost"
    return f"{hid}: {lines[-1].removeprefix('ssh: ')}"
