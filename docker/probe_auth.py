"""Prove the JupyterLab in the container keeps its door shut without the token.

Usage: python3 docker/probe_auth.py URL TOKEN   (exit 0 when every expectation holds)

Why these requests: the container runs privileged, so the notebook server is a root shell on
the host's kernel for whoever gets in. Each case below is a way in that must stay closed
(no token, a wrong token) next to the way in that must stay open (the right token, as a
header and as the `?token=` the printed address carries). Standard library only: it runs
on the host before any venv exists.
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from dataclasses import dataclass


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Report redirects instead of following them: a redirect to /login is the refusal."""

    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirect)


@dataclass(frozen=True)
class Case:
    what: str
    path: str
    header_token: str | None
    expected: int
    location_has: str = ""


def fetch(base: str, case: Case) -> tuple[int, str]:
    """Status code and Location header of one GET, without following redirects."""
    request = urllib.request.Request(base + case.path)
    if case.header_token is not None:
        request.add_header("Authorization", f"token {case.header_token}")
    try:
        with _OPENER.open(request, timeout=10) as response:
            return response.status, response.headers.get("Location", "")
    except urllib.error.HTTPError as error:
        return error.code, error.headers.get("Location", "")


def cases(token: str) -> list[Case]:
    wrong = "0" * len(token)
    return [
        Case("API with the token", "/api/status", token, 200),
        Case("API without a token", "/api/status", None, 403),
        Case("API with a wrong token", "/api/status", wrong, 403),
        Case("notebook listing without a token", "/api/contents/labs", None, 403),
        Case("the printed address (?token=)", f"/lab/tree/labs?token={token}", None, 200),
        Case("JupyterLab without a token", "/lab", None, 302, "/login"),
        Case("JupyterLab with a wrong ?token=", f"/lab?token={wrong}", None, 302, "/login"),
    ]


def main(base: str, token: str) -> int:
    failures = 0
    for case in cases(token):
        status, location = fetch(base.rstrip("/"), case)
        ok = status == case.expected and case.location_has in location
        failures += not ok
        shown = f"{status} {location}".strip()
        print(f"   {'ok  ' if ok else 'FAIL'} {case.what}: got {shown}, expected {case.expected}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
