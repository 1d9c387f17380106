"""grpc-web framing of the gateway (modelreg_server.web), without a server."""

from __future__ import annotations

import base64
import struct

import grpc
import pytest

from modelreg_server.web import (
    FrameError,
    decode_frames,
    decode_request,
    encode_data_frame,
    encode_trailer_frame,
    known_methods,
    loopback_target,
    parse_timeout,
    percent_encode,
    status_trailers,
)


def test_a_data_frame_is_flag_length_and_message() -> None:
    assert encode_data_frame(b"abc") == b"\x00\x00\x00\x00\x03abc"
    assert encode_data_frame(b"") == b"\x00\x00\x00\x00\x00"
    assert decode_request(encode_data_frame(b"abc")) == b"abc"


def test_a_trailer_frame_carries_http1_style_lines() -> None:
    frame = encode_trailer_frame([("grpc-status", "0"), ("x-request-id", "r-1")])
    flags, length = struct.unpack(">BI", frame[:5])
    assert flags == 0x80
    assert frame[5:] == b"grpc-status: 0\r\nx-request-id: r-1\r\n"
    assert length == len(frame) - 5


def test_a_response_body_decodes_back_into_messages_and_trailers() -> None:
    body = (
        encode_data_frame(b"one")
        + encode_data_frame(b"two")
        + encode_trailer_frame([("grpc-status", "5"), ("grpc-message", "gone")])
    )
    assert decode_frames(body) == ([b"one", b"two"], {"grpc-status": "5", "grpc-message": "gone"})


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (b"", "shorter than a frame header"),
        (b"\x00\x00\x00", "shorter than a frame header"),
        (b"\x00\x00\x00\x00\x05abc", "truncated"),
        (b"\x01\x00\x00\x00\x01a", "compressed"),
        (b"\x80\x00\x00\x00\x00", "trailer frame"),
        (encode_data_frame(b"a") + encode_data_frame(b"b"), "more than one message"),
    ],
)
def test_a_request_that_is_not_exactly_one_plain_message_is_refused(
    body: bytes, problem: str
) -> None:
    with pytest.raises(FrameError, match=problem):
        decode_request(body)


def test_grpc_message_is_percent_encoded_as_grpc_requires() -> None:
    assert percent_encode("plain text: ok") == "plain text: ok"
    assert percent_encode("100% sure") == "100%25 sure"
    assert percent_encode("naïve\r\n") == "na%C3%AFve%0D%0A"


def test_status_trailers_copy_metadata_and_base64_binary_values() -> None:
    trailers = status_trailers(
        grpc.StatusCode.INVALID_ARGUMENT,
        "bad filter",
        [
            ("grpc-status-details-bin", b"\x08\x03"),
            ("x-request-id", "abc"),
            ("grpc-status", "0"),  # the real status wins over a copied one
            ("Bad Key", "x"),
            ("x-split", "a\r\nb"),
        ],
    )
    assert trailers == [
        ("grpc-status", "3"),
        ("grpc-message", "bad filter"),
        ("grpc-status-details-bin", base64.b64encode(b"\x08\x03").decode()),
        ("x-request-id", "abc"),
    ]
    assert status_trailers(grpc.StatusCode.OK, "") == [("grpc-status", "0")]


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("1500m", 1.5),
        ("2S", 2.0),
        ("1M", 60.0),
        ("1H", 3600.0),
        ("250000u", 0.25),
        (None, None),
        ("", None),
        ("5", None),
        ("-1S", None),
        ("1x", None),
        ("123456789S", None),
    ],
)
def test_grpc_timeout_header(header: str | None, seconds: float | None) -> None:
    assert parse_timeout(header) == seconds


def test_the_gateway_knows_every_registry_rpc_and_which_stream() -> None:
    methods = known_methods()
    upload = methods["/modelreg.artifact.v1.ArtifactService/Upload"]
    assert (upload.client_streaming, upload.server_streaming) == (True, False)
    subscribe = methods["/modelreg.events.v1.EventService/Subscribe"]
    assert (subscribe.client_streaming, subscribe.server_streaming) == (False, True)
    assert "/modelreg.metadata.v1.RegisteredModelService/GetRegisteredModel" in methods
    assert not any(path.startswith("/grpc.") for path in methods)


@pytest.mark.parametrize(
    ("listen", "target"),
    [
        ("127.0.0.1:50051", "127.0.0.1:7"),
        ("0.0.0.0:50051", "127.0.0.1:7"),
        ("[::]:50051", "127.0.0.1:7"),
        ("[::1]:50051", "[::1]:7"),
        ("localhost:50051", "localhost:7"),
    ],
)
def test_the_gateway_reaches_its_own_server_on_loopback(listen: str, target: str) -> None:
    assert loopback_target(listen, 7) == target
