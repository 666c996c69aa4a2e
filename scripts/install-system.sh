#!/usr/bin/env bash
# System packages some tests need, from Debian's repositories (only what is missing):
#   chromium       the dashboard test (tests/dashboard.rs) and the browser example check
#   tesseract-ocr  reads the dashboard screenshot back (OCR) in tests/dashboard.rs
#   gcc, libc6-dev a C compiler for aws-lc-sys (jsonwebtoken's aws-lc-rs backend, the
#                  `jwt-aws-lc` feature ringcast builds with); without one the build fails
# Needs root and apt-get; elsewhere it says what is missing and the tests that need the
# packages skip with a notice (they fail instead when CI is set).
set -uo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v tesseract >/dev/null 2>&1 || missing+=(tesseract-ocr)
command -v cc >/dev/null 2>&1 || missing+=(gcc libc6-dev)
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system packages missing (${missing[*]}): install them with your package manager"
  exit 0
fi
echo "installing ${missing[*]} with apt-get"
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; then
  apt-get update -q >/dev/null 2>&1
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1 ||
    echo "apt-get could not install ${missing[*]}"
fi
