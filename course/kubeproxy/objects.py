"""Service, Pod and EndpointSlice, read from ordinary Kubernetes YAML.

Only the fields that decide where a packet goes are kept: what kube-proxy and the
EndpointSlice controller read. Everything else in a manifest (Deployments, images, probes,
annotations) is ignored, so a folder of real manifests, or `kubectl get ... -o yaml`
output, loads as it is.

The API server validates and defaults objects before kube-proxy ever sees them. We have no
API server, so this module does that part: a malformed field raises `ManifestError`,
whose message names the file, the object and the field, the way `kubectl apply` would
complain. Defaults are the API's own (protocol TCP, targetPort = port, sessionAffinity
timeout 10800 s, EndpointSlice port name "").
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PROTOCOLS = ("TCP", "UDP", "SCTP")
SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")
DEFAULT_AFFINITY_TIMEOUT = 10800  # v1.DefaultClientIPServiceAffinitySeconds (3 hours)
SERVICE_NAME_LABEL = "kubernetes.io/service-name"  # discovery.LabelServiceName
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")

_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_IANA_SVC_NAME = re.compile(r"^(?=.*[a-z])[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


class ManifestError(ValueError):
    """A manifest the API server would have rejected.

    The message reads `FILE: KIND NAMESPACE/NAME: FIELD: PROBLEM`, for example
    `svc.yaml: Service default/web: spec.ports[0].port: must be an integer 1-65535, got 'http'`.
    """


# --- the objects ---------------------------------------------------------------------------
@dataclass(frozen=True)
class ServicePort:
    """One entry of `spec.ports`: what clients dial (port), what pods listen on (targetPort)."""

    name: str
    protocol: str
    port: int
    target_port: int | str  # a number, or the name of a container port
    node_port: int = 0  # 0: no NodePort


@dataclass(frozen=True)
class Service:
    """The data-path view of a `kind: Service`."""

    namespace: str
    name: str
    type: str = "ClusterIP"
    cluster_ip: str = ""  # "None" for a headless Service
    ports: tuple[ServicePort, ...] = ()
    selector: Mapping[str, str] | None = None  # None: endpoints are managed by hand
    external_ips: tuple[str, ...] = ()
    external_traffic_policy: str = "Cluster"
    internal_traffic_policy: str = "Cluster"
    session_affinity: str = "None"
    session_affinity_timeout: int = DEFAULT_AFFINITY_TIMEOUT
    load_balancer_ips: tuple[str, ...] = ()  # status.loadBalancer.ingress[].ip
    load_balancer_source_ranges: tuple[str, ...] = ()
    health_check_node_port: int = 0
    publish_not_ready_addresses: bool = False

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def headless(self) -> bool:
        return self.cluster_ip == "None"


@dataclass(frozen=True)
class ContainerPort:
    name: str
    container_port: int
    protocol: str = "TCP"


@dataclass(frozen=True)
class Pod:
    """The data-path view of a `kind: Pod`: where it runs, its IP, and whether it is ready."""

    namespace: str
    name: str
    labels: Mapping[str, str] = field(default_factory=dict)
    node_name: str = ""
    pod_ip: str = ""
    ready: bool = False  # status.conditions[type=Ready].status == "True"
    terminating: bool = False  # metadata.deletionTimestamp is set
    phase: str = "Running"
    restart_policy: str = "Always"
    ports: tuple[ContainerPort, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class EndpointConditions:
    """None means "unknown"; kube-proxy reads unknown ready/serving as true."""

    ready: bool | None = None
    serving: bool | None = None
    terminating: bool | None = None


@dataclass(frozen=True)
class Endpoint:
    addresses: tuple[str, ...]
    conditions: EndpointConditions = EndpointConditions()
    node_name: str | None = None
    zone: str | None = None
    target_pod: str | None = None  # targetRef name when it is a Pod


@dataclass(frozen=True)
class EndpointPort:
    name: str = ""
    port: int | None = None
    protocol: str = "TCP"


@dataclass(frozen=True)
class EndpointSlice:
    """A `discovery.k8s.io/v1` EndpointSlice: some endpoints of one Service, and their ports."""

    namespace: str
    name: str
    service_name: str  # the kubernetes.io/service-name label
    address_type: str = "IPv4"
    endpoints: tuple[Endpoint, ...] = ()
    ports: tuple[EndpointPort, ...] = ()

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class Manifests:
    """Everything read from a set of files, in file order."""

    services: list[Service] = field(default_factory=list)
    pods: list[Pod] = field(default_factory=list)
    endpoint_slices: list[EndpointSlice] = field(default_factory=list)


# --- loading -------------------------------------------------------------------------------
def load_manifests(paths: Iterable[str | Path]) -> Manifests:
    """Read files and folders (recursively, *.yaml/*.yml/*.json, sorted) into one set."""
    result = Manifests()
    for file in _manifest_files(paths):
        try:
            text = file.read_text()
        except OSError as exc:
            raise ManifestError(f"{file}: cannot read: {exc.strerror}") from exc
        _merge(result, parse_manifests(text, str(file)))
    return result


def parse_manifests(text: str, filename: str = "<string>") -> Manifests:
    """Parse one (multi-document) YAML text; `filename` only appears in error messages."""
    result = Manifests()
    for doc in _documents(text, filename):
        for obj in _expand_lists(doc, filename):
            _add_object(result, obj, filename)
    return result


def _manifest_files(paths: Iterable[str | Path]) -> Iterator[Path]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix in MANIFEST_SUFFIXES)
        elif path.exists():
            yield path
        else:
            raise ManifestError(f"{path}: no such file or folder")


def _merge(into: Manifests, more: Manifests) -> None:
    into.services += more.services
    into.pods += more.pods
    into.endpoint_slices += more.endpoint_slices


def _documents(text: str, filename: str) -> Iterator[Any]:
    try:
        for doc in yaml.safe_load_all(text):
            if doc is not None:
                yield doc
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ManifestError(f"{filename}: {where}not valid YAML: {problem}") from exc


def _expand_lists(doc: Any, filename: str) -> Iterator[Any]:
    """`kubectl get -o yaml` wraps objects in `kind: List`; unwrap it."""
    if isinstance(doc, dict) and doc.get("kind") == "List":
        items = doc.get("items") or []
        if not isinstance(items, list):
            raise ManifestError(f"{filename}: List: items: must be a list")
        yield from items
    else:
        yield doc


def _add_object(result: Manifests, obj: Any, filename: str) -> None:
    if not isinstance(obj, dict):
        raise ManifestError(f"{filename}: a document must be a mapping, got {_show(obj)}")
    kind = obj.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ManifestError(f"{filename}: kind: required (e.g. Service, Pod, EndpointSlice)")
    if kind == "Service":
        result.services.append(_Reader(filename, obj).service())
    elif kind == "Pod":
        result.pods.append(_Reader(filename, obj).pod())
    elif kind == "EndpointSlice":
        result.endpoint_slices.append(_Reader(filename, obj).endpoint_slice())
    # any other kind (Deployment, ConfigMap, ...) does not touch the data path: skipped


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, str) else str(value)


# --- one object, field by field -------------------------------------------------------------
class _Reader:
    """Reads one object, remembering which file and object it is for error messages."""

    def __init__(self, filename: str, obj: dict[str, Any]) -> None:
        self.filename = filename
        self.obj = obj
        self.kind = str(obj["kind"])
        meta = obj.get("metadata")
        self.meta: dict[str, Any] = meta if isinstance(meta, dict) else {}
        self.namespace = self.meta.get("namespace") or "default"
        self.name = self.meta.get("name") if isinstance(self.meta.get("name"), str) else ""

    # errors
    def fail(self, path: str, problem: str) -> ManifestError:
        who = f"{self.kind} {self.namespace}/{self.name or '<no name>'}"
        return ManifestError(f"{self.filename}: {who}: {path}: {problem}")

    # generic typed getters
    def mapping(self, value: Any, path: str) -> dict[str, Any]:
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(path, f"must be a mapping, got {_show(value)}")
        return value

    def sequence(self, value: Any, path: str) -> list[Any]:
        if value is None:
            return []
        if not isinstance(value, list):
            raise self.fail(path, f"must be a list, got {_show(value)}")
        return value

    def string(self, value: Any, path: str, default: str = "") -> str:
        if value is None:
            return default
        if not isinstance(value, str):
            raise self.fail(path, f"must be a string, got {_show(value)}")
        return value

    def integer(self, value: Any, path: str, lo: int, hi: int) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise self.fail(path, f"must be an integer {lo}-{hi}, got {_show(value)}")
        return value

    def boolean(self, value: Any, path: str) -> bool | None:
        if value is not None and not isinstance(value, bool):
            raise self.fail(path, f"must be true or false, got {_show(value)}")
        return value

    def choice(self, value: Any, path: str, options: tuple[str, ...], default: str) -> str:
        if value is None:
            return default
        if value not in options:
            raise self.fail(path, f"must be one of {', '.join(options)}, got {_show(value)}")
        return str(value)

    def ipv4(self, value: Any, path: str) -> str:
        try:
            return str(ipaddress.IPv4Address(value))
        except (ipaddress.AddressValueError, ValueError):
            raise self.fail(path, f"must be an IPv4 address, got {_show(value)}") from None

    def cidr(self, value: Any, path: str) -> str:
        text = value.strip() if isinstance(value, str) else value  # the API tolerates spaces
        try:
            return str(ipaddress.IPv4Network(text))
        except (ipaddress.AddressValueError, ValueError, TypeError):
            raise self.fail(path, f"must be an IPv4 CIDR, got {_show(value)}") from None

    def labels(self, value: Any, path: str) -> dict[str, str]:
        labels = self.mapping(value, path)
        for k, v in labels.items():
            if not isinstance(v, str):
                raise self.fail(f"{path}.{k}", f"must be a string, got {_show(v)}")
        return {str(k): v for k, v in labels.items()}

    def require_name(self) -> None:
        if not self.name:
            raise self.fail("metadata.name", "required")
        if not isinstance(self.namespace, str) or not _DNS_LABEL.match(self.namespace):
            raise self.fail("metadata.namespace", f"must be a DNS label, got {self.namespace!r}")

    # --- Service ---------------------------------------------------------------------------
    def service(self) -> Service:
        self.require_name()
        spec = self.mapping(self.obj.get("spec"), "spec")
        svc_type = self.choice(spec.get("type"), "spec.type", SERVICE_TYPES, "ClusterIP")
        ports = self.service_ports(spec, svc_type)
        affinity = self.choice(
            spec.get("sessionAffinity"), "spec.sessionAffinity", ("None", "ClientIP"), "None"
        )
        return Service(
            namespace=self.namespace,
            name=self.name,
            type=svc_type,
            cluster_ip=self.cluster_ip(spec, svc_type),
            ports=ports,
            selector=self.selector(spec),
            external_ips=self.ip_list(spec.get("externalIPs"), "spec.externalIPs"),
            external_traffic_policy=self.external_policy(spec, svc_type),
            internal_traffic_policy=self.choice(
                spec.get("internalTrafficPolicy"),
                "spec.internalTrafficPolicy",
                ("Cluster", "Local"),
                "Cluster",
            ),
            session_affinity=affinity,
            session_affinity_timeout=self.affinity_timeout(spec, affinity),
            load_balancer_ips=self.lb_ingress_ips(),
            load_balancer_source_ranges=self.source_ranges(spec),
            health_check_node_port=self.health_check_node_port(spec),
            publish_not_ready_addresses=bool(
                self.boolean(spec.get("publishNotReadyAddresses"), "spec.publishNotReadyAddresses")
            ),
        )

    def cluster_ip(self, spec: dict[str, Any], svc_type: str) -> str:
        value = spec.get("clusterIP")
        if svc_type == "ExternalName":
            return ""
        if value is None or value == "":
            raise self.fail(
                "spec.clusterIP",
                "required: kube-proxy only sees Services after the API server allocated "
                "one; write it in the manifest (e.g. 10.96.0.10)",
            )
        if value == "None":
            return "None"
        return self.ipv4(value, "spec.clusterIP")

    def service_ports(self, spec: dict[str, Any], svc_type: str) -> tuple[ServicePort, ...]:
        items = self.sequence(spec.get("ports"), "spec.ports")
        ports = tuple(
            self.service_port(p, f"spec.ports[{i}]", svc_type, len(items))
            for i, p in enumerate(items)
        )
        seen: set[str] = set()
        for i, p in enumerate(ports):
            if p.name in seen:
                raise self.fail(f"spec.ports[{i}].name", f"duplicate port name {p.name!r}")
            seen.add(p.name)
        return ports

    def service_port(self, raw: Any, path: str, svc_type: str, count: int) -> ServicePort:
        item = self.mapping(raw, path)
        name = self.string(item.get("name"), f"{path}.name")
        if count > 1 and not name:
            raise self.fail(f"{path}.name", "required when a Service has more than one port")
        if name and not _DNS_LABEL.match(name):
            raise self.fail(f"{path}.name", f"must be a lower-case DNS label, got {name!r}")
        port = self.integer(item.get("port"), f"{path}.port", 1, 65535)
        node_port = 0
        if item.get("nodePort") is not None:
            if svc_type not in ("NodePort", "LoadBalancer"):
                raise self.fail(f"{path}.nodePort", f"not allowed for type {svc_type}")
            node_port = self.integer(item.get("nodePort"), f"{path}.nodePort", 1, 65535)
        return ServicePort(
            name=name,
            protocol=self.choice(item.get("protocol"), f"{path}.protocol", PROTOCOLS, "TCP"),
            port=port,
            target_port=self.target_port(item.get("targetPort"), f"{path}.targetPort", port),
            node_port=node_port,
        )

    def target_port(self, value: Any, path: str, default: int) -> int | str:
        if value is None:
            return default
        if isinstance(value, str):
            if not _IANA_SVC_NAME.match(value) or len(value) > 15:
                raise self.fail(
                    path, f"must be a port number or a container port name, got {value!r}"
                )
            return value
        return self.integer(value, path, 1, 65535)

    def selector(self, spec: dict[str, Any]) -> dict[str, str] | None:
        if spec.get("selector") is None:
            return None
        return self.labels(spec.get("selector"), "spec.selector")

    def ip_list(self, value: Any, path: str) -> tuple[str, ...]:
        items = self.sequence(value, path)
        return tuple(self.ipv4(ip, f"{path}[{i}]") for i, ip in enumerate(items))

    def external_policy(self, spec: dict[str, Any], svc_type: str) -> str:
        value = spec.get("externalTrafficPolicy")
        path = "spec.externalTrafficPolicy"
        policy = self.choice(value, path, ("Cluster", "Local"), "Cluster")
        external = svc_type in ("NodePort", "LoadBalancer") or bool(spec.get("externalIPs"))
        if value is not None and not external:
            raise self.fail(path, "may only be set on externally-accessible services")
        return policy

    def affinity_timeout(self, spec: dict[str, Any], affinity: str) -> int:
        config = self.mapping(spec.get("sessionAffinityConfig"), "spec.sessionAffinityConfig")
        client_ip = self.mapping(config.get("clientIP"), "spec.sessionAffinityConfig.clientIP")
        value = client_ip.get("timeoutSeconds")
        if value is None:
            return DEFAULT_AFFINITY_TIMEOUT
        path = "spec.sessionAffinityConfig.clientIP.timeoutSeconds"
        if affinity != "ClientIP":
            raise self.fail(path, "only allowed with sessionAffinity: ClientIP")
        return self.integer(value, path, 1, 86400)

    def lb_ingress_ips(self) -> tuple[str, ...]:
        status = self.mapping(self.obj.get("status"), "status")
        lb = self.mapping(status.get("loadBalancer"), "status.loadBalancer")
        ingress = self.sequence(lb.get("ingress"), "status.loadBalancer.ingress")
        ips = []
        for i, raw in enumerate(ingress):
            item = self.mapping(raw, f"status.loadBalancer.ingress[{i}]")
            if item.get("ip") and item.get("ipMode", "VIP") == "VIP":
                ips.append(self.ipv4(item["ip"], f"status.loadBalancer.ingress[{i}].ip"))
        return tuple(ips)

    def source_ranges(self, spec: dict[str, Any]) -> tuple[str, ...]:
        path = "spec.loadBalancerSourceRanges"
        items = self.sequence(spec.get("loadBalancerSourceRanges"), path)
        return tuple(self.cidr(c, f"{path}[{i}]") for i, c in enumerate(items))

    def health_check_node_port(self, spec: dict[str, Any]) -> int:
        value = spec.get("healthCheckNodePort")
        if value is None:
            return 0
        return self.integer(value, "spec.healthCheckNodePort", 1, 65535)

    # --- Pod -------------------------------------------------------------------------------
    def pod(self) -> Pod:
        self.require_name()
        spec = self.mapping(self.obj.get("spec"), "spec")
        status = self.mapping(self.obj.get("status"), "status")
        pod_ip = status.get("podIP")
        return Pod(
            namespace=self.namespace,
            name=self.name,
            labels=self.labels(self.meta.get("labels"), "metadata.labels"),
            node_name=self.string(spec.get("nodeName"), "spec.nodeName"),
            pod_ip=self.ipv4(pod_ip, "status.podIP") if pod_ip else "",
            ready=self.pod_ready(status),
            terminating=self.meta.get("deletionTimestamp") is not None,
            phase=self.string(status.get("phase"), "status.phase", "Running"),
            restart_policy=self.string(spec.get("restartPolicy"), "spec.restartPolicy", "Always"),
            ports=self.container_ports(spec),
        )

    def pod_ready(self, status: dict[str, Any]) -> bool:
        conditions = self.sequence(status.get("conditions"), "status.conditions")
        for i, raw in enumerate(conditions):
            cond = self.mapping(raw, f"status.conditions[{i}]")
            if cond.get("type") == "Ready":
                value = cond.get("status")
                if value not in ("True", "False", "Unknown"):
                    raise self.fail(
                        f"status.conditions[{i}].status",
                        f'must be "True", "False" or "Unknown", got {_show(value)}',
                    )
                return bool(value == "True")
        return False

    def container_ports(self, spec: dict[str, Any]) -> tuple[ContainerPort, ...]:
        ports: list[ContainerPort] = []
        containers = self.sequence(spec.get("containers"), "spec.containers")
        for c, raw in enumerate(containers):
            container = self.mapping(raw, f"spec.containers[{c}]")
            items = self.sequence(container.get("ports"), f"spec.containers[{c}].ports")
            for p, raw_port in enumerate(items):
                path = f"spec.containers[{c}].ports[{p}]"
                item = self.mapping(raw_port, path)
                ports.append(
                    ContainerPort(
                        name=self.string(item.get("name"), f"{path}.name"),
                        container_port=self.integer(
                            item.get("containerPort"), f"{path}.containerPort", 1, 65535
                        ),
                        protocol=self.choice(
                            item.get("protocol"), f"{path}.protocol", PROTOCOLS, "TCP"
                        ),
                    )
                )
        return tuple(ports)

    # --- EndpointSlice ---------------------------------------------------------------------
    def endpoint_slice(self) -> EndpointSlice:
        self.require_name()
        labels = self.labels(self.meta.get("labels"), "metadata.labels")
        service_name = labels.get(SERVICE_NAME_LABEL, "")
        if not service_name:
            raise self.fail(
                f"metadata.labels.{SERVICE_NAME_LABEL}",
                "required: it says which Service these endpoints belong to",
            )
        address_type = self.choice(
            self.obj.get("addressType"), "addressType", ("IPv4", "IPv6", "FQDN"), ""
        )
        if not address_type:
            raise self.fail("addressType", "required (IPv4, IPv6 or FQDN)")
        endpoints = self.sequence(self.obj.get("endpoints"), "endpoints")
        ports = self.sequence(self.obj.get("ports"), "ports")
        return EndpointSlice(
            namespace=self.namespace,
            name=self.name,
            service_name=service_name,
            address_type=address_type,
            endpoints=tuple(
                self.endpoint(e, f"endpoints[{i}]", address_type) for i, e in enumerate(endpoints)
            ),
            ports=tuple(self.endpoint_port(p, f"ports[{i}]") for i, p in enumerate(ports)),
        )

    def endpoint(self, raw: Any, path: str, address_type: str) -> Endpoint:
        item = self.mapping(raw, path)
        addresses = self.sequence(item.get("addresses"), f"{path}.addresses")
        if not addresses:
            raise self.fail(f"{path}.addresses", "must hold at least one address")
        if address_type == "IPv4":
            addresses = [self.ipv4(a, f"{path}.addresses[{i}]") for i, a in enumerate(addresses)]
        cond = self.mapping(item.get("conditions"), f"{path}.conditions")
        target = self.mapping(item.get("targetRef"), f"{path}.targetRef")
        return Endpoint(
            addresses=tuple(str(a) for a in addresses),
            conditions=EndpointConditions(
                ready=self.boolean(cond.get("ready"), f"{path}.conditions.ready"),
                serving=self.boolean(cond.get("serving"), f"{path}.conditions.serving"),
                terminating=self.boolean(cond.get("terminating"), f"{path}.conditions.terminating"),
            ),
            node_name=self.string(item.get("nodeName"), f"{path}.nodeName") or None,
            zone=self.string(item.get("zone"), f"{path}.zone") or None,
            target_pod=target.get("name") if target.get("kind") == "Pod" else None,
        )

    def endpoint_port(self, raw: Any, path: str) -> EndpointPort:
        item = self.mapping(raw, path)
        port = item.get("port")
        return EndpointPort(
            name=self.string(item.get("name"), f"{path}.name"),
            port=None if port is None else self.integer(port, f"{path}.port", 1, 65535),
            protocol=self.choice(item.get("protocol"), f"{path}.protocol", PROTOCOLS, "TCP"),
        )
