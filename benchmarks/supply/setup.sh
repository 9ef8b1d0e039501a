#!/usr/bin/env bash
# Installs the comparison tools (pip-audit, GuardDog) into their own venv,
# benchmarks/.venv-supply, so that their dependencies never touch Bastion's venv.
# Versions are pinned so the comparison is reproducible; change them here and rerun.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/../.venv-supply"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3

PIP_AUDIT=2.10.1
GUARDDOG=3.2.0

mkdir -p "$here/out"; log="$here/out/setup.log"
: >"$log"
say() { echo "$*" | tee -a "$log"; }

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv" || { say "FAILED: could not create $venv"; exit 1; }
fi
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)
for spec in "pip-audit==$PIP_AUDIT" "guarddog==$GUARDDOG"; do
  if "${pip[@]}" "$spec" 2>>"$log"; then say "installed: $spec"; else say "FAILED: $spec (see $log)"; fi
done
for tool in pip-audit guarddog; do
  [ -x "$venv/bin/$tool" ] && say "entry point ok: $tool" || say "MISSING entry point: $tool"
done
