"""The EndpointSlice controller: which pods back which Service, written down as slices.

In a cluster this runs in kube-controller-manager (pkg/controller/endpointslice). It
watches Services and Pods and keeps, for every Service with a selector, EndpointSlices
listing the matching pods: their IP, the port each Service port maps to on that pod,
their node, and three conditions. kube-proxy never looks at Pods; it only reads these
slices. So "a pod became not ready" reaches the data path in two hops: controller ->
EndpointSlice (ready: false) -> kube-proxy resync -> the pod's KUBE-SEP chain disappears.

Simplifications: slice names are deterministic (`<service>-<5 chars>`) instead of random
generateName suffixes, and endpoints are grouped only by their port mapping (up to 100 per
slice, maxEndpointsPerSlice's default), without the real reconciler's slice-reuse logic.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from course.kubeproxy.objects import (
    Endpoint,
    EndpointConditions,
    EndpointPort,
    EndpointSlice,
    Pod,
    Service,
    ServicePort,
)

MAX_ENDPOINTS_PER_SLICE = 100


@dataclass
class SliceChanges:
    """What one event changed: the slices to add or update, and the ones to delete."""

    upserted: list[EndpointSlice] = field(default_factory=list)
    deleted: list[EndpointSlice] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.upserted or self.deleted)

    def apply_to(self, proxier: object) -> None:
        """Feed the changes to a Proxier (its on_endpoint_slice_* handlers)."""
        for es in self.upserted:
            proxier.on_endpoint_slice_update(es)  # type: ignore[attr-defined]
        for es in self.deleted:
            proxier.on_endpoint_slice_delete(es)  # type: ignore[attr-defined]


def find_port(pod: Pod, port: ServicePort) -> int | None:
    """podutil.FindPort: a numeric targetPort as is; a named one from the pod's containers."""
    if isinstance(port.target_port, int):
        return port.target_port
    for cp in pod.ports:
        if cp.name == port.target_port and cp.protocol == port.protocol:
            return cp.container_port
    return None


def should_pod_be_in_endpoints(pod: Pod) -> bool:
    """No IP yet, or finished for good (Succeeded/Failed with no restart): not an endpoint.

    Terminating pods stay in the slice, marked terminating, so kube-proxy can fall back
    to them while they drain.
    """
    if not pod.pod_ip:
        return False
    if pod.restart_policy == "Never":
        return pod.phase not in ("Failed", "Succeeded")
    if pod.restart_policy == "OnFailure":
        return pod.phase != "Succeeded"
    return True


def pod_to_endpoint(pod: Pod, svc: Service) -> Endpoint:
    """Conditions as podToEndpoint writes them: ready is never true while terminating."""
    serving = pod.ready
    ready = svc.publish_not_ready_addresses or (serving and not pod.terminating)
    return Endpoint(
        addresses=(pod.pod_ip,),
        conditions=EndpointConditions(ready=ready, serving=serving, terminating=pod.terminating),
        node_name=pod.node_name or None,
        target_pod=pod.name,
    )


def selects(selector: dict[str, str] | None, pod: Pod) -> bool:
    return selector is not None and all(pod.labels.get(k) == v for k, v in selector.items())


def endpoint_slices_for_service(svc: Service, pods: Iterable[Pod]) -> list[EndpointSlice]:
    """The slices one Service should have now (none if it has no selector)."""
    if svc.selector is None or svc.type == "ExternalName":
        return []
    groups: dict[tuple[EndpointPort, ...], list[Endpoint]] = {}
    for pod in sorted(pods, key=lambda p: p.name):
        if pod.namespace != svc.namespace or not selects(dict(svc.selector), pod):
            continue
        if not should_pod_be_in_endpoints(pod):
            continue
        groups.setdefault(_endpoint_ports(svc, pod), []).append(pod_to_endpoint(pod, svc))
    if not groups:  # a placeholder slice: "this Service has no endpoints"
        return [_slice(svc, (), [], 0)]
    slices = []
    for ports, endpoints in sorted(groups.items(), key=lambda kv: repr(kv[0])):
        endpoints.sort(key=lambda e: e.addresses)
        for i in range(0, len(endpoints), MAX_ENDPOINTS_PER_SLICE):
            chunk = endpoints[i : i + MAX_ENDPOINTS_PER_SLICE]
            slices.append(_slice(svc, ports, chunk, i // MAX_ENDPOINTS_PER_SLICE))
    return slices


def _endpoint_ports(svc: Service, pod: Pod) -> tuple[EndpointPort, ...]:
    """One EndpointPort per Service port this pod can serve (named after the Service port)."""
    ports = []
    for sp in svc.ports:
        number = find_port(pod, sp)
        if number is not None:
            ports.append(EndpointPort(name=sp.name, port=number, protocol=sp.protocol))
    return tuple(ports)


def _slice(
    svc: Service, ports: tuple[EndpointPort, ...], endpoints: list[Endpoint], index: int
) -> EndpointSlice:
    seed = f"{svc.key}|{ports!r}|{index}".encode()
    suffix = base64.b32encode(hashlib.sha256(seed).digest()).decode()[:5].lower()
    return EndpointSlice(
        namespace=svc.namespace,
        name=f"{svc.name}-{suffix}",
        service_name=svc.name,
        address_type="IPv4",
        endpoints=tuple(endpoints),
        ports=ports,
    )


class EndpointSliceController:
    """Keeps every selector Service's slices in step with the pods, one event at a time.

    Each handler returns the `SliceChanges` it caused, which is what kube-proxy's
    EndpointSlice informer would deliver (`changes.apply_to(proxier)`).
    """

    def __init__(self, services: Iterable[Service] = (), pods: Iterable[Pod] = ()) -> None:
        self.services: dict[str, Service] = {s.key: s for s in services}
        self.pods: dict[str, Pod] = {p.key: p for p in pods}
        self.slices: dict[str, list[EndpointSlice]] = {}
        for key in self.services:
            self._reconcile(key)

    def endpoint_slices(self) -> list[EndpointSlice]:
        return [es for key in sorted(self.slices) for es in self.slices[key]]

    def slices_for(self, namespace: str, name: str) -> list[EndpointSlice]:
        return list(self.slices.get(f"{namespace}/{name}", []))

    # Service events
    def on_service_add(self, svc: Service) -> SliceChanges:
        self.services[svc.key] = svc
        return self._reconcile(svc.key)

    on_service_update = on_service_add

    def on_service_delete(self, svc: Service) -> SliceChanges:
        self.services.pop(svc.key, None)
        return self._reconcile(svc.key)

    # Pod events: only Services in the pod's namespace can be affected
    def on_pod_add(self, pod: Pod) -> SliceChanges:
        old = self.pods.get(pod.key)
        self.pods[pod.key] = pod
        return self._reconcile_for_pods(pod, old)

    on_pod_update = on_pod_add

    def on_pod_delete(self, pod: Pod) -> SliceChanges:
        old = self.pods.pop(pod.key, None)
        return self._reconcile_for_pods(pod, old)

    def _reconcile_for_pods(self, pod: Pod, old: Pod | None) -> SliceChanges:
        changes = SliceChanges()
        for key, svc in sorted(self.services.items()):
            if selects(_sel(svc), pod) or (old is not None and selects(_sel(svc), old)):
                more = self._reconcile(key)
                changes.upserted += more.upserted
                changes.deleted += more.deleted
        return changes

    def _reconcile(self, key: str) -> SliceChanges:
        svc = self.services.get(key)
        pods = [p for p in self.pods.values() if svc is not None and p.namespace == svc.namespace]
        new = endpoint_slices_for_service(svc, pods) if svc is not None else []
        old = self.slices.get(key, [])
        new_names = {es.name for es in new}
        changes = SliceChanges(
            upserted=[es for es in new if es not in old],
            deleted=[es for es in old if es.name not in new_names],
        )
        if new:
            self.slices[key] = new
        else:
            self.slices.pop(key, None)
        return changes


def _sel(svc: Service) -> dict[str, str] | None:
    return None if svc.selector is None else dict(svc.selector)


def endpoint_slices_for_manifests(
    services: Iterable[Service], pods: Iterable[Pod], slices: Iterable[EndpointSlice]
) -> list[EndpointSlice]:
    """The slices a cluster would hold: the ones written by hand, plus the controller's.

    A Service whose slices appear in the manifests keeps exactly those (as `kubectl get
    endpointslices -o yaml` output would show them); a Service with a selector and no
    slices gets the ones the controller derives from the Pods.
    """
    given = list(slices)
    covered = {(es.namespace, es.service_name) for es in given}
    missing = [s for s in services if (s.namespace, s.name) not in covered]
    derived = EndpointSliceController(missing, pods).endpoint_slices()
    return given + derived
