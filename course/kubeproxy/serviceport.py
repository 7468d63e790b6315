"""What kube-proxy keeps from Services and EndpointSlices: one entry per service *port*.

Mirrors `pkg/proxy` upstream: `ServicePortName` (service.go / types.go),
`BaseServicePortInfo` (serviceport.go), `BaseEndpointInfo` (endpoint.go), the merge of
EndpointSlices into sorted endpoint lists (endpointslicecache.go) and
`CategorizeEndpoints` (topology.go). The iptables proxier only ever sees these.

kube-proxy programs one IP family per proxier; this course runs IPv4 only, so IPv6
addresses are skipped exactly where an IPv4 proxier skips them. Topology hints
(trafficDistribution) are not modelled: every ready endpoint is usable from every node.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from course.kubeproxy.objects import EndpointSlice, Service


@dataclass(frozen=True, order=True)
class ServicePortName:
    """namespace/name:port-name plus protocol: the key of everything kube-proxy does."""

    namespace: str
    name: str
    port: str
    protocol: str

    def __str__(self) -> str:
        """`ns/name:port`, or `ns/name` for an unnamed port (ServicePortName.String())."""
        base = f"{self.namespace}/{self.name}"
        return f"{base}:{self.port}" if self.port else base


@dataclass(frozen=True)
class ServicePortInfo:
    """BaseServicePortInfo: one port of one Service, with everything the rules need."""

    name: ServicePortName
    cluster_ip: str
    port: int
    protocol: str  # "TCP", "UDP", "SCTP"
    node_port: int = 0
    session_affinity_client_ip: bool = False
    sticky_max_age_seconds: int = 0
    external_ips: tuple[str, ...] = ()
    load_balancer_vips: tuple[str, ...] = ()
    load_balancer_source_ranges: tuple[str, ...] = ()
    health_check_node_port: int = 0
    external_policy_local: bool = False
    internal_policy_local: bool = False

    def externally_accessible(self) -> bool:
        return self.node_port != 0 or bool(self.load_balancer_vips) or bool(self.external_ips)

    def uses_cluster_endpoints(self) -> bool:
        """Even with externalTrafficPolicy Local, pods and the node short-circuit to all."""
        return not self.internal_policy_local or self.externally_accessible()

    def uses_local_endpoints(self) -> bool:
        return self.internal_policy_local or (
            self.external_policy_local and self.externally_accessible()
        )


@dataclass(frozen=True)
class EndpointInfo:
    """BaseEndpointInfo: one backend `ip:port` and the conditions kube-proxy reads."""

    ip: str
    port: int
    is_local: bool = False
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    node_name: str = ""

    def __str__(self) -> str:
        return f"{self.ip}:{self.port}"


# --- Services -> service ports ----------------------------------------------------------------
def should_skip_service(svc: Service) -> bool:
    """Headless and ExternalName Services have no virtual IP, so no rules (ShouldSkipService)."""
    return svc.type == "ExternalName" or svc.cluster_ip in ("", "None")


def _externally_accessible(svc: Service) -> bool:
    """apiservice.ExternallyAccessible: NodePort, LoadBalancer, or ClusterIP with externalIPs."""
    return svc.type in ("NodePort", "LoadBalancer") or (
        svc.type == "ClusterIP" and bool(svc.external_ips)
    )


def service_port_infos(svc: Service) -> list[ServicePortInfo]:
    """newBaseServiceInfo for each port of one Service."""
    if should_skip_service(svc) or not _is_ipv4(svc.cluster_ip):
        return []
    external_local = _externally_accessible(svc) and svc.external_traffic_policy == "Local"
    needs_health_check = svc.type == "LoadBalancer" and external_local
    client_ip = svc.session_affinity == "ClientIP"
    return [
        ServicePortInfo(
            name=ServicePortName(svc.namespace, svc.name, p.name, p.protocol),
            cluster_ip=svc.cluster_ip,
            port=p.port,
            protocol=p.protocol,
            node_port=p.node_port,
            session_affinity_client_ip=client_ip,
            sticky_max_age_seconds=svc.session_affinity_timeout if client_ip else 0,
            external_ips=tuple(ip for ip in svc.external_ips if _is_ipv4(ip)),
            load_balancer_vips=svc.load_balancer_ips,
            load_balancer_source_ranges=svc.load_balancer_source_ranges,
            health_check_node_port=svc.health_check_node_port if needs_health_check else 0,
            external_policy_local=external_local,
            internal_policy_local=svc.internal_traffic_policy == "Local",
        )
        for p in svc.ports
    ]


def build_service_port_map(services: Iterable[Service]) -> dict[ServicePortName, ServicePortInfo]:
    return {info.name: info for svc in services for info in service_port_infos(svc)}


# --- EndpointSlices -> sorted endpoints per service port --------------------------------------
def build_endpoints_map(
    slices: Iterable[EndpointSlice], node_name: str
) -> dict[ServicePortName, list[EndpointInfo]]:
    """Merge all slices of each service port, dedupe by `ip:port`, sort as strings.

    The order matters: the first endpoint gets probability 1/n. It is a *string* sort,
    so 10.180.0.10:80 comes before 10.180.0.2:80 (byEndpoint in endpointslicecache.go).
    """
    by_port: dict[ServicePortName, dict[str, EndpointInfo]] = {}
    for es in slices:
        if es.address_type != "IPv4":
            continue
        for port in sorted(es.ports, key=lambda p: p.port or 0):
            if not port.port:
                continue  # "Ignoring invalid endpoint port"
            spn = ServicePortName(es.namespace, es.service_name, port.name, port.protocol)
            _add_endpoints(by_port.setdefault(spn, {}), es, port.port, node_name)
    return {spn: sorted(eps.values(), key=str) for spn, eps in by_port.items() if eps}


def _add_endpoints(
    into: dict[str, EndpointInfo], es: EndpointSlice, port: int, node_name: str
) -> None:
    for ep in es.endpoints:
        if not ep.addresses or not _is_ipv4(ep.addresses[0]):
            continue
        is_local = bool(node_name) and ep.node_name == node_name
        c = ep.conditions
        info = EndpointInfo(
            ip=ep.addresses[0],
            port=port,
            is_local=is_local,
            ready=c.ready is None or c.ready,
            serving=c.serving is None or c.serving,
            terminating=c.terminating is not None and c.terminating,
            node_name=ep.node_name or "",
        )
        if str(info) not in into or is_local:
            into[str(info)] = info


# --- which endpoints a node may use -------------------------------------------------------------
@dataclass(frozen=True)
class Categorized:
    cluster: list[EndpointInfo]
    local: list[EndpointInfo]
    all_reachable: list[EndpointInfo]
    has_any: bool


def categorize_endpoints(endpoints: list[EndpointInfo], svc: ServicePortInfo) -> Categorized:
    """CategorizeEndpoints: Ready endpoints first; Serving+Terminating ones only as a fallback.

    cluster: what "Cluster" traffic policy spreads over; local: what "Local" policy spreads
    over (this node's endpoints); all_reachable: the union (each gets a KUBE-SEP chain);
    has_any: whether the Service has usable endpoints anywhere in the cluster.
    """
    cluster: list[EndpointInfo] = []
    local: list[EndpointInfo] = []
    has_any = False
    if svc.uses_cluster_endpoints():
        cluster = [ep for ep in endpoints if ep.ready]
        if not cluster:
            cluster = [ep for ep in endpoints if ep.serving and ep.terminating]
        has_any = bool(cluster)
    if not svc.uses_local_endpoints():
        return Categorized(cluster, local, cluster, has_any)
    local, fallback, has_any_local_scan = _local_endpoints(endpoints)
    has_any = has_any or has_any_local_scan
    if not svc.uses_cluster_endpoints():
        return Categorized(cluster, local, local, has_any)
    if not fallback:
        return Categorized(cluster, local, cluster, has_any)
    merged = {str(ep): ep for ep in cluster} | {str(ep): ep for ep in local}
    return Categorized(cluster, local, sorted(merged.values(), key=str), has_any)


def _local_endpoints(endpoints: list[EndpointInfo]) -> tuple[list[EndpointInfo], bool, bool]:
    """This node's Ready endpoints, else its Serving+Terminating ones (and which it was)."""
    usable = [ep for ep in endpoints if ep.ready or (ep.serving and ep.terminating)]
    if any(ep.is_local and ep.ready for ep in endpoints):
        return [ep for ep in endpoints if ep.is_local and ep.ready], False, bool(usable)
    local = [ep for ep in endpoints if ep.is_local and ep.serving and ep.terminating]
    return local, bool(local), bool(usable)


def _is_ipv4(text: str) -> bool:
    """The IP-family filter (utilnet.IsIPv6String's complement). Addresses were validated
    when the manifests were read, so telling the families apart is enough here."""
    return "." in text and ":" not in text
