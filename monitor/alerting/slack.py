"""Slack incoming webhook: a Block Kit message with a plain-text ``text`` fallback.

``text`` is what notifications and screen readers show; the blocks list at
most :data:`MAX_SIGNALS_SHOWN` signals (Slack caps a message at 50 blocks and
a section at 3000 characters). Slack answers 429 with ``Retry-After`` when
rate-limited, which the dispatcher honours; 4xx such as ``invalid_payload``
or ``no_service`` are permanent.
"""

from __future__ import annotations

from typing import Any

from monitor.alerting.config import SlackReceiverConfig
from monitor.alerting.http import raise_for_status, send_request
from monitor.alerting.notification import Notification, SignalEvidence, iso, version_label
from monitor.alerting.receiver import HttpReceiver, encode_json

MAX_SIGNALS_SHOWN = 10
#: Characters of a wire string (model name, model version) shown in one field: Slack refuses
#: a section field over 2000 characters (``invalid_blocks``, a permanent 400: the page lost).
MAX_FIELD_CHARS = 200
#: Characters of the fallback ``text`` (Slack's limit is 40,000; the title is a summary).
MAX_TEXT_CHARS = 3000
_EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:"}


def mrkdwn_escape(text: str) -> str:
    """Text for a Slack mrkdwn field: ``&``, ``<``, ``>`` escaped as Slack requires (a
    segment value from the wire could otherwise be ``<!channel>`` or a link), and
    backticks made quotes so a value cannot close its code span.

    >>> mrkdwn_escape("<!channel> & `x`")
    "&lt;!channel&gt; &amp; 'x'"
    """
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("`", "'")


def _field(text: str) -> str:
    """A wire string for one mrkdwn field: cut to :data:`MAX_FIELD_CHARS`, escaped, and on
    one line (a model version ``7\n*Severity*\nok`` cannot draw a field of its own)."""
    cut = text if len(text) <= MAX_FIELD_CHARS else text[: MAX_FIELD_CHARS - 1] + "…"
    return mrkdwn_escape(" ".join(cut.splitlines()))


def _code(text: str) -> str:
    """A wire string shown as a code span: escaped (a feature learned from the events may be
    named ``<!channel>``: Slack parses ``<...>`` inside backticks too, and a backtick would
    close the span) and on one line (a newline ends the span, and the text after it would be
    mrkdwn of its own)."""
    return mrkdwn_escape(" ".join(text.splitlines()))


def _where(s: SignalEvidence) -> str:
    return f" in `{_code(s.segment)}`" if s.segment is not None else ""


def _says(s: SignalEvidence) -> str:
    """A signal's line: a breach's own message first (``age: 3% of values below ...``, with
    the drift it explains folded in, :mod:`monitor.explain`), then the comparison."""
    message = s.details.get("message")
    if s.kind == "data_quality" and isinstance(message, str) and message:
        return f"{_code(message[:600])} ({mrkdwn_escape(s.comparison())})"
    # Escaped too: Slack reads "p < alpha ... x > y" as the link "< alpha ... x >".
    return mrkdwn_escape(s.comparison())


def slack_message(notification: Notification) -> dict[str, Any]:
    """The JSON body Slack expects for one notification."""
    n = notification
    emoji = ":white_check_mark:" if n.status == "resolved" else _EMOJI.get(n.severity, ":bell:")
    title = f"{emoji} {n.summary()}"
    lines = []
    if n.action == "summary":  # the incidents a page cap folded: model and signal kinds
        for s in n.signals[:MAX_SIGNALS_SHOWN]:
            lines.append(f"• `{_code(s.subject)}`: {mrkdwn_escape(s.kind)} [{s.severity}]")
        if n.window_events > len(n.signals[:MAX_SIGNALS_SHOWN]):
            lines.append(f"… and {n.window_events - len(n.signals[:MAX_SIGNALS_SHOWN])} more")
    else:
        for s in n.signals[:MAX_SIGNALS_SHOWN]:
            lines.append(f"• *{s.kind}* `{_code(s.subject)}`{_where(s)}: {_says(s)} [{s.severity}]")
        if len(n.signals) > MAX_SIGNALS_SHOWN:
            lines.append(f"… and {len(n.signals) - MAX_SIGNALS_SHOWN} more")
    for s in n.cleared[:MAX_SIGNALS_SHOWN]:
        said = mrkdwn_escape(s.comparison())
        lines.append(f"• cleared: *{s.kind}* `{_code(s.subject)}`{_where(s)}: {said}")
    if len(n.cleared) > MAX_SIGNALS_SHOWN:
        lines.append(f"… and {len(n.cleared) - MAX_SIGNALS_SHOWN} more cleared")
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": title[:150], "emoji": True}},
        {
            "type": "section",
            "fields": [
                # Both come from the wire (a tracked unknown model, any event's version).
                {"type": "mrkdwn", "text": f"*Model*\n{_field(n.model)}"},
                {
                    "type": "mrkdwn",
                    "text": f"*Version*\n{_field(version_label(n.model_version)) or 'n/a'}",
                },
                {"type": "mrkdwn", "text": f"*Status*\n{n.status} ({n.action})"},
                {"type": "mrkdwn", "text": f"*Severity*\n{n.severity}"},
            ],
        },
    ]
    if lines:
        text = "\n".join(lines)[:2900]
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": text}})
    about = f"({n.window_events} events)"
    if n.action == "summary":
        about = f"({n.window_events} incidents)"
    blocks.append(
        {
            "type": "context",
            "elements": [
                {
                    "type": "mrkdwn",
                    "text": f"window {iso(n.window_start)} → {iso(n.window_end)} "
                    f"{about} · since {iso(n.started_at)} · "
                    f"fingerprint `{n.fingerprint}`",
                }
            ],
        }
    )
    for label, url in n.links.items():
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": label}, "url": url}
                ],
            }
        )
    return {"text": mrkdwn_escape(title[:MAX_TEXT_CHARS]), "blocks": blocks}


class SlackReceiver(HttpReceiver):
    """Posts to one Slack incoming webhook."""

    _config: SlackReceiverConfig

    async def _send(self, notification: Notification) -> None:
        response = await send_request(
            self._client,
            "POST",
            self._config.webhook_url.get_secret_value(),
            content=encode_json(slack_message(notification)),
            headers={"Content-Type": "application/json"},
            timeout=self._config.timeout_seconds,
            what=f"slack {self.name}",
        )
        raise_for_status(response, self._clock.time(), what=f"slack {self.name}")


__all__ = ["SlackReceiver", "mrkdwn_escape", "slack_message"]
