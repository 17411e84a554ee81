#!/usr/bin/env bash
# Refresh ops/constraints.txt: install the newest releases the registry serves into a fresh venv,
# then freeze them. Commit the result on its own (a commit that only moves pins) so CI checks it.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install -q --disable-pip-version-check ".[dev,codecs]" atheris
{
  echo "# Exact versions the tests, linters and fuzzer run with (ops/test.sh and ops/Dockerfile install"
  echo "# through this file). Refresh with 'bash ops/pin.sh' and commit the result on its own, so CI runs it."
  "$venv/bin/pip" freeze --exclude sessiond --exclude pip --exclude setuptools
} > ops/constraints.txt
echo "ops/constraints.txt: $(grep -vc '^#' ops/constraints.txt) pins"
