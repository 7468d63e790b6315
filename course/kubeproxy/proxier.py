"""kube-proxy's iptables mode: Services + EndpointSlices -> one `iptables-restore` payload.

Read this next to upstream `pkg/proxy/iptables/proxier.go`; names follow it
(`servicePortPolicyClusterChain` is `service_port_policy_cluster_chain` here, and
`syncProxyRules` is `sync_proxy_rules`). As upstream, *one place writes all rules*: the
`_SyncWriter` below, driven by `Proxier.sync_proxy_rules`. The text it produces is the text
kube-proxy hands to `iptables-restore --noflush`, byte for byte, for the same inputs and
flags (checked against kube-proxy's own unit-test expectations in tests/kubeproxy).

How a packet to a ClusterIP travels through what we write (nat table):

    PREROUTING/OUTPUT -> KUBE-SERVICES -> KUBE-SVC-<hash>   (one per service port)
        -> KUBE-SEP-<hash>  (one per endpoint, picked by the probability cascade)
        -> DNAT to pod-ip:port
    POSTROUTING -> KUBE-POSTROUTING: MASQUERADE what KUBE-MARK-MASQ marked.

Differences from upstream, on purpose: every sync is a full sync (upstream may skip the
chains of unchanged Services), Services are written in sorted order (upstream: Go map
order, which its tests sort away), stale chains are removed on every sync (upstream skips
that in large clusters between sync periods), and there are no metrics, no conntrack
cleanup and no health-check server.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from course.kubeproxy.objects import EndpointSlice, Service
from course.kubeproxy.serviceport import (
    EndpointInfo,
    ServicePortInfo,
    ServicePortName,
    build_endpoints_map,
    build_service_port_map,
    categorize_endpoints,
)

# --- chain names (constants as in proxier.go) ----------------------------------------------
KUBE_SERVICES_CHAIN = "KUBE-SERVICES"
KUBE_EXTERNAL_SERVICES_CHAIN = "KUBE-EXTERNAL-SERVICES"
KUBE_NODEPORTS_CHAIN = "KUBE-NODEPORTS"
KUBE_POSTROUTING_CHAIN = "KUBE-POSTROUTING"
KUBE_MARK_MASQ_CHAIN = "KUBE-MARK-MASQ"
KUBE_FORWARD_CHAIN = "KUBE-FORWARD"
KUBE_PROXY_FIREWALL_CHAIN = "KUBE-PROXY-FIREWALL"
KUBELET_FIREWALL_CHAIN = "KUBE-FIREWALL"

# Above this many endpoints in total, kube-proxy drops the comments from KUBE-SEP rules and
# KUBE-SVC -> KUBE-SEP jumps: iptables-restore input shrinks by 40% and more.
LARGE_CLUSTER_ENDPOINTS_THRESHOLD = 1000

SERVICE_PORT_POLICY_CLUSTER_CHAIN_NAME_PREFIX = "KUBE-SVC-"
SERVICE_PORT_POLICY_LOCAL_CHAIN_NAME_PREFIX = "KUBE-SVL-"
SERVICE_FIREWALL_CHAIN_NAME_PREFIX = "KUBE-FW-"
SERVICE_EXTERNAL_CHAIN_NAME_PREFIX = "KUBE-EXT-"
SERVICE_PORT_ENDPOINT_CHAIN_NAME_PREFIX = "KUBE-SEP-"

# nfacct counter names (pkg/proxy/metrics)
LOCALHOST_NODEPORT_ACCEPTED_NFACCT_COUNTER = "localhost_nps_accepted_pkts"
CT_STATE_INVALID_DROPPED_NFACCT_COUNTER = "ct_state_invalid_dropped_pkts"


@dataclass(frozen=True)
class IptablesJumpChain:
    """A rule kube-proxy *prepends* to a built-in chain (outside the restore payload)."""

    table: str
    dst_chain: str
    src_chain: str
    comment: str
    extra_args: tuple[str, ...] = ()

    def args(self) -> list[str]:
        comment = ["-m", "comment", "--comment", self.comment] if self.comment else []
        return [*self.extra_args, *comment, "-j", self.dst_chain]


_NEW = ("-m", "conntrack", "--ctstate", "NEW")
IPTABLES_JUMP_CHAINS = (
    IptablesJumpChain(
        "filter", KUBE_EXTERNAL_SERVICES_CHAIN, "INPUT",
        "kubernetes externally-visible service portals", _NEW,
    ),
    IptablesJumpChain(
        "filter", KUBE_EXTERNAL_SERVICES_CHAIN, "FORWARD",
        "kubernetes externally-visible service portals", _NEW,
    ),
    IptablesJumpChain(
        "filter", KUBE_NODEPORTS_CHAIN, "INPUT", "kubernetes health check service ports"
    ),
    IptablesJumpChain("filter", KUBE_SERVICES_CHAIN, "FORWARD", "kubernetes service portals", _NEW),
    IptablesJumpChain("filter", KUBE_SERVICES_CHAIN, "OUTPUT", "kubernetes service portals", _NEW),
    IptablesJumpChain("filter", KUBE_FORWARD_CHAIN, "FORWARD", "kubernetes forwarding rules"),
    IptablesJumpChain(
        "filter", KUBE_PROXY_FIREWALL_CHAIN, "INPUT", "kubernetes load balancer firewall", _NEW
    ),
    IptablesJumpChain(
        "filter", KUBE_PROXY_FIREWALL_CHAIN, "OUTPUT", "kubernetes load balancer firewall", _NEW
    ),
    IptablesJumpChain(
        "filter", KUBE_PROXY_FIREWALL_CHAIN, "FORWARD", "kubernetes load balancer firewall", _NEW
    ),
    IptablesJumpChain("nat", KUBE_SERVICES_CHAIN, "OUTPUT", "kubernetes service portals"),
    IptablesJumpChain("nat", KUBE_SERVICES_CHAIN, "PREROUTING", "kubernetes service portals"),
    IptablesJumpChain("nat", KUBE_POSTROUTING_CHAIN, "POSTROUTING", "kubernetes postrouting rules"),
)  # fmt: skip
# Duplicates of kubelet's own jumps; kube-proxy creates them too but never removes them.
IPTABLES_KUBELET_JUMP_CHAINS = (
    IptablesJumpChain("filter", KUBELET_FIREWALL_CHAIN, "INPUT", ""),
    IptablesJumpChain("filter", KUBELET_FIREWALL_CHAIN, "OUTPUT", ""),
)


# --- chain-name helpers -------------------------------------------------------------------
def _hash16(text: str) -> str:
    return base64.b32encode(hashlib.sha256(text.encode()).digest()).decode()[:16]


def port_proto_hash(service_port_name: str, protocol: str) -> str:
    """sha256 -> base32 -> first 16 characters: chain names must stay <= 28 characters."""
    return _hash16(service_port_name + protocol)


def service_port_policy_cluster_chain(service_port_name: str, protocol: str) -> str:
    """KUBE-SVC-XXXX: spreads a service port's traffic over all its endpoints."""
    return SERVICE_PORT_POLICY_CLUSTER_CHAIN_NAME_PREFIX + port_proto_hash(
        service_port_name, protocol
    )


def service_port_policy_local_chain_name(service_port_name: str, protocol: str) -> str:
    """KUBE-SVL-XXXX: the same, over this node's endpoints only ("Local" traffic policy)."""
    return SERVICE_PORT_POLICY_LOCAL_CHAIN_NAME_PREFIX + port_proto_hash(
        service_port_name, protocol
    )


def service_firewall_chain_name(service_port_name: str, protocol: str) -> str:
    """KUBE-FW-XXXX: loadBalancerSourceRanges filtering."""
    return SERVICE_FIREWALL_CHAIN_NAME_PREFIX + port_proto_hash(service_port_name, protocol)


def service_external_chain_name(service_port_name: str, protocol: str) -> str:
    """KUBE-EXT-XXXX: entry for NodePort / external IP / LB IP traffic."""
    return SERVICE_EXTERNAL_CHAIN_NAME_PREFIX + port_proto_hash(service_port_name, protocol)


def service_port_endpoint_chain_name(service_port_name: str, protocol: str, endpoint: str) -> str:
    """KUBE-SEP-XXXX: one endpoint (`ip:port`) of one service port; it does the DNAT."""
    return SERVICE_PORT_ENDPOINT_CHAIN_NAME_PREFIX + _hash16(
        service_port_name + protocol + endpoint
    )


def is_service_chain_name(chain: str) -> bool:
    """Chains kube-proxy owns per Service; any such chain it did not write is stale."""
    return chain.startswith(
        (
            SERVICE_PORT_POLICY_CLUSTER_CHAIN_NAME_PREFIX,
            SERVICE_PORT_POLICY_LOCAL_CHAIN_NAME_PREFIX,
            SERVICE_PORT_ENDPOINT_CHAIN_NAME_PREFIX,
            SERVICE_FIREWALL_CHAIN_NAME_PREFIX,
            SERVICE_EXTERNAL_CHAIN_NAME_PREFIX,
        )
    )


def compute_probability(n: int) -> str:
    """`fmt.Sprintf("%0.10f", 1.0/float64(n))`: what kube-proxy writes for 1/n.

    iptables stores it as a 31-bit integer and prints it back with 11 decimals, which is
    why `iptables-save` on a node shows 0.33333333349 where kube-proxy wrote 0.3333333333.
    """
    return f"{1.0 / n:0.10f}"


def get_chains_from_table(save_output: str) -> set[str]:
    """Chain names declared in `iptables-save` output (the `:CHAIN POLICY [p:b]` lines)."""
    return {line[1:].split(" ", 1)[0] for line in save_output.splitlines() if line[:1] == ":"}


def make_chain_line(chain: str) -> str:
    return f":{chain} - [0:0]"


# --- local traffic detector -----------------------------------------------------------------
@dataclass(frozen=True)
class LocalTrafficDetector:
    """Tells pod traffic from other traffic (`--cluster-cidr` / detect-local-mode ClusterCIDR).

    With no CIDR it is the no-op detector: kube-proxy then writes neither the
    "masquerade off-cluster traffic" rule nor the eTP=Local pod short-circuit.
    """

    cidr: str | None = None

    def is_implemented(self) -> bool:
        return self.cidr is not None

    def if_local(self) -> list[str]:
        return ["-s", str(self.cidr)]

    def if_not_local(self) -> list[str]:
        return ["!", "-s", str(self.cidr)]


class _LineBuffer:
    """proxyutil.LineBuffer: words joined by spaces, one rule or chain line each."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, *words: str | Sequence[str]) -> None:
        parts: list[str] = []
        for w in words:
            if isinstance(w, str):
                parts.append(w)
            else:
                parts.extend(w)
        self.lines.append(" ".join(parts))

    def text(self) -> str:
        return "".join(line + "\n" for line in self.lines)


class NodeNetns(Protocol):
    """What the proxier needs from a node's namespace (course.kernel.Netns provides it)."""

    def apply_iptables(self, payload: str, noflush: bool = False, ipv6: bool = False) -> None: ...
    def iptables_save(self, table: str | None = None) -> str: ...
    def sysctl(self, key: str, value: int | str | None = None) -> str: ...
    def run(self, argv: Sequence[str], input: str | None = None, check: bool = True,
            timeout: float = 30.0) -> subprocess.CompletedProcess[str]: ...  # fmt: skip


@dataclass(frozen=True)
class ProxierOptions:
    """kube-proxy flags that change the rule text. Defaults are kube-proxy's defaults."""

    node_name: str = ""
    node_ip: str = ""
    cluster_cidr: str | None = None  # None: no local detector
    masquerade_all: bool = False
    masquerade_bit: int = 14
    masquerade_mark: str | None = None  # override the mark text (unit tests use 0x4000)
    localhost_nodeports: bool = True
    random_fully: bool = True  # iptables >= 1.6.2 has --random-fully
    nfacct: bool = False  # nfacct counters exist (needs nfnetlink_acct objects)
    conntrack_tcp_be_liberal: bool = False
    # False: write neither KUBE-MARK-MASQ's nor KUBE-POSTROUTING's rules and leave both
    # chains alone (lab 07's learner writes them; kubelets before KEP-3178 wrote them too).
    masquerade_rules: bool = True

    @property
    def mark(self) -> str:
        """`fmt.Sprintf("%#08x", 1<<bit)`: Go counts 8 digits after 0x -> 0x00004000."""
        return self.masquerade_mark or f"0x{1 << self.masquerade_bit:08x}"


# --- the proxier --------------------------------------------------------------------------------
class Proxier:
    """An iptables proxier for one node: holds Services and EndpointSlices, writes rules.

    `sync()` writes the payload and, when a node namespace was given, applies it there
    atomically (`iptables-restore --noflush`): stale service chains are declared and
    deleted (`-X`) in the same transaction, so no packet ever sees a half-updated set.
    """

    def __init__(self, netns: NodeNetns | None = None, options: ProxierOptions | None = None):
        self.netns = netns
        self.options = options or ProxierOptions()
        self.services: dict[str, Service] = {}
        self.endpoint_slices: dict[str, EndpointSlice] = {}
        self.iptables_data = ""  # the last payload written
        # needFullSync: (re)install the jump rules from the built-in chains on the next
        # sync. Upstream sets it at start and when its canary chain shows a flush.
        self.need_full_sync = True

    # informer-style event handlers (OnServiceAdd, ...)
    def on_service_add(self, svc: Service) -> None:
        self.services[svc.key] = svc

    on_service_update = on_service_add

    def on_service_delete(self, svc: Service) -> None:
        self.services.pop(svc.key, None)

    def on_endpoint_slice_add(self, es: EndpointSlice) -> None:
        self.endpoint_slices[es.key] = es

    on_endpoint_slice_update = on_endpoint_slice_add

    def on_endpoint_slice_delete(self, es: EndpointSlice) -> None:
        self.endpoint_slices.pop(es.key, None)

    # writing and applying
    def sync_proxy_rules(self, existing_nat_chains: Iterable[str] = ()) -> str:
        """Write the whole payload. `existing_nat_chains`: what `iptables-save -t nat` shows."""
        svc_port_map = build_service_port_map(self.services.values())
        endpoints_map = build_endpoints_map(self.endpoint_slices.values(), self.options.node_name)
        writer = _SyncWriter(self.options, svc_port_map, endpoints_map)
        self.iptables_data = writer.write(set(existing_nat_chains))
        return self.iptables_data

    def sync(self) -> str:
        """Write the payload and apply it in the node namespace; returns the payload."""
        if self.netns is None:
            return self.sync_proxy_rules()
        if self.need_full_sync:
            self._full_sync_setup(self.netns)
        existing = get_chains_from_table(self.netns.iptables_save("nat"))
        payload = self.sync_proxy_rules(existing)
        self.netns.apply_iptables(payload, noflush=True)
        return payload

    def force_sync(self) -> str:
        """forceSyncProxyRules: a sync that also re-ensures the jump rules."""
        self.need_full_sync = True
        return self.sync()

    def _full_sync_setup(self, netns: NodeNetns) -> None:
        """NewProxier's sysctl plus the jump rules a full sync ensures."""
        if self.options.localhost_nodeports:
            netns.sysctl("net.ipv4.conf.all.route_localnet", 1)
        ensure_jump_rules(netns)
        if not self.options.masquerade_rules:  # not in the payload, but jumped to from it
            netns.run(["iptables", "-w", "-t", "nat", "-N", KUBE_MARK_MASQ_CHAIN], check=False)
        self.need_full_sync = False


def ensure_jump_rules(netns: NodeNetns) -> None:
    """EnsureChain + EnsureRule(Prepend): `iptables -N`, then `-C` and `-I` if missing.

    These live in built-in chains (PREROUTING, OUTPUT, ...), which kube-proxy must not
    flush, so they are not part of the restore payload.
    """
    for jump in (*IPTABLES_JUMP_CHAINS, *IPTABLES_KUBELET_JUMP_CHAINS):
        netns.run(["iptables", "-w", "-t", jump.table, "-N", jump.dst_chain], check=False)
        check = ["iptables", "-w", "-t", jump.table, "-C", jump.src_chain, *jump.args()]
        if netns.run(check, check=False).returncode != 0:
            netns.run(["iptables", "-w", "-t", jump.table, "-I", jump.src_chain, *jump.args()])


def jump_rules_commands() -> list[str]:
    """The jump rules as shell commands, for people reading the payload."""
    out = []
    for jump in (*IPTABLES_JUMP_CHAINS, *IPTABLES_KUBELET_JUMP_CHAINS):
        words = [f'"{w}"' if " " in w else w for w in jump.args()]
        out.append(f"iptables -t {jump.table} -I {jump.src_chain} {' '.join(words)}")
    return out


# --- the one place that writes rules ------------------------------------------------------
@dataclass
class _ServicePlan:
    """What syncProxyRules decides for one service port before writing anything."""

    svc: ServicePortInfo
    spn: str
    protocol: str
    cluster_policy_chain: str
    local_policy_chain: str
    external_chain: str
    fw_chain: str
    cluster_endpoints: list[EndpointInfo]
    local_endpoints: list[EndpointInfo]
    all_reachable: list[EndpointInfo]
    has_endpoints: bool
    internal_chain: str = ""
    has_internal_endpoints: bool = False
    external_policy_chain: str = ""
    has_external_endpoints: bool = False
    lb_chain: str = ""
    uses_fw_chain: bool = False
    internal_filter: tuple[str, str] = ("", "")  # (target, comment)
    external_filter: tuple[str, str] = ("", "")
    ep_chains: dict[str, str] = field(default_factory=dict)


class _SyncWriter:
    """One sync: four line buffers (filter/nat x chains/rules), filled in upstream's order."""

    def __init__(
        self,
        options: ProxierOptions,
        svc_port_map: dict[ServicePortName, ServicePortInfo],
        endpoints_map: dict[ServicePortName, list[EndpointInfo]],
    ) -> None:
        self.o = options
        self.svc_port_map = svc_port_map
        self.endpoints_map = endpoints_map
        self.detector = LocalTrafficDetector(options.cluster_cidr)
        self.filter_chains = _LineBuffer()
        self.filter_rules = _LineBuffer()
        self.nat_chains = _LineBuffer()
        self.nat_rules = _LineBuffer()
        self.active_nat_chains: set[str] = set()
        total = sum(len(endpoints_map.get(name, ())) for name in svc_port_map)
        self.large_cluster_mode = total > LARGE_CLUSTER_ENDPOINTS_THRESHOLD

    def write(self, existing_nat_chains: set[str]) -> str:
        self.write_top_level_chains()
        self.write_postrouting_and_mark_rules()
        self.write_kubelet_firewall_rule()
        for name in sorted(self.svc_port_map, key=str):
            self.write_service(self.plan(self.svc_port_map[name], self.endpoints_map.get(name, [])))
        self.delete_stale_chains(existing_nat_chains)
        self.write_nodeports_jump()
        self.write_forward_rules()
        return (
            "*filter\n" + self.filter_chains.text() + self.filter_rules.text() + "COMMIT\n"
            "*nat\n" + self.nat_chains.text() + self.nat_rules.text() + "COMMIT\n"
        )

    # --- static parts ---------------------------------------------------------------------
    def write_top_level_chains(self) -> None:
        for chain in (
            KUBE_SERVICES_CHAIN,
            KUBE_EXTERNAL_SERVICES_CHAIN,
            KUBE_FORWARD_CHAIN,
            KUBE_NODEPORTS_CHAIN,
            KUBE_PROXY_FIREWALL_CHAIN,
        ):
            self.filter_chains.write(make_chain_line(chain))
        nat = [KUBE_SERVICES_CHAIN, KUBE_NODEPORTS_CHAIN]
        if self.o.masquerade_rules:  # declaring a chain in the payload flushes it
            nat += [KUBE_POSTROUTING_CHAIN, KUBE_MARK_MASQ_CHAIN]
        for chain in nat:
            self.nat_chains.write(make_chain_line(chain))

    def write_postrouting_and_mark_rules(self) -> None:
        """Masquerade only what KUBE-MARK-MASQ marked, and clear the mark first."""
        if not self.o.masquerade_rules:
            return
        mark = self.o.mark
        self.nat_rules.write(
            "-A", KUBE_POSTROUTING_CHAIN, "-m", "mark", "!", "--mark", f"{mark}/{mark}",
            "-j", "RETURN",
        )  # fmt: skip
        # Clear the mark so a packet that re-traverses the stack is not masqueraded twice.
        self.nat_rules.write("-A", KUBE_POSTROUTING_CHAIN, "-j", "MARK", "--xor-mark", mark)
        masq = ["-A", KUBE_POSTROUTING_CHAIN, "-m", "comment", "--comment",
                '"kubernetes service traffic requiring SNAT"', "-j", "MASQUERADE"]  # fmt: skip
        if self.o.random_fully:
            masq.append("--random-fully")
        self.nat_rules.write(masq)
        self.nat_rules.write("-A", KUBE_MARK_MASQ_CHAIN, "-j", "MARK", "--or-mark", mark)

    def write_kubelet_firewall_rule(self) -> None:
        """route_localnet lets NodePorts answer on 127.0.0.1; this blocks martians it lets in."""
        if not self.o.localhost_nodeports:
            return
        self.filter_chains.write(make_chain_line(KUBELET_FIREWALL_CHAIN))
        self.filter_rules.write(
            "-A", KUBELET_FIREWALL_CHAIN,
            "-m", "comment", "--comment", '"block incoming localnet connections"',
            "-d", "127.0.0.0/8", "!", "-s", "127.0.0.0/8",
            "-m", "conntrack", "!", "--ctstate", "RELATED,ESTABLISHED,DNAT", "-j", "DROP",
        )  # fmt: skip

    # --- per service port: decide ---------------------------------------------------------
    def plan(self, svc: ServicePortInfo, endpoints: list[EndpointInfo]) -> _ServicePlan:
        protocol = svc.protocol.lower()
        spn = str(svc.name)
        h = port_proto_hash(spn, protocol)
        cat = categorize_endpoints(endpoints, svc)
        p = _ServicePlan(
            svc=svc, spn=spn, protocol=protocol,
            cluster_policy_chain=SERVICE_PORT_POLICY_CLUSTER_CHAIN_NAME_PREFIX + h,
            local_policy_chain=SERVICE_PORT_POLICY_LOCAL_CHAIN_NAME_PREFIX + h,
            external_chain=SERVICE_EXTERNAL_CHAIN_NAME_PREFIX + h,
            fw_chain=SERVICE_FIREWALL_CHAIN_NAME_PREFIX + h,
            cluster_endpoints=cat.cluster, local_endpoints=cat.local,
            all_reachable=cat.all_reachable, has_endpoints=cat.has_any,
        )  # fmt: skip
        self.plan_policies(p)
        p.ep_chains = {
            str(ep): service_port_endpoint_chain_name(spn, protocol, str(ep))
            for ep in {*cat.cluster, *cat.local, *cat.all_reachable}
        }
        return p

    def plan_policies(self, p: _ServicePlan) -> None:
        """Which chain internal / external traffic goes to, and what filter does if none."""
        p.internal_chain, p.has_internal_endpoints = p.cluster_policy_chain, p.has_endpoints
        if p.svc.internal_policy_local:
            p.internal_chain = p.local_policy_chain
            p.has_internal_endpoints = p.has_endpoints and bool(p.local_endpoints)
        p.external_policy_chain, p.has_external_endpoints = p.cluster_policy_chain, p.has_endpoints
        if p.svc.external_policy_local:
            p.external_policy_chain = p.local_policy_chain
            p.has_external_endpoints = p.has_endpoints and bool(p.local_endpoints)
        p.uses_fw_chain = (
            p.has_endpoints
            and bool(p.svc.load_balancer_vips)
            and bool(p.svc.load_balancer_source_ranges)
        )
        p.lb_chain = p.fw_chain if p.uses_fw_chain else p.external_chain
        if not p.has_endpoints:
            p.internal_filter = p.external_filter = ("REJECT", f'"{p.spn} has no endpoints"')
            return
        if not p.has_internal_endpoints:
            p.internal_filter = ("DROP", f'"{p.spn} has no local endpoints"')
        if not p.has_external_endpoints:
            p.external_filter = ("DROP", f'"{p.spn} has no local endpoints"')

    # --- per service port: write ----------------------------------------------------------
    def write_service(self, p: _ServicePlan) -> None:
        self.capture_cluster_ip(p)
        self.capture_external_ips(p)
        self.capture_load_balancer_ips(p)
        self.capture_node_port(p)
        self.capture_health_check_node_port(p)
        self.write_internal_traffic_rules(p)
        self.write_external_traffic_chain(p)
        self.write_firewall_chain(p)
        self.write_policy_chains(p)
        self.write_endpoint_chains(p)

    def _match(self, p: _ServicePlan, dest: str | None, port: int) -> list[str]:
        dst = ["-d", dest] if dest else []
        return ["-m", p.protocol, "-p", p.protocol, *dst, "--dport", str(port)]

    def capture_cluster_ip(self, p: _ServicePlan) -> None:
        """KUBE-SERVICES: ClusterIP:port -> the service chain, or REJECT/DROP in filter."""
        if p.has_internal_endpoints:
            self.nat_rules.write(
                "-A", KUBE_SERVICES_CHAIN, "-m", "comment", "--comment", f'"{p.spn} cluster IP"',
                self._match(p, p.svc.cluster_ip, p.svc.port), "-j", p.internal_chain,
            )  # fmt: skip
        else:
            target, comment = p.internal_filter
            self.filter_rules.write(
                "-A", KUBE_SERVICES_CHAIN, "-m", "comment", "--comment", comment,
                self._match(p, p.svc.cluster_ip, p.svc.port), "-j", target,
            )  # fmt: skip

    def capture_external_ips(self, p: _ServicePlan) -> None:
        for ip in p.svc.external_ips:
            if p.has_endpoints:
                self.nat_rules.write(
                    "-A", KUBE_SERVICES_CHAIN, "-m", "comment", "--comment",
                    f'"{p.spn} external IP"', self._match(p, ip, p.svc.port),
                    "-j", p.external_chain,
                )  # fmt: skip
            if not p.has_external_endpoints:
                self._external_filter_rule(p, self._match(p, ip, p.svc.port))

    def _external_filter_rule(self, p: _ServicePlan, match: list[str]) -> None:
        target, comment = p.external_filter
        self.filter_rules.write(
            "-A", KUBE_EXTERNAL_SERVICES_CHAIN, "-m", "comment", "--comment", comment,
            match, "-j", target,
        )  # fmt: skip

    def capture_load_balancer_ips(self, p: _ServicePlan) -> None:
        for ip in p.svc.load_balancer_vips:
            if p.has_endpoints:
                self.nat_rules.write(
                    "-A", KUBE_SERVICES_CHAIN, "-m", "comment", "--comment",
                    f'"{p.spn} loadbalancer IP"', self._match(p, ip, p.svc.port),
                    "-j", p.lb_chain,
                )  # fmt: skip
            if p.uses_fw_chain:
                self.filter_rules.write(
                    "-A", KUBE_PROXY_FIREWALL_CHAIN, "-m", "comment", "--comment",
                    f'"{p.spn} traffic not accepted by {p.fw_chain}"',
                    self._match(p, ip, p.svc.port), "-j", "DROP",
                )  # fmt: skip
        if not p.has_external_endpoints:
            for ip in p.svc.load_balancer_vips:
                self._external_filter_rule(p, self._match(p, ip, p.svc.port))

    def capture_node_port(self, p: _ServicePlan) -> None:
        """KUBE-NODEPORTS (reached from KUBE-SERVICES' last rule) -> KUBE-EXT."""
        node_port = p.svc.node_port
        if node_port == 0:
            return
        if p.has_endpoints:
            if self.o.localhost_nodeports and self.o.nfacct:
                self.nat_rules.write(
                    "-A", KUBE_NODEPORTS_CHAIN, "-m", "comment", "--comment", p.spn,
                    self._match(p, "127.0.0.0/8", node_port),
                    "-m", "nfacct", "--nfacct-name", LOCALHOST_NODEPORT_ACCEPTED_NFACCT_COUNTER,
                    "-j", p.external_chain,
                )  # fmt: skip
            self.nat_rules.write(
                "-A", KUBE_NODEPORTS_CHAIN, "-m", "comment", "--comment", p.spn,
                self._match(p, None, node_port), "-j", p.external_chain,
            )  # fmt: skip
        if not p.has_external_endpoints:
            self._external_filter_rule(
                p, ["-m", "addrtype", "--dst-type", "LOCAL", *self._match(p, None, node_port)]
            )

    def capture_health_check_node_port(self, p: _ServicePlan) -> None:
        if p.svc.health_check_node_port:
            self.filter_rules.write(
                "-A", KUBE_NODEPORTS_CHAIN, "-m", "comment", "--comment",
                f'"{p.spn} health check node port"', "-m", "tcp", "-p", "tcp",
                "--dport", str(p.svc.health_check_node_port), "-j", "ACCEPT",
            )  # fmt: skip

    def write_internal_traffic_rules(self, p: _ServicePlan) -> None:
        """Masquerade ClusterIP traffic that does not come from a pod (it may leave the node)."""
        if not p.has_internal_endpoints:
            return
        args = ["-m", "comment", "--comment", f'"{p.spn} cluster IP"',
                *self._match(p, p.svc.cluster_ip, p.svc.port)]  # fmt: skip
        if self.o.masquerade_all:
            self.nat_rules.write("-A", p.internal_chain, args, "-j", KUBE_MARK_MASQ_CHAIN)
        elif self.detector.is_implemented():
            self.nat_rules.write(
                "-A", p.internal_chain, args, self.detector.if_not_local(),
                "-j", KUBE_MARK_MASQ_CHAIN,
            )  # fmt: skip

    def write_external_traffic_chain(self, p: _ServicePlan) -> None:
        """KUBE-EXT: masquerade (Cluster policy) or keep the client IP (Local policy)."""
        if not (p.has_endpoints and p.svc.externally_accessible()):
            return
        ext, spn = p.external_chain, p.spn
        self._declare(ext)
        if not p.svc.external_policy_local:
            # Endpoints may be on other nodes: masquerade so replies come back through us.
            self.nat_rules.write(
                "-A", ext, "-m", "comment", "--comment",
                f'"masquerade traffic for {spn} external destinations"',
                "-j", KUBE_MARK_MASQ_CHAIN,
            )  # fmt: skip
        else:
            self._write_local_short_circuit(p)
        if p.has_external_endpoints:
            self.nat_rules.write("-A", ext, "-j", p.external_policy_chain)

    def _write_local_short_circuit(self, p: _ServicePlan) -> None:
        """eTP=Local: pods and the node itself still reach every endpoint (via KUBE-SVC)."""
        ext, spn = p.external_chain, p.spn
        if self.detector.is_implemented():
            self.nat_rules.write(
                "-A", ext, "-m", "comment", "--comment",
                f'"pod traffic for {spn} external destinations"',
                self.detector.if_local(), "-j", p.cluster_policy_chain,
            )  # fmt: skip
        self.nat_rules.write(
            "-A", ext, "-m", "comment", "--comment",
            f'"masquerade LOCAL traffic for {spn} external destinations"',
            "-m", "addrtype", "--src-type", "LOCAL", "-j", KUBE_MARK_MASQ_CHAIN,
        )  # fmt: skip
        self.nat_rules.write(
            "-A", ext, "-m", "comment", "--comment",
            f'"route LOCAL traffic for {spn} external destinations"',
            "-m", "addrtype", "--src-type", "LOCAL", "-j", p.cluster_policy_chain,
        )  # fmt: skip

    def write_firewall_chain(self, p: _ServicePlan) -> None:
        """KUBE-FW: only loadBalancerSourceRanges reach KUBE-EXT; the rest falls through."""
        if not p.uses_fw_chain:
            return
        self._declare(p.fw_chain)
        args = ["-A", p.fw_chain, "-m", "comment", "--comment", f'"{p.spn} loadbalancer IP"']
        allow_from_node = False
        for cidr in p.svc.load_balancer_source_ranges:
            self.nat_rules.write(args, "-s", cidr, "-j", p.external_chain)
            if self.o.node_ip and ipaddress.ip_address(self.o.node_ip) in ipaddress.ip_network(
                cidr
            ):
                allow_from_node = True
        if allow_from_node:
            for ip in p.svc.load_balancer_vips:
                self.nat_rules.write(args, "-s", ip, "-j", p.external_chain)
        self.nat_rules.write(
            "-A", p.fw_chain, "-m", "comment", "--comment",
            f'"other traffic to {p.spn} will be dropped by KUBE-PROXY-FIREWALL"',
        )  # fmt: skip

    def write_policy_chains(self, p: _ServicePlan) -> None:
        if p.cluster_endpoints and p.svc.uses_cluster_endpoints():
            self._declare(p.cluster_policy_chain)
            self.write_service_to_endpoint_rules(p, p.cluster_policy_chain, p.cluster_endpoints)
        if p.local_endpoints and p.svc.uses_local_endpoints():
            self._declare(p.local_policy_chain)
            self.write_service_to_endpoint_rules(p, p.local_policy_chain, p.local_endpoints)

    def write_endpoint_chains(self, p: _ServicePlan) -> None:
        """KUBE-SEP: hairpin masquerade, then DNAT to the endpoint."""
        for ep in p.all_reachable:
            chain = p.ep_chains[str(ep)]
            self._declare(chain)
            args = ["-A", chain, *self._comment(p.spn)]
            # A pod reaching itself through its Service: SNAT, or its reply bypasses us.
            self.nat_rules.write(args, "-s", ep.ip, "-j", KUBE_MARK_MASQ_CHAIN)
            if p.svc.session_affinity_client_ip:
                args += ["-m", "recent", "--name", chain, "--set"]
            self.nat_rules.write(
                args, "-m", p.protocol, "-p", p.protocol, "-j", "DNAT", "--to-destination", str(ep)
            )

    def write_service_to_endpoint_rules(
        self, p: _ServicePlan, svc_chain: str, endpoints: list[EndpointInfo]
    ) -> None:
        """Affinity checks first, then the cascade 1/n, 1/(n-1), ..., 1/2, unconditional.

        Rule i catches 1/(n-i) of what is left, so each endpoint gets 1/n overall.
        """
        if p.svc.session_affinity_client_ip:
            for ep in endpoints:
                chain = p.ep_chains[str(ep)]
                self.nat_rules.write(
                    "-A", svc_chain, self._comment(f'"{p.spn} -> {ep}"'),
                    "-m", "recent", "--name", chain, "--rcheck",
                    "--seconds", str(p.svc.sticky_max_age_seconds), "--reap", "-j", chain,
                )  # fmt: skip
        n = len(endpoints)
        for i, ep in enumerate(endpoints):
            args = ["-A", svc_chain, *self._comment(f'"{p.spn} -> {ep}"')]
            if i < n - 1:
                args += ["-m", "statistic", "--mode", "random",
                         "--probability", compute_probability(n - i)]  # fmt: skip
            self.nat_rules.write(args, "-j", p.ep_chains[str(ep)])

    def _comment(self, text: str) -> list[str]:
        """appendServiceCommentLocked: no comments in large clusters."""
        return [] if self.large_cluster_mode else ["-m", "comment", "--comment", text]

    def _declare(self, chain: str) -> None:
        self.nat_chains.write(make_chain_line(chain))
        self.active_nat_chains.add(chain)

    # --- tail -----------------------------------------------------------------------------
    def delete_stale_chains(self, existing: set[str]) -> None:
        """Declaring a chain flushes it; `-X` then deletes it, in the same transaction."""
        for chain in sorted(existing - self.active_nat_chains):
            if is_service_chain_name(chain):
                self.nat_chains.write(make_chain_line(chain))
                self.nat_rules.write("-X", chain)

    def write_nodeports_jump(self) -> None:
        """Last rule of KUBE-SERVICES: anything addressed to this node -> KUBE-NODEPORTS."""
        dest = ["-m", "addrtype", "--dst-type", "LOCAL"]
        if not self.o.localhost_nodeports:
            dest += ["!", "-d", "127.0.0.0/8"]
        self.nat_rules.write(
            "-A", KUBE_SERVICES_CHAIN, "-m", "comment", "--comment",
            '"kubernetes service nodeports; NOTE: this must be the last rule in this chain"',
            dest, "-j", KUBE_NODEPORTS_CHAIN,
        )  # fmt: skip

    def write_forward_rules(self) -> None:
        if not self.o.conntrack_tcp_be_liberal:
            rule = ["-A", KUBE_FORWARD_CHAIN, "-m", "conntrack", "--ctstate", "INVALID"]
            if self.o.nfacct:
                rule += ["-m", "nfacct", "--nfacct-name", CT_STATE_INVALID_DROPPED_NFACCT_COUNTER]
            self.filter_rules.write(rule, "-j", "DROP")
        mark = self.o.mark
        self.filter_rules.write(
            "-A", KUBE_FORWARD_CHAIN, "-m", "comment", "--comment",
            '"kubernetes forwarding rules"', "-m", "mark", "--mark", f"{mark}/{mark}",
            "-j", "ACCEPT",
        )  # fmt: skip
        self.filter_rules.write(
            "-A", KUBE_FORWARD_CHAIN, "-m", "comment", "--comment",
            '"kubernetes forwarding conntrack rule"',
            "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT",
        )  # fmt: skip
