"""Round-trip observed state through the checkpoint format, as the product saves it.

The product never pickles a detector, tracker or joiner: a checkpoint is a
:class:`~monitor.state_format.ModelState` written with ``encode`` and read back
with ``decode``. Tests that check "identical behaviour after a restore" put the
object's exported part into a ``ModelState``, encode it, decode the bytes, and
hand the decoded part to the restore method of a freshly built object, so
whatever the format cannot carry (a lost field, a tuple read back as a list)
shows up as a difference.
"""

from __future__ import annotations

from typing import Any

from monitor.state_format import ModelState, SettingsSeen, decode, encode


def through_format(**fields: Any) -> ModelState:
    """A ``ModelState`` holding ``fields``, encoded to bytes and decoded again."""
    state = ModelState(
        model="m",
        settings_seen=SettingsSeen(window="", drift="", performance=""),
        reference_fingerprint=None,
        **fields,
    )
    return decode(encode(state))
