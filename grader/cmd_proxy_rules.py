"""`k8snet proxy-rules`: the iptables-restore payload kube-proxy would write on one node.

Hold it next to `iptables-save` from a real cluster: same chain names, same comments, same
probabilities (a node prints them with 11 digits after the iptables round trip).
"""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path
from typing import Annotated

import typer

from course.kubeproxy.endpointslice import endpoint_slices_for_manifests
from course.kubeproxy.objects import ManifestError, load_manifests
from course.kubeproxy.proxier import Proxier, ProxierOptions, jump_rules_commands


def proxy_rules_payload(
    paths: list[Path],
    node: str = "",
    cluster_cidr: str | None = None,
    masquerade_all: bool = False,
) -> str:
    """Load manifests, derive missing EndpointSlices from Pods, write the payload."""
    if cluster_cidr is not None:
        cluster_cidr = str(ipaddress.IPv4Network(cluster_cidr))
    objs = load_manifests(paths)
    proxier = Proxier(
        options=ProxierOptions(
            node_name=node, cluster_cidr=cluster_cidr, masquerade_all=masquerade_all
        )
    )
    for svc in objs.services:
        proxier.on_service_add(svc)
    for es in endpoint_slices_for_manifests(objs.services, objs.pods, objs.endpoint_slices):
        proxier.on_endpoint_slice_add(es)
    return proxier.sync_proxy_rules()


def proxy_rules(
    paths: Annotated[
        list[Path], typer.Argument(help="manifest files or folders (YAML, multi-doc)")
    ],
    node: str = typer.Option("", "--node", help="node name: decides which endpoints are local"),
    cluster_cidr: str = typer.Option(
        None, "--cluster-cidr", help="pod CIDR (kube-proxy --cluster-cidr), e.g. 10.244.0.0/16"
    ),
    masquerade_all: bool = typer.Option(False, "--masquerade-all", help="SNAT all service traffic"),
    show_jumps: bool = typer.Option(
        False, "--show-jumps", help="also print the jump rules kube-proxy inserts (as comments)"
    ),
) -> None:
    """Print the iptables-restore payload kube-proxy would write on NODE for these manifests."""
    try:
        payload = proxy_rules_payload(paths, node, cluster_cidr, masquerade_all)
    except ManifestError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    except ValueError as exc:
        print(f"error: --cluster-cidr: {exc}", file=sys.stderr)
        raise typer.Exit(2) from None
    if show_jumps:
        print("# kube-proxy inserts these into the built-in chains itself (not via restore):")
        for cmd in jump_rules_commands():
            print(f"#   {cmd}")
    sys.stdout.write(payload)


def register(app: typer.Typer) -> None:
    app.command("proxy-rules")(proxy_rules)
