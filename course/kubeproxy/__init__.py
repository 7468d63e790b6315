"""kube-proxy in iptables mode, readable next to upstream `pkg/proxy/iptables/proxier.go`.

- `objects`: Service, Pod, EndpointSlice read from ordinary Kubernetes YAML.
- `endpointslice`: the EndpointSlice controller (Pods + Services -> EndpointSlices).
- `serviceport`: what kube-proxy keeps per service port and endpoint, and which endpoints
  a node may use (Ready first, Serving+Terminating as fallback, Local vs Cluster).
- `proxier`: chain names, the probability cascade, and the one writer of the
  `iptables-restore` payload; `Proxier.sync()` applies it in a node namespace.
"""

from course.kubeproxy.endpointslice import EndpointSliceController, SliceChanges
from course.kubeproxy.objects import (
    EndpointSlice,
    ManifestError,
    Manifests,
    Pod,
    Service,
    load_manifests,
    parse_manifests,
)
from course.kubeproxy.proxier import (
    Proxier,
    ProxierOptions,
    compute_probability,
    port_proto_hash,
    service_external_chain_name,
    service_firewall_chain_name,
    service_port_endpoint_chain_name,
    service_port_policy_cluster_chain,
    service_port_policy_local_chain_name,
)

__all__ = [
    "EndpointSlice",
    "EndpointSliceController",
    "ManifestError",
    "Manifests",
    "Pod",
    "Proxier",
    "ProxierOptions",
    "Service",
    "SliceChanges",
    "compute_probability",
    "load_manifests",
    "parse_manifests",
    "port_proto_hash",
    "service_external_chain_name",
    "service_firewall_chain_name",
    "service_port_endpoint_chain_name",
    "service_port_policy_cluster_chain",
    "service_port_policy_local_chain_name",
]
