from __future__ import annotations

import pytest

from modelreg_common.auth import Authenticator, hash_token
from modelreg_common.context import Principal
from modelreg_common.errors import Unauthenticated
from modelreg_common.settings import AuthSettings, TokenEntry


def authenticator(mode: str) -> Authenticator:
    return Authenticator.from_settings(
        AuthSettings(
            mode=mode,  # type: ignore[arg-type]
            tokens=[TokenEntry(sha256=hash_token("t0k"), principal="bob", groups=["ml"])],
        )
    )


async def test_known_token_yields_its_principal() -> None:
    principal = await authenticator("token").authenticate("Bearer t0k")
    assert principal == Principal(subject="bob", groups=("ml",), method="token")


@pytest.mark.parametrize("header", [None, "", "Bearer", "Bearer nope", "Token t0k"])
async def test_token_mode_refuses_anything_else(header: str | None) -> None:
    with pytest.raises(Unauthenticated):
        await authenticator("token").authenticate(header)


async def test_local_mode_accepts_no_token_but_still_checks_a_given_one() -> None:
    local = authenticator("local")
    assert (await local.authenticate(None)).subject == "local"
    with pytest.raises(Unauthenticated):
        await local.authenticate("Bearer nope")
