"""Shared machinery of the fuzz tests: settings, the "only CDX errors escape" check, mutations.

The property every fuzz test checks (issue "Fuzz"): a parser of untrusted bytes either returns a
value or raises a ``cdx.errors.CdxError`` subclass that is listed in ``GRPC_STATUS`` and has its
own stable code; never a bare ``ValueError``/``IndexError``/``DecodeError``/``OverflowError``,
and never a hang (hypothesis ``deadline`` bounds each example).

``CDX_FUZZ_EXAMPLES`` sets the number of examples per test: small by default so that
``make test`` stays fast, 20000 under ``make fuzz``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar

from google.protobuf import descriptor as pb_descriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from cdx import errors

T = TypeVar("T")

FUZZ_EXAMPLES = int(os.environ.get("CDX_FUZZ_EXAMPLES", "60"))
#: One example may take this long before hypothesis calls it a hang. Generous: the two test
#: workers share two cores with servers started by other tests.
EXAMPLE_DEADLINE = timedelta(seconds=2)
_CODE = re.compile(r"[a-z][a-z0-9_]*")


def fuzz_settings(scale: float = 1.0) -> settings:
    """Hypothesis settings for a fuzz test; ``scale`` shrinks the count for costly examples."""
    return settings(
        max_examples=max(10, int(FUZZ_EXAMPLES * scale)),
        deadline=EXAMPLE_DEADLINE,
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.data_too_large,
            HealthCheck.function_scoped_fixture,
            HealthCheck.filter_too_much,
        ],
        print_blob=True,
    )


def check_error(exc: errors.CdxError) -> None:
    """Fail unless ``exc`` is a mapped CDX error with its own stable code and a safe message."""
    cls = type(exc)
    assert cls in errors.GRPC_STATUS, f"{cls.__name__} is not in GRPC_STATUS"
    assert cls is not errors.CdxError, "the bare CdxError carries no useful code"
    assert _CODE.fullmatch(exc.code), f"unstable code {exc.code!r}"
    assert issubclass(cls, errors.class_for_code(exc.code)), f"code {exc.code!r} is not {cls}'s"
    assert isinstance(exc.message, str) and exc.message


def outcome(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | errors.CdxError:
    """Call ``fn``; return its value or the ``CdxError`` it raised. Anything else propagates.

    Used as ``result = outcome(parse, data)``: a bare ``ValueError`` fails the test with its
    traceback, which is what a fuzz finding should look like.
    """
    try:
        return fn(*args, **kwargs)
    except errors.CdxError as exc:
        check_error(exc)
        return exc


def expect_error(
    expected: type[errors.CdxError] | tuple[type[errors.CdxError], ...],
    fn: Callable[..., object],
    *args: Any,
    **kwargs: Any,
) -> errors.CdxError:
    """Call ``fn`` and require one of the ``expected`` CDX errors (mapped, with a code)."""
    result = outcome(fn, *args, **kwargs)
    assert isinstance(result, expected), f"expected {expected}, got {result!r}"
    assert isinstance(result, errors.CdxError)
    return result


# --- mutations of valid artefacts --------------------------------------------------------------


@st.composite
def mutated(draw: st.DrawFn, original: bytes, *, min_changes: int = 1) -> bytes:
    """``original`` with 1..4 random edits: flip, overwrite, insert, delete, truncate, splice."""
    data = bytearray(original)
    for _ in range(draw(st.integers(min_changes, 4))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "dup"]))
        if not data:
            op = "insert"
        pos = draw(st.integers(0, max(0, len(data) - 1)))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set":
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 16))]
        elif op == "truncate":
            del data[pos:]
        else:
            end = min(len(data), pos + draw(st.integers(1, 32)))
            data[pos:pos] = data[pos:end]
    return bytes(data)


def mutated_text(original: str) -> st.SearchStrategy[str]:
    """Text mutations: byte mutations decoded leniently, plus character-level edits."""
    as_bytes = mutated(original.encode("utf-8")).map(lambda b: b.decode("utf-8", errors="replace"))
    char_edit = st.tuples(
        st.integers(0, max(0, len(original))), st.integers(0, 8), st.text(max_size=8)
    ).map(lambda t: original[: t[0]] + t[2] + original[t[0] + t[1] :])
    return st.one_of(as_bytes, char_edit)


def untrusted_bytes(original: bytes | None = None, max_size: int = 512) -> st.SearchStrategy[bytes]:
    """Random bytes, or (when given) mutations of a valid artefact: the two fuzzing modes."""
    random = st.binary(max_size=max_size)
    return random if original is None else st.one_of(random, mutated(original))


# --- random protobuf messages ------------------------------------------------------------------

_FD = pb_descriptor.FieldDescriptor
_INT_RANGES = {
    _FD.TYPE_INT32: (-(2**31), 2**31 - 1),
    _FD.TYPE_SINT32: (-(2**31), 2**31 - 1),
    _FD.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    _FD.TYPE_INT64: (-(2**63), 2**63 - 1),
    _FD.TYPE_SINT64: (-(2**63), 2**63 - 1),
    _FD.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    _FD.TYPE_UINT32: (0, 2**32 - 1),
    _FD.TYPE_FIXED32: (0, 2**32 - 1),
    _FD.TYPE_UINT64: (0, 2**64 - 1),
    _FD.TYPE_FIXED64: (0, 2**64 - 1),
}
#: Strings an attacker would try in identifier and search fields (SQL, paths, format strings).
HOSTILE_STRINGS = (
    "' OR '1'='1",
    "'; DROP TABLE access_records; --",
    '" OR 1=1 --',
    "1; SELECT pg_sleep(5)",
    "../../../../etc/passwd",
    "..\\..\\windows\\win.ini",
    "%00",
    "\x00",
    "%s%s%s%n",
    "${jndi:ldap://x}",
    "VN:GOV:BCA:population' --",
    "VN:GOV:BCA:population/person/v1/../../x",
    "*",
    "%",
    "_",
    "\u202e",
    "A" * 5000,
)


def _scalar(field: pb_descriptor.FieldDescriptor) -> st.SearchStrategy[Any]:
    t = field.type
    if t in _INT_RANGES:
        lo, hi = _INT_RANGES[t]
        return st.one_of(st.sampled_from([lo, hi, 0, -1 if lo < 0 else 1]), st.integers(lo, hi))
    if t == _FD.TYPE_BOOL:
        return st.booleans()
    if t in (_FD.TYPE_DOUBLE, _FD.TYPE_FLOAT):
        return st.floats(width=32 if t == _FD.TYPE_FLOAT else 64)
    if t == _FD.TYPE_STRING:
        return st.one_of(st.text(max_size=40), st.sampled_from(HOSTILE_STRINGS))
    if t == _FD.TYPE_BYTES:
        return st.binary(max_size=128)
    if t == _FD.TYPE_ENUM:
        numbers = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(numbers), st.integers(-5, 1000))
    raise AssertionError(f"unhandled field type {t}")


def _fill(draw: st.DrawFn, msg: Message, depth: int) -> None:
    desc = msg.DESCRIPTOR
    if desc.full_name == "google.protobuf.Struct":
        msg.update(draw(json_like(depth=min(depth, 3))))  # type: ignore[attr-defined]
        return
    if desc.full_name in ("google.protobuf.Value", "google.protobuf.ListValue"):
        return  # reached only through Struct, which json_like fills
    for field in desc.fields:
        if not draw(st.booleans()):
            continue
        repeated = field.is_repeated
        if field.type == _FD.TYPE_MESSAGE:
            if field.message_type.GetOptions().map_entry:
                continue
            if depth <= 0:
                continue
            count = draw(st.integers(1, 3)) if repeated else 1
            for _ in range(count):
                sub = getattr(msg, field.name).add() if repeated else getattr(msg, field.name)
                _fill(draw, sub, depth - 1)
                if not repeated:
                    sub.SetInParent()
            continue
        if repeated:
            getattr(msg, field.name).extend(draw(st.lists(_scalar(field), max_size=5)))
        else:
            setattr(msg, field.name, draw(_scalar(field)))


@st.composite
def protobuf_messages(draw: st.DrawFn, cls: type[Message], depth: int = 3) -> Message:
    """A random, well-typed message of ``cls``: any subset of fields, hostile strings, extremes."""
    msg = cls()
    _fill(draw, msg, depth)
    return msg


def json_like(depth: int = 3) -> st.SearchStrategy[dict[str, Any]]:
    """JSON objects (Struct-compatible: numbers are finite floats)."""
    leaves = st.one_of(
        st.none(),
        st.booleans(),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
    )
    values = st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
        ),
        max_leaves=8 * depth,
    )
    return st.dictionaries(st.text(max_size=20), values, max_size=6)


def raw_protobuf_bytes(cls: type[Message]) -> st.SearchStrategy[bytes]:
    """Bytes for a field that holds a serialized ``cls``: valid random messages, or garbage."""
    valid = protobuf_messages(cls).map(lambda m: m.SerializeToString())
    return st.one_of(valid, valid.flatmap(mutated), st.binary(max_size=256))


# --- gRPC endpoints ----------------------------------------------------------------------------


def rpc_methods(service: pb_descriptor.ServiceDescriptor) -> list[pb_descriptor.MethodDescriptor]:
    """Every method of a gRPC service, client-streaming ones excluded (CDX has none)."""
    return [m for m in service.methods if not m.client_streaming]


def _message_class(descriptor: pb_descriptor.Descriptor) -> type[Message]:
    from google.protobuf import message_factory

    return message_factory.GetMessageClass(descriptor)


def request_class(method: pb_descriptor.MethodDescriptor) -> type[Message]:
    return _message_class(method.input_type)


def call_raw(
    channel: Any,
    method: pb_descriptor.MethodDescriptor,
    payload: bytes,
    *,
    timeout: float = 5.0,
    metadata: tuple[tuple[str, str], ...] | None = None,
) -> None:
    """Send ``payload`` (any bytes) to ``method`` and check the answer.

    The property for every endpoint: a success, or a failure carrying a stable ``cdx-error-code``
    that is not ``internal``; a unary call never times out (no hang). A server-streaming call may
    run into its deadline while it waits for changes to stream: that is not a failure.
    """
    import grpc

    from cdx import rpc

    path = f"/{method.containing_service.full_name}/{method.name}"
    response_cls = _message_class(method.output_type)
    try:
        if method.server_streaming:
            call = channel.unary_stream(
                path,
                request_serializer=lambda b: b,
                response_deserializer=response_cls.FromString,
            )(payload, timeout=timeout, metadata=metadata)
            for _ in zip(range(3), call, strict=False):
                pass
            call.cancel()
        else:
            channel.unary_unary(
                path,
                request_serializer=lambda b: b,
                response_deserializer=response_cls.FromString,
            )(payload, timeout=timeout, metadata=metadata)
    except grpc.RpcError as exc:
        status = exc.code()
        if method.server_streaming and status in (
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.StatusCode.CANCELLED,
        ):
            return
        codes = [v for k, v in (exc.trailing_metadata() or ()) if k == rpc.ERROR_CODE_KEY]
        assert codes, f"{path} failed without a code: {status} {exc.details()}"
        assert codes[0] != "internal", f"{path} crashed: {exc.details()}"
        assert status != grpc.StatusCode.DEADLINE_EXCEEDED, f"{path} hung"
        error = errors.class_for_code(codes[0])
        assert error is not errors.CdxError, f"{path} answered an unknown code {codes[0]!r}"


def random_requests(method: pb_descriptor.MethodDescriptor) -> st.SearchStrategy[bytes]:
    """Well-typed random requests for ``method``, mutations of them, and plain garbage."""
    return raw_protobuf_bytes(request_class(method))
