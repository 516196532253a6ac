"""Load shedding (edge issue, item 4): overloaded, lists get 503 first; payments keep capacity."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import anyio
import pytest
from tests.conftest import api_client, make_runtime
from tests.functional.helpers import pay

from bastionpay import bootstrap
from bastionpay.edge.shedding import Admission, Priority, PrioritySlots
from bastionpay.kernel.errors import ServiceUnavailable
from bastionpay.payments.interfaces import AuthorizationRequest, AuthorizationResult
from bastionpay.payments.sandbox import SandboxConnector

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_admission_thresholds_per_priority() -> None:
    admission = Admission(capacity=10, slots=2)
    assert [admission.limit(p) for p in Priority] == [5, 8, 10]
    async with admission.admitted(Priority.LOW):
        pass  # admitted when idle
    held = []
    for _ in range(5):
        cm = admission.admitted(Priority.NORMAL)
        await cm.__aenter__()
        held.append(cm)
    with pytest.raises(ServiceUnavailable) as shed:
        async with admission.admitted(Priority.LOW):
            pass
    assert shed.value.http_status == 503 and shed.value.code == "server_overloaded"
    for _ in range(3):
        cm = admission.admitted(Priority.NORMAL)
        await cm.__aenter__()
        held.append(cm)
    with pytest.raises(ServiceUnavailable):
        async with admission.admitted(Priority.NORMAL):
            pass
    async with admission.admitted(Priority.CRITICAL):  # the reserve is still there
        assert admission.in_flight == 9
    for cm in held:
        await cm.__aexit__(None, None, None)
    assert admission.in_flight == 0


async def test_freed_slots_go_to_the_highest_priority_waiter_first() -> None:
    slots = PrioritySlots(1)
    await slots.acquire(Priority.NORMAL)
    order: list[str] = []

    async def waiter(name: str, priority: Priority) -> None:
        await slots.acquire(priority)
        order.append(name)
        await anyio.sleep(0.01)
        slots.release()

    async with anyio.create_task_group() as tg:
        for name, priority in [
            ("low-1", Priority.LOW),
            ("normal", Priority.NORMAL),
            ("low-2", Priority.LOW),
            ("critical", Priority.CRITICAL),
        ]:
            tg.start_soon(waiter, name, priority)
            await anyio.sleep(0.01)  # queue them in this order
        slots.release()
    assert order == ["critical", "normal", "low-1", "low-2"]


async def test_a_cancelled_waiter_gives_up_its_place() -> None:
    slots = PrioritySlots(1)
    await slots.acquire(Priority.NORMAL)
    with anyio.move_on_after(0.05):
        await slots.acquire(Priority.CRITICAL)
    slots.release()
    await slots.acquire(Priority.LOW)  # the slot is free again, not lost to the cancelled waiter
    slots.release()


class SlowConnector(SandboxConnector):
    """Holds each authorization so that requests pile up, as under real overload."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def authorize(self, request: AuthorizationRequest) -> AuthorizationResult:
        time.sleep(self.seconds)
        return super().authorize(request)


def test_under_overload_lists_are_shed_and_payments_still_succeed(
    db_url: str, tmp_path: Path
) -> None:
    runtime = make_runtime(
        db_url,
        tmp_path,
        connector=SlowConnector(0.3),
        api_concurrency=1,
        max_in_flight=8,  # low: 4, normal: 6, critical: 8
    )
    merchant = bootstrap.create_merchant_with_keys(runtime, "m")
    payments: list[int] = []
    lists: list[tuple[int, str | None, str | None]] = []
    with api_client(runtime, merchant["secret_key"]) as api:

        def one_payment() -> None:
            payments.append(pay(api).status_code)

        def one_list() -> None:
            response = api.get("/v1/payment_intents")
            code = response.json().get("error", {}).get("code")
            lists.append((response.status_code, code, response.headers.get("retry-after")))

        # Five payments queue up behind the one-thread pipeline (0.3 s each)…
        workers = [threading.Thread(target=one_payment) for _ in range(5)]
        for worker in workers:
            worker.start()
        time.sleep(0.2)
        # …so lists arriving now find the process above the low-priority share.
        listers = [threading.Thread(target=one_list) for _ in range(3)]
        for lister in listers:
            lister.start()
        for thread in workers + listers:
            thread.join(timeout=30)
    assert payments == [200] * 5
    assert lists == [(503, "server_overloaded", "1")] * 3
    runtime.db.dispose()
