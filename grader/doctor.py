"""Every kernel feature and tool the labs rely on, each proven by actually using it.

All trials happen inside one throwaway namespace, so the doctor itself leaves the host
untouched, like every lab.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass

from course.kernel import KernelError, Netns
from course.runs import PREFIX

APT = "apt-get install -y"


@dataclass
class Result:
    name: str
    ok: bool
    detail: str
    fix: str


def _privileges() -> tuple[bool, str]:
    if os.geteuid() == 0:
        return True, "running as root"
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("CapEff:") and int(line.split()[1], 16) & (1 << 12):
                return True, "CAP_NET_ADMIN"
    return False, "neither root nor CAP_NET_ADMIN"


def _tool(binary: str, version_args: list[str]) -> tuple[bool, str]:
    path = shutil.which(binary)
    if not path:
        return False, f"{binary} not found on PATH"
    out = subprocess.run([path, *version_args], capture_output=True, text=True, timeout=10)
    text = (out.stdout or out.stderr).strip().splitlines()
    return True, text[0] if text else path


IPTABLES_TRIAL = """*raw
:PREROUTING ACCEPT [0:0]
-A PREROUTING -p tcp --dport 9 -j TRACE
COMMIT
*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:KUBE-SVC-DOCTOR - [0:0]
-A PREROUTING -m comment --comment "doctor" -m statistic --mode random --probability 0.5 -j KUBE-SVC-DOCTOR
-A KUBE-SVC-DOCTOR -m recent --name doctor --rcheck --seconds 10 --reap -j MARK --set-xmark 0x4000/0x4000
-A POSTROUTING -m mark --mark 0x4000/0x4000 -m addrtype --src-type LOCAL -j MASQUERADE
COMMIT
*filter
:FORWARD ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate INVALID -j DROP
COMMIT
"""


NFT_TRIAL = """table inet doctor {
    chain input {
        type filter hook input priority 0; policy accept;
        meta nftrace set 1
    }
}
"""


def run_checks() -> list[Result]:
    results: list[Result] = []

    def add(name: str, fix: str, trial: Callable[[], tuple[bool, str]]) -> None:
        try:
            ok, detail = trial()
        except (OSError, KernelError, subprocess.SubprocessError) as exc:
            ok, detail = False, str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        results.append(Result(name, ok, detail, fix))

    add("root or CAP_NET_ADMIN", "run as root (sudo), or the container privileged", _privileges)
    for binary, args, pkg in (
        ("nsenter", ["--version"], "util-linux"),
        ("ip", ["-V"], "iproute2"),
        ("iptables", ["-V"], "iptables"),
        ("nft", ["--version"], "nftables"),
        ("conntrack", ["--version"], "conntrack"),
        ("bird", ["--version"], "bird2"),
        ("tcpdump", ["--version"], "tcpdump (Scapy needs it to compile BPF filters)"),
        ("dot", ["-V"], "graphviz (topology pictures)"),
    ):
        add(binary, f"{APT} {pkg.split()[0]}", lambda b=binary, a=args: _tool(b, a))
    add(
        "iptables uses nf_tables",
        "update-alternatives --set iptables /usr/sbin/iptables-nft",
        lambda: _iptables_backend(),
    )
    if not results[0].ok:
        return results
    ns: Netns | None = None
    try:
        ns = Netns.create(f"{PREFIX}-doctor-{os.getpid()}")
        results.extend(_kernel_trials(ns))
    except (OSError, KernelError) as exc:
        results.append(Result("network namespaces", False, str(exc), "a kernel with CONFIG_NET_NS"))
    finally:
        if ns is not None:
            ns.delete()
    return results


def _iptables_backend() -> tuple[bool, str]:
    out = subprocess.run(["iptables", "-V"], capture_output=True, text=True).stdout.strip()
    return "nf_tables" in out, out


def _kernel_trials(ns: Netns) -> list[Result]:
    out: list[Result] = []

    def trial(name: str, fix: str, fn: Callable[[], str]) -> None:
        try:
            out.append(Result(name, True, fn(), fix))
        except (OSError, KernelError, subprocess.SubprocessError, RuntimeError) as exc:
            out.append(Result(name, False, str(exc).splitlines()[0], fix))

    out.append(Result("network namespaces", True, f"created {ns.name}", ""))
    peer = Netns.create(ns.name + "-peer")
    try:
        trial("veth", "a kernel with CONFIG_VETH", lambda: _veth(ns, peer))
        trial("bridge", "a kernel with CONFIG_BRIDGE", lambda: _bridge(ns))
        trial("vxlan", "a kernel with CONFIG_VXLAN", lambda: _vxlan(ns))
        trial(
            "per-namespace sysctls",
            "/proc/sys must be writable (privileged container)",
            lambda: _sysctls(ns),
        )
        trial(
            "iptables: statistic, MASQUERADE, TRACE, recent, conntrack",
            "a kernel with the xt_statistic/xt_recent/MASQUERADE/TRACE modules; apt iptables",
            lambda: (ns.apply_iptables(IPTABLES_TRIAL), "iptables-restore accepted them")[1],
        )
        trial(
            "nftables",
            f"{APT} nftables",
            lambda: (
                ns.apply_nft(NFT_TRIAL),
                "nft -f accepted a table",
            )[1],
        )
        trial("conntrack table", f"{APT} conntrack", lambda: _conntrack(ns))
        trial("Scapy raw sockets", "pip install scapy; root", lambda: _scapy(ns))
    finally:
        peer.delete()
    return out


def _veth(ns: Netns, peer: Netns) -> str:
    ns.add_veth("eth0", peer, "eth0")
    ns.add_address("eth0", "10.244.1.1/24")
    ns.up("eth0")
    peer.add_address("eth0", "10.244.1.2/24")
    peer.up("eth0")
    return "pair across two namespaces"


def _bridge(ns: Netns) -> str:
    ns.add_bridge("cni0")
    return "cni0 created"


def _vxlan(ns: Netns) -> str:
    ns.add_vxlan("flannel.1", vni=1, local="10.244.1.1", dev="eth0")
    return "flannel.1 (VNI 1, port 8472) created"


def _sysctls(ns: Netns) -> str:
    ns.sysctl("net.ipv4.ip_forward", 1)
    ns.sysctl("net.ipv4.conf.all.proxy_arp", 1)
    value = ns.sysctl("net.bridge.bridge-nf-call-iptables")
    return f"ip_forward, proxy_arp written; bridge-nf-call-iptables={value}"


def _conntrack(ns: Netns) -> str:
    ns.run(["conntrack", "-L"])
    return "conntrack -L works inside a namespace"


def _scapy(ns: Netns) -> str:
    from grader.probes import ping

    obs = ping(ns, "10.244.1.2", timeout=2.0)
    if not obs.ok:
        raise RuntimeError(obs.describe())
    return f"ICMP echo over a veth answered in {obs.reply.t_ms:.1f} ms" if obs.reply else ""
