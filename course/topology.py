"""A whole cluster in network namespaces, described in a few lines and built in milliseconds.

    with Cluster("02-bridge-vs-routed", nodes=2, pods_per_node=2) as c:
        c.pod("a").ns.run(["ping", "-c1", c.pod("c").ip])

Every node, pod, router and client is a network namespace named `<run prefix>-<role>`
(`knl-3fa2-node1`, `knl-3fa2-node1-a`), so two labs or two grading runs never collide, and
inside each namespace interfaces carry the names a real cluster uses (`eth0`, `cni0`).
Nothing is ever added to the host's own namespace. The cluster is torn down when the
`with` block ends, at interpreter exit, and on SIGTERM; `k8snet down --all` reaps what a
killed process left.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import string
import subprocess
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

from course import addressing
from course.kernel import Netns
from course.kernel.netns import list_netns, pids_by_netns
from course.podnet import load as load_pod_network
from course.podnet import load_cross_node
from course.runs import RunRecord, new_prefix, remove_state_dir

UNDERLAY_BRIDGE = "br0"


@dataclass
class Host:
    """A namespace with a role: the router, the external client, the underlay switch."""

    name: str
    ns: Netns
    ip: str | None = None


@dataclass
class Pod:
    """A pod: one network namespace shared by all its containers.

    In Kubernetes the "pause" container holds the namespace and the app containers join
    it; here the namespace is pinned by its /run/netns mount, and a "container" is any
    process started with `exec`.
    """

    name: str
    node: Node
    ns: Netns
    ip: str
    containers: list[str] = field(default_factory=lambda: ["app"])
    host_ifname: str | None = None

    def exec(self, argv: list[str], **kwargs: Any) -> subprocess.Popen[Any]:
        """Start a process inside the pod's network namespace (a container, network-wise)."""
        return self.ns.popen(argv, **kwargs)


@dataclass
class Node:
    """A node: the kubelet's namespace, where the CNI plugin and kube-proxy do their work."""

    index: int
    name: str
    ns: Netns
    ip: str
    pod_cidr: str
    pods: list[Pod] = field(default_factory=list)
    subnet: int = 1

    @property
    def gateway(self) -> str:
        """The router's address on this node's subnet (its default gateway)."""
        return addressing.underlay_gateway(self.subnet)


class Cluster:
    """Nodes, their pods, an underlay network, and optionally a router and an external client.

    Args:
        lab: the lab's id, recorded so `k8snet down <lab>` finds the run.
        nodes: how many nodes (node N is `nodeN`, 192.168.1.(10+N), pods in 10.244.N.0/24).
        pods_per_node: pods to create on every node, named a, b, c, ... across the cluster.
        pods: instead of pods_per_node, explicit pod names per node index: {1: ["web"]}.
        pod_network: "bridge", "routed", "cni" (through a CNI runtime, course.podnet.cni) or
            None (pods get only a namespace with lo up).
        cross_node: how pods on different nodes reach each other (see `course.podnet`):
            "host-gw" (static routes via node IPs), "vxlan" (flannel's overlay), "bgp"
            (BIRD on every node, Calico style), "underlay" (pods hold node-network
            addresses, VPC-CNI style), or None.
        underlay: connect the nodes' eth0 to one switch on 192.168.1.0/24.
        router, client: an external client 203.0.113.10 behind a router at 192.168.1.1.
        subnets: 2 puts the last node on a second node subnet, 192.168.2.0/24, behind the
            router (so it is not an L2 neighbour of the others); implies a router.
    """

    def __init__(
        self,
        lab: str = "sandbox",
        nodes: int = 1,
        pods_per_node: int = 0,
        pods: dict[int, list[str]] | None = None,
        pod_network: str | None = "bridge",
        cross_node: str | None = "host-gw",
        underlay: bool = True,
        router: bool = False,
        client: bool = False,
        prefix: str | None = None,
        detached: bool = False,
        subnets: int = 1,
    ) -> None:
        self.lab = lab
        self.prefix = prefix or new_prefix()
        self.record = RunRecord(self.prefix, lab, os.getpid(), detached=detached)
        self._spec_nodes = nodes
        self._spec_pods = pods or self._default_pods(nodes, pods_per_node)
        self.pod_network = pod_network
        self.cross_node = cross_node if nodes > 1 else None
        if subnets not in (1, 2):
            raise ValueError("subnets must be 1 or 2")
        self.subnets = subnets if nodes > 1 else 1
        self.want_underlay = underlay or router or self.subnets == 2
        self.want_router = router or client or self.subnets == 2
        self.want_client = client
        self.namespaces: dict[str, Netns] = {}
        self.nodes: list[Node] = []
        self.pods: list[Pod] = []
        self.underlay: Host | None = None
        self.router: Host | None = None
        self.client: Host | None = None
        self.underlay2: Host | None = None
        # Run first at teardown, before any namespace goes (BIRD is stopped this way).
        self.teardown_hooks: list[Callable[[], None]] = []
        # What a cross-node mode could not set up (e.g. host-gw routes to another subnet).
        self.cross_node_errors: list[str] = []
        self.built = False

    @staticmethod
    def _default_pods(nodes: int, per_node: int) -> dict[int, list[str]]:
        """a, b, c, ... across the cluster; pod1, pod2, ... when letters run out."""
        total = nodes * per_node
        names = iter(
            string.ascii_lowercase[:total] if total <= 26 else [f"pod{k + 1}" for k in range(total)]
        )
        return {n: [next(names) for _ in range(per_node)] for n in range(1, nodes + 1)}

    # --- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> Cluster:
        return self.build()

    def __exit__(self, *exc: object) -> None:
        self.destroy()

    def build(self) -> Cluster:
        """Create every namespace and link; on any failure, undo everything made so far."""
        if self.built:
            return self
        _LIVE.add(self)
        _install_handlers()
        # Record the run before making anything: even a SIGKILL in the middle of the build
        # leaves a record whose prefix lets `k8snet down` find every namespace.
        self.record.save()
        try:
            self._build()
        except BaseException:
            self.destroy()
            raise
        self.built = True
        self.record.save()
        return self

    def destroy(self) -> None:
        """Delete every namespace of this run (idempotent; safe from signal handlers).

        Ctrl-C or SIGTERM arriving meanwhile waits until the teardown is complete: cut in
        half, it would leave namespaces and daemons (BIRD) behind that nothing owns.
        """
        with _signals_held():
            self._destroy()

    def _destroy(self) -> None:
        while self.teardown_hooks:
            hook = self.teardown_hooks.pop()
            with contextlib.suppress(Exception):  # a hook must never keep namespaces alive
                hook()
        inside = pids_by_netns()  # one scan of /proc for all namespaces
        for ns in reversed(list(self.namespaces.values())):
            ns.delete(inside)
        self.namespaces.clear()
        # A namespace whose creation a signal cut short (Ctrl-C inside Netns.create) has a
        # name under /run/netns but no object here: the run's prefix finds it.
        for name in list_netns(f"{self.prefix}-"):
            with contextlib.suppress(Exception):
                Netns(name).delete(inside)
        remove_state_dir(self.prefix)
        self.record.path.unlink(missing_ok=True)
        self.built = False
        _LIVE.discard(self)

    def netns(self, role: str, lo_up: bool = True) -> Netns:
        """Create (and record, so teardown finds it) a namespace `<prefix>-<role>`.

        Asked again for a role it already has (a notebook cell run twice), the cluster
        deletes that namespace, with everything in it, and makes an empty one: the cell
        then builds on a clean slate, as it did the first time.
        """
        name = f"{self.prefix}-{role}"
        if name not in self.record.namespaces:
            self.record.namespaces.append(name)
            if self.built:  # during build() the record is written once, before and after
                self.record.save()
        old = self.namespaces.pop(role, None)
        if old is not None:
            if old.exists():  # (the learner may have deleted it already: scratch.delete())
                old.delete_links()  # now, so its veths' other ends are gone before we re-cable
            old.delete()  # also closes the old object's netlink socket, which pins it
        ns = Netns.create(name, replace=True)
        self.namespaces[role] = ns
        if lo_up:
            ns.up("lo")
        return ns

    # --- building blocks -----------------------------------------------------------------------
    def _build(self) -> None:
        if self.want_underlay:
            self.underlay = Host("underlay", self.netns("underlay"))
            self.underlay.ns.add_bridge(UNDERLAY_BRIDGE, up=True)
        if self.subnets == 2:
            self.underlay2 = Host("underlay2", self.netns("underlay2"))
            self.underlay2.ns.add_bridge(UNDERLAY_BRIDGE, up=True)
        for n in range(1, self._spec_nodes + 1):
            self._add_node(n)
        if self.want_router:
            self._add_router()
        if self.cross_node:
            load_cross_node(self.cross_node).connect(self)

    def _add_node(self, n: int) -> Node:
        ns = self.netns(f"node{n}")
        # Namespaces inherit some IPv4 defaults from the host: set what we rely on.
        ns.sysctl("net.ipv4.ip_forward", 0)
        ns.sysctl("net.ipv4.conf.all.rp_filter", 0)
        ns.sysctl("net.ipv4.conf.default.rp_filter", 0)
        subnet = 2 if self.subnets == 2 and n == self._spec_nodes else 1
        ip = addressing.node_ip(n, subnet)
        node = Node(n, f"node{n}", ns, ip, addressing.pod_cidr(n), subnet=subnet)
        self.nodes.append(node)
        if self.underlay:
            switch = self.underlay2 if subnet == 2 else self.underlay
            self._plug_underlay(ns, f"node{n}", f"{node.ip}/24", switch)
        plugin = load_pod_network(self.pod_network) if self.pod_network else None
        if plugin:
            plugin.setup_node(node)
        # A pod network may hand out addresses of its own (underlay pods use node-network ones).
        pod_ip = getattr(plugin, "pod_ip", None)
        for k, pod_name in enumerate(self._spec_pods.get(n, [])):
            pod_ns = self.netns(f"node{n}-{pod_name}")
            pod_ns.sysctl("net.ipv4.conf.all.rp_filter", 0)
            ip = pod_ip(node, k) if pod_ip else addressing.pod_ip(n, k)
            pod = Pod(pod_name, node, pod_ns, ip)
            node.pods.append(pod)
            self.pods.append(pod)
            if plugin:
                plugin.add_pod(node, pod)
        return node

    def _plug_underlay(
        self, ns: Netns, port: str, cidr: str, switch: Host | None = None, ifname: str = "eth0"
    ) -> None:
        """A veth from `ns` (its `eth0`) to a port of the underlay switch."""
        switch = switch or self.underlay
        assert switch is not None
        switch.ns.add_veth(port, ns, ifname, master=UNDERLAY_BRIDGE, up=True)
        ns.add_address(ifname, cidr)
        ns.up(ifname)

    def _add_router(self) -> None:
        ns = self.netns("router")
        ns.sysctl("net.ipv4.ip_forward", 1)
        ns.sysctl("net.ipv4.conf.all.rp_filter", 0)
        self._plug_underlay(ns, "router", f"{addressing.UNDERLAY_GATEWAY}/24")
        self.router = Host("router", ns, addressing.UNDERLAY_GATEWAY)
        if self.underlay2 is not None:
            # eth2, not eth1: eth1 is the client's side in every lab.
            gw2 = f"{addressing.UNDERLAY2_GATEWAY}/24"
            self._plug_underlay(ns, "router", gw2, self.underlay2, ifname="eth2")
        for node in self.nodes:
            node.ns.add_route("0.0.0.0/0", via=node.gateway)
        if self.want_client:
            cns = self.netns("client")
            ns.add_veth("eth1", cns, "eth0")
            ns.add_address("eth1", f"{addressing.CLIENT_GATEWAY}/24")
            ns.up("eth1")
            cns.add_address("eth0", f"{addressing.CLIENT_IP}/24")
            cns.up("eth0")
            cns.add_route("0.0.0.0/0", via=addressing.CLIENT_GATEWAY)
            self.client = Host("client", cns, addressing.CLIENT_IP)

    def _host_gw_routes(self) -> None:
        """flannel's host-gw backend (see `course.podnet.hostgw`)."""
        load_cross_node("host-gw").connect(self)

    # --- lookups -------------------------------------------------------------------------------
    def node(self, index: int) -> Node:
        for node in self.nodes:
            if node.index == index:
                return node
        raise KeyError(f"no node{index} in this cluster")

    def pod(self, name: str) -> Pod:
        for pod in self.pods:
            if pod.name == name:
                return pod
        raise KeyError(f"no pod {name!r}; pods are {[p.name for p in self.pods]}")

    def draw(self) -> Any:
        """A picture of the cluster as the kernel sees it now (see `course.draw`)."""
        from course.draw import draw_cluster

        return draw_cluster(self)

    def __repr__(self) -> str:
        return (
            f"Cluster({self.lab!r}, prefix={self.prefix!r}, nodes={len(self.nodes)}, "
            f"pods={len(self.pods)})"
        )


# --- teardown that always happens --------------------------------------------------------------
_LIVE: weakref.WeakSet[Cluster] = weakref.WeakSet()
_handlers_installed = False


def destroy_all() -> None:
    for cluster in list(_LIVE):
        if not cluster.record.detached:
            cluster.destroy()


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Hold SIGINT, SIGTERM and SIGHUP for the block, then hand on any that arrived.

    Python runs signal handlers in the main thread only, so only there is there anything
    to hold. A kernel-level mask would not do: in a process with other threads (a Jupyter
    kernel, a pytest-xdist worker) the kernel hands the signal to a thread that does not
    block it, and the main thread still runs the handler. So the handlers are swapped for
    one that notes the signal, and the previous handler gets it afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    previous = {sig: signal.signal(sig, lambda signum, _: caught.append(signum)) for sig in _HELD}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for signum in caught:
            _deliver(signum, previous[signum])


def _deliver(signum: int, handler: Any) -> None:
    """Do what `handler` (as signal.getsignal returned it) would have done with `signum`."""
    if callable(handler):
        handler(signum, None)  # Python's SIGINT handler raises KeyboardInterrupt here
    elif handler == signal.SIG_DFL:
        os.kill(os.getpid(), signum)  # the default action: for SIGTERM/SIGHUP, exit


_HELD = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    destroy_all()
    previous = _PREVIOUS.get(signum)
    if callable(previous):
        previous(signum, frame)
    else:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)


_PREVIOUS: dict[int, Any] = {}


def _install_handlers() -> None:
    """atexit always; SIGTERM/SIGHUP only from the main thread (Python's rule).

    SIGINT is left to Python: it raises KeyboardInterrupt, which unwinds `with` blocks and,
    if it ends the program, runs the atexit hook. (In Jupyter, "interrupt" must not wipe a
    learner's lab.)
    """
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(destroy_all)
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGHUP):
            _PREVIOUS[sig] = signal.getsignal(sig)
            signal.signal(sig, _on_sigterm)
