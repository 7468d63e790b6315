"""The CNI spec's error object and its well-known codes.

A plugin that fails exits non-zero and prints one JSON object on stdout:
`{"cniVersion": "1.0.0", "code": 7, "msg": "Invalid Configuration", "details": "..."}`.
The code tells the runtime what kind of failure it was (0-99 are the spec's, 100+ are free
for plugins); `msg` is short, `details` may be long. The reference plugins (Go, libcni's
`types.Error`) print only `code`, `msg` and `details`.
"""

from __future__ import annotations

import json

TYPE_CHECKING = False  # see course.cni.types
if TYPE_CHECKING:
    from typing import Any

INCOMPATIBLE_CNI_VERSION = 1  # the config's cniVersion is not one the plugin supports
UNSUPPORTED_FIELD = 2  # a field in the network configuration the plugin cannot honour
UNKNOWN_CONTAINER = 3  # container unknown or gone: no cleanup (DEL) is needed
INVALID_ENVIRONMENT_VARIABLES = 4  # a CNI_* variable is missing or invalid
IO_FAILURE = 5  # e.g. stdin could not be read
DECODING_FAILURE = 6  # stdin is not JSON, or a version string does not parse
INVALID_NETWORK_CONFIG = 7  # parses, but fails validation (missing name, bad subnet)
TRY_AGAIN_LATER = 11  # transient: the runtime should retry
INTERNAL = 999  # libcni's code for any other failure (not in the spec's table)

CODE_NAMES = {
    INCOMPATIBLE_CNI_VERSION: "incompatible CNI version",
    UNSUPPORTED_FIELD: "unsupported field in network configuration",
    UNKNOWN_CONTAINER: "container unknown or does not exist",
    INVALID_ENVIRONMENT_VARIABLES: "invalid necessary environment variables",
    IO_FAILURE: "I/O failure",
    DECODING_FAILURE: "failed to decode content",
    INVALID_NETWORK_CONFIG: "invalid network config",
    TRY_AGAIN_LATER: "try again later",
    50: "plugin not available",
    51: "plugin not available, existing containers may have limited connectivity",
    INTERNAL: "internal error (libcni's catch-all)",
}


class CniError(Exception):
    """A failure a plugin reports to its runtime as the spec's error object."""

    def __init__(self, code: int, msg: str, details: str = "") -> None:
        super().__init__(f"{msg}: {details}" if details else msg)
        self.code = code
        self.msg = msg
        self.details = details

    def to_json(self, cni_version: str | None = None) -> str:
        obj: dict[str, Any] = {}
        if cni_version:
            obj["cniVersion"] = cni_version
        obj.update({"code": self.code, "msg": self.msg})
        if self.details:
            obj["details"] = self.details
        return json.dumps(obj, indent=4)


def describe_code(code: int) -> str:
    if code in CODE_NAMES:
        return CODE_NAMES[code]
    return "plugin-specific" if code >= 100 else "reserved by the spec, undefined"
