"""Print the permission table (modelreg_common.permissions.RULES) as the Markdown table that
docs/roles.md carries between its `roles-table` markers; `--write` updates the file."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from modelreg_common.permissions import RULES, Rule, Scope

DOC = Path(__file__).resolve().parents[1] / "docs" / "roles.md"
BLOCK = re.compile(r"(<!-- roles-table:start -->\n)(.*?)(<!-- roles-table:end -->)", re.S)


def _needs(rule: Rule) -> str:
    if rule.scope is Scope.INTERNAL:
        return "internal (services, admin)"
    if rule.scope is Scope.HANDLER:
        return "authenticated; checked by the handler"
    if rule.scope is Scope.LISTING:
        return "viewer on the registry or any model; rows narrowed"
    text = rule.role.label
    if rule.registry_role is not None:
        text += f" ({rule.registry_role.label} for `registry`)"
    return text


def _on(rule: Rule) -> str:
    if rule.scope is not Scope.RESOURCE:
        return ""
    return f"model in `{rule.field}`" if rule.field else "registry"


def table() -> str:
    lines = ["| RPC | permission | role needed | on |", "|---|---|---|---|"]
    for path, rule in RULES.items():
        service, method = path.strip("/").split("/")
        short = service.removeprefix("modelreg.").replace(".v1.", ".")
        lines.append(f"| `{short}/{method}` | {rule.permission} | {_needs(rule)} | {_on(rule)} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    text = DOC.read_text()
    updated = BLOCK.sub(lambda m: m.group(1) + table() + m.group(3), text)
    if "--write" in sys.argv:
        DOC.write_text(updated)
        return 0
    sys.stdout.write(table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
