"""Lab 05's cluster: who is who, the servers, and the state every exercise starts from.

    node1  192.168.1.11   pods a (10.244.1.2) and c (10.244.1.3) on its bridge cni0;
                          a process listening on 10250 (as the kubelet does)
    node2  192.168.1.12   pod b (10.244.2.2) listening on 8080 (the "web" backend)
    router 192.168.1.1    the nodes' default gateway

Every path the lab traces is taken in node1: pod a -> pod b is forwarded by node1, pod a ->
node1:10250 is delivered to a process on node1, node1 -> pod b is sent by a process on
node1. The virtual IP 10.96.0.50:80 plays a ClusterIP: nothing owns it until a DNAT rule in
node1 sends it to pod b's 8080.
"""

from __future__ import annotations

import sys
from typing import Any

from course.netfilter.iptables import declare_builtin_chains, enable_conntrack

LAB_ID = "05-netfilter-order"
NODE = "node1"
CLIENT, BLOCKED, BACKEND = "node1-a", "node1-c", "node2-b"
CLIENT_IP, BLOCKED_IP, BACKEND_IP = "10.244.1.2", "10.244.1.3", "10.244.2.2"
NODE_IP = "192.168.1.11"
WEB_PORT = 8080
KUBELET_PORT = 10250
VIP, VIP_PORT = "10.96.0.50", 80
WEB_REPLY, KUBELET_REPLY = b"web\n", b"kubelet\n"

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
    """Start the servers, and give node1 every built-in chain of every table, with conntrack.

    A real node has all of them (kube-proxy, the CNI plugin and the firewall each create
    some); iptables-nft would otherwise create a chain only when a rule needs it, and a
    chain that does not exist is on no packet's path.
    """
    cluster.pod("b").exec([sys.executable, "-c", SERVER, "web", str(WEB_PORT)])
    node = cluster.node(1).ns
    node.popen([sys.executable, "-c", SERVER, "kubelet", str(KUBELET_PORT)])
    declare_builtin_chains(node)
    enable_conntrack(node)
