"""Attack battery: each attack is contained within its limits and leaves the host and the pool
unharmed (after every attack the same pool still answers a normal job correctly).

Attacks that could hurt the shared machine if a layer were missing (unbounded fork bomb,
kill(-1)) are skipped unless the uid drop and the PID namespace are active.
"""

import ctypes
import json
import os
import shutil
import socket
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from execverify_jax.data.sandbox import RUN_CALL, Limits, SandboxPool, Status

REPO = Path(__file__).resolve().parents[2]
FAST = Limits(timeout_s=1.0, memory_mb=256)


@pytest.fixture(scope="module")
def pool():
    with SandboxPool(2, limits=FAST) as p:
        yield p


def attack(pool, code, limits=None):
    out = pool.run(RUN_CALL, {"code": code, "call": "f()"}, limits)
    healthy = pool.run(RUN_CALL, {"code": "def g(x):\n    return [x, len('ab')]", "call": "g(7)"})
    assert healthy.ok and healthy.value == [7, 2], healthy
    return out


def isolated(pool):
    caps = pool.capabilities
    return caps.get("uid_drop") and caps.get("pidns")


def test_infinite_loop(pool):
    assert attack(pool, "def f():\n    while True:\n        pass").status is Status.TIMEOUT


def test_busy_thread_while_main_sleeps(pool):
    code = "import threading, time\ndef f():\n    threading.Thread(target=lambda: [0 for _ in iter(int, 1)], daemon=True).start()\n    time.sleep(60)"
    assert attack(pool, code).status is Status.TIMEOUT


def test_busy_thread_dies_with_the_job(pool):
    code = "import threading\ndef f():\n    threading.Thread(target=lambda: [0 for _ in iter(int, 1)], daemon=True).start()\n    return 'done'"
    out = attack(pool, code)
    assert out.ok and out.value == "done"


def test_cpu_limit_catches_signal_ignoring_loop(pool):
    code = (
        "import signal\ndef f():\n"
        "    for s in (signal.SIGTERM, signal.SIGALRM, signal.SIGXCPU, signal.SIGINT, signal.SIGHUP):\n"
        "        signal.signal(s, signal.SIG_IGN)\n"
        "    signal.alarm(1)\n"
        "    while True:\n        pass"
    )
    # Generous wall clock so that the CPU limit fires first even on a loaded machine.
    out = attack(pool, code, Limits(timeout_s=30.0, cpu_s=1))
    assert out.status is Status.TIMEOUT and "CPU" in out.error


def test_bounded_process_spawn_fails_early(pool):
    # The safe precursor of the fork bomb: RLIMIT_NPROC must stop 200 forks well before the end.
    if not isolated(pool):
        pytest.skip("needs the per-worker uid (RLIMIT_NPROC is not enforced for root)")
    code = (
        "import os, time\ndef f():\n    n = 0\n    for _ in range(200):\n        try:\n            pid = os.fork()\n"
        "        except OSError:\n            return n\n        if pid == 0:\n            time.sleep(30)\n            os._exit(0)\n        n += 1\n    return n"
    )
    out = attack(pool, code, Limits(timeout_s=5.0, nproc=16))
    assert out.ok and out.value < 16


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root for the uid drop")
def test_fork_bomb(pool):
    if not isolated(pool):
        pytest.skip("unbounded fork bomb only with uid drop + PID namespace")
    out = attack(pool, "import os\ndef f():\n    while True:\n        try:\n            os.fork()\n        except OSError:\n            pass", Limits(timeout_s=1.0, nproc=16))
    assert out.status in (Status.TIMEOUT, Status.KILLED)


def test_escaped_grandchild_dies_with_the_job(pool):
    marker = f"sandbox-escape-{uuid.uuid4().hex}"
    # A new session escapes killpg; the marker in its argv lets us find exactly this process.
    code = (
        "import subprocess, sys\ndef f():\n"
        f"    p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)', '{marker}'], start_new_session=True)\n"
        "    return p.pid"
    )
    out = attack(pool, code)
    assert out.ok
    leftovers = [p for p in os.listdir("/proc") if p.isdigit() and marker in _cmdline(p)]
    assert leftovers == [], "a process started by the job outlived it"


def _cmdline(pid):
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def test_memory_bomb(pool):
    code = "def f():\n    x = []\n    while True:\n        x.append(bytearray(10 ** 6))"
    assert attack(pool, code, Limits(timeout_s=5.0, memory_mb=200)).status is Status.MEMORY


def test_disk_fill_in_work_dir_is_capped(pool):
    code = "def f():\n    with open('big', 'wb') as fh:\n        while True:\n            fh.write(b'x' * (1 << 20))"
    out = attack(pool, code, Limits(timeout_s=5.0, fsize_mb=4))
    assert out.status is Status.ERROR and out.error_type == "OSError"


def test_writes_outside_work_dir_are_blocked(pool, tmp_path):
    name = f"sandbox-attack-{uuid.uuid4().hex}"
    targets = [f"/tmp/{name}", str(REPO / name), f"/var/tmp/{name}", str(tmp_path / name)]
    if not pool.capabilities.get("private_shm"):  # else /dev/shm is the job's own (see below)
        targets.append(f"/dev/shm/{name}")
    code = (
        "def f():\n    res = []\n"
        f"    for p in {targets!r}:\n"
        "        try:\n            open(p, 'w').write('pwned')\n            res.append('written')\n"
        "        except OSError as e:\n            res.append(type(e).__name__)\n    return res"
    )
    out = attack(pool, code)
    assert out.ok
    for t in targets:
        assert not os.path.exists(t), t
    if isolated(pool):
        assert "written" not in out.value


def test_network_connect_to_parent_listener(pool):
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(5)
    srv.settimeout(0.3)
    port = srv.getsockname()[1]
    try:
        via_python = attack(pool, f"import socket\ndef f():\n    s = socket.create_connection(('127.0.0.1', {port}), timeout=0.5)\n    return 'connected'")
        assert via_python.status is Status.ERROR
        if pool.capabilities.get("netns"):
            # ctypes bypasses the audit hook; the network namespace still has no route out.
            raw = (
                "import ctypes, struct\ndef f():\n    libc = ctypes.CDLL(None, use_errno=True)\n"
                "    fd = libc.socket(2, 1, 0)\n    if fd < 0:\n        return 'no socket'\n"
                f"    addr = struct.pack('!HH4s8x', 2, {port}, bytes([127, 0, 0, 1]))\n"
                "    return libc.connect(fd, addr, len(addr))"
            )
            out = attack(pool, raw)
            assert out.ok and out.value in ("no socket", -1)
        with pytest.raises(socket.timeout):
            srv.accept()
    finally:
        srv.close()


def test_parent_environment_is_invisible(monkeypatch):
    secret = f"s3cret-{uuid.uuid4().hex}"
    monkeypatch.setenv("EXECVERIFY_TEST_SECRET", secret)
    code = (
        "import os\ndef f():\n    found = [k for k, v in os.environ.items() if 'EXECVERIFY' in k]\n"
        "    for p in os.listdir('/proc'):\n        try:\n"
        "            if p.isdigit() and b'" + secret + "' in open(f'/proc/{p}/environ', 'rb').read():\n"
        "                found.append(p)\n        except OSError:\n            pass\n    return found"
    )
    with SandboxPool(1, limits=FAST) as p:
        out = attack(p, code)
        assert out.ok
        assert out.value == [] if p.capabilities.get("uid_drop") else "EXECVERIFY_TEST_SECRET" not in out.value


def test_os_exit_and_sys_exit(pool):
    assert attack(pool, "import os\ndef f():\n    os._exit(0)").status is Status.KILLED
    out = attack(pool, "import sys\ndef f():\n    sys.exit(0)")
    assert out.status is Status.ERROR and out.error_type == "SystemExit"
    out = attack(pool, "def f():\n    raise SystemExit")
    assert out.status is Status.ERROR


def test_huge_stdout(pool):
    out = attack(pool, "import sys\ndef f():\n    while True:\n        sys.stdout.write('y' * 65536)", Limits(timeout_s=5.0, output_bytes=100_000))
    assert out.status is Status.OUTPUT_OVERFLOW and len(out.stdout) <= 100_000


def test_huge_stderr_via_raw_fd(pool):
    out = attack(pool, "import os\ndef f():\n    while True:\n        os.write(2, b'e' * 65536)", Limits(timeout_s=5.0, output_bytes=10_000))
    assert out.status is Status.OUTPUT_OVERFLOW


def test_deep_recursion(pool):
    out = attack(pool, "def f(n=0):\n    return f(n + 1)")
    assert out.status is Status.ERROR and out.error_type == "RecursionError"
    out = attack(pool, "import sys\nsys.setrecursionlimit(10 ** 7)\ndef f(n=0):\n    return f(n + 1)")
    assert out.status in (Status.TIMEOUT, Status.MEMORY, Status.KILLED, Status.ERROR)


def test_ctypes_segfault(pool):
    out = attack(pool, "import ctypes\ndef f():\n    return ctypes.string_at(0)")
    assert out.status is Status.KILLED and "SIGSEGV" in out.error


def test_atexit_tampering(pool):
    out = attack(pool, "import atexit\natexit.register(lambda: print('ATEXIT'))\ndef f():\n    return 1")
    assert out.ok and "ATEXIT" not in out.stdout


def test_replacing_builtins_does_not_leak_into_later_jobs():
    with SandboxPool(1, limits=FAST) as p:
        evil = "import builtins, sys\nbuiltins.len = lambda x: 42\nbuiltins.repr = lambda x: 'forged'\nsys.modules['json'] = None\ndef f():\n    return len([1])"
        out = p.run(RUN_CALL, {"code": evil, "call": "f()"})
        assert out.status in (Status.OK, Status.KILLED, Status.ERROR)
        nice = p.run(RUN_CALL, {"code": "import json\ndef f(x):\n    return len(x), repr(x), json.dumps(x)", "call": "f([1, 2])"})
        assert nice.value == (2, "[1, 2]", "[1, 2]")


def test_killing_the_parent(pool):
    me = os.getpid()
    out = attack(pool, "import os\ndef f():\n    os.kill(os.getppid(), 9)\n    return 'alive'")
    out = attack(pool, "import os\ndef f():\n    os.killpg(os.getpgid(os.getppid()), 9)\n    return 'alive'")
    out = attack(pool, f"import os\ndef f():\n    os.kill({me}, 9)\n    return 'alive'")
    assert out.status is Status.ERROR  # cannot see or signal the test process
    if isolated(pool):
        out = attack(pool, "import os, signal\ndef f():\n    os.kill(-1, signal.SIGKILL)\n    return 'alive'")
        assert out.status in (Status.OK, Status.KILLED, Status.ERROR)
    assert os.getpid() == me


def test_killing_the_worker_without_isolation_layers_is_survived():
    # Without uid drop / PID namespace the job CAN kill its worker; the pool must replace it,
    # and the worker's own session keeps the test process out of the job's reach by group.
    with SandboxPool(1, limits=FAST, namespaces=False, drop_privileges=False) as p:
        out = attack(p, "import os\ndef f():\n    os.kill(os.getppid(), 9)\n    return 'alive'")
        assert out.status is Status.KILLED
        out = attack(p, "import os\ndef f():\n    os.killpg(os.getpgid(os.getppid()), 9)\n    return 'alive'")
        assert out.status is Status.KILLED
        assert p.restarts >= 2


def test_reading_the_checkout_and_home(pool):
    if not pool.capabilities.get("mountns"):
        pytest.skip("no mount namespace")
    code = "import os\ndef f():\n    return os.path.exists(%r), os.path.exists(%r), sorted(os.listdir(%r))" % (
        str(REPO / "tests"), str(REPO / ".git"), str(REPO))
    out = attack(pool, code)
    assert out.ok and out.value[:2] == (False, False) and not {"tests", ".git"} & set(out.value[2]), out


_CLONE_JOB = (
    "import os\ndef f(clone):\n    out = {}\n"
    "    for rel in ('', 'tests', '.git', 'tests/answers.txt', '.git/config'):\n"
    "        p = os.path.join(clone, rel)\n"
    "        try:\n            out[rel] = sorted(os.listdir(p)) if os.path.isdir(p) else open(p).read()\n"
    "        except OSError as e:\n            out[rel] = type(e).__name__\n    return out"
)
_CLONE_PROBE = (
    "import json, sys\nfrom execverify_jax.data.sandbox import RUN_CALL, SandboxPool\n"
    "with SandboxPool(1) as pool:\n"
    "    out = pool.run(RUN_CALL, {'code': sys.argv[2], 'call': f'f({sys.argv[1]!r})'})\n"
    "    print(json.dumps({'mountns': pool.capabilities.get('mountns'), 'ok': out.ok, 'value': out.value}))"
)


@pytest.mark.parametrize("parent", ["/tmp", "/opt", "~"])
def test_a_clone_anywhere_hides_its_tests_and_git(parent):
    # A CI runner clones anywhere (not under /work or /home): a job run from a clone under /tmp
    # (covered by the private /tmp), /opt (hidden as the checkout) or a home directory must not
    # list or read the clone's tests/ or .git, whichever layer hides them.
    base = Path(os.path.expanduser(parent))
    clone = base / f"execverify-clone-{uuid.uuid4().hex[:8]}"
    try:
        clone.mkdir()
    except OSError as exc:
        pytest.skip(f"cannot write {base}: {exc}")
    try:
        shutil.copytree(REPO / "execverify_jax", clone / "execverify_jax", ignore=shutil.ignore_patterns("__pycache__"))
        for rel in ("tests/answers.txt", ".git/config"):
            (clone / rel).parent.mkdir()
            (clone / rel).write_text("expected answer")
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(clone)}
        cmd = [sys.executable, "-c", _CLONE_PROBE, str(clone), _CLONE_JOB]
        proc = subprocess.run(cmd, cwd="/", env=env, capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr[-2000:]
        got = json.loads(proc.stdout.strip().splitlines()[-1])
        if not got["mountns"]:
            pytest.skip("no mount namespace")
        value = got["value"]
        assert got["ok"] and value[""] in (["execverify_jax"], []), value
        for rel in ("tests", ".git", "tests/answers.txt", ".git/config"):
            assert value[rel] in ("FileNotFoundError", "PermissionError"), (rel, value)
    finally:
        shutil.rmtree(clone, ignore_errors=True)


def _scratch_outside_hidden_dirs():
    # A dir that none of the fixed hidden dirs or the private /tmp covers.
    for parent in ("/opt", "/var/lib", "/var/cache"):
        path = Path(parent) / f"execverify-hide-{uuid.uuid4().hex[:8]}"
        try:
            path.mkdir()
        except OSError:
            continue
        return path
    pytest.skip("no writable dir outside the hidden ones")


def test_pool_cwd_and_named_dirs_are_hidden(monkeypatch):
    run_dir, data_dir = _scratch_outside_hidden_dirs(), _scratch_outside_hidden_dirs()
    try:
        (run_dir / "ckpt.txt").write_text("weights")
        (data_dir / "answers.jsonl").write_text("expected")
        monkeypatch.chdir(run_dir)
        with SandboxPool(1, limits=FAST, hide=[str(data_dir)]) as p:
            if not p.capabilities.get("hidden_dirs"):
                pytest.skip("no mount namespace")
            code = "import os\ndef f():\n    return [os.listdir(d) for d in %r]" % ([str(run_dir), str(data_dir)],)
            out = attack(p, code)
            assert out.ok and out.value == [[], []], out
            # and what must stay reachable still is: the interpreter and this package
            out = attack(p, "import json, execverify_jax\ndef f():\n    return json.dumps([1])")
            assert out.ok and out.value == "[1]"
    finally:
        for d in (run_dir, data_dir):
            for f in d.iterdir():
                f.unlink()
            d.rmdir()


def test_dirs_to_hide_never_hides_the_system():
    from execverify_jax.data.sandbox.isolation import dirs_to_hide

    root = _scratch_outside_hidden_dirs()
    try:
        a, b, venv = root / "a", root / "a" / "b", root / "venv"
        for d in (a, b, venv, venv / "lib"):
            d.mkdir()
        wanted = ["/", "/usr", "/usr/lib", "/etc", "/tmp", str(b), str(a), str(a), str(venv / "lib"), str(venv), str(root / "missing")]
        # b is covered by a; the venv and dirs inside it stay exposed; system dirs are never hidden
        assert dirs_to_hide(wanted, exposed=[str(venv)]) == [str(a)]
    finally:
        for d in (b, a, venv / "lib", venv, root):
            d.rmdir()


def test_unprivileged_layout_user_namespace():
    # The path non-root pools take: no uid drop, namespaces through a user namespace.
    with SandboxPool(1, limits=FAST, unprivileged=True) as p:
        caps = p.capabilities
        assert not caps["uid_drop"]
        if not caps.get("userns"):
            pytest.skip(f"user namespaces unavailable: {caps['notes']}")
        assert caps["netns"] and caps["pidns"], caps
        assert attack(p, "def f():\n    return 5").value == 5
        if caps.get("private_proc"):  # here too, a procfs of the job's own PID namespace
            assert attack(p, "import os\ndef f():\n    return [q for q in os.listdir('/proc') if q.isdigit()]").value == ["1"]
        marker = f"sandbox-escape-{uuid.uuid4().hex}"
        code = (
            "import subprocess, sys\ndef f():\n"
            f"    return subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)', '{marker}'], start_new_session=True).pid"
        )
        assert attack(p, code).ok
        assert [q for q in os.listdir("/proc") if q.isdigit() and marker in _cmdline(q)] == []
        out = attack(p, "import os\ndef f():\n    os.kill(os.getppid(), 9)\n    os.killpg(os.getpgid(os.getppid()), 9)\n    return 'alive'")
        assert p.restarts == 0
        # The worker holds every capability in its user namespace; the job holds none, so the
        # hidden dirs stay hidden.
        unmount = "import ctypes, os\ndef f():\n    ctypes.CDLL(None).umount2(b'/work', 2)\n    return os.listdir('/work')"
        out = attack(p, unmount)
        # Only the first components of the bound-back paths (the checkout, maybe a venv) remain.
        visible = sorted({q.split("/")[2] for q in caps.get("exposed_paths", []) if q.startswith("/work/")})
        assert out.ok and sorted(out.value) == visible


def test_other_processes_are_invisible(pool):
    me = os.getpid()
    code = "import os\ndef f():\n    return sorted(int(p) for p in os.listdir('/proc') if p.isdigit())"
    out = attack(pool, code)
    assert out.ok
    if pool.capabilities.get("proc_hidepid"):
        assert me not in out.value and len(out.value) <= 2  # the job itself (plus a thread)


def test_chmod_of_work_dir_does_not_leak_to_the_next_job(pool):
    first = pool.submit(RUN_CALL, {"code": "import os\ndef f():\n    os.chmod('.', 0o777)\n    return os.getcwd()", "call": "f()"}, worker=0).result()
    code = "import os, stat\ndef f():\n    return os.listdir('.'), stat.S_IMODE(os.stat('.').st_mode)"
    second = pool.submit(RUN_CALL, {"code": code, "call": "f()"}, worker=0).result()
    assert first.ok and second.value == ([], 0o700)


def test_work_dir_cleanup_does_not_follow_symlinks(tmp_path):
    # The worker removes the job's tree (as root on the root path): links must be unlinked,
    # never followed. Without namespaces the worker sees this test's tmp_path.
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("precious")
    code = (
        "import os\ndef f():\n    os.makedirs('a/b/c')\n    open('a/b/c/x', 'w').write('1')\n"
        f"    os.symlink({str(victim)!r}, 'a/link_dir')\n    os.symlink({str(victim / 'keep.txt')!r}, 'link_file')\n"
        "    return sorted(os.listdir('.'))"
    )
    with SandboxPool(1, limits=FAST, namespaces=False) as p:
        out = attack(p, code)
        assert out.ok and out.value == ["a", "link_file"]
    assert (victim / "keep.txt").read_text() == "precious"


def test_device_nodes_are_minimal(pool):
    if not pool.capabilities.get("minimal_dev"):
        pytest.skip("no mount namespace")
    code = (
        "import os\ndef f():\n    names = sorted(os.listdir('/dev'))\n    try:\n        open('/dev/kvm', 'rb')\n"
        "        kvm = 'opened'\n    except OSError as e:\n        kvm = type(e).__name__\n    return names, kvm, len(open('/dev/urandom', 'rb').read(8))"
    )
    out = attack(pool, code)
    names, kvm, n = out.value
    assert set(names) <= {"null", "zero", "full", "random", "urandom", "fd", "stdin", "stdout", "stderr", "shm"}
    assert kvm == "FileNotFoundError" and n == 8


@pytest.mark.skipif(os.geteuid() != 0, reason="the uid sweep needs root")
def test_uid_sweep_kills_escaped_process_without_pid_namespace():
    # Fallback path (no namespaces): a setsid'd grandchild escapes killpg; the per-job uid sweep
    # (kill(-1) as the job uid) must still end it.
    # The job waits for the grandchild's setsid, so the escape is complete before it returns.
    code = (
        "import os, time\ndef f():\n    r, w = os.pipe()\n    pid = os.fork()\n    if pid == 0:\n        os.setsid()\n"
        "        os.write(w, b'1')\n        time.sleep(30)\n        os._exit(0)\n    os.read(r, 1)\n    return pid"
    )
    with SandboxPool(1, limits=FAST, namespaces=False) as p:
        out = attack(p, code)
        assert out.ok
        state = _proc_state(out.value)
        assert state in (None, "Z"), f"escaped process still {state}"


def _proc_state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return None


# ------------------------------------------------------------------ IPC and /proc (per job)
_IPC_CREAT = 0o1000
_IPC_RMID = 0


def _ipc_code(key, mq_name):
    # Creates (or, with create=False, looks up) a touched-then-detached SysV segment, a SysV
    # queue and semaphore set, and a POSIX message queue; returns their ids (-1: not there).
    return (
        "import ctypes, os\ndef f(create):\n    libc = ctypes.CDLL(None, use_errno=True)\n"
        "    libc.shmat.restype = ctypes.c_void_p\n"
        f"    flags = ({_IPC_CREAT} | 0o600) if create else 0\n"
        f"    shm = libc.shmget({key}, 1 << 20, flags)\n"
        "    if shm >= 0:\n        addr = libc.shmat(shm, None, 0)\n"
        "        ctypes.memset(addr, 1, 1 << 20)\n        libc.shmdt(ctypes.c_void_p(addr))\n"
        f"    msq = libc.msgget({key}, flags)\n    sem = libc.semget({key}, 1, flags)\n"
        "    oflag = (os.O_CREAT | os.O_RDWR) if create else os.O_RDONLY\n"
        f"    mq = libc.mq_open({mq_name!r}.encode(), oflag, 0o600, None)\n"
        "    return [shm, msq, sem, mq]"
    )


def _host_sysv_keys():
    keys = set()
    for kind in ("shm", "msg", "sem"):
        with open(f"/proc/sysvipc/{kind}") as fh:
            keys.update((kind, int(line.split()[0])) for line in list(fh)[1:])
    return keys


def _host_mq_exists(name):
    libc = ctypes.CDLL(None, use_errno=True)
    mqd = libc.mq_open(name.encode(), os.O_RDONLY)
    if mqd >= 0:
        libc.mq_close(mqd)
        libc.mq_unlink(name.encode())  # leave nothing behind even when the test fails
    return mqd >= 0


def _host_remove_sysv(key):
    libc = ctypes.CDLL(None, use_errno=True)
    shm, msq, sem = libc.shmget(key, 0, 0), libc.msgget(key, 0), libc.semget(key, 0, 0)
    if shm >= 0:
        libc.shmctl(shm, _IPC_RMID, None)
    if msq >= 0:
        libc.msgctl(msq, _IPC_RMID, None)
    if sem >= 0:
        libc.semctl(sem, 0, _IPC_RMID)


@pytest.fixture(scope="module")
def unprivileged_pool():
    with SandboxPool(1, limits=FAST, unprivileged=True) as p:
        yield p


@pytest.fixture(params=["root", "unprivileged"])
def either_pool(request):
    """The root layout (uid drop) and the non-root one (user namespace)."""
    return request.getfixturevalue("pool" if request.param == "root" else "unprivileged_pool")


def _having(pool, cap):
    """`pool`, or a skip naming the missing per-job layer and the pool's notes."""
    if not pool.capabilities.get(cap):
        pytest.skip(f"{cap} unavailable: {pool.capabilities['notes']}")
    return pool


def test_ipc_objects_die_with_the_job(either_pool):
    pool = either_pool
    caps = pool.capabilities
    key = 0x5E000000 + uuid.uuid4().int % 0xFFFFFF
    mq_name = f"/evx-{uuid.uuid4().hex[:12]}"
    code = _ipc_code(key, mq_name)
    try:
        made = pool.submit(RUN_CALL, {"code": code, "call": "f(True)"}, worker=0).result()
        assert made.ok and all(i >= 0 for i in made.value), made  # the job could create them all
        host = {k for k in _host_sysv_keys() if k[1] == key}
        on_host = _host_mq_exists(mq_name)
        # The next job on the same worker finds none of them: no channel between jobs.
        later = pool.submit(RUN_CALL, {"code": code, "call": "f(False)"}, worker=0).result()
        if not caps.get("ipcns"):
            pytest.skip(f"no IPC namespace per job: {caps['notes']}")
        assert host == set() and not on_host
        assert later.ok and later.value == [-1, -1, -1, -1], later
    finally:
        _host_remove_sysv(key)
        _host_mq_exists(mq_name)


def test_proc_lists_only_the_job_processes(either_pool):
    pool = _having(either_pool, "private_proc")
    code = (
        "import os, subprocess, sys\ndef ppid(pid):\n"
        "    with open(f'/proc/{pid}/status') as fh:\n"
        "        return int([l for l in fh if l.startswith('PPid:')][0].split()[1])\n"
        "def f():\n    child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
        "    listed = sorted(int(p) for p in os.listdir('/proc') if p.isdigit())\n"
        "    out = listed, os.getpid(), child.pid, ppid('self'), ppid(child.pid), os.getppid()\n"
        "    child.kill()\n    return out"
    )
    out = attack(pool, code)
    assert out.ok, out
    listed, me, child, my_ppid, child_ppid, getppid = out.value
    assert me == 1 and listed == sorted([1, child])  # the job is its namespace's init; nothing else
    assert my_ppid == 0 and getppid == 0 and child_ppid == 1  # no host PID leaks through PPid


def test_host_process_under_the_sandbox_uid_is_invisible(pool):
    # A host process running as the uid a job runs as (a leftover, or another tool's) was
    # visible through the host's /proc: the job could read its environ and write its memory.
    caps = pool.capabilities
    if not (caps.get("uid_drop") and caps.get("private_proc")):
        pytest.skip("needs the uid drop (root) and a procfs of the job's own")
    marker = f"host-secret-{uuid.uuid4().hex}"
    uid = caps["uid"]
    host = subprocess.Popen(["sleep", "30"], user=uid, group=uid, extra_groups=[], env={"SECRET": marker})
    try:
        code = (
            "import os\ndef f():\n    seen = []\n    for p in os.listdir('/proc'):\n        if p.isdigit():\n"
            "            try:\n                seen.append(open(f'/proc/{p}/environ', 'rb').read().decode(errors='replace'))\n"
            "            except OSError:\n                pass\n"
            f"    for path, mode in (('/proc/{host.pid}/environ', 'rb'), ('/proc/{host.pid}/mem', 'r+b')):\n"
            "        try:\n            with open(path, mode) as fh:\n"
            "                seen.append('opened ' + fh.read(64).decode(errors='replace') if mode == 'rb' else 'opened for writing')\n"
            "        except OSError as e:\n            seen.append(type(e).__name__)\n    return seen"
        )
        out = attack(pool, code)
        assert out.ok and not any(marker in s for s in out.value), out
        assert set(out.value[-2:]) <= {"FileNotFoundError", "PermissionError"}, out  # environ, mem
    finally:
        host.kill()
        host.wait()


def test_posix_shm_is_the_job_own_and_dies_with_it(either_pool):
    pool = _having(either_pool, "private_shm")
    name = f"evx-{uuid.uuid4().hex[:12]}"
    code = (
        "import os\ndef f(write):\n    p = '/dev/shm/" + name + "'\n    if write:\n"
        "        with open(p, 'wb') as fh:\n            fh.write(b'x' * 4096)\n"
        "    return os.listdir('/dev/shm')"
    )
    first = pool.submit(RUN_CALL, {"code": code, "call": "f(True)"}, worker=0).result()
    second = pool.submit(RUN_CALL, {"code": code, "call": "f(False)"}, worker=0).result()
    assert first.ok and first.value == [name], first  # POSIX shm works inside the job...
    assert second.ok and second.value == [], second  # ...and is gone for the next one
    assert not os.path.exists(f"/dev/shm/{name}")


def test_sysv_ipc_within_a_job_is_capped(either_pool):
    # Detached SysV segments are outside RLIMIT_AS: the job's IPC namespace caps their total at
    # the job's memory limit (one job once pinned 1.5 GB under a 1 GB limit), and queues and
    # semaphore sets at small counts.
    pool = _having(either_pool, "ipc_limits")
    code = (
        "import ctypes\ndef f():\n    libc = ctypes.CDLL(None, use_errno=True)\n"
        "    shm = [libc.shmget(0, 64 << 20, 0o1000 | 0o600) for _ in range(10)]\n"
        "    msq = [libc.msgget(0, 0o1000 | 0o600) for _ in range(40)]\n"
        "    sem = [libc.semget(0, 250, 0o1000 | 0o600) for _ in range(40)]\n"
        "    return [sum(x >= 0 for x in ids) for ids in (shm, msq, sem)]"
    )
    out = attack(pool, code, Limits(timeout_s=5.0, memory_mb=256))
    assert out.ok and out.value == [4, 16, 4], out  # 4 x 64 MB = the 256 MB limit
