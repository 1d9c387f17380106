"""The call bound to the running context, and its unbinding."""

from __future__ import annotations

import contextvars

from modelreg_common.context import CallInfo, Principal, bind_call, current_call, unbind_call


def test_unbinding_restores_the_outer_call() -> None:
    outer = bind_call(CallInfo(method="/a/B", request_id="1", principal=Principal("alice")))
    inner = bind_call(CallInfo(method="/a/C", request_id="2", principal=Principal("bob")))
    unbind_call(inner)
    call = current_call()
    assert call is not None
    assert call.request_id == "1"
    unbind_call(outer)
    assert current_call() is None


def test_a_stream_closed_by_the_loops_finalizer_unbinds_without_error() -> None:
    # An unfinished async generator is closed by asyncio in a task of its own, whose context
    # is not the one the call was bound in: resetting there used to raise ValueError.
    token = bind_call(CallInfo(method="/a/S", request_id="3", principal=Principal("carol")))
    contextvars.Context().run(unbind_call, token)
    unbind_call(token)
    assert current_call() is None
