"""Each key's result in one restore so far, carried from one attempt to the next.

A restore interrupted by a temporary error, or by a restart, is attempted again. A key
the earlier attempt restored or recovered is then active in the vault, which on its own
reads as a conflict: the key would be reported ``Skipped``, or ``Failed`` with
``onConflict: Fail``. So each attempt records what every key came to, and the next one
reports those keys as they were done and works only on the rest.

The journal rides in the object's status (``presentation.keyrestore_status`` writes it
and reads it back into a ``KeyRestoreStatusView``), and the process keeps its own newest
copy beside the object (``CarriedJournal``) for when a status write fails. Its size
matters: one letter per key, in the
order of the restore's list of keys, zlib-compressed and base64-encoded. A restore of
10,000 keys that came out alike takes a few dozen bytes; results mixed at random, under
half a byte per key (40 KB for 100,000 keys).
"""

from __future__ import annotations

import base64
import binascii
import zlib
from dataclasses import dataclass, field

from kvbackup.services.outcomes import ItemResult

_PENDING = ord(".")
_LETTERS = {
    ItemResult.RESTORED: ord("R"),
    ItemResult.RECOVERED: ord("V"),
    ItemResult.SKIPPED: ord("S"),
    ItemResult.FAILED: ord("F"),
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

    def earlier(self, index: int) -> ItemResult | None:
        """What the key at ``index`` came to before; None when it was not done."""
        return _RESULTS.get(self._letters[index])

    def record(self, index: int, result: ItemResult) -> None:
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


@dataclass(frozen=True)
class KeyRestoreStatusView:
    """What the operator reads back of a KeyRestore's status, each field checked as
    ``presentation.keyrestore_status.read_keyrestore_status`` reads it: None or empty where
    the status lacks the field or holds anything else, since a status can be edited."""

    observed_generation: int | None = None
    #: The generation of the attempt that started and did not finish, if any.
    attempt_generation: int | None = None
    #: The snapshot that attempt's journal is of; empty unless a snapshot id in full.
    journal_snapshot_id: str = ""
    #: The journal as that attempt left it, encoded (``activeRun.itemResults``).
    item_results: str = ""

    def finished(self, generation: int) -> bool:
        """Whether this generation ended already (restored, or failed for good): a restart
        or another replica must not redo it. Only a final outcome sets
        ``observedGeneration``."""
        return self.observed_generation == generation

    def resumes(self, generation: int) -> bool:
        """Whether an earlier attempt at this generation started and did not finish."""
        return self.attempt_generation == generation

    def journal(self, generation: int) -> RestoreJournal:
        """What each key came to in the interrupted attempt at this generation, if any."""
        if not self.resumes(generation) or not self.journal_snapshot_id:
            return RestoreJournal()
        return RestoreJournal(snapshot_id=self.journal_snapshot_id, carried=self.item_results)


@dataclass(frozen=True)
class CarriedJournal:
    """The per-key results of one generation's restore as this process knows them: newer
    than the status's when status writes failed (the API server was away), and kept for
    the next attempt, so that it does not send the vault those keys again."""

    generation: int
    journal: RestoreJournal

    @classmethod
    def of(
        cls, known: CarriedJournal | None, generation: int, status: KeyRestoreStatusView
    ) -> CarriedJournal:
        """The journal this process kept for ``generation``, else the one status carries."""
        if known is not None and known.generation == generation:
            return known
        return cls(generation, status.journal(generation))
