"""The durable engine's runners: orchestrator episodes, activities, timers, client operations.

Everything runs on the host's event loop; store calls are short synchronous transactions, and
orchestrator replays (CPU-bound SDK code) run in a small thread pool. One instance is never in
two episodes at once. Work found in the store at start (activities that were running when the
process died) is run again: at-least-once, as on Azure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
import traceback
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from selfhost.durable import history as h
from selfhost.durable import sdk_speedups
from selfhost.durable.episode import Bookkeeping, Catalog, Reply, is_retry_event, plan_control, plan_episode
from selfhost.durable.history import EventType
from selfhost.durable.http_activity import run_http_activity
from selfhost.durable.store import TERMINAL_STATUSES, EpisodeCommit, Instance, Message, Store, WorkItem
from selfhost.functions import Clock, FunctionInfo, Invoker

log = logging.getLogger("selfhost.durable")

OUT_OF_PROC_LABEL = "\n\n$OutOfProcData$:"
MAX_BATCH = 500  # events delivered in one episode (retry-related events always go alone)


class InstanceExists(Exception):
    """start_new with the id of an instance that is still running or pending."""


class UnknownOrchestrator(Exception):
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
        self.functions = dict(functions)
        self.orchestrators = {n: f for n, f in functions.items() if f.trigger_type == "orchestrationTrigger"}
        self.activities = {n: f for n, f in functions.items() if f.trigger_type == "activityTrigger"}
        self.catalog = Catalog(frozenset(self.activities), frozenset(self.orchestrators))
        self.invoker = invoker
        self.clock = clock
        self._activity_slots = asyncio.Semaphore(max(1, max_activities))
        self._orch_limit = max(1, max_orchestrations)
        self._pool = ThreadPoolExecutor(max_workers=min(4, self._orch_limit), thread_name_prefix="orchestrator")
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
            now = self.clock.now()
            free = self._orch_limit - len(self._inflight)
            if free > 0:
                for iid in self.store.ready_instances(now, free + len(self._inflight)):
                    if iid in self._inflight or len(self._inflight) >= self._orch_limit:
                        continue
                    self._inflight.add(iid)
                    self._spawn(self._episode(iid))
            timeout = 5.0
            nxt = self.store.next_visible_at()
            if nxt is not None:
                timeout = min(timeout, max(0.0, (nxt - self.clock.now()).total_seconds()))
            if timeout > 0 or free <= 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout=max(timeout, 0.001))
            else:
                await asyncio.sleep(0)

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

    def _prepare(self, inst: Instance, messages: list[Message], now: Any) -> _Prepared | EpisodeCommit | None:
        """Choose what this episode delivers; control requests and stale messages are handled here."""
        dropped: list[int] = []
        terminal = inst.status in TERMINAL_STATUSES
        history = self.store.get_history(inst.instance_id)
        bk = Bookkeeping.loads(inst.state)
        if not history:
            # A new execution starts with its ExecutionStarted, even if raised events came first.
            messages.sort(key=lambda m: (0 if m.execution_id == inst.execution_id and m.kind == "event" else 1, m.id))
        batch: list[Message] = []
        for m in messages:
            if m.kind != "event":
                if batch:
                    break
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
                    batch.append(m)
                break
            batch.append(m)
            if len(batch) >= MAX_BATCH:
                break
        if not batch:
            if dropped:
                return EpisodeCommit(instance=inst, consumed=dropped)
            return None
        delivered = [h.restamp(json.loads(m.body), now) for m in batch]
        events = [e for e in history if _replayed(e)]
        events += [json.dumps(h.orchestrator_started(now))] + [json.dumps(e) for e in delivered]
        context = (
            '{"history":[' + ",".join(events) + '],"input":' + json.dumps(_context_input(inst.input))
            + ',"instanceId":' + json.dumps(inst.instance_id) + ',"isReplaying":false'
            + ',"parentInstanceId":' + json.dumps(inst.parent_instance_id)
            + ',"upperSchemaVersion":1,"upperSchemaVersionNew":2}'
        )  # fmt: skip
        return _Prepared(inst, bk, delivered, dropped + [m.id for m in batch], context)

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
            event = h.task_failed(now(), item.task_id, reason, "".join(traceback.format_exception(exc)))
        return Message(item.instance_id, "event", json.dumps(event), now(), execution_id=item.execution_id)

    async def _invoke_activity(self, item: WorkItem) -> str:
        from azure.functions import meta
        from azure.functions.durable_functions import ActivityTriggerConverter

        fn = self.activities.get(item.name)
        if fn is None:
            raise LookupError(f"The activity function '{item.name}' does not exist.")
        value = ActivityTriggerConverter.decode(meta.Datum(item.input or "null", "json"), trigger_metadata=None)
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
        started = h.execution_started(now, name=name, instance_id=iid, execution_id=execution_id, input_text=input_text)
        msg = Message(iid, "event", json.dumps(started), now, execution_id=execution_id)
        if not self.store.create_instance(inst, msg):
            raise InstanceExists(iid)
        self.wake()
        return inst

    def raise_event(self, instance_id: str, name: str, input_text: str | None) -> None:
        now = self.clock.now()
        self.store.add_message(Message(instance_id, "event", json.dumps(h.event_raised(now, name, input_text)), now))
        self.wake()

    def control(self, instance_id: str, kind: str, reason: str | None) -> None:
        now = self.clock.now()
        self.store.add_message(Message(instance_id, kind, json.dumps({"reason": reason}), now))
        self.wake()

    def known_event_types(self) -> frozenset[int]:
        return frozenset(int(e) for e in EventType)


# Events the SDK's replay ignores (TaskScheduled, SubOrchestrationInstanceCreated, TimerCreated,
# OrchestratorCompleted: see TaskOrchestrationExecutor.process_event). They stay in the stored
# history (status, showHistory) but are not sent: replay cost is dominated by per-event parsing,
# and these are half of a typical history. Only `context.histories` (undocumented) sees fewer.
_NOT_REPLAYED = frozenset({4, 7, 10, 13})
_EVENT_TYPE = re.compile(r'\{"EventType":\s*(\d+)')


def _replayed(event_json: str) -> bool:
    match = _EVENT_TYPE.match(event_json)
    return match is None or int(match.group(1)) not in _NOT_REPLAYED


def _context_input(stored: str | None) -> Any:
    """Context `input` is the JSON value the extension parsed from the start body (§4.4)."""
    if stored is None:
        return None
    try:
        return json.loads(stored)
    except json.JSONDecodeError:
        return stored
