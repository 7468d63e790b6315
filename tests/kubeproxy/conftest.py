"""A throwaway node namespace for kube-proxy kernel tests (named knl-* so the reaper finds it)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from course.kernel import Netns


@pytest.fixture
def node_ns() -> Iterator[Netns]:
    ns = Netns.create(f"knl-kp-test-{uuid.uuid4().hex[:6]}")
    try:
        ns.up("lo")
        yield ns
    finally:
        ns.delete()
