"""Property-based fuzzing of the protocol against a real in-process server over real
WebSockets: every client message type, valid and mutated, sent by every role, alone
and in short sequences around a real call. The server must never fail: no ``internal``
error, no traceback logged, the connection still answers ``ping`` (or was closed with
a documented close code), and every refusal is an ``error`` with a documented code."""

from __future__ import annotations

import logging
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signaling import protocol_schema
from tests.support import (
    EXPERT_CAF,
    JsonClient,
    RunningServer,
    answered_call,
    as_json,
    start_server,
    write_test_config,
)
from visio_client import ConnectionLost, UnexpectedMessage

REPO = Path(__file__).resolve().parents[2]
SCHEMA = protocol_schema()
DEFS: dict[str, Any] = SCHEMA["$defs"]

# Client message types, from the schema's tagged union of client messages.
CLIENT_DEFS = {
    spec["properties"]["type"]["enum"][0]: spec
    for spec in DEFS.values()
    if "type" in spec.get("properties", {})
    and "enum" in spec["properties"]["type"]
    and spec["title"]
    in {
        "Hello",
        "Ping",
        "CallRequest",
        "CallCancel",
        "CallHangup",
        "CallMediaFailed",
        "ExpertStatusSet",
        "OfferAccept",
        "OfferReject",
        "WrapUpDone",
        "CallTransfer",
        "CallInvite",
        "CallJoin",
        "CallData",
        "RtcSdp",
        "RtcIce",
        "QueueSubscribe",
        "DeviceScan",
        "DevicePrint",
        "DeviceCancel",
        "DevicePage",
        "DeviceHealthReport",
        "DeviceProgress",
        "CaseReview",
        "CaseConsent",
        "CaseShare",
        "CaseWithdraw",
    }
}
AFTER_HELLO_TYPES = sorted(t for t in CLIENT_DEFS if t != "hello")

ROLES: dict[str, tuple[str, dict[str, Any]]] = {
    "kiosk": ("kiosk-1", {}),
    "expert": ("expert-1", EXPERT_CAF),
    "interpreter": ("interp-1", {"services": ["interpretes"], "languages": ["lsf", "fr"]}),
    "supervisor": ("super-caf", {"partner": "caf"}),
    "admin": ("admin-1", {}),
    "device": ("kiosk-1", {}),
}


def _documented_codes() -> frozenset[str]:
    """Every error code protocol.md documents: the first column of the tables of its
    "Errors" section, and the codes named by an "Errors of this section" paragraph."""
    text = (REPO / "docs" / "protocol.md").read_text("utf-8")
    errors = text.split("\n## Errors\n", 1)[1].split("\n## ", 1)[0]
    codes: set[str] = set()
    for row in re.findall(r"^\| (`[a-z_]+`(?:, `[a-z_]+`)*) \|", errors, flags=re.M):
        codes |= set(re.findall(r"`([a-z_]+)`", row))
    for paragraph in re.findall(r"^Errors of this section:(.*?)\n\n", text, flags=re.M | re.S):
        codes |= set(re.findall(r"`([a-z_]+)`", paragraph))
    return frozenset(codes)


DOCUMENTED_CODES = _documented_codes()
FAULT_CODES = frozenset({"internal"})
SUCCESS_TYPES = frozenset(
    {"ack", "pong", "welcome", "call.queued", "case.consented", "queue.status"}
)
DOCUMENTED_CLOSE_CODES = frozenset({1008, 1009})

# ----------------------------------------------------------------- strategies

CALL_IDS = st.sampled_from(["c-nope", "x", "caf-1", "0" * 64, "call\n", ""])
TEXT = st.text(max_size=40) | st.sampled_from(["", " ", "\n", "é\u0000😀", "a\n", "‮rtl"])
ODD_IDS = st.sampled_from(["fz\n", "fz" * 40, "", "\u0000", "😀"])
JSON_LEAF = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | TEXT
)
JSON_VALUE = st.recursive(
    JSON_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=12,
)
HUGE = st.sampled_from([4_000, 20_000, 60_000]).map(lambda n: "é" * (n // 2))


def _string(spec: dict[str, Any], calls: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    low, high = spec.get("minLength", 0), spec.get("maxLength", 80)
    if "pattern" in spec:
        pattern = spec["pattern"].replace("(?![\\s\\S])", "").lstrip("^").rstrip("$")
        # Keep regex-generated strings out of the "\n"-terminated trick: fullmatch.
        generated = st.from_regex(pattern, fullmatch=True).filter(
            lambda s: low <= len(s) <= high and "\n" not in s
        )
        return generated | calls.filter(lambda s: re.fullmatch(pattern, s) is not None)
    return st.text(min_size=low, max_size=min(high, 60))


def from_schema(
    spec: dict[str, Any], calls: st.SearchStrategy[str], name: str = ""
) -> st.SearchStrategy[Any]:
    """Values valid for ``spec`` (a fragment of the protocol's JSON schema)."""
    if "$ref" in spec:
        return from_schema(DEFS[spec["$ref"].rsplit("/", 1)[1]], calls, name)
    if "anyOf" in spec:
        return st.one_of([from_schema(option, calls, name) for option in spec["anyOf"]])
    if "enum" in spec:
        return st.sampled_from(spec["enum"])
    if "const" in spec:
        return st.just(spec["const"])
    kind = spec.get("type")
    if name in {"call"}:
        return calls
    if name == "service":
        return st.sampled_from(["caf", "cpam", "ferme", "interpretes", "nope"])
    if name == "to":
        return st.sampled_from(["kiosk:kiosk-1", "expert:expert-1", "supervisor:x", "kiosk:"])
    if kind == "string":
        return _string(spec, calls)
    if kind == "integer":
        return st.integers(spec.get("minimum", -(2**40)), spec.get("maximum", 2**40))
    if kind == "number":
        return st.floats(spec.get("minimum", -1e9), spec.get("maximum", 1e9))
    if kind == "boolean":
        return st.booleans()
    if kind == "null":
        return st.none()
    if kind == "array":
        return st.lists(from_schema(spec.get("items", {}), calls), max_size=3)
    if kind == "object":
        properties = spec.get("properties")
        if properties is None:
            return st.dictionaries(st.text(max_size=10), JSON_VALUE, max_size=4)
        required = set(spec.get("required", []))
        fields = {
            key: from_schema(value, calls, key)
            for key, value in properties.items()
            if key not in {"id", "sender"}
        }
        optional = [key for key in fields if key not in required]
        return st.fixed_dictionaries(
            {key: fields[key] for key in fields if key in required},
            optional={key: fields[key] for key in optional},
        )
    return JSON_VALUE


@st.composite
def messages(
    draw: st.DrawFn,
    calls: st.SearchStrategy[str] = CALL_IDS,
    kinds: list[str] = AFTER_HELLO_TYPES,
    mutations: list[int] = [0, 0, 0, 1, 2],  # noqa: B006 (read only)
) -> dict[str, Any]:
    """A client message of one of ``kinds``: valid, or mutated once or twice."""
    kind = draw(st.sampled_from(kinds))
    message: dict[str, Any] = {
        "type": kind,
        **draw(from_schema(CLIENT_DEFS[kind], calls)),
    }
    message["type"] = kind
    for _ in range(draw(st.sampled_from(mutations))):
        mutation = draw(
            st.sampled_from(["drop", "extra", "retype", "huge", "null", "type", "nest"])
        )
        keys = sorted(message) or ["type"]
        key = draw(st.sampled_from(keys))
        if mutation == "drop":
            message.pop(key, None)
        elif mutation == "extra":
            message[draw(TEXT)] = draw(JSON_VALUE)
        elif mutation == "retype":
            message[key] = draw(JSON_VALUE)
        elif mutation == "huge":
            message[key] = draw(HUGE)
        elif mutation == "null":
            message[key] = None
        elif mutation == "type":
            message["type"] = draw(TEXT | st.sampled_from(sorted(CLIENT_DEFS)) | JSON_LEAF)
        else:
            nested: Any = draw(JSON_LEAF)
            for _ in range(draw(st.integers(1, 30))):
                nested = {"a": [nested]}
            message[key] = nested
    return message


REQUEST_IDS = st.one_of(st.just("fz"), st.just("fz"), st.just("fz"), st.none(), ODD_IDS, JSON_LEAF)

# ----------------------------------------------------------------- the oracle


def check_reply(frame: dict[str, Any], where: str) -> None:
    """Any frame but an ``error`` is a success reply or an event; an ``error`` must
    carry a documented code and not a server fault."""
    if frame["type"] == "error":
        code = frame["code"]
        assert code not in FAULT_CODES, f"{where}: server fault {frame}"
        # ``unknown_command`` is a fault of the queue machine (a command type it does
        # not know), and also the documents' refusal of a key naming no command, which
        # then says which key in ``details.command``.
        if code == "unknown_command":
            assert "command" in frame.get("details", {}), f"{where}: server fault {frame}"
        assert code in DOCUMENTED_CODES, f"{where}: undocumented code {frame}"


def check_frames(client: JsonClient, where: str) -> None:
    for event in client.client.take_events():
        assert not isinstance(event, UnexpectedMessage), f"{where}: {event}"
        check_reply(as_json(event), where)


async def send_and_check(client: JsonClient, message: dict[str, Any], request_id: Any) -> None:
    """Send ``message`` (with ``request_id`` unless None), then ``ping``: the ping is
    answered (or the connection closed with a documented code), and every frame the
    server sent meanwhile is a success or a documented refusal."""
    where = f"{message!r:.300} id={request_id!r}"
    frame = dict(message) if request_id is None else {**message, "id": request_id}
    if client.closed:
        return
    await client.send(frame)
    try:
        pong = await client.request({"type": "ping"}, timeout=5)
    except ConnectionLost:
        code = await client.wait_closed(timeout=2)
        assert code in DOCUMENTED_CLOSE_CODES, f"{where}: closed with {code}"
        check_frames(client, where)
        return
    assert pong["type"] == "pong", f"{where}: {pong}"
    check_frames(client, where)


def assert_no_traceback(caplog: pytest.LogCaptureFixture) -> None:
    bad = [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]
    assert not bad, [r.getMessage() for r in bad]


# One server per test and one connection per example: the whole file runs in ~30 s.
FUZZ = settings(
    max_examples=1500,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ
@given(
    role=st.sampled_from(sorted(ROLES)),
    batch=st.lists(st.tuples(messages(), REQUEST_IDS), min_size=1, max_size=4),
)
async def test_any_message_from_any_role_gets_a_typed_answer(
    server: RunningServer,
    caplog: pytest.LogCaptureFixture,
    role: str,
    batch: list[tuple[dict[str, Any], Any]],
) -> None:
    caplog.set_level(logging.WARNING)
    caplog.clear()  # the fixture outlives the examples
    sub, claims = ROLES[role]
    client = await JsonClient.connect(server.ws_url)
    try:
        welcome = await client.hello(server.token(role, sub, **claims))
        assert welcome["type"] == "welcome", welcome
        for message, request_id in batch:
            await send_and_check(client, message, request_id)
    finally:
        await client.close()
    assert_no_traceback(caplog)


@settings(FUZZ, max_examples=300)
@given(message=messages(), request_id=REQUEST_IDS)
async def test_any_message_before_hello_is_not_authenticated(
    server: RunningServer,
    caplog: pytest.LogCaptureFixture,
    message: dict[str, Any],
    request_id: Any,
) -> None:
    caplog.set_level(logging.WARNING)
    caplog.clear()  # the fixture outlives the examples
    client = await JsonClient.connect(server.ws_url)
    try:
        frame = message if request_id is None else {**message, "id": request_id}
        await client.send(frame)
        # A frame that is not a valid message gets ``malformed_message`` or
        # ``unknown_type`` (the connection then waits for ``hello`` until its timeout);
        # a valid one gets ``not_authenticated`` and the close.
        try:
            refusal = await client.next_event(timeout=5)
        except ConnectionLost:  # a frame over max_frame_bytes: 1009, nothing else
            assert client.close_code in DOCUMENTED_CLOSE_CODES, (frame, client.close_code)
        else:
            assert refusal["type"] == "error", (frame, refusal)
            check_reply(refusal, repr(frame))
    finally:
        await client.close()
    assert_no_traceback(caplog)


ACTORS = ["kiosk", "expert", "supervisor", "other-kiosk", "interpreter"]
# Sequences lean on the messages that move a call along or end it, mostly well formed.
SEQUENCE_KINDS = AFTER_HELLO_TYPES + 3 * [
    "call.hangup", "rtc.sdp", "rtc.ice", "call.data", "call.join", "call.invite",
    "offer.accept", "wrapup.done", "call.request", "call.transfer", "device.scan",
]  # fmt: skip


@settings(
    max_examples=250,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
async def test_sequences_around_a_real_call_get_typed_answers(
    caplog: pytest.LogCaptureFixture, data: st.DataObject
) -> None:
    """A real connected call, then a short sequence of messages from its parties and
    strangers: out of order, repeated, after hang-up, naming the call or another one."""
    caplog.set_level(logging.WARNING)
    caplog.clear()  # the fixture outlives the examples
    with tempfile.TemporaryDirectory() as folder:
        server = await start_server(write_test_config(Path(folder)))
        clients: list[JsonClient] = []
        try:
            kiosk, expert, call = await answered_call(server)
            clients += [kiosk, expert]
            parties: dict[str, JsonClient] = {"kiosk": kiosk, "expert": expert}
            for actor, role, sub, claims in [
                ("supervisor", "supervisor", "super-caf", {"partner": "caf"}),
                ("other-kiosk", "kiosk", "kiosk-2", {}),
                ("interpreter", "interpreter", "interp-1", ROLES["interpreter"][1]),
            ]:
                client = await JsonClient.connect(server.ws_url)
                clients.append(client)
                await client.hello(server.token(role, sub, **claims))
                parties[actor] = client
            calls = st.sampled_from([call, call, call, "c-nope", call + "\n"])
            steps = data.draw(
                st.lists(
                    st.tuples(
                        st.sampled_from(ACTORS),
                        messages(calls, SEQUENCE_KINDS, [0, 0, 0, 0, 1]),
                        REQUEST_IDS,
                    ),
                    min_size=1,
                    max_size=8,
                )
            )
            for actor, message, request_id in steps:
                await send_and_check(parties[actor], message, request_id)
        finally:
            for client in clients:
                await client.close()
            await server.stop()
    assert_no_traceback(caplog)
