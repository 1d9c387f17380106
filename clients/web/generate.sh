#!/usr/bin/env bash
# Regenerate src/gen from ../../protos (the registry's contracts) and proto/ (google.rpc status
# details, vendored from googleapis-common-protos so error details decode in the browser).
set -euo pipefail
cd "$(dirname "$0")"
BUF="${BUF:-../../.venv/bin/buf}"
command -v "$BUF" >/dev/null || BUF=buf
rm -rf src/gen
"$BUF" generate ../../protos --template buf.gen.yaml
"$BUF" generate proto --template buf.gen.yaml
echo "generated $(find src/gen -name '*.ts' | wc -l) TypeScript files into clients/web/src/gen"
