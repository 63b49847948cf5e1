"""The UI's JSON API and pages without a browser: history bounds, view numbers, security.

The live part runs the service against the real broker (``tests/ui_live.py``).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from monitor.detectors.ks import KSDetector
from monitor.detectors.psi import PSIDetector
from monitor.errors import StateError
from monitor.ui.history import DriftHistory, HistoryPoint
from monitor.ui.views import numeric_distribution
from monitor.ui.web import CSP
from tests.ui_live import HOOK_SECRET, HOSTILE, MODEL, TOKEN, live_monitor


def test_history_is_bounded_and_round_trips_as_plain_data() -> None:
    h = DriftHistory(size=3, max_columns=2)
    for seq in range(10):
        for col in ("a", "b", "c"):
            h.record_point("m", col, HistoryPoint(seq, float(seq), "psi", 0.1, "ok", False, 1.0))
    assert [p.seq for p in h.points("m", "a")] == [7, 8, 9]
    assert h.columns("m") == ["a", "b"]  # a third column is not kept
    state = h.to_state()
    import json

    assert json.loads(json.dumps(state)) == state  # plain lists and dicts
    back = DriftHistory.from_state(state)
    assert back.to_state() == state
    assert [p.seq for p in DriftHistory.from_state(state, size=2).points("m", "a")] == [8, 9]
    with pytest.raises(StateError):
        DriftHistory.from_state({"version": 99})
    with pytest.raises(StateError):
        DriftHistory.from_state({"version": 1, "size": 3, "models": {"m": {"a": [[1, 2]]}}})


def test_the_docker_image_fetches_the_same_chart_library() -> None:
    from monitor.ui import assets

    dockerfile = (Path(__file__).resolve().parent.parent / "Dockerfile").read_text()
    assert f"ARG UPLOT_VERSION={assets.UPLOT_VERSION}\n" in dockerfile
    assert "COPY --from=ui /vendor ./monitor/ui/vendor" in dockerfile


def test_distribution_numbers_are_the_detectors() -> None:
    rng = np.random.default_rng(3)
    ref = np.sort(rng.normal(0, 1, 3000))
    win = np.sort(rng.normal(0.4, 1, 500))
    dist = numeric_distribution(ref, win, bins=10)
    ks = KSDetector()
    ks.fit(ref)
    assert dist["ks"]["d"] == pytest.approx(ks.evaluate(win).statistic, abs=1e-12)
    psi = PSIDetector(bins=10)
    psi.fit(ref)
    assert dist["bins"]["current_counts"] == psi.window_counts(win).tolist()
    assert sum(dist["bins"]["reference_share"]) == pytest.approx(1.0)
    assert len(dist["bins"]["edges"]) == len(dist["bins"]["reference_share"]) + 1
    assert dist["reference_cdf"]["y"][-1] == dist["current_cdf"]["y"][-1] == 1.0
    assert len(dist["reference_cdf"]["x"]) <= 200


@pytest.mark.kafka
async def test_api_pages_headers_and_no_secret(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    async with live_monitor(kafka_bootstrap, topic_factory, tmp_path) as lm:
        overview = await lm.get("/api/overview")
        assert [m["name"] for m in overview["models"]] == [MODEL, "learner"]
        m = overview["models"][0]
        assert m["drifting"] == ["income", "plan"] and m["incidents"] == 1
        assert m["consumer_lag"] == 0 and m["events_per_second"] == pytest.approx(1.0, rel=0.01)
        model = await lm.get("/api/model", name=MODEL)
        assert [c["name"] for c in model["columns"][:2]] == ["income", "plan"]
        assert all(len(c["history"]) == 7 for c in model["columns"])
        # The multivariate verdict, on its own (not a column): income's shift shows in it.
        mv = model["multivariate"]
        assert sorted(mv["features"]) == sorted(["income", "age", HOSTILE])
        assert mv["verdict"] == "drifting" and mv["detector"] == "pca"
        assert mv["contributors"] and {c["feature"] for c in mv["contributors"]} <= {
            "income",
            "age",
            HOSTILE,
        }
        perf = model["performance"]
        assert perf["window_labels"] == 500 and 0.3 < perf["accuracy"] < 0.7
        assert "estimated_accuracy" in perf
        incident = model["incidents"][0]
        assert {f["signal"] for f in incident["firing"]} >= {"drift:income", "drift:plan"}
        for _ in range(100):  # the outbox marks the row delivered just after the receiver got it
            deliveries = (await lm.get("/api/model", name=MODEL))["incidents"][0]["deliveries"]
            if deliveries and deliveries[0]["state"] == "delivered":
                break
            await asyncio.sleep(0.05)
        assert deliveries[0]["receiver"] == "hook" and deliveries[0]["state"] == "delivered"
        feature = await lm.get("/api/feature", model=MODEL, name=HOSTILE)
        assert feature["feature"] == HOSTILE and feature["distribution"]["kind"] == "numeric"
        ui = await lm.get("/api/ui")
        assert ui == {"charts": ui["charts"], "silence_management": True, "history_size": 50}
        r = await lm.client.get(lm.url + "/api/feature", params={"model": MODEL, "name": "nope"})
        assert r.status_code == 404 and "nope" in r.json()["error"]

        pages = [
            "/",
            "/silences",
            "/model?name=" + MODEL,
            "/model?name=%3Cb%3Enope",
            *(
                f"/feature?model={MODEL}&name={n}"
                for n in ("income", "plan", "%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")
            ),
        ]
        for path in pages:
            r = await lm.client.get(lm.url + path)
            assert r.status_code == (404 if "nope" in path else 200), path
            assert r.headers["Content-Security-Policy"] == CSP
            assert "unsafe-inline" not in CSP and "unsafe-eval" not in CSP
            # Markup from names is escaped everywhere: in the HTML and in the JSON block.
            assert "<img" not in r.text and "<b>" not in r.text, path
            assert "<script>" not in r.text.replace('<script type="application/json"', ""), path
            assert TOKEN not in r.text and HOOK_SECRET not in r.text
        assert (
            HOSTILE.replace("<", "&lt;").replace(">", "&gt;")
            in (await lm.client.get(lm.url + f"/model?name={MODEL}")).text
        )
        for path in ("/api/overview", f"/api/model?name={MODEL}", "/api/ui", "/api/status"):
            r = await lm.client.get(lm.url + path)
            assert TOKEN not in r.text and HOOK_SECRET not in r.text
            assert r.headers["Content-Security-Policy"] == CSP
        # Only listed static files are served (no path traversal into the package).
        for name in ("app.js", "app.css"):
            assert (await lm.client.get(f"{lm.url}/ui/static/{name}")).status_code == 200
        for name in ("..%2F__init__.py", "views.py", "uPlot.d.ts"):
            assert (await lm.client.get(f"{lm.url}/ui/static/{name}")).status_code == 404


async def test_without_a_token_the_ui_is_read_only(tmp_path: Path) -> None:
    """No admin token: the silences page offers no form, and the API refuses changes (403)."""
    import httpx

    from monitor.config import parse_config
    from monitor.service import MonitorService

    raw = {
        "kafka": {"bootstrap_servers": "127.0.0.1:1"},
        "http": {"port": 0},
        "state": {"path": "state.sqlite"},
        "models": [{"name": HOSTILE}],
        "alerting": {"outbox_path": "outbox.sqlite"},
    }
    service = MonitorService(parse_config(raw, base_dir=tmp_path))
    await service.http.start()  # the HTTP edge alone: no broker needed to render pages
    try:
        async with httpx.AsyncClient(base_url=service.http.url) as client:
            page = (await client.get("/silences")).text
            assert "Read-only" in page and "new-silence" not in page
            assert (await client.get("/api/ui")).json()["silence_management"] is False
            r = await client.post(
                "/api/silences",
                json={"matchers": {"model": "*"}, "duration_seconds": 60},
                headers={"Authorization": "Bearer anything"},
            )
            assert r.status_code == 403
            overview = await client.get("/")
            assert overview.status_code == 200 and "<img" not in overview.text
            assert HOSTILE.replace("<", "&lt;").replace(">", "&gt;") in overview.text
            assert (await client.get("/api/overview")).json()["models"][0]["state"] == "waiting"
    finally:
        await service.http.stop()


async def test_the_model_page_of_a_model_not_evaluated_yet_renders(tmp_path: Path) -> None:
    """Between its reference and its first full window a model is ready with no summaries:
    its page answered 500 (the columns table read a summary that is not there yet)."""
    import httpx
    import orjson

    from monitor.config import parse_config
    from monitor.events import Decoder, RawMessage
    from monitor.service import MonitorService

    raw = {
        "kafka": {"bootstrap_servers": "127.0.0.1:1"},
        "http": {"port": 0},
        "state": {"path": "state.sqlite"},
        "defaults": {"window": {"size": 200, "step": 100}, "reference": {"learn_first": 100}},
        "models": [{"name": "m"}],
        "alerting": {"outbox_path": "outbox.sqlite"},
    }
    service = MonitorService(parse_config(raw, base_dir=tmp_path))
    events = [
        orjson.dumps(
            {
                "event_id": f"e{i}",
                "model": "m",
                "timestamp": 1_780_000_000 + i,
                "features": {"x": float(i % 7), "c": "ab"[i % 2]},
                "prediction": (i % 10) / 10,
            }
        )
        for i in range(150)
    ]
    batch = Decoder(max_message_bytes=10_000).decode(
        [RawMessage(v, 1_780_000_000.0, "predictions", 0, i) for i, v in enumerate(events)]
    )
    service._apply(batch)
    await service.http.start()
    try:
        async with httpx.AsyncClient(base_url=service.http.url) as client:
            api = (await client.get("/api/model", params={"name": "m"})).json()
            assert api["status"]["state"] == "ready" and api["status"]["evaluations"] == 0
            page = await client.get("/model", params={"name": "m"})
            assert page.status_code == 200
            assert page.text.count("no window evaluated yet") == 3  # x, c and the prediction
    finally:
        await service.http.stop()


async def test_the_model_page_of_a_model_without_events_yet_renders(tmp_path: Path) -> None:
    """Every configured model is ``waiting`` until its first event reaches this instance (at
    start, and for good where another instance owns its partition): the overview links it,
    and its page answered 500 with a traceback in the log (the template read a window the
    data did not have). ``/api/model`` gives the same keys as for any model."""
    import httpx

    from monitor.config import parse_config
    from monitor.service import MonitorService

    raw = {
        "kafka": {"bootstrap_servers": "127.0.0.1:1"},
        "http": {"port": 0},
        "state": {"path": "state.sqlite"},
        "models": [{"name": HOSTILE}, {"name": "broken", "reference": {"path": "gone.csv"}}],
        "alerting": {"outbox_path": "outbox.sqlite"},
    }
    service = MonitorService(parse_config(raw, base_dir=tmp_path))
    service.load_references()  # "broken" is disabled (reference_unreadable): no state either
    await service.http.start()
    try:
        async with httpx.AsyncClient(base_url=service.http.url) as client:
            broken = await client.get("/model", params={"name": "broken"})
            assert broken.status_code == 200 and "state-disabled" in broken.text
            page = await client.get("/model", params={"name": HOSTILE})
            assert page.status_code == 200 and "state-waiting" in page.text
            assert "<img" not in page.text
            api = (await client.get("/api/model", params={"name": HOSTILE})).json()
            assert api["status"]["state"] == "waiting"
            assert (api["window"], api["columns"], api["multivariate"]) == (None, [], None)
            assert api["incidents"] == [] and api["drifting"] == []
    finally:
        await service.http.stop()


def test_feature_view_of_a_time_window_shows_the_evaluated_span() -> None:
    """A time window holds more events than its last evaluation looked at: the view shows
    what was evaluated (the span's events), as the detectors saw them."""
    from monitor.config import LimitsConfig, ModelConfig, ModelDefaults, WindowConfig, resolve_model
    from monitor.events import ModelEvents
    from monitor.model_monitor import ModelMonitor
    from monitor.reference import build_profile
    from monitor.ui.views import feature_view

    rng = np.random.default_rng(9)
    window = WindowConfig(type="time", size=5000, seconds=100.0, step_seconds=50.0)
    settings = resolve_model(ModelConfig(name="m", window=window), ModelDefaults())
    profile = build_profile("m", [({"x": float(v)}, None) for v in rng.normal(0, 1, 2000)])
    mm = ModelMonitor(settings, LimitsConfig(), profile)
    n = 1000  # one event every 0.25 s: 400 events per 100 s
    events = ModelEvents(
        model="m",
        event_ids=[str(i) for i in range(n)],
        timestamps=[1000.0 + 0.25 * i for i in range(n)],
        versions=[None] * n,
        features=[{"x": float(v)} for v in rng.normal(0, 1, n)],
        predictions=[None] * n,
    )
    evaluations = mm.ingest(events)
    assert evaluations and mm.window.size == n
    view = feature_view(mm, "x")
    assert view is not None
    assert view["distribution"]["current_n"] == evaluations[-1].context.window_events
    assert view["window"]["events_per_second"] == pytest.approx(4.0, rel=0.02)
    ks = next(d for d in view["column"]["detectors"] if d["detector"] == "ks")
    assert view["distribution"]["ks"]["d"] == pytest.approx(ks["statistic"], abs=1e-12)


def test_the_model_page_shows_the_multivariate_verdict_escaped() -> None:
    """A correlation flip (marginals unchanged): the model view and page give the PCA
    verdict, its numbers and the features that contribute most, names as text."""
    from monitor.config import parse_config
    from monitor.events import ModelEvents
    from monitor.model_monitor import ModelMonitor
    from monitor.reference import build_profile
    from monitor.signals import MULTIVARIATE
    from monitor.ui.render import environment, fmt
    from monitor.ui.views import model_view

    def rows(seed: int, n: int, rho: float) -> list[dict[str, float]]:
        rng = np.random.default_rng(seed)
        x, e, z = rng.normal(size=(3, n))
        y = rho * x + np.sqrt(1 - rho**2) * e
        return [{"a": a, HOSTILE: b, "c": c} for a, b, c in zip(x, y * 3 - 1, z, strict=True)]

    def events(data: list[dict[str, float]]) -> ModelEvents:
        out = ModelEvents("m")
        for i, r in enumerate(data):
            out.event_ids.append(f"e{i}")
            out.timestamps.append(float(i))
            out.versions.append(None)
            out.features.append(r)
            out.predictions.append(0.5)
        return out

    cfg = parse_config({"models": [{"name": "m", "window": {"size": 2000, "step": 500}}]})
    profile = build_profile("m", [(r, 0.5) for r in rows(1, 5000, 0.8)])
    mm = ModelMonitor(cfg.model("m"), cfg.limits, profile)  # type: ignore[arg-type]
    assert model_view(mm)["multivariate"]["verdict"] == "pending"  # no evaluation yet
    mm.ingest(events(rows(2, 3000, 0.8)))
    calm = model_view(mm)["multivariate"]
    assert calm["verdict"] == "ok" and calm["contributors"] == []
    assert sorted(calm["features"]) == sorted(["a", HOSTILE, "c"])
    mm.ingest(events(rows(3, 1000, -0.8)))
    assert mm.last is not None and mm.last.multivariate_drifting
    assert MULTIVARIATE not in mm.last.drifting  # not a column: the UI shows it on its own
    view = model_view(mm)
    mv = view["multivariate"]
    top = mm.last.verdicts[MULTIVARIATE]
    assert mv["verdict"] == "drifting" and mv["severity"] == top.severity != "ok"
    assert (mv["detector"], mv["statistic"], mv["threshold"]) == (
        "pca",
        top.statistic,
        top.threshold,
    )
    assert mv["p_value"] is not None and mv["p_value"] < mv["threshold"]
    assert {c["feature"] for c in mv["contributors"][:2]} == {"a", HOSTILE}
    assert all(c["excess"] > 0 for c in mv["contributors"])
    # The page: the verdict and the hostile contributor's name as text, never markup.
    data = {**view, "status": {"state": "ready", "not_ready_reason": None}, "incidents": []}
    ui = {"charts": False, "silence_management": False, "history_size": 0}
    html = (
        environment()
        .get_template("model.html")
        .render(title="m", data=data, ui=ui, fmt=fmt, standalone=False)
    )
    section = html.split('id="multivariate"', 1)[1].split("</section>", 1)[0]
    assert ">drifting</span>" in section and "pca reconstruction error" in section
    assert fmt(mv["statistic"]) in section and fmt(mv["threshold"]) in section
    assert HOSTILE.replace("<", "&lt;").replace(">", "&gt;") in section
    assert "<img" not in html
    # Turned off: no section.
    off = parse_config(
        {
            "models": [
                {
                    "name": "m",
                    "window": {"size": 2000, "step": 500},
                    "multivariate": {"enabled": False},
                }
            ]
        }
    )
    quiet = ModelMonitor(off.model("m"), off.limits, profile)  # type: ignore[arg-type]
    assert model_view(quiet)["multivariate"] is None


async def test_the_model_api_and_page_show_segments_escaped(tmp_path: Path) -> None:
    """Segments (monitor/segments.py) in /api/model, /api/status and the model page: per
    slice its values with window rows, tested or not, own or overall reference, and the
    features drifting in each with the corrected p-value; a markup value is text."""
    import html as html_lib

    import httpx

    from monitor.config import parse_config
    from monitor.service import MonitorService
    from monitor.ui.render import environment, fmt
    from monitor.ui.views import model_view
    from tests.test_segments import _events

    markup = "<script>alert(7)</script>"
    regions = ["north", markup + "\ud800", "south"]
    raw = {
        "kafka": {"bootstrap_servers": "127.0.0.1:1"},
        "http": {"port": 0},
        "state": {"path": "state.sqlite"},
        "models": [
            {
                "name": "m",
                "window": {"size": 5000, "step": 1000},
                "reference": {"learn_first": 10_000},
                "segments": {"by": ["region"], "top_k": 3, "min_window_rows": 20},
            }
        ],
        "alerting": {"outbox_path": "outbox.sqlite"},
    }
    service = MonitorService(parse_config(raw, base_dir=tmp_path))
    cfg = service.config
    from monitor.model_monitor import ModelMonitor

    mm = ModelMonitor(cfg.model("m"), cfg.limits)  # type: ignore[arg-type]
    mm.ingest(_events(1, 10_000, regions=regions))
    mm.ingest(_events(2, 5000, regions=regions, start=10_000))
    evals = mm.ingest(_events(3, 2000, regions=regions, shift_north=3.0, start=15_000))
    last = evals[-1]
    north = next(s for s in last.segments if s.segment == "region=north")
    assert north.drifting == ["b"]
    service.models["m"] = mm

    view = model_view(mm)["segments"]
    assert view["top_k"] == 3 and view["min_window_rows"] == 20
    assert view["drifting"] == ["region=north"]
    (sl,) = view["slices"]
    assert sl["slice"] == "region"
    values = sl["values"]
    assert [v["segment"] for v in values] == [s.segment for s in last.segments]
    assert len(values) == 4 and values[-1]["segment"] == "region=__other__"
    for v, seg in zip(values, last.segments, strict=True):
        assert (v["rows"], v["tested"], v["reference"]) == (seg.rows, seg.tested, seg.reference)
    other = values[-1]
    assert other["rows"] == 0 and not other["tested"]  # every region is a top value
    by_label = {v["segment"]: v for v in values}
    (b,) = by_label["region=north"]["drifting"]
    head = north.verdicts["b"].results[0]
    assert (b["name"], b["detector"], b["p_value"]) == ("b", "ks", head.p_value)
    assert b["p_value"] < b["threshold"] and b["raw_p_value"] < b["p_value"]
    assert by_label["region=north"]["reference"] == "segment"
    markup_label = f"region={markup}\\ud800"  # the lone surrogate escaped (segments.py)
    assert by_label[markup_label]["drifting"] == []

    await service.http.start()  # the HTTP edge alone: no broker
    try:
        async with httpx.AsyncClient(base_url=service.http.url) as client:
            api = (await client.get("/api/model", params={"name": "m"})).json()
            assert api["segments"] == view
            status = (await client.get("/api/status")).json()["models"]["m"]
            assert status["segments_drifting"] == {"region=north": ["b"]}
            page = (await client.get("/model", params={"name": "m"})).text
    finally:
        await service.http.stop()
    section = page.split('id="segments"', 1)[1].split("</section>", 1)[0]
    assert html_lib.escape(markup_label, quote=False) in section
    assert markup not in page and "<script>alert" not in page
    assert "region=north" in section and fmt(b["p_value"]) in section
    assert "region=__other__" in section and "no (fewer than 20 rows)" in section
    # Not tested: the page says why; without segments, no section.
    data = {**model_view(mm), "status": {"state": "ready", "not_ready_reason": None}}
    data["segments"]["slices"][0]["values"][0].update(tested=False, reference="overall")
    ui = {"charts": False, "silence_management": False, "history_size": 0}
    env = environment()
    text = env.get_template("model.html").render(
        title="m", data={**data, "incidents": []}, ui=ui, fmt=fmt, standalone=False
    )
    assert "no (fewer than 20 rows)" in text and "overall (no own reference rows)" in text
    data["segments"] = None
    text = env.get_template("model.html").render(
        title="m", data={**data, "incidents": []}, ui=ui, fmt=fmt, standalone=False
    )
    assert 'id="segments"' not in text


async def test_a_drift_a_breach_explains_shows_as_explained_not_drifting(tmp_path: Path) -> None:
    """A sentinel -1 in 10% of a (hostile-named) column breaks ``below_min`` and moves its
    distribution (monitor/explain.py): /api/status lists the column under ``explained``
    (not ``drifting``), /api/model's row names the rule and the headline statistic, and
    the model and feature pages say "explained by below_min" with the statistic, the
    name as text."""
    import html as html_lib

    import httpx

    from monitor.config import parse_config
    from monitor.events import ModelEvents
    from monitor.model_monitor import ModelMonitor
    from monitor.reference import build_profile
    from monitor.service import MonitorService
    from monitor.ui.render import fmt

    def rows(n: int, seed: int, sentinel: float = 0.0) -> list[dict[str, float]]:
        rng = np.random.default_rng(seed)
        age = np.round(rng.uniform(18, 90, n))
        age[rng.uniform(size=n) < sentinel] = -1.0
        income = rng.lognormal(10, 0.5, n)
        return [{HOSTILE: float(a), "income": float(x)} for a, x in zip(age, income, strict=True)]

    def events(data: list[dict[str, float]], start: int) -> ModelEvents:
        out = ModelEvents("m")
        for i, r in enumerate(data, start):
            out.event_ids.append(f"e{i}")
            out.timestamps.append(float(i))
            out.versions.append(None)
            out.features.append(r)
            out.predictions.append(0.5)
        return out

    raw = {
        "kafka": {"bootstrap_servers": "127.0.0.1:1"},
        "http": {"port": 0},
        "state": {"path": "state.sqlite"},
        "models": [
            {
                "name": "m",
                "window": {"size": 2000, "step": 1000},
                "drift": {"numeric": ["psi", "ks"]},
            }
        ],
        "alerting": {"outbox_path": "outbox.sqlite"},
    }
    service = MonitorService(parse_config(raw, base_dir=tmp_path))
    cfg = service.config
    profile = build_profile("m", [(r, 0.5) for r in rows(5000, 1)])
    mm = ModelMonitor(cfg.model("m"), cfg.limits, profile)  # type: ignore[arg-type]
    assert mm.ingest(events(rows(2000, 2), 0))[-1].drifting == []
    ev = mm.ingest(events(rows(2000, 3, sentinel=0.1), 2000))[-1]
    verdict = ev.verdicts[HOSTILE]
    assert verdict.explained_by == "below_min" and not verdict.drifting
    assert verdict.detector is not None and verdict.statistic is not None
    service.models["m"] = mm

    await service.http.start()  # the HTTP edge alone: no broker
    try:
        async with httpx.AsyncClient(base_url=service.http.url) as client:
            status = (await client.get("/api/status")).json()["models"]["m"]
            api = (await client.get("/api/model", params={"name": "m"})).json()
            page = (await client.get("/model", params={"name": "m"})).text
            feature = await client.get("/feature", params={"model": "m", "name": HOSTILE})
    finally:
        await service.http.stop()
    assert status["drifting"] == [] and status["explained"] == {HOSTILE: "below_min"}
    assert api["drifting"] == [] and api["explained"] == {HOSTILE: "below_min"}
    row = api["columns"][0]  # explained columns come right after the drifting ones
    assert row["name"] == HOSTILE and row["explained_by"] == "below_min"
    assert not row["drifting"] and row["severity"] == "ok"
    assert (row["headline"], row["statistic"]) == (verdict.detector, verdict.statistic)
    income = next(c for c in api["columns"] if c["name"] == "income")
    assert income["explained_by"] is None
    said = f"explained by below_min · {verdict.detector} {fmt(verdict.statistic, 3)}"
    escaped = html_lib.escape(HOSTILE, quote=False)
    table = page.split('id="columns"', 1)[1].split("</table>", 1)[0]
    hostile_row = table.split(escaped, 1)[1].split("</tr>", 1)[0]
    assert said in hostile_row and "drifting ·" not in hostile_row
    assert feature.status_code == 200 and said in feature.text
    assert "<img" not in page and "<img" not in feature.text
