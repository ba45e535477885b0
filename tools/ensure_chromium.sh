#!/bin/sh
# The docs layout test (tests/test_docs_layout.py) measures the built site in headless Chromium: install Debian's
# chromium package when no Chromium is on the PATH (about 1-2 minutes, once per machine).
if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing Debian's chromium for tests/test_docs_layout.py"
$SUDO apt-get install -y -q chromium >/dev/null 2>&1 || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO apt-get install -y -q chromium >/dev/null; }
