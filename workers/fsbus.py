"""kombu's filesystem transport, with messages written and claimed atomically, in one folder.

The stock transport creates the message file under its final name and then writes it,
while a reader may already move and read it: an agent then reads an empty message and
its worker dies (seen under load in the embedded sandbox). Here the payload goes to a
temporary name that readers skip and is renamed into place, which is atomic.

A reader claims a message by renaming it into the bus's own `processed/` folder (the
stock transport moves it to the system temp dir, a copy when that is another file system,
so two readers could both get it). Exchange tables live in the bus's `control/` folder
(the stock default is `./control`, in whatever directory the process was started from):
everything the bus writes stays under its one directory.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.transport.virtual import Empty
from kombu.utils.encoding import bytes_to_str, str_to_bytes
from kombu.utils.json import dumps, loads


def folders(root: Path) -> dict[str, str]:
    """The transport options that keep every file of the bus under `root` (created here)."""
    paths = {
        "data_folder_in": root,
        "data_folder_out": root,
        "processed_folder": root / "processed",
        "control_folder": root / "control",
    }
    for path in paths.values():
        path.mkdir(parents=True, exist_ok=True)
    return {key: str(path) for key, path in paths.items()}


class Channel(filesystem.Channel):
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        partial = final + ".partial"  # does not end in ".<queue>.msg": readers skip it
        try:
            with open(partial, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc

    def _get(self, queue: Any) -> Any:  # type: ignore[override]
        """The oldest message of `queue`, claimed by a rename that only one reader wins."""
        wanted = f"{queue}.msg"
        for name in sorted(os.listdir(self.data_folder_in)):
            if name.partition(".")[2] != wanted:
                continue
            claimed = os.path.join(self.processed_folder, name)
            try:
                os.rename(os.path.join(self.data_folder_in, name), claimed)
            except FileNotFoundError:  # another reader took it first
                continue
            try:
                with open(claimed, "rb") as f:
                    payload = f.read()
                os.remove(claimed)
            except OSError as exc:
                raise ChannelError(f"Cannot read file {claimed!r} from queue.") from exc
            return loads(bytes_to_str(payload))
        raise Empty()


class Transport(filesystem.Transport):
    Channel = Channel


TRANSPORT_ALIASES.setdefault("vpcdfs", "workers.fsbus:Transport")
