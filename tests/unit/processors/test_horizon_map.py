"""The array-backed dedup and repeat memory against a dict model."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from processors.horizon import MIN_CAPACITY, HorizonMap, hash_keys

MISSING = -1


def values(*rows: tuple[int, ...]) -> np.ndarray:
    return np.array(rows, dtype=np.int64)


def test_hashes_are_stable_distinct_and_never_empty() -> None:
    keys = hash_keys(["e1", "e2", "e1", ""])
    assert keys.shape == (4, 2) and keys.dtype == np.int64
    assert keys[0].tolist() == keys[2].tolist() != keys[1].tolist()
    assert (keys[:, 1] & 1 == 1).all()  # never the empty row
    # MurmurHash3 x64 128 of the UTF-8 bytes: the same on every machine and run
    assert hash_keys(["é"]).tolist() == hash_keys(["é"]).tolist()
    assert len(hash_keys([])) == 0


def test_lookup_upsert_and_commit() -> None:
    m = HorizonMap(2)
    keys = hash_keys(["a", "b"])
    assert m.lookup(keys, MISSING).tolist() == [[MISSING, MISSING]] * 2
    m.upsert(keys, values((10, 1), (20, 2)))
    m.upsert(hash_keys(["a"]), values((30, 3)))
    assert m.lookup(hash_keys(["b", "a", "c"]), MISSING).tolist() == [
        [20, 2],
        [30, 3],
        [MISSING, MISSING],
    ]
    changed, written = m.commit()
    assert changed.tolist() == hash_keys(["a", "b", "a"]).tolist()
    assert written.tolist() == [[10, 1], [20, 2], [30, 3]]
    assert m.commit()[0].shape == (0, 2)
    assert len(m) == 2 and m.get("a") == (30, 3) and m.get("c") is None


def test_rollback_undoes_inserts_and_updates_since_the_last_commit() -> None:
    m = HorizonMap(1)
    m.upsert(hash_keys(["a"]), values((1,)))
    m.commit()
    m.upsert(hash_keys(["a", "b"]), values((2,), (3,)))
    m.upsert(hash_keys(["b", "c"]), values((4,), (5,)))
    m.rollback()
    assert (m.get("a"), m.get("b"), m.get("c")) == ((1,), None, None)
    assert len(m) == 1
    assert m.commit()[0].shape == (0, 2)  # nothing left to send


def test_entries_before_the_cutoff_are_gone_and_their_slots_reused() -> None:
    m = HorizonMap(1)
    m.upsert(hash_keys([f"k{i}" for i in range(100)]), np.arange(100, dtype=np.int64)[:, None])
    m.expire(50)
    assert len(m) == 50
    assert m.get("k49") is None and m.get("k50") == (50,)
    used = m.used
    m.upsert(hash_keys([f"n{i}" for i in range(50)]), np.full((50, 1), 200, dtype=np.int64))
    assert len(m) == 100
    assert m.used <= used + 50 and m.capacity == MIN_CAPACITY
    assert all(m.get(f"n{i}") == (200,) for i in range(50))
    assert all(m.get(f"k{i}") == (i,) for i in range(50, 100))


def test_the_table_grows_with_its_live_entries_and_shrinks_after_them() -> None:
    m = HorizonMap(1)
    names = [f"event-{i}" for i in range(20_000)]
    for start in range(0, len(names), 1_000):
        m.upsert(hash_keys(names[start : start + 1_000]), np.full((1_000, 1), start))
    assert len(m) == 20_000 and m.capacity >= 20_000 / 0.75
    got = m.lookup(hash_keys(names), MISSING)[:, 0]
    assert got.tolist() == [i // 1_000 * 1_000 for i in range(20_000)]
    m.expire(19_000)
    assert len(m) == 1_000 and m.capacity < 20_000
    assert m.lookup(hash_keys(names[-1_000:]), MISSING)[:, 0].tolist() == [19_000] * 1_000


def test_load_writes_without_recording_and_the_last_equal_key_wins() -> None:
    m = HorizonMap(1)
    m.load(hash_keys(["a", "b", "a"]), values((1,), (2,), (3,)))
    assert (m.get("a"), m.get("b")) == ((3,), (2,))
    assert m.commit()[0].shape == (0, 2)


def test_capacity_has_a_floor() -> None:
    with pytest.raises(ValueError):
        HorizonMap(1, capacity=16)


# -- against a dict model -------------------------------------------------------------------

ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("upsert"),
            st.lists(st.tuples(st.integers(0, 300), st.integers(0, 1_000)), max_size=60),
        ),
        st.tuples(st.just("expire"), st.integers(0, 1_000)),
        st.tuples(st.just("commit"), st.none()),
        st.tuples(st.just("rollback"), st.none()),
    ),
    max_size=40,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops)
def test_a_map_behaves_like_a_dict_that_forgets_what_arrived_before_the_cutoff(
    steps: list[tuple[str, object]],
) -> None:
    m = HorizonMap(1)
    committed: dict[int, int] = {}  # the model as of the last commit
    model: dict[int, int] = {}
    cutoff = -(1 << 61)
    for op, arg in steps:
        if op == "upsert":
            pairs = dict(arg)  # type: ignore[call-overload]  # distinct keys, the last wins
            if not pairs:
                continue
            m.upsert(hash_keys([f"k{k}" for k in pairs]), values(*[(v,) for v in pairs.values()]))
            model.update(pairs)
        elif op == "expire":
            cutoff = max(cutoff, arg)  # type: ignore[call-overload]
            m.expire(cutoff)
            committed = {k: v for k, v in committed.items() if v >= cutoff}
            model = {k: v for k, v in model.items() if v >= cutoff}
        elif op == "commit":
            m.commit()
            committed = dict(model)
        else:
            m.rollback()
            model = {k: v for k, v in committed.items() if v >= cutoff}
        live = {k: v for k, v in model.items() if v >= cutoff}
        got = m.lookup(hash_keys([f"k{k}" for k in range(301)]), MISSING)[:, 0].tolist()
        assert {k: v for k, v in enumerate(got) if v != MISSING} == live
        assert len(m) == len(live)


def test_without_a_writable_cache_the_loops_still_compile(monkeypatch: pytest.MonkeyPatch) -> None:
    """A read-only image without NUMBA_CACHE_DIR: numba refuses `cache=True` at decoration."""
    import numba

    from processors import horizon

    real = numba.njit

    def njit(**options: object) -> object:
        if options.get("cache"):
            raise RuntimeError("cannot cache function 'f': no locator available")
        return real(**options)

    monkeypatch.setattr(numba, "njit", njit)

    def double(x: int) -> int:
        return 2 * x

    assert horizon._compiled(double)(21) == 42
