"""Lab 05's cluster: who is who, the servers, and the state every exercise starts from.

    node1  192.168.1.11   pods a (10.244.1.2) and c (10.244.1.3) on its bridge cni0;
                          a process listening on 10250 (as the kubelet does)
    node2  192.168.1.12   pod b (10.244.2.2) listening on 8080 (the "web" backend)
    router 192.168.1.1    the nodes' default gateway, with a web server on port 80 that
                          stands for "outside the cluster" (it has no route to the pods)

Every path the lab traces is taken in node1: pod a -> pod b is forwarded by node1, pod a ->
node1:10250 is delivered to a process on node1, node1 -> pod b is sent by a process on
node1. The virtual IP 10.96.0.50:80 plays a ClusterIP: nothing owns it until a DNAT rule in
node1 sends it to pod b's 8080. node1 masquerades its pods' connections to anything outside
the pod network (a MASQUERADE rule in nat POSTROUTING, as flannel and most CNI setups do), so
the router, which knows no route to 10.244.0.0/16, answers node1's address instead.
"""

from __future__ import annotations

import shlex
import sys
from typing import Any

from course.kernel import Netns
from course.netfilter.iptables import declare_builtin_chains, enable_conntrack

LAB_ID = "05-netfilter-order"
NODE = "node1"
CLIENT, BLOCKED, BACKEND = "node1-a", "node1-c", "node2-b"
CLIENT_IP, BLOCKED_IP, BACKEND_IP = "10.244.1.2", "10.244.1.3", "10.244.2.2"
NODE_IP = "192.168.1.11"
WEB_PORT = 8080
KUBELET_PORT = 10250
VIP, VIP_PORT = "10.96.0.50", 80
OUTSIDE, OUTSIDE_IP, OUTSIDE_PORT = "router", "192.168.1.1", 80
WEB_REPLY, KUBELET_REPLY, OUTSIDE_REPLY = b"web\n", b"kubelet\n", b"outside\n"
# Pod traffic leaving the pod network gets node1's address: MASQUERADE may only stand in
# nat POSTROUTING, where routing has chosen the interface whose address it takes.
MASQUERADE = (
    "-s 10.244.1.0/24 ! -d 10.244.0.0/16 -m comment --comment "
    '"pods of node1 leaving the pod network" -j MASQUERADE'
)

# A tiny server: answer every connection with a name, then close.
SERVER = r"""
import socket, sys, threading
name, port = (sys.argv[1] + "\n").encode(), int(sys.argv[2])
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", port)); s.listen(256)
def serve(conn):
    with conn:
        try:
            conn.sendall(name)
        except OSError:
            pass
while True:
    conn, _ = s.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
"""


def prepare(cluster: Any) -> None:
    """Start the servers, give node1 every built-in chain of every table, with conntrack, and
    masquerade its pods' traffic leaving the pod network.

    A real node has all of them (kube-proxy, the CNI plugin and the firewall each create
    some); iptables-nft would otherwise create a chain only when a rule needs it, and a
    chain that does not exist is on no packet's path.
    """
    prepare_namespaces(cluster.node(1).ns, cluster.pod("b").ns, cluster.router.ns)


def prepare_namespaces(node: Netns, backend: Netns, outside: Netns) -> None:
    """`prepare`, given the three namespaces (also for a run started by `k8snet up`)."""
    backend.popen([sys.executable, "-c", SERVER, "web", str(WEB_PORT)])
    node.popen([sys.executable, "-c", SERVER, "kubelet", str(KUBELET_PORT)])
    outside.popen([sys.executable, "-c", SERVER, "outside", str(OUTSIDE_PORT)])
    declare_builtin_chains(node)
    enable_conntrack(node)
    masquerade = ["POSTROUTING", *shlex.split(MASQUERADE)]
    if node.run(["iptables", "-t", "nat", "-C", *masquerade], check=False).returncode:
        node.run(["iptables", "-t", "nat", "-A", *masquerade])


def main() -> None:
    """`python -m course.netfilter.lab`: prepare the newest run of this lab `k8snet up` made.

    The notebook's setup cell calls `prepare` itself; a run from `k8snet up` has only the
    namespaces, so `k8snet trace` would find no servers and only the chains some rule made.
    """
    from course.runs import PREFIX, load_runs

    live = [r for r in load_runs() if r.lab == LAB_ID and r.prefix.startswith(PREFIX + "-")
            and (r.detached or r.owner_alive()) and r.path.exists()]  # fmt: skip
    run = max(live, key=lambda r: r.path.stat().st_mtime, default=None)
    if run is None:
        sys.exit(f"no live run of {LAB_ID}: start one with `k8snet up {LAB_ID}`")
    node, backend, outside = (Netns(f"{run.prefix}-{role}") for role in (NODE, BACKEND, OUTSIDE))
    prepare_namespaces(node, backend, outside)
    print(f"prepared run {run.prefix}: servers on pod b:{WEB_PORT}, node1:{KUBELET_PORT} and the "
          f"router:{OUTSIDE_PORT}; every chain of every table in node1, conntrack on, "
          "pods masqueraded")  # fmt: skip


if __name__ == "__main__":
    main()
