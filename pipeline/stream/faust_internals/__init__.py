"""Everything that depends on faust-streaming internals (private attributes, replaced methods).

Written against faust-streaming 0.15.3 and mode-streaming 0.7.1 (requirements.lock). Nothing
outside this package reads or replaces an internal of Faust or mode listed below
(tests/unit/test_faust_internals.py checks that, that every entry still exists in the installed
version, and that every entry names its behaviour tests). The behaviour tests
(tests/unit/test_faust_behaviour*.py) fail when an internal still exists but does something else
than what the entry's `why` depends on: an upgrade fails there, not in a worker in production.

The modules:
* `consumer`: the join worker's changes to Faust's consumer (read offsets, input commits, the
  fetcher's buffered partitions), Faust's current-event context variable and the aiokafka
  producer under Faust's (for the changelog's record batches);
* `changelog`: what Faust's table does when a changelog record is delivered, for whole batches;
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
    """One internal of a Faust (or mode, aiokafka) class or module that we depend on.

    `owner` is "module:Class" or "module"; `name` the attribute (a class attribute, or one the
    class assigns as `self.<name> = ...`), or "a.b" for a chain of which only `a` is the
    owner's (the rest is public API of what `a` holds); `used_in` where; `why` the behaviour
    worked around or relied on; `behaviour` the unit tests ("path::function") that fail when that
    behaviour changes; `end_to_end` the integration test that shows the whole effect."""

    owner: str
    name: str
    used_in: str
    why: str
    behaviour: tuple[str, ...]
    end_to_end: str = ""

    def resolve(self) -> object:
        module, _, cls = self.owner.partition(":")
        obj: object = importlib.import_module(module)
        for part in filter(None, cls.split(".")):
            obj = getattr(obj, part)
        return obj

    def present(self) -> bool:
        """Whether the installed library still has it (class or module attribute, or an instance
        attribute assigned in the class's or a base class's source)."""
        name = self.name.split(".")[0]
        try:
            obj = self.resolve()
        except (ImportError, AttributeError):
            return False
        if hasattr(obj, name):
            return True
        assigned = re.compile(rf"\bself\.{re.escape(name)}\b\s*(:[^=\n]+)?=[^=]")
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
_C = "tests/unit/test_faust_behaviour.py::"  # the consumer and the drain loop
_A = "tests/unit/test_faust_behaviour_app.py::"  # producer, consumer thread, sensors, store, worker, aiokafka
_SEEK = _C + "test_a_seek_sets_the_read_offset_and_faust_drops_records_below_it_but_not_the_inputs_of_keep_read_offsets"
_SAME_DRAIN = _C + "test_our_drain_queues_the_input_records_as_lists_and_passes_the_others_as_faust_does"
_SUSPEND = _C + "test_a_record_held_up_when_faust_suspends_the_flow_is_let_go"
_FLAG = _C + "test_both_drains_flag_fetching_while_they_fetch_and_not_after"
_STOPPING = _C + "test_both_drains_end_quietly_on_a_stopped_consumer_only_while_the_app_stops"
_COMMIT = _A + "test_faust_and_commit_quietly_commit_through_the_same_aiokafka_consumer"
_SIGNALS = _A + "test_mode_installs_the_workers_signal_handlers_and_they_reach_our_overrides"
_CONSUMER = "faust.transport.consumer:Consumer"
_DRAIN = "fastconsume.install (its copy of Faust's drain loop)"

PRIVATE_ATTRIBUTES: list[Internal] = [
    Internal(_CONSUMER, "_read_offset", "consumer.keep_read_offsets; fastconsume.install",
             "Faust drops records below the last offset read; after a seek the batch in flight moved it up "
             "again and re-fetched records after a SIGKILL never reached the agent", (_SEEK, _SAME_DRAIN), _SIGKILL),
    Internal(_CONSUMER, "_drain_messages", "fastconsume.install",
             "per-record delivery (a task and a wait per record, ~110 us): replaced for the input topics by "
             "a loop that queues each fetch as one list",
             (_C + "test_faust_fetcher_runs_the_drain_loop_the_consumer_instance_has", _SAME_DRAIN,
              _C + "test_the_join_consumes_only_topics_without_acks_so_what_our_copy_leaves_out_never_ran"),
             _EVERY_RECORD),
    Internal("mode:Service", "_stopped", _DRAIN + ": the consumer's and the fetcher's stop flags",
             "the replaced drain loop stops when the fetcher or the consumer stops, as Faust's own loop does",
             (_C + "test_mode_sets_stopped_when_a_service_stops_and_not_before", _SAME_DRAIN), _EVERY_RECORD),
    Internal(_CONSUMER, "callback", _DRAIN,
             "records of the other topics (the changelog during recovery) go to Faust's conductor through it, "
             "as in Faust's loop", (_SAME_DRAIN,), _SIGKILL),
    Internal("mode:Service", "wait_first", _DRAIN,
             "a record's callback is waited for until it is done or the flow is suspended, as in Faust's loop",
             (_SUSPEND,)),
    Internal(_CONSUMER, "suspend_flow", _DRAIN, "set by Faust's stop_flow at a rebalance (see wait_first)",
             (_SUSPEND,)),
    Internal("mode:Service", "diag", _DRAIN, "the consumer's diagnostics flag FETCHING while it fetches", (_FLAG,)),
    Internal("faust.transport.consumer", "CONSUMER_FETCHING", _DRAIN, "the flag's name (see diag)", (_FLAG,)),
    Internal(_CONSUMER, "consumer_stopped_errors", _DRAIN,
             "aiokafka's ConsumerStoppedError while the app stops ends the loop quietly, as in Faust's loop",
             (_STOPPING,), _SIGTERM),
    Internal(_CONSUMER, "transport.app", _DRAIN + ": `self.transport.app.should_stop`",
             "whether the app is stopping (see consumer_stopped_errors; a cancel likewise)", (_STOPPING,), _SIGTERM),
    Internal(_CONSUMER, "_buffered_partitions", "consumer.put_back_buffered",
             "a partition taken out of the fetcher for a full stream buffer could stay out for good "
             "after a SIGKILL and restart",
             (_C + "test_a_full_buffer_takes_a_partition_out_of_the_fetch_and_put_back_buffered_returns_it",), _SIGKILL),
    Internal("faust.transport.drivers.aiokafka:Consumer", "_thread", "consumer.commit_quietly",
             "Consumer._commit crashes the worker on a commit error and waits without limit for a "
             "coordinator while the broker is down: input offsets are committed on the consumer thread",
             (_COMMIT,), _KAFKA_OUT),
    Internal("faust.transport.drivers.aiokafka:AIOKafkaConsumerThread", "_ensure_consumer",
             "consumer.commit_quietly", "the aiokafka consumer that commits (see _thread)", (_COMMIT,), _KAFKA_OUT),
    Internal("faust.sensors:SensorDelegate", "_sensors", "sensors.QuietSensors",
             "sensor hooks ran several times per record for nothing; only on_send_error is passed on",
             (_A + "test_added_sensors_are_in_sensors_and_only_a_failed_send_reaches_them",), _NOT_DELIVERED),
    Internal("faust.streams", "_current_event", "consumer.in_partition (stream/tablestate.py, per record and batch)",
             "the RocksDB store answers a table read or write from the partition of the current event (one "
             "database per partition); the join loop's records do not come through a Faust stream",
             (_A + "test_current_event_names_the_partition_the_rocksdb_store_writes_and_reads",
              "tests/unit/test_tablestate.py::test_the_rocksdb_store_answers_lookups_from_the_current_partition_only"),
             _SIGKILL),
    Internal("faust.transport.drivers.aiokafka:Producer", "_ensure_producer", "consumer.aiokafka_producer",
             "Producer.send costs a future, a metadata check and a delivery callback per record (~30% of "
             "the join process in py-spy): the changelog goes to aiokafka's batch API (BatchBuilder, "
             "send_batch) instead, which Faust does not expose",
             (_A + "test_ensure_producer_is_the_aiokafka_producer_faust_sends_through_and_raises_before_start",),
             _SIGKILL),
    Internal("faust.tables.base:Collection", "_on_changelog_sent", "changelog.changelog_sent mirrors it (stream/app.py)",
             "the join loop sends changelog records itself; RocksDB must still remember the changelog "
             "offset (Store.set_persisted_offset), as Faust's callback does",
             (_A + "test_changelog_sent_sets_the_persisted_offset_faust_sets_for_the_same_records",), _SIGKILL),
    Internal("mode:Worker", "_crash", "lifecycle.Guarded", "a crash stops the worker within MAILSLA_SHUTDOWN_S",
             (_A + "test_a_crash_inside_the_app_reaches_the_workers_crash",), _NOT_DELIVERED),
    Internal("mode:Worker", "_on_sigterm", "lifecycle.Guarded",
             "SIGTERM: flush and commit, bounded by MAILSLA_SHUTDOWN_S (a watchdog exits 1 after it)",
             (_SIGNALS,), _SIGTERM),
    Internal("mode:Worker", "_on_sigint", "lifecycle.Guarded", "as SIGTERM", (_SIGNALS,), _SIGTERM),
]

# aiokafka, not Faust: used by the Kafka adapter (pipeline/stream/kafka.py), checked the same way.
AIOKAFKA_PRIVATE: list[Internal] = [
    Internal("aiokafka:AIOKafkaConsumer", "_client", "stream/kafka.py end_offsets (`mailsla status`)",
             "a topic created after the consumer started is unknown until its metadata is refreshed "
             "(`_client.force_metadata_update()`, awaited)",
             (_A + "test_force_metadata_update_is_what_makes_a_new_topic_known_to_a_consumer",),
             _EVERY_RECORD + " (its `status` calls right after the worker created its topics)"),
]
