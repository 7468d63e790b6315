"""CNI versions, names and the result's shape per version: what plugin and runtime share.

Kept small on purpose (no `ipaddress`, no `typing` at run time): the plugin executable
imports it on every call. The result schema check lives in `course.cni.schema`.
"""

from __future__ import annotations

TYPE_CHECKING = False  # importing `typing` costs the plugin ~5 ms per call; mypy knows this name
if TYPE_CHECKING:
    from typing import Any

# What the course plugin and runtime speak (the reference plugins 1.1.1 speak the same).
SUPPORTED_VERSIONS = ("0.3.0", "0.3.1", "0.4.0", "1.0.0")
CURRENT_VERSION = "1.0.0"

IFNAME_MAX = 15  # IFNAMSIZ - 1
# (no regular expressions: each one compiled costs the plugin time on every call)
_ID_FIRST = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_ID_REST = _ID_FIRST | set("_.-")


def valid_id(value: object) -> bool:
    """Container ids and network names: alphanumeric first, then alphanumerics, `_.-`."""
    return (
        isinstance(value, str)
        and bool(value)
        and value[0] in _ID_FIRST
        and all(c in _ID_REST for c in value)
    )


def version_tuple(version: str) -> tuple[int, int, int]:
    """ "0.4.0" -> (0, 4, 0); ValueError when it does not parse."""
    parts = version.split(".") if isinstance(version, str) else []
    if len(parts) != 3 or not all(p.isascii() and p.isdigit() for p in parts):
        raise ValueError(f"{version!r} is not a version like 1.0.0")
    major, minor, patch = (int(p) for p in parts)
    return major, minor, patch


def ifname_problem(name: str) -> str | None:
    """Why the kernel (and libcni) would refuse `name` as an interface name, or None."""
    if not name:
        return "is empty"
    if len(name) > IFNAME_MAX:
        return f"is {len(name)} characters long; the kernel allows at most {IFNAME_MAX}"
    if name in (".", ".."):
        return "is '.' or '..'"
    if any(c in name for c in "/:") or any(c.isspace() for c in name):
        return "contains '/', ':' or whitespace"
    return None


def convert_result(result: dict[str, Any], version: str) -> dict[str, Any]:
    """The same result in the shape of `version` (0.3.x/0.4.0 add `ips[].version`)."""
    out = dict(result, cniVersion=version)
    if version_tuple(version) < (1, 0, 0):
        out["ips"] = [
            dict(ip, version="6" if ":" in ip.get("address", "") else "4")
            for ip in result.get("ips", [])
        ]
    else:
        out["ips"] = [
            {k: v for k, v in ip.items() if k != "version"} for ip in result.get("ips", [])
        ]
    return out
