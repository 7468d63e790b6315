"""The spec's result schema, checked field by field.

The runtime checks every result a plugin prints before it believes it, and says exactly
which field is wrong: a result is all the kubelet learns about a pod's network (the pod's
IP shown by `kubectl get pod -o wide` comes from `ips[].address`).
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from course.cni.types import version_tuple

_MAC_RE = re.compile(r"^([0-9a-fA-F]{2}:){5}[0-9a-fA-F]{2}$")


def _cidr(value: Any) -> bool:
    try:
        ipaddress.ip_interface(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str) and "/" in value


def _ip(value: Any) -> bool:
    try:
        ipaddress.ip_address(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str)


def validate_result(result: Any, version: str, require: tuple[str, ...] = ()) -> list[str]:
    """Every way `result` breaks the spec's result schema for `version` (empty: valid).

    `require` names lists that must be present and non-empty, e.g. ("interfaces", "ips") for
    the result of a plugin that creates an interface: the spec makes them optional only for
    plugins that do not.
    """
    if not isinstance(result, dict):
        return [f"the result must be a JSON object, got {type(result).__name__}"]
    problems: list[str] = []
    if result.get("cniVersion") != version:
        problems.append(
            f"cniVersion is {result.get('cniVersion')!r}; a result must carry the version the "
            f"runtime asked for ({version!r})"
        )
    for key in require:
        if not result.get(key):
            problems.append(f"{key!r} is missing or empty")
    interfaces = result.get("interfaces", [])
    problems += _check_interfaces(interfaces)
    problems += _check_ips(result.get("ips", []), version, interfaces)
    problems += _check_routes(result.get("routes", []))
    dns = result.get("dns", {})
    if not isinstance(dns, dict):
        problems.append("dns must be an object")
    return problems


def _check_interfaces(interfaces: Any) -> list[str]:
    if not isinstance(interfaces, list):
        return ["interfaces must be a list"]
    problems = []
    for i, iface in enumerate(interfaces):
        where = f"interfaces[{i}]"
        if not isinstance(iface, dict):
            problems.append(f"{where} must be an object")
            continue
        if not isinstance(iface.get("name"), str) or not iface.get("name"):
            problems.append(f"{where}.name must be a non-empty string")
        mac = iface.get("mac")
        if mac not in (None, "") and not (isinstance(mac, str) and _MAC_RE.match(mac)):
            problems.append(f"{where}.mac {mac!r} is not a MAC address")
        if "sandbox" in iface and not isinstance(iface["sandbox"], str):
            problems.append(f"{where}.sandbox must be a string (the CNI_NETNS path)")
    return problems


def _check_ips(ips: Any, version: str, interfaces: Any) -> list[str]:
    if not isinstance(ips, list):
        return ["ips must be a list"]
    problems = []
    count = len(interfaces) if isinstance(interfaces, list) else 0
    old = version_tuple(version) < (1, 0, 0)
    for i, ip in enumerate(ips):
        where = f"ips[{i}]"
        if not isinstance(ip, dict):
            problems.append(f"{where} must be an object")
            continue
        if not _cidr(ip.get("address")):
            problems.append(f"{where}.address {ip.get('address')!r} must be an IP with a prefix")
        if "gateway" in ip and not _ip(ip["gateway"]):
            problems.append(f"{where}.gateway {ip['gateway']!r} is not an IP address")
        if "interface" in ip:
            index = ip["interface"]
            if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < count:
                problems.append(
                    f"{where}.interface {index!r} must index the interfaces list (0..{count - 1})"
                )
        if old and ip.get("version") not in ("4", "6"):
            problems.append(f'{where}.version must be "4" or "6" before cniVersion 1.0.0')
    return problems


def _check_routes(routes: Any) -> list[str]:
    if not isinstance(routes, list):
        return ["routes must be a list"]
    problems = []
    for i, route in enumerate(routes):
        where = f"routes[{i}]"
        if not isinstance(route, dict) or not _cidr(route.get("dst")):
            problems.append(f"{where}.dst must be a CIDR like 0.0.0.0/0")
            continue
        if "gw" in route and not _ip(route["gw"]):
            problems.append(f"{where}.gw {route['gw']!r} is not an IP address")
    return problems
