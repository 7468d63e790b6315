"""Lab 06's learner tools against real namespaces: the break/fix catalogue (each fault breaks
the ClusterIP, hints escalate without naming it, its repair gets full marks), the Service typed
by hand with iptables commands, journeys under the checks, and a rejected iptables-restore
named with its line.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from course.faults import Catalogue, inject
from course.faults.lab06 import CATALOGUE, kube_proxy_sync
from course.kernel import KernelError
from course.kubeproxy import EndpointSliceController, load_manifests, parse_manifests
from course.labs import topology
from course.topology import Cluster
from grader import breakfix, probes
from grader.labs import CheckContext
from grader.labs.lab06 import BREAKFIX, ECHO, check_by_hand, cluster_ip_works
from grader.verdict import Verdict
from tests.faultpairs import drawable, ids, problem
from tests.labs.test_lab06_checks import MANIFESTS, SERVER, STICKY_YAML, Lab06

pytestmark = pytest.mark.slow
ECHO_SVC, ECHO_SEP = "KUBE-SVC-ZJMBFACUQCTMIK2C", "KUBE-SEP-HFRVS642CWW2Z5CO"
BY_HAND = f"""
iptables -t nat -N {ECHO_SVC}
iptables -t nat -N {ECHO_SEP}
iptables -t nat -A KUBE-SERVICES -m comment --comment "default/echo:http cluster IP" -p tcp -d 10.96.0.12 --dport 80 -j {ECHO_SVC}
iptables -t nat -A {ECHO_SVC} -m comment --comment "default/echo:http -> 10.244.1.4:8080" -j {ECHO_SEP}
iptables -t nat -A {ECHO_SEP} -m comment --comment default/echo:http -s 10.244.1.4 -j KUBE-MARK-MASQ
iptables -t nat -A {ECHO_SEP} -m comment --comment default/echo:http -p tcp -j DNAT --to-destination {{target}}
"""


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab06]:
    """The notebook's state at the break/fix exercise: b not ready, kube-proxy's rules."""
    probes.warm_up()
    objects = load_manifests([MANIFESTS])
    sticky = parse_manifests(STICKY_YAML, "web-sticky.yaml").services[0]
    controller = EndpointSliceController([objects.services[0], sticky], objects.pods)
    with Cluster("06-kube-proxy", **topology("06-kube-proxy")) as c:
        for name in "abc":
            c.pod(name).exec([sys.executable, "-c", SERVER, name])
        lab06 = Lab06(c, controller)
        lab06.payload(b_ready=False)
        kube_proxy_sync(lab06.node, list(controller.services.values()), controller)
        yield lab06
    shutil.rmtree(breakfix.ATTEMPTS_DIR / c.prefix, ignore_errors=True)


def judge(lab: Lab06, check: Callable[[CheckContext], Verdict]) -> Verdict:
    c = lab.cluster
    verdict = check(CheckContext("06-kube-proxy", c.prefix, tuple(c.record.namespaces)))
    print(verdict.render())
    return verdict


def _ctx(lab: Lab06) -> CheckContext:
    return CheckContext("06-kube-proxy", lab.cluster.prefix, tuple(lab.cluster.record.namespaces))


def _by_hand(lab: Lab06, target: str) -> None:
    lab.node.run(["bash", "-c", BY_HAND.format(target=target)])


def _drop_by_hand(lab: Lab06) -> None:
    services = list(lab.controller.services.values())
    kube_proxy_sync(lab.node, services, lab.controller)


def test_the_working_cluster_ip_passes_the_break_fix_probe(lab: Lab06) -> None:
    verdict = judge(lab, BREAKFIX)
    assert not verdict.passed and "never injected" in verdict.summary  # no points for nothing
    ok = cluster_ip_works(_ctx(lab))
    assert ok.passed, ok.render()
    assert "DNAT 10.96.0.10:80 -> 10.244.1." in ok.journey


@pytest.mark.parametrize("fault", CATALOGUE.faults, ids=lambda f: f.id)
def test_each_fault_breaks_the_cluster_ip_and_its_repair_gets_full_marks(lab, fault):
    single = Catalogue(f"t-06/{fault.id}", (fault,), k=1, story=CATALOGUE.story)
    check = breakfix.check(single, cluster_ip_works)
    ctx = _ctx(lab)
    inject(lab.cluster, single)
    try:
        assert fault.present(
            lab.namespaces if hasattr(lab, "namespaces") else lab.cluster.namespaces
        )  # type: ignore[misc]
        first = check(ctx)
        text = first.render()
        assert not first.passed, text
        assert fault.title not in text and fault.id not in text
        assert fault.where in first.hint and fault.look_at not in first.hint
        assert "connections to 10.96.0.10:80 failed" in first.summary
        assert "journey of TCP SYN to 10.96.0.10:80" in text
    finally:
        fault.repair(lab.cluster.namespaces)  # type: ignore[misc]
    assert not fault.present(lab.cluster.namespaces)  # type: ignore[misc]
    repaired = check(ctx)
    assert repaired.passed, repaired.render()


def test_the_second_attempt_says_where_to_look(lab: Lab06) -> None:
    fault = CATALOGUE.fault("prerouting-jump-missing")
    single = replace(CATALOGUE, name="t-06/second", faults=(fault,), k=1)
    check = breakfix.check(single, cluster_ip_works)
    inject(lab.cluster, single)
    try:
        first, second = check(_ctx(lab)), check(_ctx(lab))
    finally:
        fault.repair(lab.cluster.namespaces)  # type: ignore[misc]
    assert fault.look_at not in first.hint and fault.look_at in second.hint
    assert "the packet never" not in second.journey or "ICMP error" in second.journey


def test_a_service_typed_as_iptables_commands(lab: Lab06) -> None:
    assert "KUBE-SERVICES has no rule for 10.96.0.12:80" in judge(lab, check_by_hand).summary
    _by_hand(lab, "10.244.1.4:80")
    try:
        wrong = judge(lab, check_by_hand)
        assert not wrong.passed and "wrong target port" in wrong.summary
    finally:
        _drop_by_hand(lab)
    _by_hand(lab, "10.244.1.4:8080")
    try:
        right = judge(lab, check_by_hand)
    finally:
        _drop_by_hand(lab)
    assert right.passed, right.render()
    assert f"{ECHO.svc_chain} -> {ECHO_SEP}" in right.summary
    assert "answered by: c x20" in right.observed
    assert "DNAT 10.96.0.12:80 -> 10.244.1.4:8080 in node1" in right.journey


def test_a_rejected_restore_is_named_with_its_line(lab: Lab06) -> None:
    node = lab.node
    node.run(["iptables", "-t", "nat", "-F", "KUBE-SERVICES"])
    bad = "*nat\n:KUBE-SERVICES - [0:0]\n-A KUBE-SERVICES -m statistic --probability 1/3 -j KUBE-SEP-X\nCOMMIT\n"
    try:
        with pytest.raises(KernelError, match=r"line 3: -A KUBE-SERVICES .*--probability 1/3"):
            node.apply_iptables(bad, noflush=True)
        verdict = lab.run("ex3-names")
        assert not verdict.passed
        assert "Your last iptables-restore in node1 was rejected" in verdict.observed
        assert "line 3: -A KUBE-SERVICES" in verdict.observed
    finally:
        _drop_by_hand(lab)  # a good restore clears the note
    assert "rejected" not in judge(lab, check_by_hand).observed


def test_every_pair_a_learner_can_draw_is_injected_present_and_repairable(lab: Lab06) -> None:
    """Every drawable pair on the shared lab: applied in draw order without error, both still
    present, then healed by both repairs. That the pair breaks the ClusterIP is not probed again
    (each fault alone does, above; a broken probe waits for its timeouts). All pairs were once
    tried with that probe too, and with each fault repaired alone: only the missing jump with
    the stray ACCEPT clashed (below), kept apart."""
    ctx = _ctx(lab)
    found = {
        ids(d): p
        for d in drawable(CATALOGUE)
        if (p := problem(d, lab.cluster.namespaces, lambda: cluster_ip_works(ctx).passed, False))
    }
    assert found == {}


def test_the_jump_put_back_first_disarms_the_stray_accept_so_they_are_kept_apart(
    lab: Lab06,
) -> None:
    """Both faults in nat PREROUTING: restoring kube-proxy's jump (prepended, as kube-proxy
    does) heals the ClusterIP while the stray ACCEPT is still there, so a learner drawing both
    would repair one fault and be told it is all repaired. The exploration of every pair
    (repairing each fault alone) found no other pair where one repair heals both."""
    roles = lab.cluster.namespaces
    jump, stray = (
        CATALOGUE.fault(i) for i in ("prerouting-jump-missing", "prerouting-stray-accept")
    )
    jump.apply(roles)
    stray.apply(roles)
    try:
        jump.repair(roles)  # type: ignore[misc]
        assert stray.present(roles)  # type: ignore[misc]
        assert cluster_ip_works(_ctx(lab)).passed
    finally:
        stray.repair(roles)  # type: ignore[misc]
    assert not CATALOGUE.compatible([jump, stray])
