"""The Kafka client's TLS context (``kafka.ssl_*``), built with the standard library.

One function, used by every Kafka client of the service when it connects and by
``check-config``, so a CA, certificate or key that cannot be used is one line naming
its option from both commands (exit 2), never a traceback from inside :mod:`ssl`. An
encrypted key is opened with ``kafka.ssl_password``; without it, the load fails with
a message saying so, where OpenSSL would otherwise prompt on the terminal for a
passphrase (a service started from a shell would hang waiting for it). No message
repeats the password.
"""

from __future__ import annotations

import ssl
from typing import Protocol

from pydantic import SecretStr

from monitor.errors import ConfigError


class TlsSettings(Protocol):
    """The ``kafka.ssl_*`` options (:class:`monitor.config.KafkaConfig` has them)."""

    @property
    def ssl_cafile(self) -> str | None: ...
    @property
    def ssl_certfile(self) -> str | None: ...
    @property
    def ssl_keyfile(self) -> str | None: ...
    @property
    def ssl_password(self) -> SecretStr | None: ...


#: The files a client TLS context reads, by option.
SSL_FILE_OPTIONS = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")


def client_ssl_context(config: TlsSettings) -> ssl.SSLContext:
    """The context aiokafka's clients connect with (as aiokafka's ``create_ssl_context``
    builds it: the default client context, the CA file, then the certificate chain), or
    :class:`~monitor.errors.ConfigError` naming the option that cannot be used."""
    for option in SSL_FILE_OPTIONS:
        path = getattr(config, option)
        if path is None:
            continue
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ConfigError([f"kafka.{option}: cannot read {path}: {exc.strerror}"]) from None
    try:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=config.ssl_cafile)
    except (ssl.SSLError, ValueError) as exc:
        raise ConfigError(
            [f"kafka.ssl_cafile: {config.ssl_cafile}: not PEM CA certificates ({_why(exc)})"]
        ) from None
    if config.ssl_certfile is not None:
        secret = config.ssl_password.get_secret_value() if config.ssl_password else ""
        try:
            # A callable, so that an encrypted key without ssl_password fails (an empty
            # passphrase) instead of OpenSSL prompting on the terminal.
            context.load_cert_chain(config.ssl_certfile, config.ssl_keyfile, lambda: secret)
        except (ssl.SSLError, ValueError) as exc:
            options = "kafka.ssl_certfile" + (", ssl_keyfile" if config.ssl_keyfile else "")
            raise ConfigError(
                [
                    f"{options}: the certificate and key cannot be loaded ({_why(exc)}): not "
                    "PEM, a key that is not the certificate's, or an encrypted key without "
                    "its kafka.ssl_password"
                ]
            ) from None
    return context


def _why(exc: Exception) -> str:
    """OpenSSL's reason (``PEM_LIB``, ``KEY_VALUES_MISMATCH``), never the input."""
    if isinstance(exc, ssl.SSLError) and exc.reason:
        return str(exc.reason)
    return type(exc).__name__


__all__ = ["SSL_FILE_OPTIONS", "TlsSettings", "client_ssl_context"]
