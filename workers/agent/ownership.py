"""Which workload namespaces the agent created: a small ledger file in its state dir.

A namespace's name is the user's (prefix + port.netns), so no naming rule can tell ours
from a CNI caller's; the ledger can. The agent may delete a namespace only if it is in
the ledger. Names are recorded *before* creation (a crash in between leaves a name for
a namespace that does not exist, which is harmless and pruned on the next full
observation) and dropped after deletion. The file is rewritten atomically (temp file,
rename) once per sync, not once per namespace.

No fsync: what the ledger records lives in /run/netns, a tmpfs a power loss empties
with it, so after a crash of the machine there is nothing left for it to vouch for.
A crash of the agent alone loses nothing written: the page cache outlives the process,
and the rename makes the new file whole or absent. An fsync cost 5-25 ms of every
one-port change that creates or deletes a namespace (the journal commit), for nothing.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

LEDGER = "owned-netns.json"


class NetnsLedger:
    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self.dir = Path(state_dir)
        self.path = self.dir / LEDGER
        self._names: set[str] = set()
        if self.path.exists():
            data = json.loads(self.path.read_text())
            self._names = {str(n) for n in data.get("netns", [])}

    @property
    def names(self) -> frozenset[str]:
        return frozenset(self._names)

    def add(self, names: Iterable[str]) -> None:
        new = set(names) - self._names
        if new:
            self._names |= new
            self._save()

    def discard(self, names: Iterable[str]) -> None:
        gone = set(names) & self._names
        if gone:
            self._names -= gone
            self._save()

    def _save(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        body = json.dumps({"netns": sorted(self._names)}, indent=1)
        fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".owned-netns.")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(body)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
