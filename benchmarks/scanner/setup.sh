#!/usr/bin/env bash
# Installs the anchor scanners (ModelScan, picklescan, fickling, modelaudit) into their own venv,
# benchmarks/.venv-anchors, so that their dependencies never touch Bastion's venv.
#
# Versions are pinned so the comparison is reproducible; change them here (and rerun) to
# compare against newer releases. torch is installed first from the pinned CPU build so that no
# anchor's extra can pull a CUDA build.
set -u
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/../.venv-anchors"
python="${PYTHON:-python3.11}"
command -v "$python" >/dev/null || python=python3

MODELSCAN=0.8.8
PICKLESCAN=1.0.5
FICKLING=0.1.12
MODELAUDIT=0.2.54
TORCH=2.13.0
LZ4=4.4.5

mkdir -p "$here/out"; log="$here/out/setup.log"
: >"$log"
say() { echo "$*" | tee -a "$log"; }

if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv" || { say "FAILED: could not create $venv"; exit 1; }
fi
pip=("$venv/bin/python" -m pip install --disable-pip-version-check -q)

# torch: CPU build only (modelaudit's pytorch extra wants it). Prefer the local CPU wheel; the
# "+cpu" local version also outranks PyPI's CUDA build of the same version, so pip picks it.
wheel="$(ls /opt/wheels/torch-"$TORCH"+cpu-*.whl 2>/dev/null | head -1)"
"${pip[@]}" "${wheel:-torch==$TORCH}" 2>>"$log" || say "FAILED: torch==$TORCH"
"$venv/bin/python" - <<'PY' | tee -a "$log"
import warnings; warnings.simplefilter("ignore")
import torch
assert not torch.version.cuda, f"CUDA torch installed: {torch.version.cuda}"
print("torch", torch.__version__, "(cpu)")
PY

install() {  # install <label> <requirement...>: one anchor at a time, so one failure is isolated
  local label="$1"; shift
  if "${pip[@]}" "$@" "torch==$TORCH" 2>>"$log"; then
    say "installed: $label ($*)"
  else
    say "FAILED: $label ($*) — see $log"
  fi
}

install modelscan "modelscan[h5py]==$MODELSCAN"
install picklescan "picklescan==$PICKLESCAN"
install fickling "fickling==$FICKLING"
# modelaudit: the extras for the formats in the corpus; [all] would add TensorFlow, XGBoost,
# MLflow and tflite, which the corpus does not exercise.
install modelaudit "modelaudit[h5,joblib,onnx,pytorch,safetensors]==$MODELAUDIT"
# lz4: an optional dependency ModelAudit asks for to open LZ4-compressed joblib files (no extra
# of its own pulls it); installed so that it gets a fair try on the joblib-lz4 files.
install lz4 "lz4==$LZ4"

say "--- versions in $venv"
"$venv/bin/python" -m pip list --disable-pip-version-check 2>/dev/null \
  | grep -iE '^(modelscan|picklescan|fickling|modelaudit|modelaudit-picklescan|torch|numpy|h5py|onnx|safetensors|scikit-learn|joblib|lz4) ' \
  | tee -a "$log"
for tool in modelscan picklescan fickling modelaudit; do
  [ -x "$venv/bin/$tool" ] && say "entry point ok: $tool" || say "MISSING entry point: $tool"
done
