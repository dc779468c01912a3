"""The offline guarantee: once `make data` has run, a chapter rebuilds from scratch with the network
unreachable. One chapter ("memory", the cheapest) at `smoke`, with an empty results store and build dir,
so every experiment trains.

The network is cut with a new network namespace (`unshare -n`, as root or where user namespaces are
allowed) holding only a loopback interface, which the papermill kernel needs for its ZMQ sockets. Where
that is not possible, a `sitecustomize` on PYTHONPATH makes every Python process (the rebuild, the kernel
and their children) refuse connections to anything but loopback; weaker (it cannot stop a non-Python
program), and the test says which guard it used. A probe first proves the guard really blocks the internet.
"""
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CHAPTER = "memory"
pytestmark = pytest.mark.slow

# Inside the new namespace: bring loopback up (ioctl; no iproute2 needed), then exec the command.
_LO_UP = textwrap.dedent("""
    import fcntl, os, socket, struct, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    flags = struct.unpack("16sH22x", fcntl.ioctl(s, 0x8913, struct.pack("16sH22x", b"lo", 0)))[1]  # SIOCGIFFLAGS
    fcntl.ioctl(s, 0x8914, struct.pack("16sH22x", b"lo", flags | 1))  # SIOCSIFFLAGS, IFF_UP
    os.execvp(sys.argv[1], sys.argv[1:])
""")

_GUARD = textwrap.dedent('''
    """Offline test guard (tests/test_offline.py): no connection but to loopback from any Python process."""
    import errno, ipaddress, socket

    def _local(address):
        host = address[0] if isinstance(address, tuple) else address
        if host in ("localhost", ""):
            return True
        try:
            return ipaddress.ip_address(host.split("%")[0]).is_loopback
        except ValueError:
            return False

    def _wrap(orig):
        def guarded(self, address, *a):
            if self.family in (socket.AF_INET, socket.AF_INET6) and not _local(address):
                raise OSError(errno.ENETUNREACH, f"network disabled by the offline test: {address!r}")
            return orig(self, address, *a)
        return guarded

    socket.socket.connect = _wrap(socket.socket.connect)
    socket.socket.connect_ex = _wrap(socket.socket.connect_ex)
    _getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host, *a, **k):
        if host not in (None, "localhost") and not _local((str(host),)):
            raise socket.gaierror(socket.EAI_NONAME, f"name resolution disabled by the offline test: {host}")
        return _getaddrinfo(host, *a, **k)

    socket.getaddrinfo = getaddrinfo
''')

_PROBE = textwrap.dedent("""
    import socket
    for target in (("pypi.org", 443), ("151.101.0.223", 443), ("1.1.1.1", 53)):
        try:
            socket.create_connection(target, timeout=5).close()
            print("REACHED", target)
        except OSError as e:
            print("blocked", target, e)
""")


def offline_mode() -> str:
    """'netns' when `unshare -n` works here, else 'sitecustomize'."""
    unshare = shutil.which("unshare")
    if unshare:
        r = subprocess.run([unshare, "-n", sys.executable, "-c", _LO_UP, "true"], capture_output=True, timeout=30)
        if r.returncode == 0:
            return "netns"
    return "sitecustomize"


def offline(cmd: list[str], env: dict, tmp: Path, mode: str) -> tuple[list[str], dict]:
    """`cmd` and `env` changed so that the command runs with the network unreachable."""
    if mode == "netns":
        return [shutil.which("unshare"), "-n", sys.executable, "-c", _LO_UP, *cmd], env
    guard = tmp / "offline-guard"
    guard.mkdir(exist_ok=True)
    (guard / "sitecustomize.py").write_text(_GUARD)
    return cmd, {**env, "PYTHONPATH": os.pathsep.join(filter(None, [str(guard), env.get("PYTHONPATH")]))}


def rebuild_chapter(tmp: Path, chapter: str = CHAPTER, root: Path = ROOT, mode: str | None = None,
                    extra_env: dict | None = None) -> subprocess.CompletedProcess:
    """`decoupling rebuild --chapters <chapter> --no-html` at smoke with an empty store and build dir under
    `tmp`; offline when `mode` is given."""
    env = {**os.environ, "DECOUPLING_STORE": str(tmp / "store"), "DECOUPLING_BUILD": str(tmp / "build"),
           "DECOUPLING_PROGRESS": "0", **(extra_env or {})}
    if root != ROOT:
        env["DECOUPLING_ROOT"] = str(root)
    cmd = [sys.executable, "-m", "decoupling", "rebuild", "--profile", "smoke", "--chapters", chapter, "--no-html"]
    if mode:
        cmd, env = offline(cmd, env, tmp, mode)
    return subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=1800)


def test_chapter_rebuilds_from_scratch_offline(tmp_path):
    mode = offline_mode()
    print(f"offline guard: {mode}")
    probe_cmd, probe_env = offline([sys.executable, "-c", _PROBE], dict(os.environ), tmp_path, mode)
    probe = subprocess.run(probe_cmd, env=probe_env, capture_output=True, text=True, timeout=120)
    assert probe.returncode == 0 and "blocked" in probe.stdout and "REACHED" not in probe.stdout, \
        f"the {mode} guard does not cut the network:\n{probe.stdout}{probe.stderr}"

    r = rebuild_chapter(tmp_path, mode=mode)
    assert r.returncode == 0, f"[{mode}] {r.stdout[-3000:]}\n{r.stderr[-5000:]}"
    rec = tmp_path / "build" / "records" / f"{CHAPTER}.json"
    assert rec.exists() and (tmp_path / "build" / "executed" / "smoke" / f"{CHAPTER}.ipynb").exists()
    stored = list((tmp_path / "store").rglob("*.json"))
    assert stored, "the chapter ran no experiment through the (empty) results store"
