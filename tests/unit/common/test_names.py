from __future__ import annotations

import pytest

from modelreg_common.errors import InvalidArgument
from modelreg_common.names import (
    ModelVersionName,
    RunName,
    parse_model,
    parse_model_version,
    parse_run,
)


def test_parse_valid_names() -> None:
    assert str(parse_model("models/fraud-v2.1")) == "models/fraud-v2.1"
    assert parse_model_version("models/fraud/versions/7") == ModelVersionName("fraud", 7)
    assert parse_model_version("models/fraud/versions/7").parent == parse_model("models/fraud")
    assert parse_run("experiments/churn/runs/r-8f2c") == RunName("churn", "r-8f2c")


@pytest.mark.parametrize(
    "name",
    [
        "",
        "models/",
        "models/-x",
        "models/x/",
        "models/a b",
        "models/x/versions/0",
        "models/x/versions/07",
        "models/x/versions/-1",
        "models/../etc",
        "models/" + "a" * 129,
        "models/x\x00",
    ],
)
def test_malformed_names_are_invalid_argument_on_the_field(name: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        if "versions" in name:
            parse_model_version(name, field="parent")
        else:
            parse_model(name, field="parent")
    assert err.value.violations[0].field == "parent"
