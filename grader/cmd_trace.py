"""`k8snet trace`: send one real packet in a running lab and show every iptables table and
chain it met, in order, with the rules that matched ("why did my connection go there?").

    k8snet trace node1-a --to 10.96.0.10:80                 # pod a's SYN, traced in node1
    k8snet trace 06-kube-proxy node1-d --to 10.96.0.10:80 --connect
    k8snet trace node1 --to 10.244.1.2:8080 --svg path.svg  # a node process sends
    k8snet trace node1-a --to 10.244.2.2 --proto icmp --at node2

The lab run is the newest live one (of LAB, if given). FROM is the sender's role; the
trace is taken in `--at` (default: the node the sender belongs to, or the sender itself).
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from course.runs import PREFIX, RunRecord, load_runs


def newest_run(lab: str | None) -> RunRecord | None:
    """The most recently started live run (of `lab`) under this K8SNET_NS_PREFIX."""
    live = [
        r
        for r in load_runs()
        if r.prefix.startswith(PREFIX + "-")
        and (lab is None or r.lab == lab)
        and (r.detached or r.owner_alive())
        and r.path.exists()
    ]
    return max(live, key=lambda r: r.path.stat().st_mtime, default=None)


def default_at(role: str) -> str:
    """Where to trace a packet sent by `role`: a pod's node (`node1-a` -> `node1`)."""
    head = role.split("-", 1)[0]
    return head if head.startswith("node") and head[4:].isdigit() else role


def parse_target(text: str) -> tuple[str, int | None]:
    host, _, port = text.rpartition(":") if ":" in text else (text, "", "")
    return host, int(port) if port else None


def trace_command(
    args: Annotated[list[str], typer.Argument(help="[LAB] FROM: the sender's role, e.g. node1-a")],
    to: str = typer.Option(..., "--to", help="destination IP:PORT (IP alone for --proto icmp)"),
    proto: str = typer.Option("tcp", "--proto", help="tcp, udp or icmp"),
    at: str = typer.Option(None, "--at", help="role to trace in (default: the sender's node)"),
    connect: bool = typer.Option(
        False, "--connect", help="a real TCP connection (every packet of it), not one SYN"
    ),
    payload: str = typer.Option("", "--payload", help="bytes to send on the connection"),
    svg: str = typer.Option(None, "--svg", help="also write the picture to this SVG file"),
    timeout: float = typer.Option(1.0, "--timeout", help="seconds to wait for an answer"),
) -> None:
    """Trace one packet through iptables in a running lab: tables, chains, rules, verdicts."""
    from course.kernel import Netns
    from grader.tracing import trace_probe

    if len(args) not in (1, 2) or proto not in ("tcp", "udp", "icmp"):
        print(
            "usage: k8snet trace [LAB] FROM --to IP[:PORT] [--proto tcp|udp|icmp]", file=sys.stderr
        )
        raise typer.Exit(2)
    lab, sender = (None, args[0]) if len(args) == 1 else (args[0], args[1])
    run = newest_run(lab)
    if run is None:
        print(f"no live lab run{' of ' + lab if lab else ''}: start the lab first", file=sys.stderr)
        raise typer.Exit(2)
    dst, port = parse_target(to)
    if proto != "icmp" and port is None:
        print(f"--to {to}: a {proto} probe needs a port (IP:PORT)", file=sys.stderr)
        raise typer.Exit(2)
    where = at or default_at(sender)
    names = {role: Netns(f"{run.prefix}-{role}") for role in (sender, where)}
    missing = [f"{role} ({ns.name})" for role, ns in names.items() if not ns.exists()]
    if missing:
        roles = sorted(n[len(run.prefix) + 1 :] for n in run.namespaces)
        print(f"no namespace {', '.join(missing)} in run {run.prefix} ({run.lab}); "
              f"roles: {', '.join(roles)}", file=sys.stderr)  # fmt: skip
        raise typer.Exit(2)
    t = trace_probe(names[where], names[sender], dst, port, proto,  # type: ignore[arg-type]
                    connect=connect, payload=payload.encode(), timeout=timeout)  # fmt: skip
    print(f"run {run.prefix} ({run.lab}): {t.result.describe()}")
    print(t.render())
    if svg:
        with open(svg, "wb") as f:
            f.write(t.draw().pipe(format="svg"))
        print(f"picture: {svg}")


def register(app: typer.Typer) -> None:
    app.command("trace")(trace_command)
