"""The verifier's own integrity: a read-only, hashed copy of its code, and hashed tools.

A learner's kernel runs as root (it must, to build namespaces). Whatever the verifier
would load from the shared disk later (a library file, a `sitecustomize.py` or `.pth` that
Python's `site` runs at start-up, an `iptables-save` earlier in `PATH`) the kernel could
have rewritten first. So, before the first kernel of a grading run starts:

- the grader, the course code and the libraries the verifier imports are copied into one
  folder (`VerifierCopy`), made read-only, and the verifier runs from it with `python -I -S`
  (no `PYTHON*` variables, no user or system site-packages, so no `.pth` and no
  `sitecustomize`), its `sys.path` pointing at the copy first;
- the tools the checks run (`nsenter`, `iptables-save`, `conntrack`, `nft`, ...) are found in
  a fixed `PATH` of system folders (never `/usr/local` or a venv), by absolute path;
- sha256 of every file of the copy, of the interpreter, of the tools and of the shared
  libraries they load is recorded in a manifest; the manifest's own digest stays with the
  grading process (`Integrity.digest`);
- the copy carries the compiled bytecode (`__pycache__/*.pyc`) Python would load for each
  copied module, and the standard library's bytecode is hashed with its sources: what the
  verifier executes is the `.pyc`, not the `.py` (see `_valid_bytecode`).

Every verdict is accepted only if a fresh hash of all those files still matches
(`Integrity.changed`), so a library edited with its size and mtime kept, or a tool
replaced, turns every later check into "grading was interfered with" instead of points.

What this does not stop: a root kernel outside a sandbox (`k8snet check` without
`--sandbox`) can still ptrace or signal the verifier; signals are noticed (the verifier
is never restarted silently), memory writes are not. Batch grading runs each kernel in a
sandbox (`grader.sandbox`) where the verifier and this copy are not even visible.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import shutil
import stat
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from grader.nbtools import REPO

# The only folders the verifier looks for programs in: root-owned system folders.
FIXED_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
# What the verifier imports (found with `python -X importtime` on every lab's checks).
VERIFIER_PACKAGES = ("scapy", "pyroute2", "psutil", "yaml", "graphviz")
# The programs checks run inside lab namespaces.
VERIFIER_TOOLS = (
    "nsenter",
    "ip",
    "iptables",
    "iptables-save",
    "iptables-restore",
    "ip6tables-restore",
    "nft",
    "conntrack",
    "tcpdump",
    "stdbuf",
    "ping",  # lab 03: DF pings with the kernel's own ping
    "bird",  # lab 03: `bird -p` parse-checks a learner's config
    "birdc",  # lab 03: BGP session state
)
# Files of a copied package that Python never loads (bytecode it does load: it is hashed).
SKIP_SUFFIXES = (".pyi", ".md", ".txt", ".rst")
MANIFEST = "manifest.json"
COPY_PREFIX = "k8snet-verifier-"  # grader.lifecycle.reap_stale_copies looks for it
SHM = Path("/dev/shm")
SHM_NEEDED = 256 << 20  # a copy is about 40 MB; leave room for everything else there
FORKSERVER = "python-forkserver"
# The probes' forkserver is started by multiprocessing as `<executable> <flags> -c CODE`.
# Python 3.11 does not hand a forkserver the parent's sys.path, and -I ignores PYTHONPATH,
# so this launcher puts the copy first on sys.path inside CODE; without it the forkserver
# could not preload Scapy and every probe would import it again (seconds each).
FORKSERVER_SH = """#!/bin/sh
first=1
for arg do
  if [ "$first" = 1 ]; then set --; first=0; fi
  if [ "$prev" = "-c" ]; then
    set -- "$@" "import sys; sys.path.insert(0, '@ROOT@'); $arg"
  else
    set -- "$@" "$arg"
  fi
  prev=$arg
done
exec '@PY@' "$@"
"""
CTIME_MARGIN_NS = 1_000_000_000  # file times come from a coarse clock: one second is ample
HOOK_MARK = "startup-hook:"  # manifest keys recording the hooks present at start


def startup_hooks() -> list[str]:
    """`.pth` files and `sitecustomize`/`usercustomize` modules Python's `site` would run.

    The verifier runs with -S and never runs them; a new one appearing while grading still
    means a notebook planted code for whoever starts Python next, so it is flagged.
    """
    import site

    folders = {*site.getsitepackages(), site.getusersitepackages()}
    for path in sys.path:
        if path.endswith("site-packages"):
            folders.add(path)
    found = []
    for folder in sorted(folders):
        with contextlib.suppress(OSError):
            for name in os.listdir(folder):
                if name.endswith(".pth") or name.split(".")[0] in (
                    "sitecustomize",
                    "usercustomize",
                ):
                    found.append(os.path.join(folder, name))
    return sorted(found)


@dataclass
class Integrity:
    """A verifier copy's manifest (file -> sha256) and the digest of that manifest."""

    root: Path
    files: dict[str, str] = field(default_factory=dict)
    digest: str = ""
    # (device, inode, size, mtime, ctime) of each file when its content was last verified.
    # `utime()` can put an mtime back but sets ctime to "now"; only moving the system clock
    # (CAP_SYS_TIME, which no sandboxed kernel has) could fake it. A file whose stat differs
    # is hashed again; one whose stat is unchanged has the content it was verified with.
    _verified: dict[str, tuple[int, ...]] = field(default_factory=dict, repr=False)

    def changed(self) -> list[str]:
        """Files whose content differs from the manifest (missing files count as changed),
        and start-up hooks (`.pth`, `sitecustomize`) that appeared in site-packages since."""
        changed = []
        for path, want in self.files.items():
            if path.startswith(HOOK_MARK):
                continue
            stamp = _stamp(path)
            if stamp is not None and self._verified.get(path) == stamp:
                continue
            if _sha256(Path(path)) != want:
                changed.append(path)
            elif stamp is not None:
                self._verified[path] = stamp
        known = {p for p in self.files if p.startswith(HOOK_MARK)}
        changed += [f"new start-up hook {h}" for h in startup_hooks() if HOOK_MARK + h not in known]
        return changed

    def remember_stamps(self, ours: set[str], theirs: Iterable[str], since_ns: int) -> None:
        """Record the stat of files just hashed, so the first `changed()` need not hash them
        all again (half a second of CPU, during the first check).

        Only `make_copy` calls it, before any kernel exists. `ours`: files of the copy,
        written and made read-only by this process in its own fresh folder. `theirs`: the
        tools and the standard library, whose stamp is kept only if their ctime is older
        than the start of hashing (by a margin for the kernel's coarse clock): a file
        written meanwhile is hashed again by the first `changed()`.
        """
        for path in ours:
            if (stamp := _stamp(path)) is not None:
                self._verified[path] = stamp
        for path in theirs:
            stamp = _stamp(path)
            if stamp is not None and stamp[4] < since_ns - CTIME_MARGIN_NS:
                self._verified[path] = stamp

    @classmethod
    def load(cls, root: Path, digest: str) -> Integrity:
        """Read the manifest of an existing copy; refuse it unless its digest matches."""
        data = (root / MANIFEST).read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise IntegrityError(f"the manifest of {root} does not match its digest")
        return cls(root, json.loads(data), digest)  # first changed() hashes every file


class IntegrityError(RuntimeError):
    """The verifier's copy, or a tool it uses, is not what it was when grading started."""


def _stamp(path: str) -> tuple[int, ...] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    try:
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    except OSError:
        return "missing"
    return h.hexdigest()


def tool(name: str) -> str:
    """Absolute path of `name` in FIXED_PATH (never /usr/local, never the caller's PATH)."""
    found = shutil.which(name, path=FIXED_PATH)
    if found is None:
        raise IntegrityError(f"{name} is not installed in {FIXED_PATH}")
    return found


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise IntegrityError(f"the verifier needs the package {name}, which is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


PYC_TAG = f".{sys.implementation.cache_tag}.pyc"  # the bytecode this interpreter loads


def _valid_bytecode(data: bytes, source: os.stat_result) -> bool:
    """Is `data` a `.pyc` Python would load for a source with this stat (timestamp mode)?

    Why the copy carries bytecode: it is read-only, so a verifier started without it
    compiles every module it imports (Scapy, pyroute2, the grader) again, in memory, each
    time: about 2 s of CPU per verifier and per probe forkserver, paid while the learner's
    kernel runs its first cells on the same cores. Copying the bytecode keeps the integrity
    guarantee as it is: only the `.pyc` Python would load for this very source anyway (its
    header naming this source's mtime and size) is taken, from the same disk the source
    is copied from, at the same moment (the grading process already runs its own code,
    `grader` and `nbgrader`, from such bytecode). In the copy it is read-only and hashed
    in the manifest like every other file, so a changed `.pyc` fails every later verdict.
    """
    want = importlib.util.MAGIC_NUMBER + struct.pack(
        "<III", 0, int(source.st_mtime) & 0xFFFFFFFF, source.st_size & 0xFFFFFFFF
    )
    return data[:16] == want


def _cached(folder: str) -> set[str]:
    try:
        return {n for n in os.listdir(os.path.join(folder, "__pycache__")) if n.endswith(PYC_TAG)}
    except OSError:
        return set()


def _copy_tree(src: Path, dest: Path) -> dict[str, str]:
    """Copy `src` to `dest` (tests left out); return {copied file: sha256}.

    Each file is read once, written with its mtime kept (its bytecode's header names it)
    and hashed from the same bytes. `__pycache__` is left out too, except each module's
    valid bytecode.
    """
    files: dict[str, str] = {}
    for folder, subdirs, names in os.walk(src):
        subdirs[:] = sorted(d for d in subdirs if d not in ("__pycache__", "tests", "test"))
        out = os.path.normpath(os.path.join(dest, os.path.relpath(folder, src)))
        os.makedirs(out, exist_ok=True)
        cached = _cached(folder)
        if cached:
            os.mkdir(os.path.join(out, "__pycache__"))
        for name in sorted(names):
            if name.endswith(".pyc"):
                continue
            st, digest = _copy_file(os.path.join(folder, name), os.path.join(out, name))
            if not name.endswith(SKIP_SUFFIXES):
                files[os.path.join(out, name)] = digest
            pyc = name[:-3] + PYC_TAG
            if name.endswith(".py") and pyc in cached:
                _copy_bytecode(os.path.join(folder, "__pycache__", pyc), out, st, files)
    return files


def _copy_file(src: str, dest: str) -> tuple[os.stat_result, str]:
    with open(src, "rb") as f:
        st = os.fstat(f.fileno())
        data = f.read()
    with open(dest, "wb") as f:
        f.write(data)
    os.utime(dest, ns=(st.st_atime_ns, st.st_mtime_ns))
    return st, hashlib.sha256(data).hexdigest()


def _copy_bytecode(pyc: str, out: str, source: os.stat_result, files: dict[str, str]) -> None:
    with open(pyc, "rb") as f:
        data = f.read()
    if not _valid_bytecode(data, source):
        return  # stale: Python would compile the source instead, as without a .pyc
    dest = os.path.join(out, "__pycache__", os.path.basename(pyc))
    with open(dest, "wb") as f:
        f.write(data)
    files[dest] = hashlib.sha256(data).hexdigest()


def _shared_libraries(binaries: list[str]) -> list[str]:
    """The shared libraries `binaries` load (from one ldd, run before any kernel exists)."""
    out = subprocess.run([tool("ldd"), *binaries], capture_output=True, text=True, timeout=10)
    return re.findall(r"(/\S+\.so[.\d]*)", out.stdout)


def outside_files() -> list[str]:
    """The interpreter, the tools, their shared libraries and iptables' extensions."""
    binaries = {os.path.realpath(sys.executable)}
    for name in VERIFIER_TOOLS:
        try:
            binaries.add(os.path.realpath(tool(name)))
        except IntegrityError:
            continue  # a lab that needs it fails with a clear error of its own
    files = set(binaries)
    files.update(os.path.realpath(lib) for lib in _shared_libraries(sorted(binaries)))
    for xtables in Path("/usr/lib").glob("*/xtables"):
        files.update(str(p) for p in xtables.glob("*.so"))
    return sorted(files)


def stdlib_files() -> dict[str, str]:
    """{file: sha256} of every module of the standard library the verifier may import
    lazily: `.py`, `.so`, and the bytecode Python loads instead of a `.py` when it is
    valid (a `.pyc` rewritten with its header kept would otherwise run unnoticed in a probe
    that imports its module after the kernel started)."""
    lib = os.path.dirname(os.__file__)
    skip = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "site-packages"}
    found = {}
    for folder, subdirs, names in os.walk(lib):
        subdirs[:] = [d for d in subdirs if d not in skip and d != "__pycache__"]
        cached = _cached(folder)
        for name in names:
            if not name.endswith((".py", ".so")):
                continue
            path = os.path.join(folder, name)
            found[path] = _sha256(Path(path))
            pyc = name[:-3] + PYC_TAG
            if name.endswith(".py") and pyc in cached:
                pyc_path = os.path.join(folder, "__pycache__", pyc)
                with contextlib.suppress(OSError), open(pyc_path, "rb") as f:
                    data = f.read()
                    if _valid_bytecode(data, os.stat(path)):
                        found[pyc_path] = hashlib.sha256(data).hexdigest()
    return found


def _make_read_only(root: Path) -> None:
    for path in sorted(root.rglob("*"), reverse=True):
        mode = path.lstat().st_mode
        if stat.S_ISDIR(mode):
            path.chmod(0o555)
        elif stat.S_ISREG(mode):
            path.chmod(0o555 if path.name == FORKSERVER else 0o444)
    root.chmod(0o555)


def make_copy(extra_labs: list[Path] | None = None, parent: Path | None = None) -> Integrity:
    """Copy the verifier's code into a fresh read-only folder and hash it and its tools.

    Call it before any kernel of the grading run starts: what is recorded now is what every
    verdict is compared against.
    """
    parent = parent or copy_parent()
    parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix=COPY_PREFIX, dir=parent))
    trees = [(REPO / "course", root / "course"), (REPO / "grader", root / "grader")]
    trees += [(_package_dir(name), root / name) for name in VERIFIER_PACKAGES]
    trees += [(folder, root / f"extra_labs_{i}") for i, folder in enumerate(extra_labs or [])]
    files: dict[str, str] = {}
    for src, dest in trees:
        files.update(_copy_tree(src, dest))
    before_hashing = time.time_ns()
    outside = {path: _sha256(Path(path)) for path in outside_files()}
    outside.update(stdlib_files())
    files.update(outside)
    for hook in startup_hooks():
        files[HOOK_MARK + hook] = "present"
    launcher = root / FORKSERVER
    launcher.write_text(
        FORKSERVER_SH.replace("@ROOT@", str(root)).replace("@PY@", os.path.realpath(sys.executable))
    )
    files[str(launcher)] = _sha256(launcher)
    data = json.dumps(files, indent=0, sort_keys=True).encode()
    (root / MANIFEST).write_bytes(data)
    _make_read_only(root)
    made = Integrity(root, files, hashlib.sha256(data).hexdigest())
    made.remember_stamps(set(files) - set(outside), outside, before_hashing)
    return made


def copy_folders() -> list[Path]:
    """Every folder a copy may be made in (see `copy_parent`)."""
    return list(dict.fromkeys([SHM, Path(tempfile.gettempdir())]))


def copy_parent() -> Path:
    """Where copies are made: /dev/shm when it has room, else the temporary folder.

    A copy is some 3,000 files (sources, bytecode, data) written and hashed before the
    learner's kernel may start, so it is on the critical path of every graded notebook. On
    a disk shared with other work, creating them took 1-4 s; in memory (tmpfs) about 1 s.
    Docker's default /dev/shm (64 MB) is too small for a copy and its margin: then /tmp.
    A copy left by a killed grader is removed by `grader.lifecycle.reap_stale_copies`,
    which looks in both folders (in /dev/shm it would hold memory until reboot).
    """
    try:
        st = os.statvfs(SHM)
    except OSError:
        return Path(tempfile.gettempdir())
    return SHM if st.f_bavail * st.f_frsize >= SHM_NEEDED else Path(tempfile.gettempdir())


def remove_copy(integrity: Integrity) -> None:
    for path in [integrity.root, *integrity.root.rglob("*")]:
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)
    shutil.rmtree(integrity.root, ignore_errors=True)


def extra_lab_folders() -> list[Path]:
    return [Path(p) for p in filter(None, os.environ.get("K8SNET_EXTRA_LABS", "").split(":"))]


def verifier_argv(integrity: Integrity, *args: str) -> list[str]:
    """`python -I -S` with the copy first on sys.path, running `grader.verify`'s main."""
    boot = (
        "import sys, multiprocessing; sys.path.insert(0, sys.argv[1]); "
        f"multiprocessing.set_executable(sys.argv[1] + '/{FORKSERVER}'); del sys.argv[1]; "
        "from grader.verify import main; sys.exit(main(sys.argv[1:]))"
    )
    python = os.path.realpath(sys.executable)
    return [python, "-I", "-S", "-c", boot, str(integrity.root), *args]


def verifier_env(integrity: Integrity) -> dict[str, str]:
    """A fixed environment: system PATH only, the copied extra labs, nothing else inherited."""
    n = len(extra_lab_folders())
    extra = ":".join(str(integrity.root / f"extra_labs_{i}") for i in range(n))
    env = {"PATH": FIXED_PATH, "LANG": "C.UTF-8", "HOME": "/root"}
    if extra:
        env["K8SNET_EXTRA_LABS"] = extra
    if "K8SNET_NS_PREFIX" in os.environ:
        env["K8SNET_NS_PREFIX"] = os.environ["K8SNET_NS_PREFIX"]
    return env
