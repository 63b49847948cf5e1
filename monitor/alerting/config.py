"""Alerting settings: receivers, rules, routes, grouping, silences, retrain policy, delivery.

Every field has a default, so an empty ``alerting:`` section is valid (it
delivers nowhere until a receiver is configured, but still tracks alert
state and exports ``monitor_alerts_firing``). Secrets arrive here already
substituted from ``${ENV}`` or ``${file:PATH}`` by the config root.

Every receiver URL, header value, routing key, signing secret and token is a
:class:`pydantic.SecretStr`: a Slack or webhook URL *is* a credential (whoever
holds it can post), and other URLs may carry tokens in their query. So
``repr()``, validation errors and logs show ``**********``; the value is read
(``get_secret_value()``) only where a request is built, and log lines and
errors name the receiver, never its URL (:meth:`receiver_secrets` lists what
must never appear anywhere).

Example (YAML)::

    alerting:
      dashboard_url_template: "https://grafana.example/d/models?var-model={model}&from={window_start_ms}&to={window_end_ms}"
      runbook_urls: {"fraud-*": "https://wiki.example/runbooks/fraud-models"}
      receivers:
        ops-webhook:
          type: webhook
          url: https://hooks.example/monitor
          signing_secret: ${WEBHOOK_SECRET}      # "whsec_<base64>" or a plain string
          cloudevents: true
        team-slack:
          type: slack
          webhook_url: ${SLACK_WEBHOOK_URL}
        oncall:
          type: pagerduty
          routing_key: ${PD_ROUTING_KEY}
          page_cap: {max_incidents: 5}       # then one summary of the rest (per hour)
        alertmanager:
          type: alertmanager
          url: http://alertmanager:9093          # POST /api/v2/alerts
          repost_interval_seconds: 60
        retrain-dag:
          type: retrain
          url: https://airflow.example/api/v1/dags/retrain/dagRuns
          body_template: airflow
          secret: ${AIRFLOW_TOKEN}              # sent as "Authorization: Bearer ..."
      rules:                                    # first matching rule wins
        - {kinds: [performance], min_severity: warning, for: 2,
           runbook_url: "https://wiki.example/runbooks/model-performance?model={model}"}
        - {kinds: [drift, data_quality], min_severity: warning, resolve_after: 3}
      routes:                         # in order; first match stops unless continue
        - {match: {severity: critical}, receivers: [oncall], continue: true}
        - {match: {model: "fraud-*"}, receivers: [team-slack, ops-webhook]}
      group_by: [model]
      group_wait_seconds: 0          # hold a first page this long (wall clock)
      group_interval_seconds: 300    # an incident's updates at most once per this long
      silences:
        - matchers: {model: churn, subject: "missing_rate:*"}
        # - matchers: {subject: income, segment: "region=north"}   # one slice only
          starts_at: 2024-05-01T00:00:00Z
          ends_at: 2024-05-08T00:00:00Z
          comment: upstream outage, tracked in OPS-123
      retrain_policy:
        receiver: retrain-dag
        min_critical_drifted_features: 3
        on_performance_drop: true
        min_interval_seconds: 86400
      outbox_path: var/outbox.sqlite
      delivery: {deadline_seconds: 86400, initial_backoff_seconds: 1, max_backoff_seconds: 300}
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import string
from collections.abc import Iterable
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlsplit

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationInfo,
    field_validator,
    model_validator,
)

from monitor.signals import SignalKind
from monitor.strict_model import (
    StrictModel,
    drop_empty_options,
    near_duplicate_problems,
    refuse_boolean_number,
    refuse_unprintable,
)

AlertSeverity = Literal["warning", "critical"]

ALL_KINDS: tuple[SignalKind, ...] = ("drift", "performance", "data_quality", "multivariate")

#: Placeholders accepted in ``dashboard_url_template``.
LINK_PLACEHOLDERS = frozenset(
    {"model", "model_version", "window_start_ms", "window_end_ms", "evaluated_at_ms", "fingerprint"}
)


#: Query parameters that carry a credential in a URL (compared lower-case, '-' as '_').
_CREDENTIAL_PARAMS = frozenset(
    {"token", "access_token", "api_key", "apikey", "key", "password", "secret", "sig", "auth"}
)


def link_problem(url: str) -> str | None:
    """Why a link sent with every notification is unusable or unsafe, or None.

    A runbook or dashboard link goes in clear to every receiver (a Slack channel, a
    PagerDuty incident, the outbox file): credentials in it (``user:token@``, a
    ``?token=`` parameter) would reach them all, so they are refused, and the message
    never repeats the URL. Placeholders are allowed wherever a value is.
    """
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        return "not a valid URL"
    if parts.scheme not in ("http", "https") or not host or any(c.isspace() for c in url):
        return "an absolute http(s) URL with a host, without spaces"
    if parts.username is not None or parts.password is not None:
        return "credentials in the URL (user:password@) would reach every receiver; link a page"
    names = {k.lower().replace("-", "_") for k, _ in parse_qsl(parts.query, True)}
    if names & _CREDENTIAL_PARAMS:
        return (
            f"a credential parameter ({', '.join(sorted(names & _CREDENTIAL_PARAMS))}) would "
            "reach every receiver; link a page"
        )
    return None


def endpoint_problem(url: str) -> str | None:
    """Why a receiver's URL cannot be delivered to, or None; never repeats the URL.

    A receiver URL is a secret (a Slack webhook URL grants posting) and usually comes
    from the environment: an empty variable, a URL without its scheme or a stray space
    passed the check before, and then every notification to that receiver failed at
    delivery time (a permanent error: dead-lettered at the first page).
    """
    if not url:
        return "is empty (an environment variable set to ''?)"
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        return "is not a valid URL (the value is a secret: not shown)"
    if (
        parts.scheme not in ("http", "https")
        or not host
        or any(c.isspace() or not c.isprintable() for c in url)
    ):
        return (
            "must be an absolute http(s) URL with a host, without spaces (the value is a "
            "secret: not shown)"
        )
    return None


def is_loopback_host(host: str) -> bool:
    """Whether ``host`` (a URL's host, as :func:`urllib.parse.urlsplit` gives it: lower
    case, no brackets) names this machine: ``localhost``, 127.0.0.0/8 or ``::1`` (also
    IPv4-mapped). A name that resolves to loopback elsewhere (``/etc/hosts``) is not
    trusted: what it resolves to can change."""
    host = host.rstrip(".")
    if host == "localhost":
        return True
    try:
        address = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def clear_text_credentials(receiver: BaseModel) -> list[str]:
    """The receiver's fields whose credential would cross the network in clear text, each
    with why; empty when its URL is ``https://`` or a loopback ``http://``.

    A credential is what lets the holder act as the monitor: the URL's ``user:password@``
    or a ``?token=``-like parameter, a Slack webhook URL (the URL is the credential), the
    PagerDuty routing key (in every event's body), a retrain ``secret`` (sent as a bearer
    token) and any extra header (headers are declared secret: API keys, Authorization).
    Not a webhook's ``signing_secret``: it never goes on the wire, only an HMAC of each
    request, which neither reveals it nor can be forged without it.
    """
    field = "webhook_url" if "webhook_url" in type(receiver).model_fields else "url"
    url_value = getattr(receiver, field, None)
    url = url_value.get_secret_value() if isinstance(url_value, SecretStr) else str(url_value)
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:  # refused by the URL's own check
        return []
    if parts.scheme != "http" or is_loopback_host(host):
        return []
    found: list[str] = []
    if getattr(receiver, "type", None) == "slack":
        found.append(f"{field} (a Slack webhook URL is itself the credential)")
    elif parts.username is not None or parts.password is not None:
        found.append(f"{field} (user:password@ in the URL)")
    else:
        names = {k.lower().replace("-", "_") for k, _ in parse_qsl(parts.query, True)}
        if params := sorted(names & _CREDENTIAL_PARAMS):
            found.append(f"{field} (the {', '.join(params)} parameter)")
    if getattr(receiver, "routing_key", None) is not None:
        found.append("routing_key (in every event's body)")
    if getattr(receiver, "secret", None) is not None:
        found.append("secret (sent as Authorization: Bearer)")
    if headers := getattr(receiver, "headers", None):
        found.append(f"headers ({', '.join(sorted(headers))})")
    return found


#: Characters of an HTTP header name (RFC 9110 token).
_HEADER_NAME_CHARS = frozenset(string.ascii_letters + string.digits + "!#$%&'*+-.^_`|~")


def is_header_name(name: str) -> bool:
    """Whether ``name`` is an HTTP header name (an RFC 9110 token)."""
    return bool(name) and set(name) <= _HEADER_NAME_CHARS


def header_problem(name: str, value: str) -> str | None:
    """Why a receiver's extra header cannot be sent, or None; never repeats the value.

    HTTP header values are ASCII: a value with a non-ASCII character (a typographic
    quote pasted with an API key) made every request raise before it was sent, and a
    line break would end the header; both passed the check, and every notification to
    that receiver was retried until its deadline.
    """
    if not is_header_name(name):
        # Not repeated: a whole header line written as one key ("Authorization: Bearer
        # <token>") is a name that holds the secret.
        return (
            "a header name is not an HTTP token (letters, digits and !#$%&'*+-.^_`|~; the "
            "name is not shown: it may hold the value, as in 'Authorization: Bearer ...' "
            "written as one key)"
        )
    if any(not (" " <= c <= "~" or c == "\t") for c in value):
        return (
            f"header {name!r}: the value must be visible ASCII, spaces or tabs (no line "
            "breaks, no other characters; the value is a secret: not shown)"
        )
    return None


def segment_pattern_problem(pattern: str) -> str | None:
    """Why a ``segment`` matcher can match no signal, or None.

    A segment label is ``column=value`` (``region=north``, ``region=north,tier=gold``):
    a glob with neither ``=`` nor a wildcard (``north``) matches none, so a rule or
    silence written with it would be silently ignored.
    """
    if pattern in ("*", "") or any(c in pattern for c in "=*?["):
        return None
    return (
        f"{pattern!r} matches no segment: a segment label is column=value (region=north, "
        "region=*); '*' any signal, '' the whole traffic's"
    )


class _Strict(StrictModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class _Receiver(BaseModel):
    """A receiver's base: as :class:`_Strict`, but pydantic allows no before-validator on
    the ``type`` discriminator, so the number fields are named.

    Defaults are validated like given values: pydantic keeps a default as written, so
    PagerDuty's default ``url`` stayed a ``str`` where a :class:`SecretStr` was read, and
    every page to a receiver without ``url`` failed at delivery.
    """

    model_config = ConfigDict(
        extra="forbid", frozen=True, populate_by_name=True, validate_default=True
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_means_default(cls, data: Any) -> Any:
        return drop_empty_options(cls, data)

    @field_validator(
        "timeout_seconds",
        "repost_interval_seconds",
        "repost_for_seconds",
        mode="before",
        check_fields=False,
    )
    @classmethod
    def _no_boolean_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        return refuse_boolean_number(cls, value, info)

    @field_validator("url", "webhook_url", check_fields=False)
    @classmethod
    def _deliverable_url(cls, value: SecretStr | str) -> SecretStr | str:
        url = value.get_secret_value() if isinstance(value, SecretStr) else value
        if why := endpoint_problem(url):
            raise ValueError(why)
        return value

    allow_insecure_http: bool = Field(
        default=False,
        description="Send this receiver's credential (URL token or user:password@, Slack "
        "webhook URL, routing key, secret, headers) over plain http:// to a host that is not "
        "loopback. Off: such a receiver is refused at load (anyone on the path could read the "
        "credential); on: loaded, with a warning at every start.",
    )

    @model_validator(mode="after")
    def _no_credential_in_clear_text(self) -> Any:
        """Refused, naming the fields (never their values), unless opted in: a token sent
        over http:// to another host is readable by anyone on the path (a shared network,
        a proxy's access log). Loopback never leaves the machine."""
        if self.allow_insecure_http or not (found := clear_text_credentials(self)):
            return self
        raise ValueError(
            f"{'; '.join(found)} would be sent in clear text over http:// to a host that is "
            "not loopback (the values are secrets: not shown); use https://, or set "
            "allow_insecure_http: true on this receiver if the network path is trusted"
        )

    @field_validator("headers", check_fields=False)
    @classmethod
    def _sendable_headers(
        cls, value: dict[str, SecretStr] | dict[str, str]
    ) -> dict[str, SecretStr] | dict[str, str]:
        for name, v in value.items():
            text = v.get_secret_value() if isinstance(v, SecretStr) else v
            if why := header_problem(name, text):
                raise ValueError(why)
        return value


class PageCapConfig(_Strict):
    """Storm control for one receiver (:mod:`monitor.alerting.page_cap`): at most
    ``max_incidents`` new incidents paged on their own per ``window_seconds``; the rest are
    folded into one summary, sent ``summary_wait_seconds`` after the first of them and then
    at most once per ``alerting.group_interval_seconds``.

    No default cap: a cap withholds individual pages, and only the operator knows how many
    incidents at once their on-call can act on (and whether a critical model may wait in a
    summary). Ten an hour is a reasonable start for a pager; a chat channel needs none.
    """

    max_incidents: int = Field(
        ge=1,
        le=10_000,
        description="New incidents paged on their own per window; past it they are folded "
        "into a summary.",
    )
    window_seconds: float = Field(
        default=3600.0,
        ge=60,
        le=7 * 86400,
        description="The sliding window the cap counts in (wall clock).",
    )
    summary_wait_seconds: float = Field(
        default=30.0,
        ge=0,
        le=3600,
        description="How long a summary gathers folded incidents after the first (the rest of "
        "the storm); later summaries at most once per alerting.group_interval_seconds.",
    )

    @field_validator("max_incidents", "window_seconds", "summary_wait_seconds", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        return refuse_boolean_number(cls, value, info)


_PAGE_CAP_DESCRIPTION = (
    "Storm control: at most max_incidents new incidents paged on their own per window_seconds, "
    "the rest folded into one summary. None (default): no cap."
)


class WebhookReceiverConfig(_Receiver):
    """A generic JSON webhook, signed per the Standard Webhooks spec when a secret is set."""

    type: Literal["webhook"] = "webhook"
    url: SecretStr = Field(description="Where to POST the alert JSON (secret: may hold a token).")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Extra request headers (e.g. an API key); secret."
    )
    signing_secret: SecretStr | None = Field(
        default=None,
        description="Standard Webhooks secret; 'whsec_<base64>' is decoded, any other string is "
        "used as raw UTF-8 key bytes. None: requests are not signed.",
    )
    cloudevents: bool = Field(
        default=False,
        description="Wrap the alert in a CloudEvents 1.0 structured-mode envelope.",
    )
    timeout_seconds: float = Field(default=10.0, gt=0, description="Per-request timeout.")
    page_cap: PageCapConfig | None = Field(default=None, description=_PAGE_CAP_DESCRIPTION)

    @field_validator("signing_secret")
    @classmethod
    def _whsec_is_base64(cls, value: SecretStr | None) -> SecretStr | None:
        """A ``whsec_`` secret must decode, or every delivery would fail at signing time."""
        if value is not None and value.get_secret_value().startswith("whsec_"):
            try:
                base64.b64decode(value.get_secret_value()[len("whsec_") :], validate=True)
            except (binascii.Error, ValueError):
                raise ValueError("a 'whsec_' secret must be followed by base64") from None
        return value


class SlackReceiverConfig(_Receiver):
    """A Slack incoming webhook (Block Kit message plus a plain-text fallback)."""

    type: Literal["slack"] = "slack"
    webhook_url: SecretStr = Field(
        description="The incoming-webhook URL Slack issued (a secret: it grants posting)."
    )
    timeout_seconds: float = Field(default=10.0, gt=0, description="Per-request timeout.")
    page_cap: PageCapConfig | None = Field(default=None, description=_PAGE_CAP_DESCRIPTION)


class PagerDutyReceiverConfig(_Receiver):
    """PagerDuty Events API v2: one incident per alert fingerprint (``dedup_key``)."""

    type: Literal["pagerduty"] = "pagerduty"
    routing_key: SecretStr = Field(
        description="Integration (routing) key of the PagerDuty service (secret)."
    )
    url: SecretStr = Field(
        default="https://events.pagerduty.com/v2/enqueue",
        description="Events API endpoint; overridden in tests by a local URL.",
    )
    timeout_seconds: float = Field(default=10.0, gt=0, description="Per-request timeout.")
    page_cap: PageCapConfig | None = Field(default=None, description=_PAGE_CAP_DESCRIPTION)


class RetrainReceiverConfig(_Receiver):
    """A retraining trigger: an HTTP call into the user's training pipeline."""

    type: Literal["retrain"] = "retrain"
    url: SecretStr = Field(
        description="Endpoint to call (generic hook, Airflow dagRuns, GitHub dispatches); secret."
    )
    method: Literal["POST", "PUT"] = Field(default="POST", description="HTTP method.")
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Extra request headers; secret."
    )
    body_template: Literal["generic", "airflow", "github_dispatch"] = Field(
        default="generic",
        description="Body shape: our generic JSON, Airflow REST dagRuns, or GitHub "
        "repository_dispatch.",
    )
    secret: SecretStr | None = Field(
        default=None,
        description="Bearer token sent as 'Authorization: Bearer <secret>' unless headers "
        "already set Authorization.",
    )
    timeout_seconds: float = Field(default=30.0, gt=0, description="Per-request timeout.")

    @model_validator(mode="before")
    @classmethod
    def _no_page_cap(cls, data: Any) -> Any:
        if isinstance(data, dict) and "page_cap" in data:
            raise ValueError(
                "page_cap: a retraining trigger is never capped (retrain_policy sends one per "
                "incident; min_interval_seconds rate-limits it)"
            )
        return data


class AlertmanagerReceiverConfig(_Receiver):
    """Prometheus Alertmanager's API v2: incidents as alerts (monitor/alerting/alertmanager.py)."""

    type: Literal["alertmanager"] = "alertmanager"
    # Secrets like every receiver's: an Alertmanager behind a proxy takes basic auth in the
    # URL (user:password@) or a token header. As plain strings they were in httpx's request
    # log lines, repr() and the error text an Alertmanager echoed back (not redacted).
    url: SecretStr = Field(
        description="Alertmanager's base URL; alerts go to <url>/api/v2/alerts (secret: may "
        "hold user:password@)."
    )
    headers: dict[str, SecretStr] = Field(
        default_factory=dict, description="Extra request headers (e.g. Authorization); secret."
    )
    repost_interval_seconds: float = Field(
        default=60.0,
        gt=0,
        description="Re-send firing alerts this often; each is posted with endsAt four "
        "intervals ahead, as Prometheus does.",
    )
    repost_for_seconds: float = Field(
        default=5 * 3600.0,
        gt=0,
        description="Stop re-sending an alert no notification has confirmed for this long (so "
        "an instance that lost the model to another does not keep it alive); keep it above "
        "the rules' repeat_interval_seconds.",
    )
    timeout_seconds: float = Field(default=10.0, gt=0, description="Per-request timeout.")

    @model_validator(mode="before")
    @classmethod
    def _no_page_cap(cls, data: Any) -> Any:
        if isinstance(data, dict) and "page_cap" in data:
            raise ValueError(
                "page_cap: Alertmanager groups and paces its notifications itself (its route's "
                "group_by, group_interval and its receivers' limits); set them there"
            )
        return data


ReceiverConfig = Annotated[
    WebhookReceiverConfig
    | SlackReceiverConfig
    | PagerDutyReceiverConfig
    | RetrainReceiverConfig
    | AlertmanagerReceiverConfig,
    Field(discriminator="type"),
]


class AlertRule(_Strict):
    """Which signals alert, and with what hysteresis. The first matching rule applies.

    A signal no rule matches never alerts.
    """

    name: str | None = Field(default=None, description="Free text, for humans.")
    kinds: list[SignalKind] = Field(
        default_factory=lambda: list(ALL_KINDS), description="Signal kinds this rule matches."
    )
    model: str = Field(default="*", description="Glob on the model name.")
    subject: str = Field(default="*", description="Glob on the signal subject (feature, metric).")
    segment: str = Field(
        default="*",
        max_length=200,
        description="Glob on the signal's segment label (region=north; see segments:). '*': "
        "any signal, whole traffic or segment; '': the whole traffic's only.",
    )
    min_severity: AlertSeverity = Field(
        default="warning", description="Signals below this severity count as ok."
    )
    for_: int = Field(
        default=1,
        alias="for",
        ge=1,
        description="Consecutive active evaluations before firing. 1 because the drift layer "
        "already applies persistence.",
    )
    resolve_after: int = Field(
        default=3,
        ge=1,
        description="Consecutive ok evaluations before resolving (hysteresis against flapping).",
    )
    keep_firing_for_seconds: float = Field(
        default=0.0,
        ge=0,
        le=7 * 86400,
        description="A minimum duration before resolving, as Prometheus' keep_firing_for: a "
        "firing signal resolves only once it has also been ok this long (event time) since "
        "its last active evaluation. Against slow flapping (on for one evaluation, off for "
        "resolve_after), which pages a fire and a resolve per cycle. 0: resolve_after only.",
    )
    repeat_interval_seconds: float = Field(
        default=4 * 3600.0,
        gt=0,
        description="Re-notify a still-firing incident after this long without a notification, "
        "passed on the monitor's wall clock (a backlog caught up in minutes reminds nobody) "
        "and on event time (a replay after a restart reminds as the live run did).",
    )
    runbook_url: str | None = Field(
        default=None,
        description="What to do when this rule fires: a link carried by every notification "
        "(Slack button, PagerDuty links, webhook links.runbook). Same placeholders as "
        "dashboard_url_template. Wins over runbook_urls.",
    )

    @field_validator("runbook_url")
    @classmethod
    def _safe_link(cls, value: str | None) -> str | None:
        if value is not None and (why := link_problem(value)):
            raise ValueError(why)
        return value

    @field_validator("segment")
    @classmethod
    def _segment_can_match(cls, value: str) -> str:
        if why := segment_pattern_problem(value):
            raise ValueError(why)
        return value


class RouteMatch(_Strict):
    """Conditions on a notification for a route to apply."""

    model: str = Field(default="*", description="Glob on the model name.")
    severity: AlertSeverity | None = Field(
        default=None,
        description="Minimum incident severity (a resolve goes to every receiver a firing of "
        "its incident went to).",
    )


class Route(_Strict):
    """Send matching notifications to these receivers."""

    match: RouteMatch = Field(default_factory=RouteMatch, description="When this route applies.")
    receivers: list[str] = Field(min_length=1, description="Receiver names (not retrain ones).")
    continue_: bool = Field(
        default=False,
        alias="continue",
        description="Keep evaluating later routes after this one matched.",
    )


class SilenceMatchers(_Strict):
    """What a silence mutes; all given matchers must match."""

    model: str = Field(default="*", description="Glob on the model name.")
    subject: str = Field(default="*", description="Glob on the signal subject.")
    segment: str = Field(
        default="*",
        max_length=200,
        description="Glob on the signal's segment label (region=north): mute one slice, not "
        "the feature everywhere. '*': any signal; '': the whole traffic's only.",
    )
    kind: SignalKind | None = Field(default=None, description="Signal kind, or any.")

    @field_validator("segment")
    @classmethod
    def _segment_can_match(cls, value: str) -> str:
        if why := segment_pattern_problem(value):
            raise ValueError(why)
        return value


class SilenceConfig(_Strict):
    """A time-boxed mute declared in the configuration file."""

    matchers: SilenceMatchers = Field(default_factory=SilenceMatchers, description="What to mute.")
    # With a timezone: a time without one was read in the host's local zone (a silence an
    # hour off on a laptop, not in the UTC container), and one of each made comparing them
    # raise TypeError: a traceback from check-config instead of a message.
    starts_at: AwareDatetime = Field(description="Start (ISO 8601 with a timezone: Z, +02:00).")
    ends_at: AwareDatetime = Field(description="End, exclusive (with a timezone).")
    comment: str = Field(default="", description="Why; shown in the API.")

    @model_validator(mode="after")
    def _ordered(self) -> SilenceConfig:
        if self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self


class RetrainPolicy(_Strict):
    """When to call the retraining receiver: at most once per incident, and rate-limited.

    See :mod:`monitor.alerting.retrain_policy` for what an incident is and how the interval
    holds a new incident back.
    """

    receiver: str = Field(description="Name of a receiver of type 'retrain'.")
    min_critical_drifted_features: int = Field(
        default=3,
        ge=1,
        description="Trigger when at least this many drift signals are critical at once.",
    )
    on_performance_drop: bool = Field(
        default=True, description="Also trigger on a critical performance signal."
    )
    min_interval_seconds: float = Field(
        default=24 * 3600.0,
        ge=0,
        description="Rate limit across incidents (retraining is expensive): a new incident "
        "within this interval of the last trigger is held back (counted as suppressed) and "
        "triggers once it has passed, if still open. One incident never triggers twice. "
        "Runs on the monitor's wall clock, not the data's event time.",
    )


class DeliveryConfig(_Strict):
    """Retry schedule of the durable outbox."""

    deadline_seconds: float = Field(
        default=24 * 3600.0, gt=0, description="Give up (dead-letter) this long after enqueue."
    )
    max_attempts: int | None = Field(
        default=None, ge=1, description="Give up after this many attempts; None: deadline only."
    )
    initial_backoff_seconds: float = Field(
        default=1.0, gt=0, description="Backoff cap of the first retry."
    )
    max_backoff_seconds: float = Field(default=300.0, gt=0, description="Largest backoff cap.")
    jitter: Literal["full", "none"] = Field(
        default="full", description="'full': uniform in [0, cap] (AWS 'full jitter')."
    )
    max_retry_after_seconds: float = Field(
        default=3600.0, gt=0, description="Cap on a receiver's Retry-After, against abuse."
    )
    concurrency_per_receiver: int = Field(
        default=4, ge=1, description="In-flight requests per receiver."
    )
    retention_seconds: float = Field(
        default=7 * 86400.0,
        gt=0,
        description="Keep finished rows this long, so replayed evaluations stay deduplicated.",
    )
    # How long a claim on a row being sent holds without renewal: how long another instance
    # sharing the outbox (or the restarted one) waits before it sends the row of an instance
    # that died mid-request. Renewed every third of it, so with 30 s a live instance keeps
    # its claim through event-loop stalls and SQLite busy waits (``busy_timeout`` 5 s) of up
    # to ~20 s; a shorter lease resends sooner after a crash but risks a duplicate delivery
    # when a live instance stalls longer than two thirds of it.
    claim_lease_seconds: float = Field(
        default=30.0,
        ge=1.0,
        description="A row being sent stays claimed this long without renewal (after a "
        "crash mid-request it is sent again after at most this long). Renewed every third of "
        "it: keep it well above the outbox's 5 s busy timeout, or a claim can run out during a "
        "database stall and another instance sharing the outbox file sends the row too.",
    )

    @model_validator(mode="after")
    def _backoff_ordered(self) -> DeliveryConfig:
        """An initial backoff above the largest one was silently clamped to it (every retry
        waited up to ``max_backoff_seconds``): the operator meant one of the two."""
        if self.initial_backoff_seconds > self.max_backoff_seconds:
            raise ValueError(
                f"initial_backoff_seconds ({self.initial_backoff_seconds:g}) must be <= "
                f"max_backoff_seconds ({self.max_backoff_seconds:g})"
            )
        return self


def _default_rules() -> list[AlertRule]:
    return [AlertRule(name="default: any signal at warning or above")]


class AlertingConfig(BaseModel):
    """Rules, receivers, routes, silences and the retrain policy (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_means_default(cls, data: Any) -> Any:
        return drop_empty_options(cls, data)

    receivers: dict[str, ReceiverConfig] = Field(
        default_factory=dict, description="Named receivers."
    )
    rules: list[AlertRule] = Field(
        default_factory=_default_rules,
        description="Which signals alert; first match wins. Default: every kind at warning.",
    )
    routes: list[Route] = Field(
        default_factory=list,
        description="Who gets which notification. Empty or no match: every non-retrain receiver.",
    )
    group_by: list[Literal["model", "kind"]] = Field(
        default_factory=lambda: ["model"],
        description="One notification per group listing every active signal. 'model' is required.",
    )
    group_wait_seconds: float = Field(
        default=0.0,
        ge=0,
        le=3600,
        description="Alertmanager's group_wait, on the wall clock: hold an incident's first "
        "page this long after it opened, so signals firing within it go out together. 0: "
        "page at once. An incident that ends within it pages nobody.",
    )
    group_interval_seconds: float = Field(
        default=300.0,
        ge=0,
        le=86400,
        description="Alertmanager's group_interval, on the wall clock (and event time, as "
        "repeat_interval_seconds): changes to a notified "
        "incident (a signal joining or clearing) go out at most once per this long, batched "
        "into one update. Resolves and escalations to a higher severity are never held. 0: "
        "every change at once.",
    )
    silences: list[SilenceConfig] = Field(
        default_factory=list, description="Mutes from configuration (runtime ones via the API)."
    )
    retrain_policy: RetrainPolicy | None = Field(
        default=None, description="Automated retraining trigger, off when absent."
    )
    dashboard_url_template: str | None = Field(
        default=None,
        description="Link added to notifications; placeholders: "
        + ", ".join(sorted(LINK_PLACEHOLDERS)),
    )
    runbook_urls: dict[str, str] = Field(
        default_factory=dict,
        description="Runbook link per model glob ({'fraud-*': 'https://wiki/fraud-runbook'}), "
        "first match in order; used when the notification's rule has no runbook_url.",
    )
    runbook_base_url: str | None = Field(
        default=None,
        description="Where this project's docs/RUNBOOK.md is published (for example "
        "https://github.com/<you>/kafka-model-monitor/blob/main/docs/RUNBOOK.md). When set, a "
        "notification that no rule or runbook_urls entry gives a runbook links to the "
        "RUNBOOK.md section of its most severe signal's kind (RUNBOOK_ANCHORS). No default: "
        "the project has no published address of its own.",
    )
    outbox_path: str = Field(
        default="var/outbox.sqlite",
        description="SQLite file of the durable outbox and alert state.",
    )
    delivery: DeliveryConfig = Field(default_factory=DeliveryConfig, description="Retry schedule.")

    @field_validator("group_wait_seconds", "group_interval_seconds", mode="before")
    @classmethod
    def _no_boolean_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        return refuse_boolean_number(cls, value, info)

    @field_validator("receivers")
    @classmethod
    def _printable_receiver_names(
        cls, receivers: dict[str, ReceiverConfig]
    ) -> dict[str, ReceiverConfig]:
        """A receiver's name is a label of the delivery metrics and named in logs; routes
        name it exactly, so two names that look identical there would be two receivers
        shown as one (refused, as model and feature names are)."""
        refuse_unprintable("receiver name", receivers)
        if near := near_duplicate_problems(
            "receiver names", ((f"receivers.{n!a}", n) for n in receivers)
        ):
            raise ValueError("; ".join(near))
        return receivers

    @field_validator("dashboard_url_template")
    @classmethod
    def _safe_dashboard(cls, value: str | None) -> str | None:
        if value is not None and (why := link_problem(value)):
            raise ValueError(why)
        return value

    @field_validator("runbook_base_url")
    @classmethod
    def _runbook_page(cls, value: str | None) -> str | None:
        """The RUNBOOK.md page itself: the section anchor is added per notification."""
        if value is None:
            return value
        why = link_problem(value)
        if why is None and ("#" in value or "{" in value):
            why = "the RUNBOOK.md page without '#' or placeholders (the anchor is added per kind)"
        if why is not None:
            raise ValueError(why)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AlertingConfig:
        problems: list[str] = []
        if "model" not in self.group_by:
            problems.append("group_by must contain 'model'")
        for i, route in enumerate(self.routes):
            for name in route.receivers:
                receiver = self.receivers.get(name)
                if receiver is None:
                    problems.append(f"routes[{i}]: unknown receiver {name!r}")
                elif receiver.type == "retrain":
                    problems.append(
                        f"routes[{i}]: {name!r} is a retrain receiver; use retrain_policy"
                    )
        retention = self.delivery.retention_seconds
        for name, cap in self.page_caps().items():
            if cap.window_seconds > retention:
                # The cap counts the receiver's rows of the window; purged rows count nothing.
                problems.append(
                    f"receivers[{name!r}].page_cap.window_seconds ({cap.window_seconds:g}) must "
                    f"be <= delivery.retention_seconds ({retention:g}): the outbox rows the "
                    "cap counts are kept that long"
                )
        if self.retrain_policy is not None:
            target = self.receivers.get(self.retrain_policy.receiver)
            if target is None or target.type != "retrain":
                problems.append(
                    f"retrain_policy.receiver: {self.retrain_policy.receiver!r} is not a receiver "
                    "of type 'retrain'"
                )
        templates: list[tuple[str, str | None]] = [
            ("dashboard_url_template", self.dashboard_url_template),
            *((f"rules[{i}].runbook_url", r.runbook_url) for i, r in enumerate(self.rules)),
            *((f"runbook_urls[{k!r}]", v) for k, v in self.runbook_urls.items()),
        ]
        for where, template in templates:
            if template is None:
                continue
            if where.startswith("runbook_urls") and (why := link_problem(template)):
                problems.append(f"{where}: {why}")
            try:
                fields = {f for _, f, _, _ in string.Formatter().parse(template) if f}
            except ValueError as exc:
                problems.append(f"{where}: not a valid template ({exc})")
                continue
            unknown = fields - LINK_PLACEHOLDERS
            if unknown:
                problems.append(f"{where}: unknown placeholders {sorted(unknown)}")
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def page_caps(self) -> dict[str, PageCapConfig]:
        """The receivers with a ``page_cap``, and their caps."""
        return {
            name: cap
            for name, r in self.receivers.items()
            if (cap := getattr(r, "page_cap", None)) is not None
        }

    def alert_receivers(self) -> list[str]:
        """Receivers that take alert notifications (every type except retrain)."""
        return [n for n, r in self.receivers.items() if r.type != "retrain"]

    def receiver_secrets(self) -> list[str]:
        """Every configured secret value of every receiver (for redaction; never log these)."""
        return receiver_secrets(self.receivers.values())


def receiver_secrets(receivers: Iterable[BaseModel]) -> list[str]:
    """The non-empty :class:`SecretStr` values (fields and header values) of ``receivers``."""
    out: list[str] = []
    for r in receivers:
        for name in type(r).model_fields:
            value = getattr(r, name)
            values = value.values() if isinstance(value, dict) else [value]
            out.extend(v.get_secret_value() for v in values if isinstance(v, SecretStr))
    return sorted({v for v in out if v}, key=len, reverse=True)


__all__ = [
    "ALL_KINDS",
    "AlertRule",
    "AlertSeverity",
    "AlertingConfig",
    "AlertmanagerReceiverConfig",
    "DeliveryConfig",
    "PageCapConfig",
    "PagerDutyReceiverConfig",
    "ReceiverConfig",
    "RetrainPolicy",
    "RetrainReceiverConfig",
    "Route",
    "RouteMatch",
    "SilenceConfig",
    "SilenceMatchers",
    "SlackReceiverConfig",
    "WebhookReceiverConfig",
    "clear_text_credentials",
    "is_header_name",
    "is_loopback_host",
    "link_problem",
    "refuse_boolean_number",
    "segment_pattern_problem",
]
