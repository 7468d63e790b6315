"""What crossed the underlay: outer and inner headers of each packet, read from a capture.

Cross-node checks ask questions a plain frame summary cannot answer: was the pod packet
wrapped in VXLAN (outer node IPs, UDP port, VNI) or did it travel as itself (pod IPs on the
wire, TTL lowered by each node)? `sniff_wire_while` captures on one interface of one
namespace (tcpdump, read back by a probe child) while an action runs elsewhere, and returns
one `WirePacket` per packet with both layers decoded.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from course.capture import CaptureError, Tap
from course.kernel import Netns
from grader.probes import ProbeError, _ns_name, run_in_netns

VXLAN_PORTS = (4789, 8472)


@dataclass
class WirePacket:
    """One IPv4 packet as seen on an interface; `vni` and `inner_*` only for VXLAN."""

    t_ms: float
    iface: str
    src: str
    dst: str
    ttl: int
    kind: str
    length: int
    sport: int | None = None
    dport: int | None = None
    vni: int | None = None
    inner_src: str | None = None
    inner_dst: str | None = None
    inner_ttl: int | None = None
    inner_kind: str | None = None
    inner_src_mac: str | None = None
    inner_dst_mac: str | None = None
    detail: str = ""

    @property
    def encapsulated(self) -> bool:
        return self.vni is not None

    def describe(self) -> str:
        ports = f":{self.sport} -> {self.dst}:{self.dport}" if self.sport else f" -> {self.dst}"
        head = f"{self.kind} {self.src}{ports} ttl {self.ttl}, {self.length} bytes"
        if self.detail:
            head += f" ({self.detail})"
        if not self.encapsulated:
            return head
        return (
            f"{head}, VXLAN VNI {self.vni} carrying [{self.inner_kind} "
            f"{self.inner_src} -> {self.inner_dst} ttl {self.inner_ttl}, "
            f"MAC {self.inner_src_mac} -> {self.inner_dst_mac}]"
        )


def _kind(layer: Any) -> str:
    from scapy.layers.inet import ICMP, TCP, UDP

    if ICMP in layer:
        return f"ICMP {layer[ICMP].sprintf('%ICMP.type%')}"
    if TCP in layer:
        return f"TCP {layer[TCP].flags}"
    if UDP in layer:
        return "UDP"
    return layer.lastlayer().name


def _wire_packet(pkt: Any, t0: float, iface: str) -> WirePacket | None:
    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.layers.l2 import Ether
    from scapy.layers.vxlan import VXLAN

    if IP not in pkt:
        return None
    ip = pkt[IP]
    udp = ip.getlayer(UDP)
    kind = "UDP" if udp is not None else _kind(ip)
    out = WirePacket(
        t_ms=(float(pkt.time) - t0) * 1000,
        iface=iface,
        src=ip.src,
        dst=ip.dst,
        ttl=ip.ttl,
        kind=kind,
        length=ip.len,
        sport=udp.sport if udp is not None else None,
        dport=udp.dport if udp is not None else None,
    )
    if ICMP in ip and ip[ICMP].type in (3, 11):
        out.detail = ip[ICMP].sprintf("%ICMP.code%")
        if ip[ICMP].type == 3 and ip[ICMP].code == 4:
            out.detail += f", next-hop MTU {ip[ICMP].nexthopmtu}"
    if udp is not None and VXLAN in udp and (udp.dport in VXLAN_PORTS):
        vx = udp[VXLAN]
        out.vni = int(vx.vni)
        inner = vx.payload
        if Ether in inner:
            out.inner_src_mac, out.inner_dst_mac = inner[Ether].src, inner[Ether].dst
        if IP in inner:
            out.inner_src, out.inner_dst = inner[IP].src, inner[IP].dst
            out.inner_ttl, out.inner_kind = inner[IP].ttl, _kind(inner[IP])
    return out


def _read_wire(path: str, t0: float, iface: str) -> list[WirePacket]:
    """Parse a pcap in a probe child (Scapy is loaded there already)."""
    from scapy.utils import rdpcap

    packets = [_wire_packet(p, t0, iface) for p in rdpcap(path)]
    return [p for p in packets if p is not None]


def sniff_wire_while(
    ns: Netns | str,
    iface: str,
    action: Callable[[], Any],
    bpf: str = "ip",
    max_seconds: float = 6.0,
) -> tuple[Any, list[WirePacket]]:
    """Capture IPv4 on `iface` inside `ns` while `action()` runs; decode VXLAN layers too.

    tcpdump (`course.capture.Tap`, never promiscuous) writes a pcap that a probe child reads.
    Capture on a switch *port* (the underlay's `node1`), not on the bridge `br0`: without
    promiscuous mode a bridge device sees only frames addressed to itself.
    """
    netns = ns if isinstance(ns, Netns) else Netns(_ns_name(ns))
    folder = Path(tempfile.mkdtemp(prefix="k8snet-wire-"))
    tap = Tap(_ns_name(ns), netns, iface, folder / f"{iface}.pcap", bpf=bpf)
    try:
        try:
            tap.start(10000)
            tap.wait_listening(time.monotonic() + max_seconds)
        except CaptureError as exc:
            raise ProbeError(str(exc)) from None
        t0 = time.time()
        try:
            outcome = action()
        finally:
            time.sleep(0.02)  # a reply still crossing the last veth when the action returned
            tap.stop()
        packets = run_in_netns(netns, _read_wire, str(tap.path), t0, iface, timeout=max_seconds + 8)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return outcome, packets


def about(packets: list[WirePacket], pod_src: str, pod_dst: str) -> list[WirePacket]:
    """The packets of one pod-to-pod flow, wrapped or not (either direction)."""
    pair = {pod_src, pod_dst}
    return [
        p
        for p in packets
        if {p.src, p.dst} == pair or (p.encapsulated and {p.inner_src, p.inner_dst} == pair)
    ]
