"""Everything that depends on faust-streaming internals (private attributes, replaced methods).

Written against faust-streaming 0.15.3 and mode-streaming 0.7.1 (requirements.lock). Nothing
outside this package reads or replaces a private attribute of Faust or mode
(tests/unit/test_faust_internals.py checks that, and that every attribute below still exists in
the installed version: an upgrade that drops one fails that test, not a worker in production).

The modules:
* `consumer`: the join worker's changes to Faust's consumer (read offsets, input commits, the
  fetcher's buffered partitions), Faust's current-event context variable and the aiokafka
  producer under Faust's (for the changelog's record batches);
* `sensors`: Faust's sensor hooks as no-ops, and the sensor that sees failed sends;
* `fastconsume`: the batched drain loop of the input topics (replaces `Consumer._drain_messages`);
* `lifecycle`: the worker's bounded shutdown (overrides mode.Worker's signal and crash hooks).

Run when: all of these are installed when `mailsla worker` (or `sink`) makes its app and worker,
and then run inside Faust's own loops for every fetch, record, send or signal.
"""
from __future__ import annotations

import importlib
import inspect
import re
from dataclasses import dataclass

FAUST_VERSION = "0.15.3"  # faust-streaming, as locked; the items below were checked against it
MODE_VERSION = "0.7.1"  # mode-streaming (Faust's service library), as locked


@dataclass(frozen=True)
class Internal:
    """One private attribute of a Faust (or mode, aiokafka) class or module that we depend on.

    `owner` is "module:Class" or "module"; `name` the attribute (a class attribute, or one the
    class assigns as `self.<name> = ...`); `used_in` where; `why` the behaviour worked around;
    `test` the test that shows it."""

    owner: str
    name: str
    used_in: str
    why: str
    test: str

    def resolve(self) -> object:
        module, _, cls = self.owner.partition(":")
        obj: object = importlib.import_module(module)
        for part in filter(None, cls.split(".")):
            obj = getattr(obj, part)
        return obj

    def present(self) -> bool:
        """Whether the installed library still has it (class or module attribute, or an instance
        attribute assigned in the class's or a base class's source)."""
        try:
            obj = self.resolve()
        except (ImportError, AttributeError):
            return False
        if hasattr(obj, self.name):
            return True
        assigned = re.compile(rf"\bself\.{re.escape(self.name)}\b\s*(:[^=\n]+)?=[^=]")
        for klass in inspect.getmro(obj) if inspect.isclass(obj) else ():
            try:
                if assigned.search(inspect.getsource(klass)):
                    return True
            except (OSError, TypeError):
                continue
        return False


_SIGKILL = "tests/integration/test_join_live.py::test_sigkill_in_the_middle_of_a_messy_replay_then_restart_is_exact"
_KAFKA_OUT = ("tests/integration/test_outage.py::"
              "test_broker_sigkilled_mid_stream_and_restarted_on_its_port_the_worker_recovers_by_itself")
_NOT_DELIVERED = "tests/integration/test_outage.py::test_results_kafka_never_took_stop_the_worker_and_a_restart_is_exact"
_EVERY_RECORD = "tests/integration/test_pipeline.py::test_the_golden_examples_give_their_expected_rows_and_verdicts"
_SIGTERM = "tests/integration/test_pipeline.py::test_sigterm_flushes_commits_and_exits_0_and_the_cli_then_opens_the_files"
_NO_ROCKSDB = "none runs the RocksDB store (default memory://); this presence check is the guard"

PRIVATE_ATTRIBUTES: list[Internal] = [
    Internal("faust.transport.consumer:Consumer", "_read_offset", "consumer.keep_read_offsets",
             "Faust drops records below the last offset read; after a seek the batch in flight moved it up "
             "again and re-fetched records after a SIGKILL never reached the agent", _SIGKILL),
    Internal("faust.transport.consumer:Consumer", "_drain_messages", "fastconsume.install",
             "per-record delivery (a task and a wait per record, ~110 us): replaced for the input topics by "
             "a loop that queues each fetch as one list", _EVERY_RECORD),
    Internal("mode:Service", "_stopped", "fastconsume.install (the fetcher's stop flag)",
             "the replaced drain loop stops when the fetcher stops, as Faust's own loop does", _EVERY_RECORD),
    Internal("faust.transport.consumer:Consumer", "_buffered_partitions", "consumer.put_back_buffered",
             "a partition taken out of the fetcher for a full stream buffer could stay out for good "
             "after a SIGKILL and restart", _SIGKILL),
    Internal("faust.transport.drivers.aiokafka:Consumer", "_thread", "consumer.commit_quietly",
             "Consumer._commit crashes the worker on a commit error and waits without limit for a "
             "coordinator while the broker is down: input offsets are committed on the consumer thread",
             _KAFKA_OUT),
    Internal("faust.transport.drivers.aiokafka:AIOKafkaConsumerThread", "_ensure_consumer",
             "consumer.commit_quietly", "the aiokafka consumer that commits (see _thread)", _KAFKA_OUT),
    Internal("faust.sensors:SensorDelegate", "_sensors", "sensors.QuietSensors",
             "sensor hooks ran several times per record for nothing; only on_send_error is passed on",
             _NOT_DELIVERED),
    Internal("faust.streams", "_current_event", "consumer.in_partition (stream/tablestate.py, per record and batch)",
             "the RocksDB store answers a table read or write from the partition of the current event (one "
             "database per partition); the join loop's records do not come through a Faust stream",
             "tests/unit/test_tablestate.py"),
    Internal("faust.transport.drivers.aiokafka:Producer", "_ensure_producer", "consumer.aiokafka_producer",
             "Producer.send costs a future, a metadata check and a delivery callback per record (~30% of "
             "the join process in py-spy): the changelog goes to aiokafka's batch API (BatchBuilder, "
             "send_batch) instead, which Faust does not expose", _SIGKILL),
    Internal("faust.tables.base:Collection", "_on_changelog_sent", "stream/app.py `_persisted` mirrors it",
             "the join loop sends changelog records itself; RocksDB must still remember the changelog "
             "offset (Store.set_persisted_offset), as Faust's callback does", _NO_ROCKSDB),
    Internal("mode:Worker", "_crash", "lifecycle.Guarded", "a crash stops the worker within MAILSLA_SHUTDOWN_S",
             _NOT_DELIVERED),
    Internal("mode:Worker", "_on_sigterm", "lifecycle.Guarded",
             "SIGTERM: flush and commit, bounded by MAILSLA_SHUTDOWN_S (a watchdog exits 1 after it)", _SIGTERM),
    Internal("mode:Worker", "_on_sigint", "lifecycle.Guarded", "as SIGTERM", _SIGTERM),
]

# aiokafka, not Faust: used by the Kafka adapter (pipeline/stream/kafka.py), checked the same way.
AIOKAFKA_PRIVATE: list[Internal] = [
    Internal("aiokafka:AIOKafkaConsumer", "_client", "stream/kafka.py end_offsets (`mailsla status`)",
             "a topic created after the consumer started is unknown until its metadata is refreshed",
             "tests/integration/conftest.py wait_idle (`status` right after a worker created its topics)"),
]
