"""`k8snet shell [LAB] ROLE`: a bash inside one namespace of a running lab.

    k8snet up 01-netns-veth && k8snet shell node1
    [01-netns-veth node1] # ip -br addr

The run is the newest live one under this K8SNET_NS_PREFIX (of LAB, if given): made by
`k8snet up` or by a notebook whose kernel still runs. Roles resolve exactly as in `%%ns`
cells and in the checks (`course.roles`). With a terminal, the shell is interactive and its
prompt names the lab and the role; with commands on stdin instead (`echo 'ip route' |
k8snet shell node1`), it runs them and exits with their status.
"""

from __future__ import annotations

import os
import sys

import typer

_WORDS = typer.Argument(..., metavar="[LAB] ROLE", help="e.g. node1, or 01-netns-veth pod-a")


def shell(words: list[str] = _WORDS) -> None:
    """A bash inside ROLE's namespace of the newest live lab run (LAB narrows the choice)."""
    from course.roles import UnknownRole, newest_live_run, resolve

    if len(words) not in (1, 2):
        _fail("usage: k8snet shell [LAB] ROLE   e.g. k8snet shell 01-netns-veth node1")
    lab, role = (None, words[0]) if len(words) == 1 else (words[0], words[1])
    record = newest_live_run(lab)
    if record is None:
        which = f"of {lab} " if lab else ""
        _fail(f"no live lab run {which}found: start one with `k8snet up LAB` or a lab notebook")
    try:
        name = resolve(record, role)
    except UnknownRole as exc:
        _fail(str(exc))
    env = {
        **os.environ,
        "RUN": record.prefix,
        "LAB": record.lab,
        "ROLE": role,
        "NS": name,
        "PS1": f"[{record.lab} {role}] \\$ ",
    }
    bash = ["bash", "--noprofile", "--norc"]
    bash += ["-i"] if sys.stdin.isatty() else ["-s"]
    sys.stdout.flush()
    os.execvpe("nsenter", ["nsenter", f"--net=/run/netns/{name}", "--", *bash], env)


def _fail(message: str) -> None:
    print(message, file=sys.stderr)
    raise typer.Exit(2)


def register(app: typer.Typer) -> None:
    app.command()(shell)
