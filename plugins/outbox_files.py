"""Delivery backend ``outbox_files``: each letter becomes an .eml file in OUTBOX_DIR.

The default, so a fresh install sends nothing anywhere: open the files with a
mail client to see exactly what a target would receive.

Settings: OUTBOX_DIR (default: ``outbox/`` in the instance folder).
"""

import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from app import DeliveryBackend, Letter, PermanentFailure, Receipt, TemporaryFailure, hookimpl, utcnow


class OutboxFilesBackend(DeliveryBackend):
    name = "outbox_files"
    verbose_name = "Files in the outbox folder (nothing is sent)"

    def __init__(self, config: Mapping[str, Any]) -> None:
        super().__init__(config)
        self.folder = Path(config["OUTBOX_DIR"])

    def send(self, letter: Letter) -> Receipt:
        # No supporter data in the file name: only the time and the delivery id.
        filename = f"{utcnow():%Y%m%dT%H%M%S}-{letter.campaign}-{letter.delivery_id}.eml"
        data = letter.as_bytes()
        try:
            # For the owner only, like the files (mkstemp makes them 0600).
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Write then rename, so a reader never sees half a letter.
            fd, tmp = tempfile.mkstemp(dir=self.folder, prefix=".tmp-")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, self.folder / filename)
        except OSError as exc:
            raise TemporaryFailure(f"cannot write to {self.folder}: {exc.strerror}") from exc
        return Receipt(provider_id=filename)

    def check(self) -> str | None:
        """The folder can be made and written to (a file is made and deleted)."""
        try:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.folder):
                pass
        except OSError as exc:
            raise PermanentFailure(f"cannot write to {self.folder} (OUTBOX_DIR): {exc.strerror}") from exc
        return f"{self.folder} is writable (letters are written there as files, not sent)"


@hookimpl
def register_settings(instance_path: str) -> dict[str, Any]:
    return {"OUTBOX_DIR": str(Path(instance_path) / "outbox")}


@hookimpl
def register_delivery_backends() -> list[type[DeliveryBackend]]:
    return [OutboxFilesBackend]
