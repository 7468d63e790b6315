"""`k8snet doctor | up | down | status`: the lab runtime from the command line."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()


def doctor() -> None:
    """Check every kernel feature and tool the labs need; exit 1 naming what is missing."""
    from grader.doctor import run_checks

    table = Table(title="k8s-netlabs doctor", show_lines=False)
    for col in ("feature", "status", "detail"):
        table.add_column(col)
    results = run_checks()
    for r in results:
        mark = "[green]ok[/]" if r.ok else "[red]MISSING[/]"
        table.add_row(r.name, mark, r.detail if r.ok else f"{r.detail}\n[yellow]fix:[/] {r.fix}")
    console.print(table)
    missing = [r for r in results if not r.ok]
    if missing:
        console.print(f"[red]missing:[/] {', '.join(r.name for r in missing)}")
        for r in missing:
            console.print(f"  {r.name}: {r.fix}")
        raise typer.Exit(1)
    console.print("[green]everything the labs need is here[/]")


def up(
    lab: str = typer.Argument("sandbox", help="lab id, e.g. 01-netns-veth"),
    mode: str = typer.Option(
        None, "--mode", help="how pods reach other nodes: vxlan, bgp, host-gw or underlay"
    ),
) -> None:
    """Build a lab's cluster and leave it running (explore it with `ip netns exec`)."""
    from course.labs import topology
    from course.podnet import POD_NETWORK_OF
    from course.topology import Cluster

    try:
        spec = topology(lab)
    except KeyError as exc:
        console.print(f"[red]{exc.args[0]}[/]")
        raise typer.Exit(2) from None
    if mode is not None:
        if mode not in POD_NETWORK_OF:
            console.print(
                f"[red]unknown mode {mode!r}; choose one of {', '.join(POD_NETWORK_OF)}[/]"
            )
            raise typer.Exit(2)
        spec = {**spec, "cross_node": mode, "pod_network": POD_NETWORK_OF[mode]}
    cluster = Cluster(lab, detached=True, **spec).build()
    try:
        log = _prepare_detached(lab, cluster)
    except Exception as exc:
        cluster.destroy()
        console.print(f"[red]{lab}: its setup step failed, nothing left behind: {exc}[/]")
        raise typer.Exit(1) from None
    if log is not None:
        console.print(
            f"{lab}: servers, rules and DNS set up as the notebook does; their log: {log}"
        )
    table = Table(title=f"{lab} is up (run {cluster.prefix})")
    for col in ("role", "namespace", "addresses"):
        table.add_column(col)
    for role, ns in cluster.namespaces.items():
        addrs = ", ".join(a for a in ns.addresses() if not a.startswith("127."))
        table.add_row(role, ns.name, addrs)
    console.print(table)
    console.print(f"explore: k8snet shell {lab} ROLE (e.g. node1)    remove: k8snet down {lab}")


def _prepare_detached(lab: str, cluster: Any) -> Path | None:
    """The lab's setup step (course.labs.LAB_PREPARE), its daemons writing to a log file.

    They outlive this command, so they must not inherit its terminal or pipes: `k8snet up LAB |
    tail` would wait for them forever, and they would write into whatever the terminal shows.
    """
    from course.labs import LAB_PREPARE, prepare
    from course.runs import state_dir

    if lab not in LAB_PREPARE:
        return None
    log = state_dir(cluster.prefix) / "daemons.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    saved = [os.dup(fd) for fd in (0, 1, 2)]
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        with open(os.devnull, "rb") as null, open(log, "ab") as out:
            os.dup2(null.fileno(), 0)
            os.dup2(out.fileno(), 1)
            os.dup2(out.fileno(), 2)
            prepare(lab, cluster)
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        for fd, copy in zip((0, 1, 2), saved, strict=True):
            os.dup2(copy, fd)
            os.close(copy)
    return log


def down(
    lab: str = typer.Argument(None, help="remove this lab's runs"),
    all_: bool = typer.Option(False, "--all", help="remove every lab namespace, even orphans"),
) -> None:
    """Remove lab namespaces (and the processes inside them), including crashed runs' leftovers."""
    from course.runs import reap

    if not lab and not all_:
        console.print("[red]say which lab, or --all[/]")
        raise typer.Exit(2)
    from grader.lifecycle import reap_stale_copies

    removed = reap(lab=lab, everything=all_)
    console.print(f"removed {len(removed)} namespace(s)")
    for name in removed:
        console.print(f"  {name}")
    copies = reap_stale_copies()  # verifier copies and scratch of graders killed with SIGKILL
    if copies:
        console.print(f"removed {len(copies)} folder(s) left in /tmp by killed graders")


def status() -> None:
    """List lab runs: owner process, whether it still lives, and their namespaces."""
    from course.runs import load_runs, orphan_namespaces

    table = Table(title="lab runs")
    for col in ("run", "lab", "owner pid", "owner", "namespaces"):
        table.add_column(col)
    for rec in load_runs():
        owner = "detached" if rec.detached else ("alive" if rec.owner_alive() else "[red]gone[/]")
        table.add_row(rec.prefix, rec.lab, str(rec.pid), owner, str(len(rec.namespaces)))
    console.print(table)
    orphans = orphan_namespaces()
    if orphans:
        console.print(f"[yellow]{len(orphans)} orphan namespace(s)[/]: {' '.join(orphans)}")
        console.print("remove them with: k8snet down --all")


def bench(
    name: str = typer.Argument(None, help="one benchmark, e.g. topology; default: all"),
) -> None:
    """Run the benchmarks in benchmarks/ (each prints its own ratios against a baseline)."""
    import subprocess
    import sys
    from pathlib import Path

    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    scripts = sorted(folder.glob("*.py")) if folder.is_dir() else []
    if name:
        scripts = [s for s in scripts if s.stem == name]
    if not scripts:
        console.print(f"[red]no benchmark {name or ''} in {folder}[/]")
        raise typer.Exit(2)
    failed = []
    for script in scripts:
        console.rule(script.stem)
        if subprocess.run([sys.executable, str(script)]).returncode != 0:
            failed.append(script.stem)
    if failed:
        console.print(f"[red]failed:[/] {', '.join(failed)}")
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    app.command()(doctor)
    app.command()(up)
    app.command()(down)
    app.command()(status)
    app.command()(bench)
