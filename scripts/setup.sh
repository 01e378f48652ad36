#!/usr/bin/env bash
# One idempotent set-up for a fresh Debian machine (run as root, or with sudo available):
# Debian packages, .venv in the repo root, torch (CPU build) and the project with pinned deps.
# A second run checks stamps and returns in about a second.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

APT_PACKAGES=(tesseract-ocr tesseract-ocr-osd tesseract-ocr-kor tesseract-ocr-tha
  tesseract-ocr-chi-sim tesseract-ocr-chi-tra tesseract-ocr-jpn tesseract-ocr-fra
  tesseract-ocr-rus tesseract-ocr-ell tesseract-ocr-ara tesseract-ocr-heb tesseract-ocr-hin
  chromium chromium-driver)  # the last two drive the web page's browser test

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "setup: installing Debian packages: ${missing[*]}" >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
VPY="$ROOT/.venv/bin/python"

# Reinstall only when the dependency spec changed (stamp = hash of pyproject + constraints).
STAMP=".venv/.avgeo-setup-stamp"
want="$(cat pyproject.toml requirements/constraints.txt scripts/setup.sh | sha256sum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
  export PIP_DISABLE_PIP_VERSION_CHECK=1
  # torch first and pinned: the CPU wheel lies on local disk; an unpinned torch pulls CUDA (GBs).
  "$VPY" -m pip install -q torch==2.13.0 2> >(grep -v "^WARNING: Location" >&2)
  "$VPY" -m pip install -q -c requirements/constraints.txt -e ".[dev]" 2> >(grep -v "^WARNING: Location" >&2)
  # geoclip's wheel ships the MP-16 GPS gallery and the location encoder we use; its
  # declared torchvision dependency does not import beside the local torch build, and we
  # never touch its image encoder, so it is installed without dependencies.
  "$VPY" -m pip install -q --no-deps -c requirements/constraints.txt geoclip 2> >(grep -v "^WARNING: Location" >&2)
  # rapidocr-onnxruntime is used only for the PP-OCRv4 ONNX models inside its wheel (we run
  # them on onnxruntime ourselves); its OpenCV dependency would cost ~60 MB for nothing.
  "$VPY" -m pip install -q --no-deps -c requirements/constraints.txt rapidocr-onnxruntime 2> >(grep -v "^WARNING: Location" >&2)
  echo "$want" > "$STAMP"
fi
