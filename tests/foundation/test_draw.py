"""Pictures drawn from live kernel state: interfaces with MACs, routes, and veth cables."""

from __future__ import annotations

from course.draw import draw_namespaces
from course.topology import Cluster


def test_picture_shows_macs_routes_and_cables_as_svg_and_as_text():
    with Cluster("t-draw", nodes=1, pods_per_node=1, pod_network="routed", underlay=False) as c:
        node, pod = c.node(1), c.pod("a")
        pic = draw_namespaces({"node1": node.ns, "node1-a": pod.ns}, title="routed")
        text = repr(pic)
        mac = pod.ns.link("eth0")["mac"]
        assert mac in text  # the pod's MAC, as the receiver of its frames would see it
        assert f"route: {pod.ip}/32 dev {pod.host_ifname} scope link" in text
        assert "route: default via 169.254.1.1 dev eth0" in text
        assert f"cable: node1 {pod.host_ifname} <-> node1-a eth0" in text
        svg = pic.pipe(format="svg").decode()
        assert "169.254.1.1" in svg and mac in svg
