"""netfilter: which iptables tables and chains a packet meets, in which order, and why.

Two halves that are tested against each other:

* `model`: the kernel's hooks and the tables' priorities, answering "which (table, chain)
  does a packet on this path traverse, in which order" for the three paths (to a local
  process, forwarded, sent by a local process), with NAT walked for new connections only.
* `tracer`: the same question answered by the kernel itself, for a real packet, from the
  trace events netfilter emits (`nft monitor`), scoped to the packets you name.

API for labs and graders (course never imports grader; grader.tracing adds Scapy probes):

    trace(ns, send, match) -> Trace     trace.path(), trace.render(), trace.draw()
    Match(proto, src, dst, sport, dport, icmp_id)   which packets to trace
    path(kind, new=True) -> [(table, chain)]        the model's answer
    draw_model(kind)                                the map, a path highlighted
    declare_builtin_chains(ns), enable_conntrack(ns), rule_counters(ns, table)
"""

from course.netfilter.draw import draw_model, draw_trace
from course.netfilter.iptables import (
    RuleCounter,
    declare_builtin_chains,
    enable_conntrack,
    rule_counters,
)
from course.netfilter.model import (
    BUILTIN_CHAINS,
    HOOKS,
    PATH_TITLES,
    PATHS,
    TABLES,
    Hook,
    PathKind,
    explain,
    hook_stages,
    path,
    stages,
    target_allowed,
)
from course.netfilter.render import render_prediction
from course.netfilter.tracer import (
    Match,
    Seen,
    Step,
    Trace,
    TracedPacket,
    TraceError,
    remove_stale_traces,
    trace,
    trace_tables,
)

__all__ = [
    "BUILTIN_CHAINS",
    "HOOKS",
    "PATHS",
    "PATH_TITLES",
    "TABLES",
    "Hook",
    "Match",
    "PathKind",
    "RuleCounter",
    "Seen",
    "Step",
    "Trace",
    "TraceError",
    "TracedPacket",
    "declare_builtin_chains",
    "draw_model",
    "draw_trace",
    "enable_conntrack",
    "explain",
    "hook_stages",
    "path",
    "remove_stale_traces",
    "render_prediction",
    "rule_counters",
    "stages",
    "target_allowed",
    "trace",
    "trace_tables",
]
