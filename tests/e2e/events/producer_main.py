"""A producing service for the events e2e tests, run as its own process:
`python producer_main.py` with MODELREG_DATABASE_URL, MODELREG_LISTEN, MODELREG_PEERS__EVENTS.
It serves `Emit` (tests/service/events/kit.py) and runs the runtime's outbox relay."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from modelreg_common.logs import configure_logging
from modelreg_common.server import RegistryServer
from modelreg_common.settings import Settings
from service.events.kit import PRODUCER_SPEC


async def main() -> None:
    settings = Settings()
    configure_logging(settings)
    assert settings.database_url is not None
    dsn = settings.database_url.get_secret_value()
    await RegistryServer(settings, [PRODUCER_SPEC], dsn).serve_until_signal()


if __name__ == "__main__":
    asyncio.run(main())
