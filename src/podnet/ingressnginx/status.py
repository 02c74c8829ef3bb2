"""What the ingress controller has loaded, where the live `trace` can read it.

After every sync the controller writes `status.json` in its runtime directory (atomically):
the cluster generation its nginx serves, and, when nginx refused the configuration of a later
state, that generation and nginx's error (the previous configuration stays loaded). ingress-nginx
reports the same through its metrics and events (`nginx_ingress_controller_config_last_reload_successful`).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

STATUS_FILE = "status.json"


@dataclass(frozen=True)
class ControllerStatus:
    generation: int | None             # the cluster state nginx serves (None: nothing loaded yet)
    refused_generation: int | None = None
    refused_error: str | None = None   # nginx -t's words on the refused configuration

    def write(self, directory: Path) -> None:
        partial = directory / (STATUS_FILE + ".tmp")
        partial.write_text(json.dumps(asdict(self)))
        os.replace(partial, directory / STATUS_FILE)

    @classmethod
    def read(cls, directory: Path) -> ControllerStatus | None:
        try:
            data = json.loads((directory / STATUS_FILE).read_text())
        except (OSError, ValueError):
            return None
        return cls(data.get("generation"), data.get("refused_generation"), data.get("refused_error"))
