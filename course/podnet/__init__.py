"""How a node connects its pods: one module per style, each with `setup_node` and `add_pod`.

- `bridge`: the CNI bridge plugin (and Docker): pods on a shared L2 segment, `cni0`.
- `routed`: Calico's style: no bridge, a /32 per pod, proxy ARP, one route per pod.
- `cni`: a kubelet-like step: each pod's network comes from a CNI runtime running a
  `.conflist` (the course bridge plugin + host-local by default).

`course.topology` picks a module by name, so adding a style means adding a module.
"""

from __future__ import annotations

import importlib
from types import ModuleType

STYLES = ("bridge", "routed", "cni")


def load(style: str) -> ModuleType:
    if style not in STYLES:
        raise ValueError(f"unknown pod network {style!r}; choose one of {', '.join(STYLES)}")
    return importlib.import_module(f"course.podnet.{style}")
