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
  grading process (`Integrity.digest`).

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
import subprocess
import sys
import tempfile
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
# Files of a copied package that Python never loads.
SKIP_SUFFIXES = (".pyc", ".pyi", ".md", ".txt", ".rst")
MANIFEST = "manifest.json"
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


def _copy_tree(src: Path, dest: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "tests", "test")
    shutil.copytree(src, dest, ignore=ignore)


def _shared_libraries(binary: str) -> list[str]:
    """The shared libraries `binary` loads (from ldd, run before any kernel exists)."""
    out = subprocess.run([tool("ldd"), binary], capture_output=True, text=True, timeout=10)
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
    for binary in binaries:
        files.update(os.path.realpath(lib) for lib in _shared_libraries(binary))
    for xtables in Path("/usr/lib").glob("*/xtables"):
        files.update(str(p) for p in xtables.glob("*.so"))
    return sorted(files)


def stdlib_files() -> list[str]:
    """Every module file of the standard library the verifier may import lazily."""
    lib = os.path.dirname(os.__file__)
    skip = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "site-packages"}
    found = []
    for folder, subdirs, names in os.walk(lib):
        subdirs[:] = [d for d in subdirs if d not in skip and d != "__pycache__"]
        found += [os.path.join(folder, n) for n in names if n.endswith((".py", ".so"))]
    return sorted(found)


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
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="k8snet-verifier-", dir=parent))
    _copy_tree(REPO / "course", root / "course")
    _copy_tree(REPO / "grader", root / "grader")
    for name in VERIFIER_PACKAGES:
        _copy_tree(_package_dir(name), root / name)
    for i, folder in enumerate(extra_labs or []):
        _copy_tree(folder, root / f"extra_labs_{i}")
    files = {
        str(p): _sha256(p)
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(SKIP_SUFFIXES)
    }
    for path in (*outside_files(), *stdlib_files()):
        files[path] = _sha256(Path(path))
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
    return Integrity(root, files, hashlib.sha256(data).hexdigest())


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
