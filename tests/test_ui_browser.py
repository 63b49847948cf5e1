"""The web UI in a real browser (Debian's Chromium via Playwright) against a live monitor.

The monitor runs in-process with its real HTTP server and consumes a drifting
stream from the real broker (``tests/ui_live.py``). Every page must load with no
console error and no failed request; the numbers drawn must be those of
``/api/``; hostile names must show as text and run nothing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from tests.browser import Problems, chromium, require_browser, screenshot, watch
from tests.ui_live import HOSTILE, HOSTILE_CATEGORY, MODEL, TOKEN, live_monitor

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def _q(path: str, **params: str) -> str:
    return f"{path}?{urlencode(params)}"


async def _open(browser: Any, url: str, name: str, **watch_args: Any) -> tuple[Any, Problems]:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    problems = Problems()
    watch(page, problems, **watch_args)
    await page.goto(url, wait_until="networkidle")
    await page.wait_for_selector("body[data-ready='1']")
    await screenshot(page, name)
    return page, problems


async def test_every_page_in_a_browser(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path
) -> None:
    require_browser()
    async with live_monitor(kafka_bootstrap, topic_factory, tmp_path) as lm, chromium() as browser:
        api_model = await lm.get("/api/model", name=MODEL)
        assert api_model["drifting"] == ["income", "plan"]

        # Overview: every model with its state; the drifting features listed.
        page, problems = await _open(browser, lm.url + "/", "overview")
        rows = page.locator("#models tbody tr")
        assert await rows.count() == 2
        first = await rows.nth(0).inner_text()
        assert MODEL in first and "ready" in first and "income" in first
        learner = await rows.nth(1).inner_text()
        assert "learning" in learner and "30 of 100000" in learner
        assert problems.all() == []

        # Model page: drifting columns first and marked, the hostile name as text.
        page, problems = await _open(browser, lm.url + _q("/model", name=MODEL), "model")
        names = await page.locator("#columns > tbody > tr.column > td.name").all_inner_texts()
        assert names[:2] == [c["name"] for c in api_model["columns"][:2]]
        assert set(names[:2]) == {"income", "plan"} and HOSTILE in names
        classes = await page.locator("#columns > tbody > tr.column").evaluate_all(
            "rows => rows.map(r => r.className)"
        )
        assert "drifting" in classes[0] and "drifting" in classes[1]
        assert all("drifting" not in c for c in classes[2:])
        assert await page.locator("img").count() == 0  # the feature name made no element
        verdict = await page.locator("#multivariate-verdict").inner_text()
        assert verdict == api_model["multivariate"]["verdict"]
        perf = await page.locator("#performance").inner_text()
        assert "accuracy" in perf and "estimated_accuracy" in perf
        assert await page.evaluate("window.monitorCharts.sparks.length") == len(names)
        assert problems.all() == []

        # Feature page (numeric): both histograms and both CDFs, the numbers of /api/feature.
        api = await lm.get("/api/feature", model=MODEL, name="income")
        dist = api["distribution"]
        page, problems = await _open(
            browser, lm.url + _q("/feature", model=MODEL, name="income"), "feature-income"
        )
        drawn = await page.evaluate(
            """() => { const f = window.monitorCharts.features[0];
                return {hist: f.hist.data, cdf: f.cdf.data, canvases:
                document.querySelectorAll('canvas').length,
                history: f.history.data[1].length}; }"""
        )
        n_bins = len(dist["bins"]["reference_share"])
        assert drawn["hist"] == [
            list(range(n_bins)),
            dist["bins"]["reference_share"],
            dist["bins"]["current_share"],
        ]
        ks = dist["ks"]
        xs, ref_cdf, cur_cdf, k_ref, k_cur = drawn["cdf"]
        at = xs.index(ks["x"])
        assert (k_ref[at], k_cur[at]) == (ks["reference_cdf"], ks["current_cdf"])
        assert [v for v in k_ref if v is not None] == [ks["reference_cdf"]]
        # The curves drawn pass by the KS point (within the 200-point CDF resolution).
        assert ref_cdf[at] == pytest.approx(ks["reference_cdf"], abs=0.01)
        assert cur_cdf[at] == pytest.approx(ks["current_cdf"], abs=0.01)
        assert ref_cdf[-1] == cur_cdf[-1] == 1.0
        ks_result = next(d for d in api["column"]["detectors"] if d["detector"] == "ks")
        assert ks["d"] == pytest.approx(ks_result["statistic"], abs=1e-9)
        assert drawn["canvases"] >= 3 and drawn["history"] == len(api["column"]["history"]) > 1
        assert problems.all() == []

        # Feature page (categorical): share bars, the new (hostile) category marked, as text.
        api = await lm.get("/api/feature", model=MODEL, name="plan")
        page, problems = await _open(
            browser, lm.url + _q("/feature", model=MODEL, name="plan"), "feature-plan"
        )
        bars = await page.evaluate("window.monitorCharts.features[0].bars.data")
        cats = api["distribution"]["categories"]
        assert bars[1] == [c["reference_share"] for c in cats]
        assert bars[2] == [c["current_share"] for c in cats]
        new = page.locator("table.categories tr.new td.cat")
        assert await new.count() == 1
        assert (await new.inner_text()).startswith(HOSTILE_CATEGORY)
        assert problems.all() == []

        # The hostile feature's own page.
        page, problems = await _open(
            browser, lm.url + _q("/feature", model=MODEL, name=HOSTILE), "feature-hostile"
        )
        assert HOSTILE in await page.locator("h1").inner_text()
        assert await page.locator("img").count() == 0
        assert problems.all() == []


async def test_silences_from_the_page_and_pages_without_charts(
    kafka_bootstrap: str, topic_factory: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    require_browser()
    async with live_monitor(kafka_bootstrap, topic_factory, tmp_path) as lm, chromium() as browser:
        # A wrong token is refused by /api/silences itself (403), and nothing is created.
        page, problems = await _open(browser, lm.url + "/silences", "silences", allow_status={403})
        await page.fill("input[name=token]", "not-the-token")
        await page.fill("input[name=subject]", "income")
        await page.click("#new-silence button[type=submit]")
        # (wait_for_selector, not wait_for_function: the CSP forbids the eval the latter needs)
        await page.wait_for_selector("#silence-result:has-text('Refused')")
        assert "403" in await page.inner_text("#silence-result")
        assert (await lm.get("/api/silences"))["silences"] == []
        assert [p for p in problems.all() if "403" not in p] == []

        # With the token: created, listed, then expired from the page.
        await page.fill("input[name=token]", TOKEN)
        await page.fill("input[name=model]", MODEL)
        await page.fill("input[name=comment]", HOSTILE)
        await page.fill("input[name=segment]", "plan=basic")
        await page.click("#new-silence button[type=submit]")
        await page.wait_for_selector("#silences button.expire")
        listed = (await lm.get("/api/silences"))["silences"]
        assert len(listed) == 1 and listed[0]["subject"] == "income"
        assert listed[0]["comment"] == HOSTILE and listed[0]["segment"] == "plan=basic"
        assert await page.locator("img").count() == 0
        await screenshot(page, "silences-created")
        await page.fill("input[name=token]", TOKEN)
        await page.click("#silences button.expire")
        await page.wait_for_selector("#silences button.expire", state="detached")
        assert (await lm.get("/api/silences"))["silences"] == []
        assert problems.dialogs == [] and problems.page_errors == []

        # Without the chart library (not fetched): tables and a clear note, no error.
        monkeypatch.setenv("MONITOR_UI_VENDOR", str(tmp_path / "no-vendor"))
        assert (await lm.get("/api/ui"))["charts"] is False
        page, problems = await _open(
            browser, lm.url + _q("/feature", model=MODEL, name="income"), "feature-no-charts"
        )
        assert "chart library" in await page.inner_text("#no-charts")
        assert await page.locator("canvas").count() == 0
        assert await page.locator("table.detectors tr").count() == 4
        assert problems.all() == []
