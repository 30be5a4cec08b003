#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
#
# python_env.sh: makes .venv (git-ignored) with the packages the end-to-end
# tests drive inferd with (tests/e2e/requirements.txt: the official openai
# SDK, pytest, requests). Idempotent: a stamp holding the requirements'
# sha256 skips the install when nothing changed.
set -euo pipefail
cd "$(dirname "$0")/.."
req=tests/e2e/requirements.txt
stamp=.venv/.inferd-e2e-requirements
want=$(sha256sum "$req" | cut -d' ' -f1)
[ -x .venv/bin/python ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && exit 0
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r "$req"
echo "$want" > "$stamp"
echo "python_env: .venv ready ($req)"
