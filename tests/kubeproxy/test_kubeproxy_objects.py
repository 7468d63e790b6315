"""Reading Services, Pods and EndpointSlices from YAML; errors name file, object and field."""

from __future__ import annotations

from pathlib import Path

import pytest

from course.kubeproxy.objects import ManifestError, load_manifests, parse_manifests

WEB = """\
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec:
  clusterIP: 10.96.0.10
  selector: {app: web}
  ports:
  - {name: http, port: 80, targetPort: http}
"""


def error_for(text: str, filename: str = "svc.yaml") -> str:
    with pytest.raises(ManifestError) as info:
        parse_manifests(text, filename)
    return str(info.value)


def test_service_fields_and_api_defaults() -> None:
    svc = parse_manifests(WEB, "svc.yaml").services[0]
    assert svc.key == "default/web" and svc.type == "ClusterIP"
    assert svc.cluster_ip == "10.96.0.10" and svc.selector == {"app": "web"}
    port = svc.ports[0]
    assert (port.name, port.protocol, port.port, port.target_port) == ("http", "TCP", 80, "http")
    assert svc.session_affinity == "None" and svc.external_traffic_policy == "Cluster"
    minimal = WEB.replace("targetPort: http", "protocol: UDP")
    assert parse_manifests(minimal).services[0].ports[0].target_port == 80


def test_port_must_be_a_number() -> None:
    msg = error_for(WEB.replace("port: 80,", "port: http,"))
    assert msg == (
        "svc.yaml: Service default/web: spec.ports[0].port: must be an integer 1-65535, got 'http'"
    )


@pytest.mark.parametrize(
    ("old", "new", "field", "problem"),
    [
        ("port: 80,", "port: 70000,", "spec.ports[0].port", "1-65535, got 70000"),
        ("port: 80,", 'port: "80",', "spec.ports[0].port", "got '80'"),
        ("port: 80,", "port: true,", "spec.ports[0].port", "got True"),
        ("http, port", "HTTP, port", "spec.ports[0].name", "DNS label"),
        ("targetPort: http", "targetPort: 0", "spec.ports[0].targetPort", "1-65535"),
        ("targetPort: http", "protocol: ICMP", "spec.ports[0].protocol", "TCP, UDP, SCTP"),
        ("clusterIP: 10.96.0.10", "clusterIP: 10.96.0.300", "spec.clusterIP", "IPv4 address"),
        ("clusterIP: 10.96.0.10", "clusterIP: ''", "spec.clusterIP", "required"),
        ("selector: {app: web}", "selector: {app: 3}", "spec.selector.app", "must be a string"),
        ("selector: {app: web}", "type: Headless", "spec.type", "ClusterIP, NodePort"),
        ("targetPort: http}", "targetPort: http, nodePort: 30080}", "spec.ports[0].nodePort",
         "not allowed for type ClusterIP"),
        ("selector: {app: web}", "externalTrafficPolicy: Local", "spec.externalTrafficPolicy",
         "externally-accessible"),
        ("selector: {app: web}", "sessionAffinity: Sticky", "spec.sessionAffinity", "ClientIP"),
        ("selector: {app: web}", "externalIPs: [1.2.3]", "spec.externalIPs[0]", "IPv4"),
    ],
)  # fmt: skip
def test_service_field_errors(old: str, new: str, field: str, problem: str) -> None:
    assert old in WEB
    msg = error_for(WEB.replace(old, new))
    assert msg.startswith(f"svc.yaml: Service default/web: {field}: ")
    assert problem in msg


def test_two_ports_need_names_and_distinct_names() -> None:
    two = WEB.replace(
        "  - {name: http, port: 80, targetPort: http}",
        "  - {port: 80}\n  - {name: b, port: 81}",
    )
    assert "spec.ports[0].name: required when a Service has more than one port" in error_for(two)
    dup = WEB.replace(
        "  - {name: http, port: 80, targetPort: http}",
        "  - {name: a, port: 80}\n  - {name: a, port: 81}",
    )
    assert "spec.ports[1].name: duplicate port name 'a'" in error_for(dup)


def test_affinity_timeout() -> None:
    text = WEB.replace(
        "selector: {app: web}",
        "selector: {app: web}\n  sessionAffinity: ClientIP\n"
        "  sessionAffinityConfig: {clientIP: {timeoutSeconds: 60}}",
    )
    svc = parse_manifests(text).services[0]
    assert (svc.session_affinity, svc.session_affinity_timeout) == ("ClientIP", 60)
    bad = text.replace("timeoutSeconds: 60", "timeoutSeconds: 100000")
    assert "spec.sessionAffinityConfig.clientIP.timeoutSeconds: must be an integer 1-86400" in (
        error_for(bad)
    )
    no_aff = WEB.replace(
        "  ports:", "  sessionAffinityConfig: {clientIP: {timeoutSeconds: 5}}\n  ports:"
    )
    assert "only allowed with sessionAffinity: ClientIP" in error_for(no_aff)


def test_missing_name_and_kind() -> None:
    assert "Service default/<no name>: metadata.name: required" in error_for(
        WEB.replace("name: web, ", "")
    )
    assert error_for("metadata: {name: x}\n") == (
        "svc.yaml: kind: required (e.g. Service, Pod, EndpointSlice)"
    )


def test_yaml_syntax_error_names_the_line() -> None:
    msg = error_for("kind: Service\nmetadata: {name: [x\n", "bad.yaml")
    assert msg.startswith("bad.yaml: line ") and "not valid YAML" in msg


POD = """\
apiVersion: v1
kind: Pod
metadata: {name: web-a, namespace: default, labels: {app: web}}
spec:
  nodeName: node1
  containers:
  - name: web
    image: nginx
    ports: [{name: http, containerPort: 8080}]
status:
  podIP: 10.244.1.2
  phase: Running
  conditions:
  - {type: Ready, status: "True"}
"""


def test_pod_fields() -> None:
    pod = parse_manifests(POD, "pod.yaml").pods[0]
    assert (pod.key, pod.node_name, pod.pod_ip, pod.ready) == (
        "default/web-a", "node1", "10.244.1.2", True,
    )  # fmt: skip
    assert pod.ports[0].name == "http" and pod.ports[0].container_port == 8080
    assert not pod.terminating
    not_ready = parse_manifests(POD.replace('status: "True"', 'status: "False"')).pods[0]
    assert not not_ready.ready
    terminating = POD.replace("labels:", "deletionTimestamp: '2024-01-01T00:00:00Z', labels:")
    assert parse_manifests(terminating).pods[0].terminating


def test_pod_errors() -> None:
    msg = error_for(POD.replace("containerPort: 8080", "containerPort: web"), "pod.yaml")
    assert msg == (
        "pod.yaml: Pod default/web-a: spec.containers[0].ports[0].containerPort: "
        "must be an integer 1-65535, got 'web'"
    )
    assert "status.podIP: must be an IPv4 address" in error_for(POD.replace("10.244.1.2", "x"))
    assert 'status.conditions[0].status: must be "True"' in error_for(
        POD.replace('status: "True"', "status: yes")
    )


SLICE = """\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-abc12
  namespace: default
  labels: {kubernetes.io/service-name: web}
addressType: IPv4
ports:
- {name: http, port: 8080}
endpoints:
- addresses: [10.244.1.2]
  nodeName: node1
  conditions: {ready: true, serving: true, terminating: false}
- addresses: [10.244.1.3]
"""


def test_endpoint_slice_fields_and_defaults() -> None:
    es = parse_manifests(SLICE, "eps.yaml").endpoint_slices[0]
    assert es.service_name == "web" and es.address_type == "IPv4"
    assert es.ports[0].protocol == "TCP" and es.ports[0].port == 8080
    first, second = es.endpoints
    assert first.node_name == "node1" and first.conditions.ready is True
    assert second.conditions.ready is None and second.node_name is None
    unnamed = parse_manifests(SLICE.replace("name: http, ", "")).endpoint_slices[0]
    assert unnamed.ports[0].name == ""  # the API defaults a missing port name to ""


def test_endpoint_slice_errors() -> None:
    assert error_for(SLICE.replace("labels: {kubernetes.io/service-name: web}", "labels: {}"),
                     "eps.yaml").startswith(
        "eps.yaml: EndpointSlice default/web-abc12: metadata.labels.kubernetes.io/service-name: "
        "required"
    )  # fmt: skip
    assert "endpoints[1].addresses[0]: must be an IPv4 address, got '10.244.1'" in error_for(
        SLICE.replace("[10.244.1.3]", "[10.244.1]")
    )
    assert "endpoints[0].conditions.ready: must be true or false, got 'yes'" in error_for(
        SLICE.replace("ready: true", "ready: 'yes'")
    )
    assert "addressType: required" in error_for(SLICE.replace("addressType: IPv4\n", ""))


def test_multi_document_folders_lists_and_other_kinds(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.yaml").write_text(WEB + "---\n" + POD)
    deploy = "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\n"
    as_list = "apiVersion: v1\nkind: List\nitems:\n" + "".join(
        "- " + doc.replace("\n", "\n  ").rstrip() + "\n" for doc in (SLICE,)
    )
    (tmp_path / "sub" / "b.yml").write_text(deploy + "---\n" + as_list)
    (tmp_path / "notes.txt").write_text("not a manifest")
    objs = load_manifests([tmp_path])
    assert [s.name for s in objs.services] == ["web"]
    assert [p.name for p in objs.pods] == ["web-a"]
    assert [e.name for e in objs.endpoint_slices] == ["web-abc12"]


def test_error_in_a_folder_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "svc.yaml").write_text(WEB.replace("port: 80,", "port: http,"))
    with pytest.raises(ManifestError) as info:
        load_manifests([tmp_path])
    assert str(info.value).startswith(f"{tmp_path / 'svc.yaml'}: Service default/web: ")
    with pytest.raises(ManifestError, match="no such file or folder"):
        load_manifests([tmp_path / "missing.yaml"])
