"""The EndpointSlice controller: selector, readiness, node, ports; and what events change."""

from __future__ import annotations

from dataclasses import replace

from course.kubeproxy import Proxier, ProxierOptions
from course.kubeproxy.endpointslice import EndpointSliceController
from course.kubeproxy.objects import ContainerPort, Pod, Service, ServicePort


def web_service(**kw: object) -> Service:
    base = Service(
        namespace="default", name="web", cluster_ip="10.96.0.10",
        ports=(ServicePort(name="http", protocol="TCP", port=80, target_port="http"),),
        selector={"app": "web"},
    )  # fmt: skip
    return replace(base, **kw)  # type: ignore[arg-type]


def pod(name: str, ip: str, node: str = "node1", ready: bool = True, **kw: object) -> Pod:
    base = Pod(
        namespace="default", name=name, labels={"app": "web"}, node_name=node, pod_ip=ip,
        ready=ready, ports=(ContainerPort("http", 8080),),
    )  # fmt: skip
    return replace(base, **kw)  # type: ignore[arg-type]


def three_pods() -> list[Pod]:
    return [pod("a", "10.244.1.2"), pod("b", "10.244.1.3"), pod("c", "10.244.2.2", node="node2")]


def endpoints_of(ctrl: EndpointSliceController) -> list[tuple[str, bool | None, str | None]]:
    return [
        (e.addresses[0], e.conditions.ready, e.node_name)
        for es in ctrl.slices_for("default", "web")
        for e in es.endpoints
    ]


def test_selected_pods_become_endpoints_with_resolved_target_port() -> None:
    other = replace(pod("x", "10.244.1.9"), labels={"app": "db"})
    elsewhere = replace(pod("y", "10.244.1.8"), namespace="prod")
    ctrl = EndpointSliceController([web_service()], [*three_pods(), other, elsewhere])
    (es,) = ctrl.slices_for("default", "web")
    assert es.service_name == "web" and es.name.startswith("web-") and len(es.name) == 9
    assert [(p.name, p.port, p.protocol) for p in es.ports] == [("http", 8080, "TCP")]
    assert endpoints_of(ctrl) == [
        ("10.244.1.2", True, "node1"), ("10.244.1.3", True, "node1"),
        ("10.244.2.2", True, "node2"),
    ]  # fmt: skip
    assert [e.target_pod for e in es.endpoints] == ["a", "b", "c"]


def test_readiness_change_updates_the_slice_and_the_rules() -> None:
    ctrl = EndpointSliceController([web_service()], three_pods())
    proxier = Proxier(options=ProxierOptions(node_name="node1"))
    proxier.on_service_add(web_service())
    for es in ctrl.endpoint_slices():
        proxier.on_endpoint_slice_add(es)
    before = proxier.sync_proxy_rules()
    assert "--to-destination 10.244.1.3:8080" in before
    changes = ctrl.on_pod_update(pod("b", "10.244.1.3", ready=False))
    assert [es.name for es in changes.upserted] == [ctrl.endpoint_slices()[0].name]
    assert not changes.deleted
    assert ("10.244.1.3", False, "node1") in endpoints_of(ctrl)
    changes.apply_to(proxier)
    after = proxier.sync_proxy_rules()
    assert "10.244.1.3" not in after
    assert "--probability 0.5000000000" in after and "0.3333333333" not in after
    assert not ctrl.on_pod_update(pod("b", "10.244.1.3", ready=False))  # no change, no event


def test_pod_add_and_delete() -> None:
    ctrl = EndpointSliceController([web_service()], three_pods()[:2])
    assert len(endpoints_of(ctrl)) == 2
    assert ctrl.on_pod_add(three_pods()[2])
    assert len(endpoints_of(ctrl)) == 3
    assert ctrl.on_pod_delete(three_pods()[0])
    assert [e[0] for e in endpoints_of(ctrl)] == ["10.244.1.3", "10.244.2.2"]
    unrelated = replace(pod("z", "10.244.1.7"), labels={"app": "db"})
    assert not ctrl.on_pod_add(unrelated)


def test_relabelled_pod_leaves_the_service() -> None:
    ctrl = EndpointSliceController([web_service()], three_pods())
    changes = ctrl.on_pod_update(replace(three_pods()[0], labels={"app": "other"}))
    assert changes and "10.244.1.2" not in [e[0] for e in endpoints_of(ctrl)]


def test_terminating_pod_stays_but_is_not_ready() -> None:
    ctrl = EndpointSliceController([web_service()], [pod("a", "10.244.1.2", terminating=True)])
    (ep,) = ctrl.slices_for("default", "web")[0].endpoints
    assert (ep.conditions.ready, ep.conditions.serving, ep.conditions.terminating) == (
        False, True, True,
    )  # fmt: skip
    published = EndpointSliceController(
        [web_service(publish_not_ready_addresses=True)], [pod("a", "10.244.1.2", ready=False)]
    )
    assert published.slices_for("default", "web")[0].endpoints[0].conditions.ready is True


def test_pods_without_ip_or_finished_are_skipped_and_placeholder_remains() -> None:
    pods = [pod("a", ""), pod("b", "10.244.1.3", phase="Succeeded", restart_policy="Never")]
    ctrl = EndpointSliceController([web_service()], pods)
    (es,) = ctrl.slices_for("default", "web")
    assert es.endpoints == () and es.ports == ()


def test_pods_with_different_port_mappings_get_different_slices() -> None:
    odd = replace(pod("d", "10.244.1.4"), ports=(ContainerPort("http", 9090),))
    unnamed = replace(pod("e", "10.244.1.5"), ports=())
    ctrl = EndpointSliceController([web_service()], [*three_pods(), odd, unnamed])
    slices = ctrl.slices_for("default", "web")
    by_port = {tuple(p.port for p in es.ports): len(es.endpoints) for es in slices}
    assert by_port == {(8080,): 3, (9090,): 1, (): 1}


def test_service_without_selector_is_left_alone_and_delete_removes_slices() -> None:
    manual = web_service(selector=None)
    ctrl = EndpointSliceController([manual], three_pods())
    assert ctrl.slices_for("default", "web") == []
    ctrl2 = EndpointSliceController([web_service()], three_pods())
    changes = ctrl2.on_service_delete(web_service())
    assert len(changes.deleted) == 1 and ctrl2.endpoint_slices() == []


def test_numeric_target_port_and_many_endpoints_split_at_100() -> None:
    svc = web_service(ports=(ServicePort("", "TCP", 80, 8080),))
    pods = [pod(f"p{i:03d}", f"10.244.{1 + i // 200}.{2 + i % 200}") for i in range(150)]
    ctrl = EndpointSliceController([svc], pods)
    slices = ctrl.slices_for("default", "web")
    assert sorted(len(es.endpoints) for es in slices) == [50, 100]
    assert len({es.name for es in slices}) == 2
    assert all(es.ports[0].name == "" and es.ports[0].port == 8080 for es in slices)
