"""Cluster DNS, the part of CoreDNS's `kubernetes` plugin that Services need.

A Service `web` in namespace `default` is the name `web.default.svc.cluster.local`:

- a normal Service answers with its one ClusterIP (kube-proxy's rules do the rest);
- a **headless** Service (`clusterIP: None`) has no ClusterIP and no kube-proxy rules at
  all, so DNS answers with the addresses of its *ready* endpoints, one A record each, and
  the client connects to a pod directly (no NAT anywhere).

The records come from the same EndpointSlices kube-proxy reads (`zone(...)`). The server
runs inside a pod (as CoreDNS does) and reads its zone from a JSON file on every query,
so an update (a pod turned not ready) shows at once. Wire format by Scapy's DNS layer.

    python -m course.dns serve ZONE.json [--port 53]      # inside the DNS pod
    python -m course.dns query NAME [--server IP]         # like `dig +short NAME @IP`
"""

from __future__ import annotations

import argparse
import atexit
import json
import os
import random
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from course.kubeproxy.objects import EndpointSlice, Service

if TYPE_CHECKING:
    from course.kernel import Netns
    from course.topology import Pod

DOMAIN = "cluster.local"
TTL = 5  # CoreDNS's default for the kubernetes plugin
KUBE_DNS_IP = "10.96.0.10"  # kubeadm's default ClusterIP of kube-system/kube-dns


def service_name(svc: Service, domain: str = DOMAIN) -> str:
    return f"{svc.name}.{svc.namespace}.svc.{domain}"


def zone(
    services: Iterable[Service], slices: Iterable[EndpointSlice], domain: str = DOMAIN
) -> dict[str, list[str]]:
    """name -> A records: the ClusterIP, or (headless) every ready endpoint address.

    Ready means `conditions.ready` is not False, as for kube-proxy; a headless Service
    with `publishNotReadyAddresses` gets every address (the controller marks them ready).
    """
    by_service: dict[tuple[str, str], list[EndpointSlice]] = {}
    for es in slices:
        by_service.setdefault((es.namespace, es.service_name), []).append(es)
    records: dict[str, list[str]] = {}
    for svc in services:
        if svc.type == "ExternalName":
            continue
        if not svc.headless:
            records[service_name(svc, domain)] = [svc.cluster_ip]
            continue
        addresses = {
            addr
            for es in by_service.get((svc.namespace, svc.name), [])
            for ep in es.endpoints
            if ep.conditions.ready is not False
            for addr in ep.addresses
        }
        records[service_name(svc, domain)] = sorted(addresses)
    return records


# --- the server -------------------------------------------------------------------------------
def answer(query: bytes, records: dict[str, list[str]]) -> bytes | None:
    """The reply to one DNS query: A records, NOERROR without answers, or NXDOMAIN."""
    from scapy.layers.dns import DNS, DNSRR

    try:
        msg = DNS(query)
    except Exception:  # not DNS at all: say nothing, as a real server would
        return None
    if msg.qr or not msg.qd:
        return None
    q = msg.qd[0]
    name = q.qname.decode().rstrip(".").lower()
    reply = DNS(id=msg.id, qr=1, aa=1, rd=msg.rd, ra=0, qd=msg.qd)
    if name not in records:
        reply.rcode = 3  # NXDOMAIN
    elif q.qtype == 1:  # A
        reply.an = [DNSRR(rrname=q.qname, type="A", ttl=TTL, rdata=ip) for ip in records[name]]
    return bytes(reply)


def serve(zone_file: str, port: int = 53) -> None:
    """Answer queries on UDP `port`, reading the zone file fresh for each one."""
    import scapy.layers.dns  # noqa: F401  (import once, before saying "ready")

    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("0.0.0.0", port))
    print(f"dns listening on :{port}", flush=True)
    while True:
        data, peer = sock.recvfrom(4096)
        try:
            records = json.loads(Path(zone_file).read_text())
        except (OSError, ValueError):
            records = {}
        reply = answer(data, records)
        if reply is not None:
            sock.sendto(reply, peer)


# --- the client -------------------------------------------------------------------------------
def query(name: str, server: str = KUBE_DNS_IP, port: int = 53, timeout: float = 2.0) -> list[str]:
    """A records for `name` from `server` (in the calling namespace); [] for NXDOMAIN.

    Raises TimeoutError when no answer comes: the server, or the path to it, is down.
    """
    from scapy.layers.dns import DNS, DNSQR

    ident = random.randrange(1, 0xFFFF)
    msg = bytes(DNS(id=ident, rd=1, qd=[DNSQR(qname=name, qtype="A")]))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(timeout)
        sock.sendto(msg, (server, port))
        while True:
            data, _ = sock.recvfrom(4096)
            reply = DNS(data)
            if reply.id == ident and reply.qr:
                break
    return [rr.rdata for rr in (reply.an or []) if rr.type == 1]


def query_from(ns: Netns, name: str, server: str = KUBE_DNS_IP, timeout: float = 2.0) -> list[str]:
    """`query` from inside a lab namespace (a pod): the socket is made there."""
    with ns.entered():
        return query(name, server, timeout=timeout)


# --- running it in a lab pod ------------------------------------------------------------------
class ClusterDNS:
    """The DNS server process inside a pod, and the zone file it reads.

    `update(services, slices)` rewrites the zone (atomically: write, then rename), which
    is what CoreDNS's watch on EndpointSlices does. The process lives in the pod's
    namespace, so it dies with the lab.
    """

    def __init__(self, pod: Pod, port: int = 53) -> None:
        self.pod = pod
        self.port = port
        fd, path = tempfile.mkstemp(prefix=f"k8snet-dns-{pod.ns.name}-", suffix=".json")
        os.close(fd)
        self.zone_file = Path(path)
        self.zone_file.write_text("{}")
        atexit.register(self.zone_file.unlink, missing_ok=True)
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> ClusterDNS:
        argv = [sys.executable, "-m", "course.dns", "serve", str(self.zone_file)]
        self.proc = self.pod.exec(
            [*argv, "--port", str(self.port)], stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if "listening" not in line:
            raise RuntimeError(f"the DNS server in {self.pod.ns.name} did not start: {line!r}")
        return self

    def update(
        self, services: Iterable[Service], slices: Iterable[EndpointSlice]
    ) -> dict[str, Any]:
        records = zone(services, slices)
        tmp = self.zone_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(records, indent=1))
        tmp.replace(self.zone_file)
        return records

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(5)
            self.proc = None
        self.zone_file.unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m course.dns", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("serve", help="answer queries from a zone file (JSON: name -> [ips])")
    s.add_argument("zone")
    s.add_argument("--port", type=int, default=53)
    q = sub.add_parser("query", help="ask for a name's A records, like dig +short")
    q.add_argument("name")
    q.add_argument("--server", default=KUBE_DNS_IP)
    q.add_argument("--port", type=int, default=53)
    args = parser.parse_args(argv)
    if args.cmd == "serve":
        serve(args.zone, args.port)
        return 0
    try:
        addresses = query(args.name, args.server, args.port)
    except TimeoutError:
        print(f";; no answer from {args.server}:{args.port}", file=sys.stderr)
        return 9
    print("\n".join(addresses) if addresses else ";; no A records (NXDOMAIN or empty)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
