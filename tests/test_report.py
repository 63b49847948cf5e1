"""``monitor report`` and the Python API: files in, one offline HTML file and JSON out.

The HTML is opened in Debian's Chromium from a ``file://`` URL with every
non-file request aborted: it must draw the same views as the UI, with no console
error, and run nothing from hostile names.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from monitor.cli import EXIT_CHECK_FAILED, EXIT_OK, EXIT_USAGE, main
from monitor.drift_check import DriftCheck
from monitor.model_monitor import ModelMonitor
from tests.browser import Problems, chromium, require_browser, screenshot, watch
from tests.ui_live import HOSTILE, HOSTILE_CATEGORY, current_rows, reference_rows


def _csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


def _jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_bytes(b"\n".join(orjson.dumps(r) for r in rows))
    return path


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(21)
    ref, cur, same = reference_rows(rng, 3000), current_rows(rng, 800), reference_rows(rng, 800)
    return {
        "ref_csv": _csv(tmp_path / "ref.csv", ref),
        "cur_csv": _csv(tmp_path / "cur.csv", cur),
        "cur_jsonl": _jsonl(tmp_path / "cur.jsonl", cur),
        "same_csv": _csv(tmp_path / "same.csv", same),
    }


def test_report_cli_html_json_and_ci_gate(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, js = tmp_path / "report.html", tmp_path / "report.json"
    argv = ["report", "--reference", str(files["ref_csv"]), "--current", str(files["cur_csv"])]
    rc = main([*argv, "-o", str(out), "--json", str(js), "--fail-on", "drift"])
    assert rc == EXIT_CHECK_FAILED
    data = json.loads(js.read_text())
    assert sorted(data["drifting"]) == ["income", "plan"]
    assert {c["name"] for c in data["columns"][:2]} == {"income", "plan"}
    assert "2 of 5 columns drifting" in capsys.readouterr().err
    html = out.read_text()
    # Self-contained: no URL to fetch anything from, the chart library inlined.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert 'http-equiv="Content-Security-Policy"' in html and "unsafe-inline" not in html
    assert "<img" not in html and HOSTILE.replace("<", "&lt;").replace(">", "&gt;") in html
    # The same data from JSONL; no drift on a sample of the reference's own distribution.
    assert main([*argv[:3], "--current", str(files["cur_jsonl"]), "--fail-on", "drift"]) == 3
    same = ["report", "--reference", str(files["ref_csv"]), "--current", str(files["same_csv"])]
    assert main([*same, "--fail-on", "warning"]) == EXIT_OK
    assert main([*argv, "--current", str(tmp_path / "missing.csv")]) == EXIT_USAGE
    # REF may be a profile, as `monitor reference build` writes it: the same verdicts.
    profile = tmp_path / "ref-profile.json"
    build = ["reference", "build", "--model", "model", "--input", str(files["ref_csv"])]
    assert main([*build, "--output", str(profile)]) == EXIT_OK
    js2 = tmp_path / "from-profile.json"
    from_profile = ["report", "--reference", str(profile), "--current", str(files["cur_csv"])]
    assert main([*from_profile, "--json", str(js2)]) == EXIT_OK
    assert json.loads(js2.read_text())["columns"] == data["columns"]


def test_report_uses_the_services_engine(files: dict[str, Path], tmp_path: Path) -> None:
    """Same detectors, defaults and corrections: a ModelMonitor fed the same rows agrees."""
    from monitor.config import parse_config

    cfg_path = tmp_path / "monitor.yaml"
    raw = {
        "kafka": {"bootstrap_servers": "127.0.0.1:1"},
        "models": [
            {
                "name": "credit-risk",
                "drift": {"numeric": ["psi", "ks"], "correction": "bonferroni"},
            }
        ],
    }
    cfg_path.write_text(json.dumps(raw))
    check = DriftCheck.from_config(cfg_path, "credit-risk")
    result = check.run(files["ref_csv"], files["cur_csv"])
    assert [r.detector for r in result.evaluation.results["income"]] == ["psi", "ks"]
    ks = result.evaluation.verdicts["income"].results[1]
    assert "raw_p_value" in ks.details  # corrected as configured
    # The service's own path on the same reference and rows gives the same numbers.
    settings = parse_config(raw, base_dir=tmp_path).model("credit-risk")
    assert settings is not None
    profile = check.reference_profile(files["ref_csv"])
    settings = settings.model_copy(
        update={"window": settings.window.model_copy(update={"size": 800, "step": 800})}
    )
    mm = ModelMonitor(settings, check.limits, profile)
    from monitor.drift_check import to_rows
    from monitor.events import ModelEvents

    rows = to_rows(files["cur_csv"])
    [ev] = mm.ingest(
        ModelEvents(
            model="credit-risk",
            event_ids=[str(i) for i in range(800)],
            timestamps=[float(i) for i in range(800)],
            versions=[None] * 800,
            features=[f for f, _ in rows],
            predictions=[p for _, p in rows],
        )
    )
    for col, verdict in ev.verdicts.items():
        assert verdict.results == result.evaluation.verdicts[col].results, col


async def test_report_opens_offline_in_a_browser(files: dict[str, Path], tmp_path: Path) -> None:
    require_browser()
    out = tmp_path / "report.html"
    assert (
        main(
            [
                "report",
                "--reference",
                str(files["ref_csv"]),
                "--current",
                str(files["cur_csv"]),
                "-o",
                str(out),
            ]
        )
        == EXIT_OK
    )
    async with chromium() as browser:
        context = await browser.new_context(viewport={"width": 1280, "height": 900})
        blocked: list[str] = []

        async def block(route: Any) -> None:
            if route.request.url.startswith("file://"):
                await route.continue_()
            else:
                blocked.append(route.request.url)
                await route.abort()

        await context.route("**/*", block)
        page = await context.new_page()
        problems = Problems()
        watch(page, problems)
        await page.goto(out.as_uri(), wait_until="load")
        await page.wait_for_selector("body[data-ready='1']")
        await screenshot(page, "report")
        data = json.loads(await page.inner_text("#page-data"))
        drawn = await page.evaluate(
            """() => window.monitorCharts.features.map(f => ({feature: f.feature,
                hist: f.hist ? f.hist.data : null, bars: f.bars ? f.bars.data : null}))"""
        )
        assert [d["feature"] for d in drawn] == [v["feature"] for v in data["features"]]
        income = next(d for d in drawn if d["feature"] == "income")
        view = next(v for v in data["features"] if v["feature"] == "income")
        assert income["hist"][1:] == [
            view["distribution"]["bins"]["reference_share"],
            view["distribution"]["bins"]["current_share"],
        ]
        plan = next(d for d in drawn if d["feature"] == "plan")
        assert plan["bars"] is not None
        new = page.locator("table.categories tr.new td.cat")
        assert (await new.first.inner_text()).startswith(HOSTILE_CATEGORY)
        names = await page.locator("#columns > tbody > tr.column > td.name").all_inner_texts()
        assert HOSTILE in names and await page.locator("img").count() == 0
        charts = sum(2 if d["hist"] else 1 for d in drawn)  # histogram + CDF, or bars
        assert await page.locator("canvas").count() == charts
        assert blocked == [] and problems.all() == []


def test_python_api_accepts_arrays_and_events() -> None:
    rng = np.random.default_rng(4)
    ref = rng.normal(0, 1, (2000, 2))
    cur = np.column_stack([rng.normal(1, 1, 400), rng.normal(0, 1, 400)])
    result = DriftCheck().run(ref, cur)
    assert result.drifting == ["f0"]
    structured = np.rec.fromarrays([cur[:, 0], cur[:, 1]], names="a,b")
    ref_s = np.rec.fromarrays([ref[:, 0], ref[:, 1]], names="a,b")
    assert DriftCheck().run(ref_s, structured).drifting == ["a"]
    events = ({"model": "m", "features": {"a": float(v)}, "prediction": 1} for v in cur[:, 0])
    other = [{"model": "other", "features": {"a": 0.0}}] * 10
    res = DriftCheck(model="m").run([{"a": float(v)} for v in ref[:, 0]], [*events, *other])
    assert res.evaluation.context.window_events == 400 and res.drifting == ["a"]


def test_report_keeps_a_breach_explained_drift_as_drift() -> None:
    """The report shows no data-quality breach, so a sentinel that the service would name
    as the cause of its drift (monitor/explain.py) stays drift here: in ``drifting``, the
    gate, ``explained`` empty and the page saying "drifting", not "explained by"."""
    rng = np.random.default_rng(5)
    ref = np.round(rng.uniform(18, 90, (3000, 1)))
    cur = np.round(rng.uniform(18, 90, (1000, 1)))
    cur[rng.uniform(size=1000) < 0.1] = -1.0  # the sentinel: breaks below_min in the service
    result = DriftCheck().run(ref, cur)
    assert result.drifting == ["f0"] and result.failed("warning")
    data = result.to_dict()
    assert data["explained"] == {} and data["columns"][0]["explained_by"] is None
    html = result.to_html()
    assert "drifting ·" in html and "explained by" not in html


def test_import_monitor_stays_cheap_and_exports_the_api() -> None:
    import subprocess
    import sys

    code = (
        "import sys, monitor; assert 'numpy' not in sys.modules, 'numpy'; "
        "from monitor import DriftCheck; assert 'numpy' not in sys.modules; "
        "print(DriftCheck.__module__)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "monitor.drift_check"


def test_python_api_accepts_pandas_polars_and_parquet(tmp_path: Path) -> None:
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    rng = np.random.default_rng(8)
    ref, cur = reference_rows(rng, 2000), current_rows(rng, 500)
    expected = DriftCheck().run(ref, cur)
    ref_pd, cur_pd = pd.DataFrame(ref), pd.DataFrame(cur)
    assert DriftCheck().run(ref_pd, cur_pd).to_dict()["columns"] == expected.to_dict()["columns"]
    ref_pd.loc[3, "income"] = np.nan  # a missing value, as pandas has it
    with_nan = DriftCheck().run(ref_pd, cur_pd)
    assert sorted(with_nan.drifting) == ["income", "plan"]
    income = next(v for v in with_nan.to_dict()["features"] if v["feature"] == "income")
    assert income["reference_summary"]["missing_rate"] == pytest.approx(1 / 2000)
    from_polars = DriftCheck().run(pl.DataFrame(ref), pl.DataFrame(cur))
    assert from_polars.to_dict()["columns"] == expected.to_dict()["columns"]
    pytest.importorskip("pyarrow")
    ref_pd.to_parquet(tmp_path / "ref.parquet")
    cur_pd.to_parquet(tmp_path / "cur.parquet")
    assert (
        main(
            [
                "report",
                "--reference",
                str(tmp_path / "ref.parquet"),
                "--current",
                str(tmp_path / "cur.parquet"),
                "--fail-on",
                "drift",
            ]
        )
        == EXIT_CHECK_FAILED
    )


def test_a_lone_surrogate_in_a_file_is_refused_by_line_not_a_traceback(
    files: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """JSON may escape a lone surrogate; the report died writing its HTML on one (a
    ``UnicodeEncodeError`` traceback, exit 1, an empty HTML file left behind)."""
    cur = tmp_path / "cur.jsonl"
    lines = files["cur_jsonl"].read_text().splitlines()
    lines[2] = lines[2].replace('"plan":"', '"plan":"\\ud800', 1)  # a JSON escape, as sent
    assert "\\ud800" in lines[2]
    cur.write_text("\n".join(lines))
    out = tmp_path / "report.html"
    argv = ["report", "--reference", str(files["ref_csv"]), "--current", str(cur)]
    assert main([*argv, "-o", str(out)]) == EXIT_USAGE
    err = capsys.readouterr().err
    assert f"{cur}:3: field 'plan' holds a lone UTF-16 surrogate escape" in err
    assert not out.exists()
    # A valid pair is one character and stays accepted.
    lines[2] = lines[2].replace("\\ud800", "\\ud83d\\ude00")
    cur.write_text("\n".join(lines))
    assert main([*argv, "-o", str(out)]) in (EXIT_OK, EXIT_CHECK_FAILED)
    assert "\U0001f600" in out.read_text(encoding="utf-8")


def test_the_python_api_writes_a_lone_surrogate_as_an_escape(tmp_path: Path) -> None:
    """A str from Python may hold a lone surrogate (files refuse one by line): ``to_html``
    died with ``UnicodeEncodeError`` and left an empty file. The page shows it escaped."""
    rng = np.random.default_rng(5)
    ref = [{"x": float(v), "c": "ab"[i % 2]} for i, v in enumerate(rng.normal(size=300))]
    cur = [
        {"x": float(v), "c": "x\ud800" if i % 3 else "a"}
        for i, v in enumerate(rng.normal(size=300))
    ]
    out = tmp_path / "api.html"
    DriftCheck(model="m").run(ref, cur).to_html(out)
    text = out.read_text(encoding="utf-8")
    assert "x\\ud800" in text
