"""The operator's HTTP surfaces probed as a hostile client would: status codes, query
strings, names. The HTTP edge alone (no broker): the pages and APIs render from a service
whose events were applied in-process, as ``tests/test_ui_api.py`` does.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import orjson
import pytest

from monitor.config import parse_config
from monitor.events import Decoder, RawMessage
from monitor.service import MonitorService
from tests.browser import Problems, chromium, require_browser, watch

RLO = "\u202e"  # RIGHT-TO-LEFT OVERRIDE: what follows reads backwards
SPOOF_MODEL = f"bidi{RLO}evil"  # reads "bidilive"
SPOOF_CATEGORY = "gold\u200bcard\u2028"  # zero-width space, line separator: reads "goldcard"
LONG = "A" * 200  # one unbroken word: the longest model name the config takes


@contextlib.asynccontextmanager
async def edge(
    tmp_path: Path, models: list[str], spoof_feature: str | None = None
) -> AsyncIterator[httpx.AsyncClient]:
    """The HTTP edge of a service with ``models`` configured; 150 events of the first applied
    (with a numeric feature named ``spoof_feature`` too, when given)."""
    raw = {
        "kafka": {"bootstrap_servers": "127.0.0.1:1"},
        "http": {"port": 0, "admin_token": "operator-surfaces-token-1234"},
        "state": {"path": "state.sqlite"},
        "defaults": {"window": {"size": 200, "step": 100}, "reference": {"learn_first": 100}},
        "models": [{"name": m} for m in models],
        "alerting": {"outbox_path": "outbox.sqlite"},
    }
    service = MonitorService(parse_config(raw, base_dir=tmp_path))
    events = [
        orjson.dumps(
            {
                "event_id": f"e{i}",
                "model": models[0],
                "timestamp": 1_780_000_000 + i,
                "features": {
                    "x": float(i % 7),
                    "c": ("a", "b", SPOOF_CATEGORY)[i % 3],
                    **({spoof_feature: float(i % 5)} if spoof_feature else {}),
                },
                "prediction": (i % 10) / 10,
            }
        )
        for i in range(150)
    ]
    batch = Decoder(max_message_bytes=10_000).decode(
        [RawMessage(v, 1_780_000_000.0, "predictions", 0, i) for i, v in enumerate(events)]
    )
    service._apply(batch)
    await service.alerts.start()  # the silence store: the outbox's SQLite file
    await service.http.start()
    try:
        async with httpx.AsyncClient(base_url=service.http.url) as c:
            yield c
    finally:
        await service.http.stop()
        await service.alerts.stop(grace_seconds=0)


@pytest.fixture
async def client(tmp_path: Path) -> AsyncIterator[httpx.AsyncClient]:
    async with edge(tmp_path, ["m"]) as c:
        yield c


async def test_pages_of_unknown_models_and_features_are_404(client: httpx.AsyncClient) -> None:
    """The "nothing here" page was served with 200: a typo'd name looked fine to any probe,
    link checker or script (the JSON API said 404 for the same name)."""
    assert (await client.get("/model", params={"name": "m"})).status_code == 200
    assert (await client.get("/feature", params={"model": "m", "name": "x"})).status_code == 200
    for path, params in [
        ("/model", {"name": "nope"}),
        ("/model", {}),
        ("/feature", {"model": "m", "name": "nope"}),
        ("/feature", {"model": "nope", "name": "x"}),
    ]:
        r = await client.get(path, params=params)
        assert r.status_code == 404, (path, params)
        assert r.headers["content-type"].startswith("text/html") and "Nothing here" in r.text


async def test_a_silences_list_flag_it_cannot_read_is_400(client: httpx.AsyncClient) -> None:
    """``?expired=maybe`` (or ``on``, ``True1``) listed the active silences only, as if the
    flag had not been given: the operator looking for an expired silence saw none."""
    ok = {"Authorization": "Bearer operator-surfaces-token-1234"}
    r = await client.post("/api/silences", json={"duration_seconds": 60}, headers=ok)
    sid = r.json()["id"]
    assert (await client.delete(f"/api/silences/{sid}", headers=ok)).status_code == 200
    for flag, listed in [("true", 1), ("TRUE", 1), ("1", 1), ("false", 0), ("no", 0)]:
        r = await client.get("/api/silences", params={"expired": flag})
        assert r.status_code == 200 and len(r.json()["silences"]) == listed, flag
    assert len((await client.get("/api/silences")).json()["silences"]) == 0
    for flag in ["maybe", "on", "", "true1"]:
        r = await client.get("/api/silences", params={"expired": flag})
        assert r.status_code == 400 and "expired" in r.json()["error"], flag


async def test_a_long_unbroken_name_does_not_push_the_tables_off_screen(tmp_path: Path) -> None:
    """A 200-character model name (one word) widened the overview table past the window:
    every model's state, lag and drifting features were off screen to the right. Names wrap
    anywhere now, on the overview and the model page."""
    require_browser()
    async with edge(tmp_path, [LONG, "short"]) as client, chromium() as browser:
        page = await browser.new_page(viewport={"width": 1000, "height": 700})
        problems = Problems()
        watch(page, problems)
        for path in ["/", f"/model?name={LONG}", f"/feature?model={LONG}&name=c"]:
            await page.goto(str(client.base_url) + path)
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= 1000, (path, width)
        await page.goto(str(client.base_url) + "/")
        state = page.locator("span.state").first
        box = await state.bounding_box()
        assert box is not None and box["x"] + box["width"] <= 1000
        assert problems.all() == []


async def test_bidi_and_invisible_characters_in_names_are_shown_escaped(tmp_path: Path) -> None:
    """A right-to-left override made model ``bidi<RLO>evil`` read ``bidilive`` on every page,
    and zero-width characters hid in a category: the operator read a name that is not the
    one in the data. The pages (and the charts' labels, app.js) show them as escapes. Model
    names holding such characters are refused now (config, and the wire under ``track``),
    so here the spoof is a feature name from the wire, as it still may be."""
    require_browser()
    async with edge(tmp_path, ["m"], spoof_feature=SPOOF_MODEL) as client, chromium() as browser:
        pages = ["/", "/model", "/feature", "/feature"]
        params = [
            {},
            {"name": "m"},
            {"model": "m", "name": "c"},
            {"model": "m", "name": SPOOF_MODEL},
        ]
        texts = []
        for path, query in zip(pages, params, strict=True):
            r = await client.get(path, params=query)
            assert r.status_code == 200, path
            assert RLO not in r.text and "\u200b" not in r.text and "\u2028" not in r.text
            texts.append(r.text)
        assert "bidi\\u202eevil" in texts[1] and "bidi\\u202eevil" in texts[3]
        assert "gold\\u200bcard\\u2028" in texts[2]
        page = await browser.new_page()
        problems = Problems()
        watch(page, problems)
        await page.goto(f"{client.base_url}/feature?model=m&name=bidi%E2%80%AEevil")
        assert "bidi\\u202eevil" in await page.inner_text("h1")
        # The charts draw names through app.js's visible() (canvas text, not the DOM).
        source = (Path(__file__).parent.parent / "monitor/ui/static/app.js").read_text()
        start = source.index("  const INVISIBLE")
        code = source[start : source.index("  function short", start)]
        shown = await page.evaluate(
            f"(t) => {{ {code}; return visible(t); }}", f"{SPOOF_MODEL}|{SPOOF_CATEGORY}|\U000e0041"
        )
        assert shown == "bidi\\u202eevil|gold\\u200bcard\\u2028|\\U000e0041"
        assert problems.all() == []


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"duration_seconds": True}, "duration_seconds"),
        ({"ends_at": True}, "ends_at"),
        ({"starts_at": False, "duration_seconds": 60}, "starts_at"),
    ],
)
async def test_a_boolean_is_no_silence_time(
    client: httpx.AsyncClient, body: dict[str, object], field: str
) -> None:
    """``"duration_seconds": true`` made a silence of one second (``true`` coerced to 1), and
    ``"starts_at": false`` one from 1970: a 201 for a request that said no time at all."""
    ok = {"Authorization": "Bearer operator-surfaces-token-1234"}
    r = await client.post("/api/silences", json=body, headers=ok)
    assert r.status_code == 400 and r.json()["error"].startswith(f"{field}: "), r.text
    assert (await client.get("/api/silences")).json()["silences"] == []


async def test_the_json_api_refuses_query_parameters_it_does_not_take(
    client: httpx.AsyncClient,
) -> None:
    """Ignored, ``/api/overview?model=nope`` answered every model as if it had filtered,
    ``/api/feature?model=m&feature=x`` said there is no column ``''`` and ``?name=a&name=b``
    answered for ``a`` alone. A 400 names the parameter and what the endpoint takes."""
    assert (await client.get("/api/model", params={"name": "m"})).status_code == 200
    assert (await client.get("/api/feature?model=m&name=x")).status_code == 200
    for url, says in [
        ("/api/overview?model=nope", "unknown query parameter 'model' (takes none)"),
        ("/api/ui?x=1", "unknown query parameter 'x' (takes none)"),
        ("/api/feature?model=m&feature=x", "unknown query parameter 'feature' (takes model, name)"),
        ("/api/model?name=m&name=other", "query parameter name given more than once"),
        ("/api/model?%3Cb%3E%E2%80%AE=1", "unknown query parameter '<b>\\u202e' (takes name)"),
    ]:
        r = await client.get(url)
        assert r.status_code == 400 and r.json() == {"error": says}, url


async def test_a_connection_without_a_whole_request_is_closed(tmp_path: Path) -> None:
    """A client trickling its headers (or sending nothing) held its socket for aiohttp's
    default of 3630 s: a crashed scraper or a slowloris kept one file descriptor each for an
    hour. The server closes such a connection after ``idle_timeout_seconds`` (75 s by
    default), and answers a whole request on another connection meanwhile."""
    from monitor.http_server import IDLE_TIMEOUT_SECONDS, HttpServer

    assert IDLE_TIMEOUT_SECONDS <= 120
    raw = {
        "kafka": {"bootstrap_servers": "127.0.0.1:1"},
        "http": {"port": 0},
        "state": {"path": "state.sqlite"},
        "models": [{"name": "m"}],
        "alerting": {"outbox_path": "outbox.sqlite"},
    }
    service = MonitorService(parse_config(raw, base_dir=tmp_path))
    server = service.http
    assert isinstance(server, HttpServer) and server.idle_timeout_seconds == IDLE_TIMEOUT_SECONDS
    server.idle_timeout_seconds = 1.0
    await server.start()
    try:
        assert server.bound_port is not None
        silent = await asyncio.open_connection("127.0.0.1", server.bound_port)
        slow = await asyncio.open_connection("127.0.0.1", server.bound_port)
        slow[1].write(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        loop = asyncio.get_running_loop()
        start = loop.time()
        closed = {}
        while len(closed) < 2 and loop.time() - start < 10:
            if "slow" not in closed:
                try:
                    slow[1].write(b"X-Trickle: 1\r\n")  # one header line at a time
                    await slow[1].drain()
                except ConnectionError:
                    closed["slow"] = loop.time() - start
            async with httpx.AsyncClient() as c:  # meanwhile, whole requests are answered
                assert (await c.get(f"{server.url}/healthz")).status_code in (200, 503)
            for name, (reader, _) in (("silent", silent), ("slow", slow)):
                if name not in closed:
                    try:
                        if await asyncio.wait_for(reader.read(100), 0.2) == b"":
                            closed[name] = loop.time() - start
                    except TimeoutError:
                        pass  # still open
                    except ConnectionError:
                        closed[name] = loop.time() - start
        assert set(closed) == {"silent", "slow"}, closed
        assert all(t < 5 for t in closed.values()), closed
        for _, writer in (silent, slow):
            writer.close()
    finally:
        await server.stop()
