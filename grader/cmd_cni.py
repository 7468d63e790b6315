"""`k8snet cni install DIR`: put the course's CNI bridge plugin into a plugin directory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

Directory = Annotated[Path, typer.Argument(help="a CNI plugin directory, e.g. /opt/cni/bin")]
Name = Annotated[str, typer.Option(help="the plugin's type name in a conflist")]


def install_cmd(directory: Directory, name: Name = "k8snet-bridge") -> None:
    """Write an executable DIR/NAME that runs course.cni.bridge (CNI type NAME)."""
    from course.cni.install import install

    path = install(directory, name)
    typer.echo(f'installed {path}; use it with "type": "{name}" in a .conflist')


def register(app: typer.Typer) -> None:
    cni = typer.Typer(help="The course's CNI plugin (lab 04).", no_args_is_help=True)
    cni.command("install")(install_cmd)
    app.add_typer(cni, name="cni")
