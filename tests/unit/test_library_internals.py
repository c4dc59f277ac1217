"""The internals of Faust, mode, aiokafka and kafka-python the code relies on, named one by
one, so that an upgrade that moves one fails here with its name (docs/upgrading.md).

What counts, found by an AST walk over every module of the packages that imports one of
these libraries (`test_the_walk_finds_nothing_that_is_not_listed` holds the lists to it):

- an import from one of their modules that is not a documented public one (`INTERNALS`,
  keyed `module:name`);
- an attribute whose name starts with `_` read on anything but `self` (`super()._x`,
  `other._x`), or on `self` in a class derived from one of theirs when no class of
  ours defines it (`self._read_offset` in `BulkConsumer`): `INTERNALS`, keyed by the name;
- every name a class derived from one of theirs defines in its body: it overrides theirs
  (`OVERRIDES`: it must still exist there, with the same parameters and the same
  coroutine-ness as ours) or is our own (`OWN`: theirs must not define it, or one of the
  two would silently replace the other).

`INTERNALS` also lists a few names spelled public that their docs do not offer (Faust's
table recovery state, its monitor's per-partition times): our copy of Faust's fetch loop
reads them. `COPIED` pins the source of the library functions we copied, so that a change
upstream is ported into our copy and not lost.
"""

from __future__ import annotations

import ast
import asyncio
import hashlib
import importlib
import inspect
import textwrap
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ingest", "processors", "sinks", "tracing", "scantrace")
LIBRARIES = ("faust", "mode", "aiokafka", "kafka")
# Modules whose names the libraries document as their API; anything deeper is internal.
PUBLIC_MODULES = frozenset(
    {
        "faust",
        "faust.exceptions",
        "faust.types",
        "mode",
        "aiokafka",
        "aiokafka.abc",
        "aiokafka.errors",
        "aiokafka.structs",
        "kafka",
        "kafka.admin",
        "kafka.errors",
    }
)

METHOD, COROUTINE, ATTRIBUTE, VALUE = "method", "coroutine", "attribute", "value"


@dataclass(frozen=True)
class Internal:
    """`owner` a class (`module:Class`) or a module; `kind` METHOD or COROUTINE (with its
    parameter names), ATTRIBUTE (on the class or on an instance of it), VALUE (a module's
    name: a function with `params`, or anything else without)."""

    owner: str
    kind: str
    params: tuple[str, ...] | None = None
    why: str = ""


_FAUST_CONSUMER = "faust.transport.consumer:Consumer"
_FAUST_AIOKAFKA = "faust.transport.drivers.aiokafka"

INTERNALS: dict[str, Internal] = {
    # -- imports from internal modules ---------------------------------------------------
    "faust.transport.consumer:CONSUMER_FETCHING": Internal(
        "faust.transport.consumer", VALUE, why="the fetch loop's diag flag"
    ),
    "faust.transport.drivers:aiokafka": Internal("faust.transport.drivers", VALUE),
    "faust.assignor:PartitionAssignor": Internal(
        "faust.assignor", VALUE, why="RefreshingAssignor (its `PartitionAssignor` setting)"
    ),
    "faust.types.tuples:ack_lock": Internal("faust.types.tuples", VALUE, why="ack_offsets"),
    "mode.utils.futures:notify": Internal("mode.utils.futures", VALUE, ("fut", "result")),
    "faust.stores.memory:Store": Internal("faust.stores.memory", VALUE),
    "faust.tables.table:Table": Internal("faust.tables.table", VALUE),
    "aiokafka.consumer:fetcher": Internal("aiokafka.consumer", VALUE, why="lean records"),
    "aiokafka.partitioner:murmur2": Internal("aiokafka.partitioner", VALUE, ("data",)),
    # the start-up probe (ingest/kafka_probe.py): one connection with the client's own
    # security settings, and one metadata request on it
    "aiokafka.conn:create_conn": Internal(
        "aiokafka.conn",
        VALUE,
        (
            "host",
            "port",
            "client_id",
            "request_timeout_ms",
            "ssl_context",
            "security_protocol",
            "max_idle_ms",
            "on_close",
            "sasl_mechanism",
            "sasl_plain_username",
            "sasl_plain_password",
            "sasl_kerberos_service_name",
            "sasl_kerberos_domain_name",
            "sasl_oauth_token_provider",
        ),
        why="the start-up probe",
    ),
    "aiokafka.protocol.metadata:MetadataRequest": Internal(
        "aiokafka.protocol.metadata", VALUE, why="the start-up probe"
    ),
    "faust.types.auth:CredentialsT": Internal(
        "faust.types.auth", VALUE, why="the worker's broker credentials"
    ),
    # -- Faust's consumer (processors/faust_transport.py, processors/app.py) --------------
    "_stopped": Internal("mode.services:Service", ATTRIBUTE, why="consumer's and fetcher's"),
    "_read_offset": Internal(_FAUST_CONSUMER, ATTRIBUTE),
    "_committed_offset": Internal(_FAUST_CONSUMER, ATTRIBUTE),
    "_commit_every": Internal(_FAUST_CONSUMER, ATTRIBUTE),
    "_buffered_partitions": Internal(_FAUST_CONSUMER, ATTRIBUTE),
    "_acked": Internal(_FAUST_CONSUMER, ATTRIBUTE),
    "_acked_index": Internal(_FAUST_CONSUMER, ATTRIBUTE),
    "_n_acked": Internal(_FAUST_CONSUMER, ATTRIBUTE),
    "_waiting_for_ack": Internal(_FAUST_CONSUMER, ATTRIBUTE),
    "_wait_next_records": Internal(_FAUST_CONSUMER, COROUTINE, ("self", "timeout")),
    "_add_gap": Internal(_FAUST_CONSUMER, COROUTINE, ("self", "tp", "offset_from", "offset_to")),
    "_drain_messages": Internal(_FAUST_CONSUMER, COROUTINE, ("self", "fetcher")),
    "_to_message": Internal(f"{_FAUST_AIOKAFKA}:Consumer", METHOD, ("self", "tp", "record")),
    # -- Faust's producer (exactly once: the partition's transactional producer) ----------
    "_trn_locks": Internal(f"{_FAUST_AIOKAFKA}:Producer", ATTRIBUTE),
    "_transaction_producers": Internal(f"{_FAUST_AIOKAFKA}:Producer", ATTRIBUTE),
    "_ensure_producer": Internal(f"{_FAUST_AIOKAFKA}:Producer", METHOD, ("self",)),
    # -- Faust's tables (processors/tables.py) --------------------------------------------
    "_new_store": Internal("faust.tables.base:Collection", METHOD, ("self",)),
    "_new_changelog_topic": Internal(
        "faust.tables.base:Collection", METHOD, ("self", "retention", "compacting", "deleting")
    ),
    # -- aiokafka (ingest/lean_records.py) ------------------------------------------------
    "_consumer_record": Internal(
        "aiokafka.consumer.fetcher:PartitionRecords", METHOD, ("self", "tp", "record")
    ),
    "_key_deserializer": Internal("aiokafka.consumer.fetcher:PartitionRecords", ATTRIBUTE),
    # -- spelled public, not offered by their docs ---------------------------------------
    "PartitionRecords": Internal(
        "aiokafka.consumer.fetcher",
        VALUE,
        why="replaced by lean_records.install; built with these parameters by its tests",
    ),
    "PartitionRecords.__init__": Internal(
        "aiokafka.consumer.fetcher:PartitionRecords",
        METHOD,
        (
            "self",
            "tp",
            "records",
            "aborted_transactions",
            "fetch_offset",
            "key_deserializer",
            "value_deserializer",
            "check_crcs",
            "isolation_level",
        ),
    ),
    # -- the group leader's metadata refresh (RefreshingAssignor) ----------------------
    "_thread": Internal("faust.transport.consumer:ThreadDelegateConsumer", ATTRIBUTE),
    "_ensure_consumer": Internal(f"{_FAUST_AIOKAFKA}:AIOKafkaConsumerThread", METHOD, ("self",)),
    "_client": Internal("aiokafka:AIOKafkaConsumer", ATTRIBUTE),
    "AIOKafkaClient.force_metadata_update": Internal(
        "aiokafka.client:AIOKafkaClient", METHOD, ("self",), why="returns a future"
    ),
    "TableManager.recovery": Internal("faust.tables.manager:TableManager", ATTRIBUTE),
    "Recovery.in_recovery": Internal("faust.tables.recovery:Recovery", ATTRIBUTE),
    "Recovery.active_tps": Internal("faust.tables.recovery:Recovery", ATTRIBUTE),
    "Recovery.tp_to_table": Internal("faust.tables.recovery:Recovery", ATTRIBUTE),
    "Recovery.active_offsets": Internal("faust.tables.recovery:Recovery", ATTRIBUTE),
    "Monitor.stream_inbound_time": Internal("faust.sensors.monitor:Monitor", ATTRIBUTE),
    "Monitor.track_tp_end_offset": Internal(
        "faust.sensors.monitor:Monitor", METHOD, ("self", "tp", "offset")
    ),
    "Conductor.acks_enabled_for": Internal(
        "faust.transport.conductor:Conductor", METHOD, ("self", "topic")
    ),
    "App.consumer_generation_id": Internal("faust:App", ATTRIBUTE),
    "Consumer.perform_seek": Internal(_FAUST_CONSUMER, COROUTINE, ("self",)),
    "Consumer.flow_active": Internal(_FAUST_CONSUMER, ATTRIBUTE),
    "Consumer.suspend_flow": Internal(_FAUST_CONSUMER, ATTRIBUTE),
    "Consumer.consumer_stopped_errors": Internal(f"{_FAUST_AIOKAFKA}:Consumer", ATTRIBUTE),
}

# Our classes derived from theirs (by class name): the names of their bodies that
# override the library's, and those that are ours alone.
OVERRIDES: dict[str, frozenset[str]] = {
    "BulkConsumer": frozenset(
        {"verify_event_path", "commit", "wait_empty", "_drain_messages", "seek_to_committed"}
    ),
    "BulkProducer": frozenset({"__post_init__", "commit_transactions"}),
    "BulkTransport": frozenset({"Consumer", "Producer"}),
    "RefreshingAssignor": frozenset({"assign"}),
    "WorkerApp": frozenset(
        {"_new_transport", "_new_producer_transport", "on_first_start", "on_stop"}
    ),
    "PartitionedStore": frozenset(
        {
            "__post_init__",
            "_clear",
            "apply_changelog_batch",
            "on_rebalance",
            "on_recovery_completed",
        }
    ),
    "HorizonStore": frozenset(),
    "PartitionedTable": frozenset({"_new_store"}),
    "HorizonTable": frozenset({"__init__", "_new_store", "_new_changelog_topic"}),
    "_LeanPartitionRecords": frozenset({"_consumer_record"}),
    "_Listener": frozenset({"__init__", "on_partitions_revoked", "on_partitions_assigned"}),
}
OWN: dict[str, frozenset[str]] = {
    "BulkConsumer": frozenset(
        {
            "_ack_tasks",
            "_held",
            "_routing",
            "commit_holding_gate",
            "ack_offsets",
            "_restore",
            "_run_bulk",
            "_hold_back",
            "release_held",
            "_ack_when",
            "_batch_failed",
        }
    ),
    "BulkProducer": frozenset({"_lock", "send_batches", "commit_dirty_transactions"}),
    "BulkTransport": frozenset(),
    "RefreshingAssignor": frozenset({"_refreshing", "_refresh_until_listed"}),
    "WorkerApp": frozenset({"bulk", "pipeline"}),
    "PartitionedStore": frozenset(
        {"parts", "_new_part", "_apply", "partition", "entries", "restore_records"}
        | {"_own_partitions"}
    ),
    "HorizonStore": frozenset({"width", "_new_part", "_apply", "entries"}),
    "PartitionedTable": frozenset({"store_class", "store"}),
    "HorizonTable": frozenset({"store_class"}),
    "_LeanPartitionRecords": frozenset(),
    "_Listener": frozenset(),
}
# Overrides whose signature may differ from the library's: HorizonTable passes Faust's
# arguments through; aiokafka declares the rebalance callbacks plain and awaits coroutines.
FREE_SIGNATURE = frozenset(
    {
        ("HorizonTable", "__init__"),
        ("_Listener", "__init__"),
        ("_Listener", "on_partitions_revoked"),
        ("_Listener", "on_partitions_assigned"),
    }
)

# Library functions we keep a modified copy of: a change to their source must be ported.
# (function, sha256 of its dedented source at the pinned version, our copy)
COPIED: tuple[tuple[str, str, str], ...] = (
    (
        f"{_FAUST_CONSUMER}._drain_messages",
        "8f35dd7a11144daa6ec9a3739a497b03a9dd6b57cca18aa861bb4a549400fc68",
        "BulkConsumer._drain_messages (processors/faust_transport.py)",
    ),
    (
        f"{_FAUST_CONSUMER}.getmany",
        "e486c434b7928ee8dc33eb66f8ad03adae289861dcec23f4cbd767ccc3c38148",
        "the per-message path of BulkConsumer._drain_messages",
    ),
    (
        f"{_FAUST_CONSUMER}.ack",
        "5548cf0f75843f73490a54177df6b38b23d6e61a65653e3de6bc929d5165bad4",
        "BulkConsumer.ack_offsets",
    ),
    (
        "faust.tables.recovery:Recovery._slurp_changelogs",
        "7e3120dad754763de31e642c8d83fb7edaf68245a2533c32d812d5d15cfb5f46",
        "BulkConsumer._restore (its offset bookkeeping for an active partition)",
    ),
)


# -- resolving names -----------------------------------------------------------------------


def _resolve(path: str) -> Any:
    """`module:Attr.attr` to the object."""
    module, _, attrs = path.partition(":")
    obj: Any = importlib.import_module(module)
    for attr in filter(None, attrs.split(".")):
        obj = getattr(obj, attr)
    return obj


def _is_library(cls: type) -> bool:
    return cls.__module__.split(".")[0] in LIBRARIES


def _is_ours(cls: type) -> bool:
    return cls.__module__.split(".")[0] in PACKAGES


def _library_base(cls: type) -> type | None:
    return next((base for base in cls.__mro__[1:] if _is_library(base)), None)


def _params(func: Any) -> tuple[str, ...]:
    return tuple(inspect.signature(func).parameters)


@pytest.fixture(scope="module")
def instances() -> list[object]:
    """Library objects as the worker builds them, without a broker (nothing connects)."""
    return asyncio.run(_instances())


async def _instances() -> list[object]:
    # In a running loop, so that no object makes one of its own and leaves it open.
    import faust
    from aiokafka import AIOKafkaConsumer
    from aiokafka.consumer.fetcher import PartitionRecords
    from aiokafka.record.memory_records import MemoryRecords
    from aiokafka.structs import TopicPartition

    app = faust.App(
        "scantrace-internals",
        broker="kafka://127.0.0.1:9",
        store="memory://",
        autodiscover=False,
        web_enabled=False,
    )
    table = app.Table("guard", partitions=1)
    consumer = AIOKafkaConsumer(bootstrap_servers="127.0.0.1:9")
    await consumer.stop()  # never started; closes what the constructor opened
    # Faust's consumer made its fetch thread's loop without starting it: close it here.
    app.consumer._thread.thread_loop.close()
    records = PartitionRecords(
        TopicPartition("t", 0), MemoryRecords(b""), [], 0, None, None, True, 0
    )
    return [
        app,
        app.consumer,
        app.producer,
        app.transport,
        app._fetcher,
        app.tables,
        app.tables.recovery,
        app.monitor,
        app.topics,
        table,
        table.data,
        records,
        consumer,
    ]


def _has(owner: type, name: str, instances: list[object]) -> bool:
    if hasattr(owner, name):
        return True
    return any(isinstance(obj, owner) and hasattr(obj, name) for obj in instances)


# -- the walk ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Walked:
    imports: dict[str, str]  # `module:name` -> where
    names: dict[str, str]  # private attribute name -> where
    bodies: dict[str, tuple[type, frozenset[str]]]  # class name -> (class, its body's names)


def _modules() -> Iterator[tuple[str, Path, ast.Module]]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            if any(_library_module(name.partition(":")[0]) for name, _ in _imports(tree)):
                relative = path.relative_to(ROOT).with_suffix("")
                module = ".".join(relative.parts).removesuffix(".__init__")
                yield module, path, tree


def _library_module(name: str) -> bool:
    return name.split(".")[0] in LIBRARIES


def _imports(tree: ast.AST) -> Iterator[tuple[str, ast.stmt]]:
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for alias in node.names:
                yield f"{node.module}:{alias.name}", node
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node


def _body_names(node: ast.ClassDef) -> frozenset[str]:
    names: set[str] = set()
    for item in node.body:
        if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(item.name)
        elif isinstance(item, ast.Assign):
            names.update(t.id for t in item.targets if isinstance(t, ast.Name))
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            names.add(item.target.id)
    names.discard("__slots__")
    return frozenset(names)


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def walk() -> Walked:
    imports: dict[str, str] = {}
    names: dict[str, str] = {}
    bodies: dict[str, tuple[type, frozenset[str]]] = {}
    for module_name, path, tree in _modules():
        module = importlib.import_module(module_name)
        where = str(path.relative_to(ROOT))
        for name, node in _imports(tree):
            source = name.partition(":")[0]
            if _library_module(source) and source not in PUBLIC_MODULES:
                imports.setdefault(name, f"{where}:{node.lineno}")
        # Private names our own plain classes define: reading them elsewhere is ours.
        plain_names: set[str] = set()
        derived: list[tuple[ast.ClassDef, type]] = []
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            cls = getattr(module, node.name, None)
            if isinstance(cls, type) and _library_base(cls) is not None:
                derived.append((node, cls))
                bodies[node.name] = (cls, _body_names(node))
                continue
            plain_names |= _body_names(node)
            for sub in ast.walk(node):
                if isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Store):
                    plain_names.add(sub.attr)
        in_derived: set[int] = set()
        for node, cls in derived:
            ours = set()
            for klass in cls.__mro__:
                if _is_ours(klass):
                    ours |= set(vars(klass)) | set(getattr(klass, "__annotations__", {}))
            for sub in ast.walk(node):
                if (
                    isinstance(sub, ast.Attribute)
                    and isinstance(sub.value, ast.Name)
                    and sub.value.id == "self"
                ):
                    in_derived.add(id(sub))
                    if _private(sub.attr) and sub.attr not in ours:
                        names.setdefault(sub.attr, f"{where}:{sub.lineno}")
        for sub in ast.walk(tree):
            if not isinstance(sub, ast.Attribute) or id(sub) in in_derived:
                continue
            if isinstance(sub.value, ast.Name) and sub.value.id in ("self", "cls"):
                continue
            if _private(sub.attr) and sub.attr not in plain_names:
                names.setdefault(sub.attr, f"{where}:{sub.lineno}")
    return Walked(imports, names, bodies)


@pytest.fixture(scope="module")
def walked() -> Walked:
    return walk()


# -- the tests -----------------------------------------------------------------------------


@pytest.mark.parametrize("key", sorted(INTERNALS))
def test_an_internal_we_rely_on_is_still_there(key: str, instances: list[object]) -> None:
    spec = INTERNALS[key]
    name = key.rpartition(":")[2].rpartition(".")[2]
    try:
        owner = _resolve(spec.owner)
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"{key}: its owner {spec.owner} is gone ({exc})")
    if spec.kind == ATTRIBUTE:
        assert _has(owner, name, instances), f"{key}: {spec.owner} has no {name} any more"
        return
    assert hasattr(owner, name), f"{key}: {spec.owner} has no {name} any more"
    obj = getattr(owner, name)
    if spec.kind in (METHOD, COROUTINE):
        assert callable(obj), f"{key}: {spec.owner}.{name} is no longer a method"
        coroutine = inspect.iscoroutinefunction(obj)
        assert coroutine == (spec.kind == COROUTINE), (
            f"{key}: {spec.owner}.{name} is {'now' if coroutine else 'no longer'} a coroutine"
        )
    if spec.params is not None:
        assert _params(obj) == spec.params, (
            f"{key}: {spec.owner}.{name} takes {_params(obj)}, we call it with {spec.params}"
        )


@pytest.mark.parametrize("cls_name", sorted(OVERRIDES))
def test_our_overrides_still_override_and_our_own_names_collide_with_nothing(
    cls_name: str, walked: Walked, instances: list[object]
) -> None:
    assert cls_name in walked.bodies, f"{cls_name}: no longer derived from a library class"
    cls, _ = walked.bodies[cls_name]
    base = _library_base(cls)
    assert base is not None
    for name in sorted(OVERRIDES[cls_name]):
        where = f"{cls_name}.{name} overrides {base.__module__}.{base.__qualname__}.{name}"
        assert hasattr(base, name), f"{where}, which is gone: ours is never called"
        theirs, mine = getattr(base, name), vars(cls)[name]
        if isinstance(mine, type):
            assert issubclass(mine, theirs), f"{where}: no longer a subclass of theirs"
            continue
        if (cls_name, name) in FREE_SIGNATURE:
            continue
        assert inspect.iscoroutinefunction(mine) == inspect.iscoroutinefunction(theirs), (
            f"{where}: one is a coroutine function and the other is not"
        )
        assert _params(mine) == _params(theirs), (
            f"{where}: theirs takes {_params(theirs)}, ours {_params(mine)}"
        )
    for name in sorted(OWN[cls_name]):
        assert not _has(base, name, instances), (
            f"{cls_name}.{name}: {base.__module__}.{base.__qualname__} now has a {name} too"
        )


def test_the_walk_finds_nothing_that_is_not_listed(walked: Walked) -> None:
    unlisted = {name: where for name, where in walked.imports.items() if name not in INTERNALS}
    unlisted |= {name: where for name, where in walked.names.items() if name not in INTERNALS}
    assert not unlisted, f"library internals used but not in INTERNALS: {unlisted}"
    for cls_name, (_, body) in walked.bodies.items():
        listed = OVERRIDES.get(cls_name, frozenset()) | OWN.get(cls_name, frozenset())
        assert body == listed, (
            f"{cls_name}: not listed in OVERRIDES/OWN: {sorted(body - listed)}; "
            f"listed but gone: {sorted(listed - body)}"
        )
    assert set(OVERRIDES) == set(OWN) == set(walked.bodies)


def test_every_listed_private_name_is_still_used(walked: Walked) -> None:
    found = set(walked.imports) | set(walked.names)
    stale = [key for key in INTERNALS if (":" in key or _private(key)) and key not in found]
    assert not stale, f"listed in INTERNALS but no longer used (remove them): {stale}"


@pytest.mark.parametrize(("function", "digest", "copy"), COPIED)
def test_the_library_code_we_copied_has_not_changed(function: str, digest: str, copy: str) -> None:
    func = _resolve(function)
    func = getattr(func, "fun", func)  # a mode `Service.task` wraps its function
    source = textwrap.dedent(inspect.getsource(func))
    now = hashlib.sha256(source.encode()).hexdigest()
    assert now == digest, (
        f"{function} changed upstream (sha256 {now}): port the change into {copy}, "
        "then pin the new digest here"
    )


def test_the_key_hashes_kept_in_changelogs_have_not_changed() -> None:
    """`seen` and `last_kept` keep mmh3 hashes of their keys in their changelogs: another
    hash after an mmh3 upgrade would make a restarted worker forget its dedup memory."""
    from processors.horizon import hash_keys

    assert hash_keys(["e-0001", "NT-0042|p-7f3a|checkin"]).tolist() == [
        [1085290743147078495, -4744222780185733009],
        [-574381915631647529, 8828512320604599777],
    ]
