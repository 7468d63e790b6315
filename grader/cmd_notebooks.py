"""`k8snet check` (a learner checks a notebook) and `k8snet grade` (an instructor grades all)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console()


def _fmt(points: float) -> str:
    return f"{points:g}"


LabArg = Annotated[str, typer.Argument(help="lab id, e.g. 01-netns-veth")]


def _default_notebook(lab: str, repo: Path) -> Path:
    """The learner's working copy under ./labs (in Docker: /workspace/labs), else the release."""
    here = Path.cwd() / "labs" / lab / f"{lab}.ipynb"
    return here if here.is_file() else repo / "labs" / lab / f"{lab}.ipynb"


def check(
    lab: LabArg,
    notebook: Annotated[
        Path | None,
        typer.Argument(
            help="notebook to check (default: ./labs/<lab>/<lab>.ipynb, your working copy, "
            "else the course's release copy)"
        ),
    ] = None,
    sandbox: Annotated[
        bool, typer.Option(help="run the kernel in a sandbox, as `k8snet grade` does")
    ] = False,
) -> None:
    """Run a lab notebook from the top and grade it: each check, its points, its feedback."""
    from grader.grading import self_check
    from grader.labs import load_lab
    from grader.nbtools import REPO

    _known_lab(lab, load_lab)
    path = notebook or _default_notebook(lab, REPO)
    if not path.is_file():
        console.print(f"[red]no notebook at {path}[/]")
        raise typer.Exit(2)
    if sandbox:
        from grader.sandbox import unavailable_reason

        why = unavailable_reason()
        if why:
            console.print(f"[red]cannot check in a sandbox: {escape(why)}[/]")
            raise typer.Exit(2)
    console.print(f"running {path} (every cell, in order; checks judged outside the kernel)")
    outcomes = self_check(lab, path, sandbox=sandbox)
    for o in outcomes:
        color = "green" if o.verdict.passed else "red"
        console.rule(
            f"[{color}]{escape(o.check.id)}[/]  {_fmt(o.points)}/{_fmt(o.check.points)}",
            align="left",
        )
        console.print(escape(o.verdict.render()))
    score = sum(o.points for o in outcomes)
    total = sum(o.check.points for o in outcomes)
    print(f"score: {_fmt(score)}/{_fmt(total)}")
    if score < total:
        raise typer.Exit(1)


def grade(
    lab: LabArg,
    course: Annotated[Path, typer.Option(help="nbgrader course folder (holds submitted/)")] = Path(
        "."
    ),
    csv_path: Annotated[
        Path | None, typer.Option("--csv", help="CSV to write (default grades-<lab>.csv)")
    ] = None,
    timeout: Annotated[float, typer.Option(help="seconds one submission may take")] = 900.0,
    jobs: Annotated[int, typer.Option(help="submissions graded at once")] = 1,
    sandbox: Annotated[
        bool,
        typer.Option(help="one sandbox per submission (--no-sandbox: trusted notebooks only)"),
    ] = True,
) -> None:
    """Autograde every submission of a lab with nbgrader; print a score table, write a CSV."""
    from grader.grading import GradebookTampered, grade_submissions, students, write_csv
    from grader.labs import load_lab
    from grader.sandbox import unavailable_reason

    _known_lab(lab, load_lab)
    course = course.resolve()
    who = students(course, lab)
    if not who:
        console.print(f"[red]no submissions under {course / 'submitted'}/*/{lab}[/]")
        raise typer.Exit(2)
    why = unavailable_reason() if sandbox else ""
    if why:
        console.print(f"[red]cannot grade in a sandbox: {escape(why)}[/]")
        console.print("--no-sandbox grades without one (only for notebooks you trust)")
        raise typer.Exit(2)
    if not sandbox:
        console.print("[yellow]no sandbox: a submission can read and change this machine[/]")
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task(f"grading {lab} ({jobs} at a time)", total=len(who))
        try:
            rows = grade_submissions(
                course,
                lab,
                timeout,
                progress=lambda sub: bar.advance(task),
                jobs=jobs,
                sandbox=sandbox,
            )
        except GradebookTampered as exc:
            console.print(f"[red]{escape(str(exc))}[/]")
            raise typer.Exit(3) from None
    table = Table(title=f"{lab}: {len(rows)} submissions")
    for col in ("student", "score", "status"):
        table.add_column(col)
    for r in rows:
        status = "[green]ok[/]" if r.status == "ok" else f"[red]{escape(r.status)}[/]"
        if r.notes:
            status += f"\n[yellow]{escape('; '.join(r.notes))}[/]"
        table.add_row(r.student, f"{_fmt(r.score)}/{_fmt(r.max_score)}", status)
    console.print(table)
    out = csv_path or course / f"grades-{lab}.csv"
    write_csv(rows, out, lab)
    console.print(f"wrote {out}")


def _known_lab(lab: str, load_lab: Callable[[str], object]) -> None:
    """Exit 2 with a readable message when `lab` has no check table in grader/labs."""
    try:
        load_lab(lab)
    except (ValueError, LookupError, ImportError) as exc:
        console.print(f"[red]unknown lab {lab!r}: {escape(str(exc))}[/]")
        raise typer.Exit(2) from None


def register(app: typer.Typer) -> None:
    app.command()(check)
    app.command()(grade)
