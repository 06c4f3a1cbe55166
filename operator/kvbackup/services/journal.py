"""Each key's result in one restore so far, carried from one attempt to the next.

A restore interrupted by a temporary error, or by a restart, is attempted again. A key
the earlier attempt restored or recovered is then active in the vault, which on its own
reads as a conflict: the key would be reported ``Skipped``, or ``Failed`` with
``onConflict: Fail``. So each attempt records what every key came to, and the next one
reports those keys as they were done and works only on the rest.

The journal rides in the object's status, so its size matters: one letter per key, in the
order of the restore's list of keys, zlib-compressed and base64-encoded. A restore of
10,000 keys that came out alike takes a few dozen bytes; results mixed at random, under
half a byte per key (40 KB for 100,000 keys).
"""

from __future__ import annotations

import base64
import binascii
import zlib
from dataclasses import dataclass, field

from kvbackup.services.outcomes import KeyResult

_PENDING = ord(".")
_LETTERS = {
    KeyResult.RESTORED: ord("R"),
    KeyResult.RECOVERED: ord("V"),
    KeyResult.SKIPPED: ord("S"),
    KeyResult.FAILED: ord("F"),
}
_RESULTS = {letter: result for result, letter in _LETTERS.items()}


@dataclass
class RestoreJournal:
    """What each key of one restore came to, by its place in the restore's keys."""

    #: The snapshot the results are of; another snapshot starts the journal afresh.
    snapshot_id: str = ""
    #: As an earlier attempt left it, until ``begin`` reads it.
    carried: str = field(default="", repr=False)
    _letters: bytearray = field(default_factory=bytearray, repr=False)
    _begun: bool = False

    def begin(self, snapshot_id: str, total: int) -> None:
        """Start an attempt over ``total`` keys of ``snapshot_id``: the earlier attempt's
        results are kept when they are of the same snapshot and keys, else none are."""
        if self._begun and snapshot_id == self.snapshot_id and len(self._letters) == total:
            return  # an attempt in this process came this far: its letters are the newest
        earlier = self._decoded(total) if snapshot_id == self.snapshot_id else None
        self._letters = earlier if earlier is not None else bytearray([_PENDING]) * total
        self.snapshot_id = snapshot_id
        self._begun = True

    @property
    def begun(self) -> bool:
        return self._begun

    def earlier(self, index: int) -> KeyResult | None:
        """What the key at ``index`` came to before; None when it was not done."""
        return _RESULTS.get(self._letters[index])

    def record(self, index: int, result: KeyResult) -> None:
        self._letters[index] = _LETTERS[result]

    def encoded(self) -> str:
        return base64.b64encode(zlib.compress(bytes(self._letters), 9)).decode("ascii")

    def _decoded(self, total: int) -> bytearray | None:
        """The carried letters, or None when they are not exactly ``total`` known letters.
        The status can be written by others than the operator: anything else, including a
        text that inflates beyond ``total`` letters, is ignored."""
        try:
            inflater = zlib.decompressobj()
            letters = inflater.decompress(base64.b64decode(self.carried, validate=True), total + 1)
        except (binascii.Error, ValueError, zlib.error):
            return None
        if len(letters) != total or not inflater.eof:
            return None
        if not set(letters) <= {_PENDING, *_RESULTS}:
            return None
        return bytearray(letters)
