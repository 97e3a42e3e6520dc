"""Property tests: any bytes, and any mutation of a valid stream, give events or a StreamError."""

from __future__ import annotations

import random

from fuzz_decoder import check, mutate, reframe, seeds
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SEEDS = seeds()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.binary(max_size=600))
def test_any_bytes(data):
    check(data)


@settings(max_examples=150, deadline=None)
@given(data=st.binary(max_size=300))
def test_any_bytes_after_a_valid_preamble(data):
    check(b"DVMG\x00\x01\x00\x00" + data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), which=st.integers(0, len(SEEDS) - 1))
def test_mutations_of_a_valid_stream(seed, which):
    rng = random.Random(seed)
    check(mutate(SEEDS[which], rng), rng)


def test_seeds_are_valid_and_reframe_is_identity_on_them():
    for data in SEEDS:
        assert check(data) == "ok"
        assert reframe(data) == data
