"""`k8snet`: the command line of k8s-netlabs.

Each sub-command lives in its own module under `grader/` and registers itself here, so
the file stays a table of contents: doctor, up, down, status (the lab runtime), check and
grade (notebooks), proxy-rules (kube-proxy's rules for a set of manifests), bench.
"""

from __future__ import annotations

import typer

app = typer.Typer(
    name="k8snet",
    help="Kubernetes pod networking labs on real Linux namespaces.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# --- registrations: one line per command module -------------------------------------------
# (each module defines `register(app: typer.Typer) -> None`)
_COMMAND_MODULES: list[str] = [
    "grader.cmd_runtime",
    "grader.cmd_proxy_rules",
    "grader.cmd_notebooks",
    "grader.cmd_cni",
    "grader.cmd_trace",
    "grader.cmd_shell",
]


def _load_commands() -> None:
    import importlib

    for mod in _COMMAND_MODULES:
        importlib.import_module(mod).register(app)


def main() -> None:
    from grader import lifecycle

    lifecycle.install()  # Ctrl+C, SIGTERM, SIGHUP: stop the kernels it started, reap their labs
    _load_commands()
    app()


if __name__ == "__main__":
    main()
