"""The durable engine's runners: orchestrator episodes, entity batches, activities, timers,
client operations.

Everything runs on the host's event loop; store calls are short synchronous transactions, and
orchestrator replays (CPU-bound SDK code) run in a small thread pool. One instance is never in
two episodes at once. Work found in the store at start (activities that were running when the
process died) is run again: at-least-once, as on Azure.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import json
import logging
import re
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from selfhost.durable import entities as ent
from selfhost.durable import history as h
from selfhost.durable import sdk_speedups
from selfhost.durable.episode import (
    Bookkeeping,
    Catalog,
    Reply,
    RewindRefused,
    is_retry_event,
    plan_control,
    plan_episode,
    plan_renotify,
    plan_rewind,
    unknown_function,
)
from selfhost.durable.history import EventType
from selfhost.durable.http_activity import run_http_activity
from selfhost.durable.store import TERMINAL_STATUSES, EpisodeCommit, Instance, Message, Store, WorkItem
from selfhost.functions import Clock, FunctionInfo, Invoker

log = logging.getLogger("selfhost.durable")

OUT_OF_PROC_LABEL = "\n\n$OutOfProcData$:"
MAX_BATCH = 500  # events delivered in one episode (retry-related events always go alone)
_FOREVER = datetime.timedelta(days=36500)


class InstanceExists(Exception):
    """start_new with the id of an instance that is still running or pending."""


class UnknownOrchestrator(Exception):
    pass


class UnknownEntity(Exception):
    pass


@dataclass
class _Prepared:
    inst: Instance
    bk: Bookkeeping
    delivered: list[dict[str, Any]]
    consumed: list[int]
    context_json: str


class Engine:
    def __init__(
        self,
        *,
        store: Store,
        functions: Mapping[str, FunctionInfo],  # durable name (and python name) -> function
        invoker: Invoker,
        clock: Clock,
        max_activities: int,
        max_orchestrations: int,
    ) -> None:
        self.store = store
        self.orchestrators = {n: f for n, f in functions.items() if f.trigger_type == "orchestrationTrigger"}
        self.activities = {n: f for n, f in functions.items() if f.trigger_type == "activityTrigger"}
        # durable_index keys entities "@name" (lowercase), apart from the other durable names.
        self.entities = {
            n[1:]: f for n, f in functions.items() if f.trigger_type == "entityTrigger" and n[:1] == "@"
        }
        self.catalog = Catalog(
            frozenset(self.activities), frozenset(self.orchestrators), frozenset(self.entities)
        )
        self.invoker = invoker
        self.clock = clock
        self._activity_slots = asyncio.Semaphore(max(1, max_activities))
        self._orch_limit = max(1, max_orchestrations)
        self._pool = ThreadPoolExecutor(
            max_workers=min(4, self._orch_limit), thread_name_prefix="orchestrator"
        )
        self._inflight: set[str] = set()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wake = asyncio.Event()
        self._running = False
        self._loop: asyncio.AbstractEventLoop | None = None
        self._dispatcher: asyncio.Task[None] | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._running = True
        sdk_speedups.install()
        pending = self.store.pending_work()
        if pending:
            log.info("Recovering %d activity work item(s) left by the previous run", len(pending))
        for item in pending:
            self._spawn(self._run_work(item))
        self._dispatcher = asyncio.create_task(self._dispatch_loop(), name="durable-dispatch")

    async def stop(self) -> None:
        self._running = False
        self.wake()
        if self._dispatcher:
            self._dispatcher.cancel()
            await asyncio.gather(self._dispatcher, return_exceptions=True)
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._pool.shutdown(wait=True, cancel_futures=True)

    def wake(self) -> None:
        """Thread-safe: something became ready."""
        if self._loop is None:
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is self._loop:
            self._wake.set()
        else:
            self._loop.call_soon_threadsafe(self._wake.set)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- orchestrations ----------------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        while self._running:
            self._wake.clear()
            if len(self._inflight) < self._orch_limit:
                # The first `limit` ready ids hold at most len(_inflight) instances already in an
                # episode, so this fills every free slot or starts every ready instance: asking
                # again before a wake-up would find nothing new.
                for iid in self.store.ready_instances(self.clock.now(), self._orch_limit):
                    if len(self._inflight) >= self._orch_limit:
                        break
                    if iid not in self._inflight:
                        self._inflight.add(iid)
                        self._spawn(self._episode(iid))
            # Wait for a wake-up (new work, an episode ending) or the next timer. Messages already
            # due belong to instances in an episode, whose end wakes us; the short cap only
            # bounds the delay of a timer that falls due meanwhile.
            timeout = 5.0
            nxt = self.store.next_visible_at()
            if nxt is not None:
                due_in = (nxt - self.clock.now()).total_seconds()
                timeout = min(timeout, due_in if due_in > 0 else 0.05)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=timeout)

    async def _episode(self, iid: str) -> None:
        loop = asyncio.get_running_loop()
        try:
            new_work = await loop.run_in_executor(self._pool, self._run_episode, iid)
            for item in new_work:
                self._spawn(self._run_work(item))
        except Exception:
            log.exception("Orchestration episode of instance %s failed in the engine", iid)
            await asyncio.sleep(1.0)  # do not spin on a persistent engine fault
        finally:
            self._inflight.discard(iid)
            self.wake()

    def _run_episode(self, iid: str) -> list[WorkItem]:
        """Worker thread: load, replay through the SDK, plan, commit."""
        now = self.clock.now()
        messages = self.store.messages_for(iid, now)
        if ent.is_entity_id(iid):
            return self._run_entity_batch(iid, messages, now)
        inst = self.store.get_instance(iid)
        if inst is None:
            self.store.purge([iid])  # messages for a purged instance
            return []
        prepared = self._prepare(inst, messages, now)
        if isinstance(prepared, EpisodeCommit):
            return self.store.commit_episode(prepared)
        if prepared is None:
            return []
        reply = self._call_orchestrator(prepared)
        commit = plan_episode(prepared.inst, prepared.bk, prepared.delivered, reply, now, self.catalog)
        commit.consumed = prepared.consumed
        if prepared.inst.status in TERMINAL_STATUSES:
            log.info("Orchestration %s (%s) %s", iid, inst.name, prepared.inst.status)
        return self.store.commit_episode(commit)

    def _prepare(
        self, inst: Instance, messages: list[Message], now: datetime.datetime
    ) -> _Prepared | EpisodeCommit | None:
        """Choose what this episode delivers; control requests and stale messages are handled here."""
        dropped: list[int] = []
        terminal = inst.status in TERMINAL_STATUSES
        history = self.store.get_history(inst.instance_id)
        bk = Bookkeeping.loads(inst.state)
        if not history:
            # A new execution starts with its ExecutionStarted, even if raised events came first.
            messages.sort(
                key=lambda m: (0 if m.execution_id == inst.execution_id and m.kind == "event" else 1, m.id)
            )
        batch: list[tuple[Message, dict[str, Any]]] = []
        for m in messages:
            if m.kind != "event":
                if batch:
                    break
                if m.kind == "rewind":
                    return self._rewind(inst, history, m, dropped, now)
                if terminal:
                    dropped.append(m.id)
                    continue
                commit = plan_control(inst, m.kind, json.loads(m.body).get("reason"), now)
                if commit is None:
                    commit = EpisodeCommit(instance=inst)
                commit.consumed = dropped + [m.id]
                return commit
            if terminal or (m.execution_id is not None and m.execution_id != inst.execution_id):
                dropped.append(m.id)
                continue
            if inst.status == "Suspended":
                continue  # events wait for resume; a control request behind them may not
            event = json.loads(m.body)
            if is_retry_event(event, bk):
                if not batch:
                    batch.append((m, event))
                break
            batch.append((m, event))
            if len(batch) >= MAX_BATCH:
                break
        if not batch:
            if dropped:
                return EpisodeCommit(instance=inst, consumed=dropped)
            return None
        delivered = [h.restamp(event, now) for _, event in batch]
        events = [e for e in history if _replayed(e)]
        events += [json.dumps(h.orchestrator_started(now))] + [json.dumps(e) for e in delivered]
        context = (
            '{"history":[' + ",".join(events) + '],"input":' + json.dumps(h.json_value(inst.input))  # the parsed start body (§4.4)
            + ',"instanceId":' + json.dumps(inst.instance_id) + ',"isReplaying":false'
            + ',"parentInstanceId":' + json.dumps(inst.parent_instance_id)
            + ',"upperSchemaVersion":1,"upperSchemaVersionNew":2}'
        )  # fmt: skip
        return _Prepared(inst, bk, delivered, dropped + [m.id for m, _ in batch], context)

    def _rewind(
        self, inst: Instance, history: list[str], m: Message, dropped: list[int], now: datetime.datetime
    ) -> EpisodeCommit:
        consumed = [*dropped, m.id]
        reason = json.loads(m.body).get("reason")
        commit = EpisodeCommit(instance=inst)
        if inst.status == "Failed":
            # Work items first, then queued results: a call completing in between shows up in the
            # second read, so nothing is redone that is still on its way (complete_work is atomic).
            running = frozenset(
                w.task_id for w in self.store.pending_work()
                if w.instance_id == inst.instance_id and w.execution_id == inst.execution_id
            )  # fmt: skip
            queued = [
                json.loads(q.body) for q in self.store.messages_for(inst.instance_id, now + _FOREVER)
                if q.kind == "event" and q.execution_id == inst.execution_id and q.id not in consumed
            ]  # fmt: skip
            tasks = running | {e["TaskScheduledId"] for e in queued if "TaskScheduledId" in e}
            timers = frozenset(e["TimerId"] for e in queued if "TimerId" in e)
            try:
                commit = plan_rewind(inst, history, reason, now, tasks, timers)
                log.info("Orchestration %s (%s) rewound: %s", inst.instance_id, inst.name, reason)
            except RewindRefused as exc:
                log.warning("%s", exc)
                commit = plan_renotify(inst, now)  # a rewound parent must not wait forever
        elif inst.status in TERMINAL_STATUSES:
            commit = plan_renotify(inst, now)
        commit.consumed = consumed
        return commit

    def _call_orchestrator(self, prepared: _Prepared) -> Reply:
        fn = self.orchestrators.get(prepared.inst.name)
        if fn is None:
            return Reply(False, [], error=f"The orchestrator function '{prepared.inst.name}' does not exist.")
        started = time.perf_counter()
        invocation_id = uuid.uuid4()
        try:
            text = fn.user_function(prepared.context_json)
            outcome = "Succeeded"
            reply = Reply.parse(text)
        except Exception as exc:  # noqa: BLE001 - the SDK reports orchestrator failures by raising
            message = str(exc)
            outcome = "Failed"
            if OUT_OF_PROC_LABEL in message:
                error, _, state = message.partition(OUT_OF_PROC_LABEL)
                reply = Reply.parse(state, error=error)
            else:
                log.error("Orchestrator %s raised outside the SDK protocol", fn.name, exc_info=True)
                reply = Reply(False, [], error=f"{type(exc).__name__}: {exc}")
        log.info(
            "Executed 'Functions.%s' (%s, Id=%s, Duration=%dms, instance=%s)",
            fn.name, outcome, invocation_id, (time.perf_counter() - started) * 1000, prepared.inst.instance_id,
        )  # fmt: skip
        return reply

    # -- entities ----------------------------------------------------------------------------

    def _run_entity_batch(self, iid: str, messages: list[Message], now: datetime.datetime) -> list[WorkItem]:
        """Worker thread: run the entity's pending operations as one batch and commit atomically
        (new state, consumed requests, responses, signals). One batch per entity at a time."""
        inst = self.store.get_instance(iid) or ent.new_entity_instance(iid, now, uuid.uuid4().hex)
        batch, dropped = ent.select_batch(messages, MAX_BATCH)
        if not batch:
            if dropped:
                self.store.commit_episode(EpisodeCommit(instance=inst, consumed=dropped))
            return []
        reply = self._call_entity(inst, batch)
        commit = ent.plan_entity_batch(inst, batch, reply, now)
        commit.consumed = dropped + [r.message_id for r in batch]
        return self.store.commit_episode(commit)

    def _call_entity(self, inst: Instance, batch: list[ent.Request]) -> ent.BatchReply:
        fn = self.entities.get(inst.name)
        if fn is None:
            return ent.BatchReply.failed(unknown_function("entity", inst.name, self.entities))
        started = time.perf_counter()
        try:
            text = fn.user_function(
                ent.context_json(inst.instance_id, ent.EntityStatus.loads(inst.state), batch)
            )
            reply = ent.BatchReply.parse(text)
        except Exception as exc:  # noqa: BLE001 - the SDK only raises for protocol faults
            log.error("Entity %s raised outside the SDK protocol", inst.instance_id, exc_info=True)
            reply = ent.BatchReply.failed(f"{type(exc).__name__}: {exc}")
        log.info(
            "Executed 'Functions.%s' (%s, entity=%s, operations=%d, Duration=%dms)",
            fn.name, "Failed" if reply.error else "Succeeded", inst.instance_id, len(batch),
            (time.perf_counter() - started) * 1000,
        )  # fmt: skip
        return reply

    # -- activities --------------------------------------------------------------------------

    async def _run_work(self, item: WorkItem) -> None:
        async with self._activity_slots:
            result = await self._execute(item)
        self.store.complete_work(item.id, result)
        self.wake()

    async def _execute(self, item: WorkItem) -> Message:
        now = self.clock.now
        try:
            if item.kind == "http":
                text = await run_http_activity(item.input or "{}")
            else:
                text = await self._invoke_activity(item)
            event = h.task_completed(now(), item.task_id, text)
        except Exception as exc:  # noqa: BLE001 - any activity failure becomes TaskFailed
            reason = f"Activity function '{item.name}' failed: {type(exc).__name__}: {exc}"
            # The traceback is in the log (the invoker logs it); history is readable through the
            # management API, and file paths and frames are no one's business there.
            event = h.task_failed(
                now(), item.task_id, reason, f"{type(exc).__module__}.{type(exc).__qualname__}"
            )
        return Message(item.instance_id, "event", json.dumps(event), now(), execution_id=item.execution_id)

    async def _invoke_activity(self, item: WorkItem) -> str:
        from azure.functions import meta
        from azure.functions.durable_functions import ActivityTriggerConverter

        fn = self.activities.get(item.name)
        if fn is None:
            raise LookupError(f"The activity function '{item.name}' does not exist.")
        value = ActivityTriggerConverter.decode(
            meta.Datum(item.input or "null", "json"), trigger_metadata=None
        )
        result = await self.invoker.invoke(fn, {str(fn.trigger["name"]): value})
        encoded = ActivityTriggerConverter.encode(result.return_value, expected_type=None)
        return str(encoded.value) if encoded is not None else "null"

    # -- client operations (called from the management API) ----------------------------------

    def start_new(self, name: str, instance_id: str | None, input_text: str | None) -> Instance:
        if name not in self.orchestrators:
            raise UnknownOrchestrator(name)
        now = self.clock.now()
        iid = instance_id or uuid.uuid4().hex
        execution_id = uuid.uuid4().hex
        inst = Instance(iid, name, execution_id, "Pending", input_text, now, now)
        started = h.execution_started(
            now, name=name, instance_id=iid, execution_id=execution_id, input_text=input_text
        )
        msg = Message(iid, "event", json.dumps(started), now, execution_id=execution_id)
        if not self.store.create_instance(inst, msg):
            raise InstanceExists(iid)
        self.wake()
        return inst

    def raise_event(self, instance_id: str, name: str, input_text: str | None) -> None:
        now = self.clock.now()
        self.store.add_message(
            Message(instance_id, "event", json.dumps(h.event_raised(now, name, input_text)), now)
        )
        self.wake()

    def signal_entity(self, name: str, key: str, operation: str, input_text: str) -> str:
        """Enqueue a signal (committed before this returns); `input_text` as client_operation_input."""
        if name.lower() not in self.entities:
            raise UnknownEntity(name)
        now = self.clock.now()
        target = ent.scheduler_id(name, key)
        request = ent.request_message(
            request_id=str(uuid.uuid4()), operation=operation, signal=True, input_text=input_text, now=now
        )
        self.store.add_message(ent.request_to(target, request, now))
        self.wake()
        return target

    def read_entity(self, name: str, key: str) -> ent.EntityStatus:
        inst = self.store.get_instance(ent.scheduler_id(name, key))
        return ent.EntityStatus.loads(inst.state) if inst is not None else ent.EntityStatus()

    def control(self, instance_id: str, kind: str, reason: str | None) -> None:
        now = self.clock.now()
        self.store.add_message(Message(instance_id, kind, json.dumps({"reason": reason}), now))
        self.wake()


# Events the SDK's replay ignores (TaskScheduled, SubOrchestrationInstanceCreated, TimerCreated,
# OrchestratorCompleted: see TaskOrchestrationExecutor.process_event). They stay in the stored
# history (status, showHistory) but are not sent: replay cost is dominated by per-event parsing,
# and these are half of a typical history. Only `context.histories` (undocumented) sees fewer.
_NOT_REPLAYED = frozenset(
    int(e)
    for e in (
        EventType.TaskScheduled,
        EventType.SubOrchestrationInstanceCreated,
        EventType.TimerCreated,
        EventType.OrchestratorCompleted,
    )
)
_EVENT_TYPE = re.compile(r'\{"EventType":\s*(\d+)')


def _replayed(event_json: str) -> bool:
    match = _EVENT_TYPE.match(event_json)
    return match is None or int(match.group(1)) not in _NOT_REPLAYED
