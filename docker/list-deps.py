"""Print the runtime and test dependencies of pyproject.toml, one requirement a line.

Why: the Dockerfile installs dependencies in a layer of their own, before the source is
copied in, so editing course code does not re-download JupyterLab and Scapy. The browser
tooling (playwright) stays out of the image: the browser test drives the image from outside.
"""

import sys
import tomllib

LEFT_OUT = {"playwright"}


def requirement_name(requirement: str) -> str:
    """The distribution name at the start of a PEP 508 requirement string."""
    name = requirement
    for stop in "<>=!~;[ ":
        name = name.split(stop, 1)[0]
    return name.strip().lower()


def main(path: str) -> None:
    with open(path, "rb") as handle:
        project = tomllib.load(handle)["project"]
    wanted = list(project.get("dependencies", []))
    wanted += project.get("optional-dependencies", {}).get("dev", [])
    for requirement in wanted:
        if requirement_name(requirement) not in LEFT_OUT:
            print(requirement)


if __name__ == "__main__":
    main(sys.argv[1])
