"""The silences HTTP API against hostile requests: every malformed header or body is a 4xx.

Requests are written as raw bytes on a socket, so that headers and bodies no
HTTP client would send (non-ASCII credentials, invalid UTF-8) reach the
server exactly as given. The server is the real aiohttp application of the
alert engine, on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from prometheus_client import CollectorRegistry

from monitor.alerting.config import AlertingConfig
from monitor.alerting.engine import AlertService
from monitor.clock import SystemClock
from monitor.errors import InvalidSilence, ReadOnlySilence, SilenceError, UnknownSilence
from monitor.silences_api import register_routes

TOKEN = "s3cret-token"
GOOD_BODY = b'{"matchers": {"model": "churn"}, "duration_seconds": 600}'


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[int, AlertService]]:
    config = AlertingConfig.model_validate(
        {
            "silences": [
                {
                    "matchers": {"model": "x"},
                    "starts_at": "2024-01-01T00:00:00Z",
                    "ends_at": "2999-01-01T00:00:00Z",
                }
            ]
        }
    )
    svc = AlertService(
        config,
        registry=CollectorRegistry(),
        clock=SystemClock(),
        outbox_path=str(tmp_path / "o.db"),
        rng=random.Random(1),
    )
    await svc.start()
    app = web.Application()
    register_routes(app, svc, TOKEN)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield port, svc
    finally:
        await runner.cleanup()
        await svc.stop()


async def raw_request(
    port: int,
    method: str,
    path: str,
    *,
    auth: bytes | None = b"Bearer " + TOKEN.encode(),
    body: bytes = b"",
    extra: bytes = b"",
) -> tuple[int, bytes]:
    """Send exactly these bytes; return the status and the body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n".encode()
    if auth is not None:
        head += b"Authorization: " + auth + b"\r\n"
    head += extra
    head += b"Content-Type: application/json\r\nContent-Length: " + str(len(body)).encode()
    writer.write(head + b"\r\n\r\n" + body)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 10)
    writer.close()
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


BAD_HEADERS = [
    b"Bearer \xc2\xa0",  # the non-breaking space of the bug report (UTF-8)
    b"Bearer \xa0",  # a lone Latin-1 byte: invalid UTF-8
    b"Bearer \xff\xfe",
    b"Bearer " + TOKEN.encode() + b"\xc2\xa0",
    b"Bearer \xe2\x80\x8b" + TOKEN.encode(),  # zero-width space
    b"",
    b"Bearer",
    b"Bearer ",
    b"Bearer \t",
    b"bearer",
    b"Basic " + TOKEN.encode(),
    b"Token " + TOKEN.encode(),
    TOKEN.encode(),
    b"Bearer " + b"A" * 5000,
    b"Bearer \xed\xa0\x80",  # an encoded lone surrogate
]


@pytest.mark.parametrize("header", BAD_HEADERS, ids=range(len(BAD_HEADERS)))
async def test_malformed_authorization_is_401_never_500(api, header):
    port, svc = api
    status, body = await raw_request(port, "POST", "/api/silences", auth=header, body=GOOD_BODY)
    assert status == 401, body
    assert "error" in json.loads(body)
    status, _ = await raw_request(port, "DELETE", "/api/silences/abc", auth=header)
    assert status == 401
    assert [s.source for s in svc.list_silences()] == ["config"]


async def test_control_bytes_in_a_header_are_refused_by_the_parser(api):
    port, _ = api
    status, _ = await raw_request(port, "POST", "/api/silences", auth=b"Bearer a\x01b")
    assert status == 400  # aiohttp's parser refuses the request before our handler runs


async def test_wrong_but_wellformed_tokens_are_403_and_the_right_one_works(api):
    port, _ = api
    for auth in (b"Bearer nope", b"Bearer " + TOKEN.encode() + b"x", b"Bearer  " + b"!" * 12):
        assert (await raw_request(port, "POST", "/api/silences", auth=auth, body=GOOD_BODY))[
            0
        ] == 403
    status, _ = await raw_request(port, "POST", "/api/silences", body=GOOD_BODY)
    assert status == 201
    # Surrounding spaces and a lower-case scheme are tolerated (RFC 7235: case-insensitive).
    auth = b"bearer   " + TOKEN.encode() + b" "
    assert (await raw_request(port, "POST", "/api/silences", auth=auth, body=GOOD_BODY))[0] == 201


BAD_BODIES = [
    b"",
    b"{",
    b"not json",
    b"\xff\xfe{}",  # invalid UTF-8
    b'{"comment": "\xed\xa0\x80", "duration_seconds": 60}',  # encoded surrogate: invalid UTF-8
    b"[]",
    b"null",
    b'"a string"',
    b"42",
    b"[" * 100000 + b"]" * 100000,  # too deep for the JSON parser
    b'{"duration_seconds": 60, "comment": "' + b"x" * 70000 + b'"}',  # too large
    b'{"matchers": {"model": "churn"}}',  # no end
    b'{"ends_at": 100, "duration_seconds": 5}',  # both ends
    b'{"duration_seconds": -5}',
    b'{"duration_seconds": 0}',
    b'{"duration_seconds": NaN}',
    b'{"duration_seconds": Infinity}',
    b'{"duration_seconds": 1e309}',
    b'{"ends_at": 1e300}',
    b'{"ends_at": -1e300}',
    b'{"starts_at": NaN, "duration_seconds": 60}',
    b'{"starts_at": 10, "ends_at": 5}',
    b'{"ends_at": "not a time"}',
    b'{"ends_at": "9999-12-31T23:59:59-12:00"}',
    b'{"duration_seconds": 1e17}',
    b'{"duration_seconds": "60"x}',
    b'{"matchers": {"kind": "nonsense"}, "duration_seconds": 60}',
    b'{"matchers": {"unknown": 1}, "duration_seconds": 60}',
    b'{"matchers": [], "duration_seconds": 60}',
    b'{"matchers": {"model": 5}, "duration_seconds": 60}',
    b'{"matchers": {"model": "' + b"m" * 300 + b'"}, "duration_seconds": 60}',
    b'{"duration_seconds": 60, "extra": true}',
    b'{"duration_seconds": 60, "comment": ' + b'"' + b"c" * 1001 + b'"}',
]


@pytest.mark.parametrize("body", BAD_BODIES, ids=range(len(BAD_BODIES)))
async def test_malformed_bodies_are_4xx_never_500(api, body):
    port, svc = api
    status, answer = await raw_request(port, "POST", "/api/silences", body=body)
    assert 400 <= status < 500, (status, answer[:200])
    message = json.loads(answer)["error"]
    assert isinstance(message, str) and len(message) < 2000
    assert [s.source for s in svc.list_silences()] == ["config"]


async def test_hostile_strings_are_stored_and_shown_escaped(api):
    port, _ = api
    surrogate = json.dumps({"matchers": {"model": "\ud800"}, "duration_seconds": 60}).encode()
    status, answer = await raw_request(port, "POST", "/api/silences", body=surrogate)
    assert status == 400 and b"matchers.model" in answer, answer
    body = json.dumps(
        {"matchers": {"model": "<b>x</b>"}, "duration_seconds": 60, "comment": "\u2028\x00"}
    ).encode()
    status, answer = await raw_request(port, "POST", "/api/silences", body=body)
    assert status == 201, answer
    status, listed = await raw_request(port, "GET", "/api/silences", auth=None)
    assert status == 200
    models = [s["model"] for s in json.loads(listed)["silences"]]
    assert "<b>x</b>" in models


async def test_delete_maps_core_errors_to_404_and_409(api):
    port, _ = api
    assert (await raw_request(port, "DELETE", "/api/silences/nope"))[0] == 404
    assert (await raw_request(port, "DELETE", "/api/silences/%C3%BF%FF"))[0] == 404
    assert (await raw_request(port, "DELETE", "/api/silences/cfg-0"))[0] == 409
    status, answer = await raw_request(port, "POST", "/api/silences", body=GOOD_BODY)
    assert status == 201
    sid = json.loads(answer)["id"]
    assert (await raw_request(port, "DELETE", f"/api/silences/{sid}"))[0] == 200


async def test_the_core_raises_the_error_tree(api):
    _, svc = api
    with pytest.raises(InvalidSilence):
        svc.add_silence(starts_at=10.0, ends_at=5.0)
    with pytest.raises(InvalidSilence):
        svc.add_silence(ends_at=float("inf"))
    with pytest.raises(InvalidSilence):
        svc.add_silence(ends_at=1e12, kind="bogus")
    with pytest.raises(UnknownSilence):
        svc.expire_silence("nope")
    with pytest.raises(ReadOnlySilence):
        svc.expire_silence("cfg-0")
    assert issubclass(UnknownSilence, SilenceError)


async def test_a_body_arriving_in_pieces_or_chunked_is_read_whole(api):
    port, _ = api
    for chunked in (False, True):
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        head = (
            "POST /api/silences HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
        ).encode()
        first, second = GOOD_BODY[:10], GOOD_BODY[10:]
        if chunked:
            writer.write(head + b"Transfer-Encoding: chunked\r\n\r\n")
            parts = [b"%x\r\n%s\r\n" % (len(first), first), b"%x\r\n%s\r\n0\r\n\r\n" % (
                len(second), second)]  # fmt: skip
        else:
            writer.write(head + f"Content-Length: {len(GOOD_BODY)}\r\n\r\n".encode())
            parts = [first, second]
        for part in parts:
            writer.write(part)
            await writer.drain()
            await asyncio.sleep(0.2)
        data = await asyncio.wait_for(reader.read(), 10)
        writer.close()
        assert data.startswith(b"HTTP/1.1 201"), (chunked, data[:200])
