"""kube-proxy on every node of a lab cluster, fed by one view of the API server.

In a real cluster kube-proxy runs as a DaemonSet: one instance per node, each watching the
same Services and EndpointSlices and writing rules into its own node. What differs per
node is only *which endpoints are local* (an endpoint's `nodeName`), and that is what
`externalTrafficPolicy: Local` turns on. `ClusterKubeProxy` is that DaemonSet for a
`course.topology.Cluster`: one `EndpointSliceController` (the control plane), one
`Proxier` per node namespace, and `sync()` writes every node.

    kp = ClusterKubeProxy(cluster, services, pods_of(cluster, {"b": {"app": "web"}}))
    kp.sync()                                  # rules on node1 and node2
    kp.update_pod(replace(kp.pod("a"), ready=False)); kp.sync()
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from course.addressing import CLUSTER_CIDR
from course.kubeproxy.endpointslice import EndpointSliceController, SliceChanges
from course.kubeproxy.objects import ContainerPort, EndpointSlice, Pod, Service
from course.kubeproxy.proxier import Proxier, ProxierOptions

if TYPE_CHECKING:
    from course.topology import Cluster


def pods_of(
    cluster: Cluster,
    labels: Mapping[str, Mapping[str, str]],
    ready: Iterable[str] | None = None,
    ports: tuple[ContainerPort, ...] = (ContainerPort("http", 8080),),
    namespace: str = "default",
) -> list[Pod]:
    """The API objects for the cluster's pods named in `labels` (pod name -> its labels).

    Each Pod gets the node and IP it really has in the lab, so the EndpointSlices built
    from them point at real namespaces. `ready`: the pods whose Ready condition is true
    (default: all of them).
    """
    want_ready = set(labels if ready is None else ready)
    return [
        Pod(
            namespace=namespace,
            name=name,
            labels=dict(pod_labels),
            node_name=cluster.pod(name).node.name,
            pod_ip=cluster.pod(name).ip,
            ready=name in want_ready,
            ports=ports,
        )
        for name, pod_labels in labels.items()
    ]


class ClusterKubeProxy:
    """One kube-proxy per node (a DaemonSet), all fed by one EndpointSlice controller.

    `options` are kube-proxy flags shared by every instance (ProxierOptions fields);
    node name and node IP are filled in per node, and `--cluster-cidr` defaults to the
    lab's pod range, as kubeadm sets it.
    """

    def __init__(
        self,
        cluster: Cluster,
        services: Iterable[Service] = (),
        pods: Iterable[Pod] = (),
        **options: Any,
    ) -> None:
        self.cluster = cluster
        self.controller = EndpointSliceController(services, pods)
        options.setdefault("cluster_cidr", CLUSTER_CIDR)
        self.proxiers: dict[str, Proxier] = {
            node.name: Proxier(
                node.ns, ProxierOptions(node_name=node.name, node_ip=node.ip, **options)
            )
            for node in cluster.nodes
        }

    # --- the API server's side -----------------------------------------------------------
    def add_service(self, svc: Service) -> SliceChanges:
        """`kubectl apply` of a Service: the controller derives its EndpointSlices."""
        return self.controller.on_service_add(svc)

    update_service = add_service

    def delete_service(self, svc: Service) -> SliceChanges:
        return self.controller.on_service_delete(svc)

    def add_pod(self, pod: Pod) -> SliceChanges:
        return self.controller.on_pod_add(pod)

    update_pod = add_pod

    def pod(self, name: str, namespace: str = "default") -> Pod:
        return self.controller.pods[f"{namespace}/{name}"]

    def service(self, name: str, namespace: str = "default") -> Service:
        return self.controller.services[f"{namespace}/{name}"]

    def endpoint_slices(self) -> list[EndpointSlice]:
        return self.controller.endpoint_slices()

    # --- every node's side ---------------------------------------------------------------
    def sync(self) -> dict[str, str]:
        """Every node's kube-proxy receives the current objects and rewrites its rules.

        Returns each node's payload. The same objects go to every node; only the
        proxier's node name makes the payloads differ (local endpoints, eTP Local).
        """
        services = dict(self.controller.services)
        slices = {es.key: es for es in self.controller.endpoint_slices()}
        payloads = {}
        for name, proxier in self.proxiers.items():
            proxier.services = dict(services)
            proxier.endpoint_slices = dict(slices)
            payloads[name] = proxier.sync()
        return payloads

    def payload(self, node: str) -> str:
        """What `sync()` would write on `node` now, without applying it."""
        proxier = self.proxiers[node]
        proxier.services = dict(self.controller.services)
        proxier.endpoint_slices = {es.key: es for es in self.controller.endpoint_slices()}
        return proxier.sync_proxy_rules()
