#!/bin/sh
# edge-agent-firstboot: give this box its identity. Idempotent: a second run changes nothing
# unless asked (--name, --rotate-token).
#   - /var/lib/edge-agent/device-id: stable id, a hash of /etc/machine-id (the same one the service
#     derives when the file is missing: edge_agent/appliance/identity.py), random without a machine id.
#   - mDNS instance name: an EDGE_AGENT_* override in /etc/edge-agent/edge-agent.env, which the unit
#     reads; /etc/edge-agent/config.toml (a conffile) is never edited.
#   - API token: /etc/edge-agent/token (server.token_file), created by the package's postinst;
#     --token/--rotate-token here use the same file (as `edge-agent token rotate` does).
set -eu

STATE_DIR=${EA_FIRSTBOOT_STATE_DIR:-/var/lib/edge-agent}
ENV_FILE=${EA_FIRSTBOOT_ENV_FILE:-/etc/edge-agent/edge-agent.env}
DEVICE_ID_FILE=$STATE_DIR/device-id
NAME_KEY=EDGE_AGENT_MDNS__INSTANCE_NAME
TOKEN_FILE=${EA_FIRSTBOOT_TOKEN_FILE:-/etc/edge-agent/token}

usage() {
    cat <<EOF
Usage: edge-agent-firstboot [--name NAME] [--token] [--rotate-token] [--no-restart]

  --name NAME      set the mDNS instance name (default on first run: edge-agent-<device id prefix>)
  --token          make sure an API token is set; prints it when it is generated
  --rotate-token   generate a new API token even if one is set; prints it
  --no-restart     do not restart edge-agent.service after a change
EOF
}

die() {
    echo "edge-agent-firstboot: $*" >&2
    exit 2
}

# get_env KEY: the value of KEY in the env file, or nothing.
get_env() {
    [ -f "$ENV_FILE" ] || return 0
    sed -n "s/^$1=\"\(.*\)\"\$/\1/p" "$ENV_FILE" | tail -n 1
}

# set_env KEY VALUE: replace or add KEY, atomically, root-only (the file may hold the token).
set_env() {
    dir=$(dirname "$ENV_FILE")
    mkdir -p "$dir"
    tmp=$(mktemp "$dir/.edge-agent.env.XXXXXX")
    if [ -f "$ENV_FILE" ]; then
        grep -v "^$1=" "$ENV_FILE" >"$tmp" || true
    else
        echo "# Written by edge-agent-firstboot; EDGE_AGENT_SECTION__KEY overrides config.toml." >"$tmp"
    fi
    printf '%s="%s"\n' "$1" "$2" >>"$tmp"
    chmod 0600 "$tmp"
    mv -f "$tmp" "$ENV_FILE"
    CHANGED=1
}

check_name() {
    case "$1" in
        "") die "--name must not be empty" ;;
        *[\"\\\$\`]*) die "--name must not contain \", \\, \$ or a backquote: $1" ;;
    esac
    if printf '%s' "$1" | LC_ALL=C grep -q '[[:cntrl:]]'; then
        die "--name must not contain control characters"
    fi
    # DNS-SD instance names are one DNS label: at most 63 bytes.
    if [ "$(printf '%s' "$1" | wc -c)" -gt 63 ]; then
        die "--name is longer than 63 bytes: $1"
    fi
}

new_device_id() {
    for file in /etc/machine-id /var/lib/dbus/machine-id; do
        machine=$(head -n 1 "$file" 2>/dev/null | tr -d '[:space:]') || true
        if [ -n "$machine" ]; then
            printf 'edge-agent:%s' "$machine" | sha256sum | cut -c1-16
            return 0
        fi
    done
    od -An -N8 -tx1 /dev/urandom | tr -d ' \n'
    echo
}

ensure_device_id() {
    # Keep any id already there (ours or one the service wrote): it must never change.
    if [ -s "$DEVICE_ID_FILE" ]; then
        return 0
    fi
    mkdir -p "$STATE_DIR"
    tmp=$(mktemp "$STATE_DIR/.device-id.XXXXXX")
    new_device_id >"$tmp"
    chmod 0644 "$tmp"
    mv -f "$tmp" "$DEVICE_ID_FILE"
    CHANGED=1
}

new_token() {
    # 32 random bytes, URL-safe base64 without padding (43 characters).
    head -c 32 /dev/urandom | base64 -w0 | tr '+/' '-_' | tr -d '='
}

# write_token TOKEN: atomically, readable by the service user only (mode 0600, owner edge-agent).
write_token() {
    dir=$(dirname "$TOKEN_FILE")
    mkdir -p "$dir"
    tmp=$(mktemp "$dir/.token.XXXXXX")
    printf '%s\n' "$1" >"$tmp"
    chmod 0600 "$tmp"
    if getent passwd edge-agent >/dev/null; then
        chown edge-agent:edge-agent "$tmp"
    fi
    mv -f "$tmp" "$TOKEN_FILE"
    CHANGED=1
}

NAME=
TOKEN=0
ROTATE=0
RESTART=1
CHANGED=0
while [ $# -gt 0 ]; do
    case "$1" in
        --name)
            [ $# -ge 2 ] || die "--name needs a value"
            NAME=$2
            check_name "$NAME"
            shift 2
            ;;
        --name=*)
            NAME=${1#--name=}
            check_name "$NAME"
            shift
            ;;
        --token) TOKEN=1; shift ;;
        --rotate-token) ROTATE=1; shift ;;
        --no-restart) RESTART=0; shift ;;
        -h|--help) usage; exit 0 ;;
        *) usage >&2; die "unknown argument: $1" ;;
    esac
done

[ "$(id -u)" -eq 0 ] || die "must run as root"

ensure_device_id
device_id=$(cat "$DEVICE_ID_FILE")

if [ -n "$NAME" ]; then
    [ "$(get_env "$NAME_KEY")" = "$NAME" ] || set_env "$NAME_KEY" "$NAME"
elif [ -z "$(get_env "$NAME_KEY")" ]; then
    set_env "$NAME_KEY" "edge-agent-$(echo "$device_id" | cut -c1-8)"
fi

if [ "$ROTATE" -eq 1 ] || { [ "$TOKEN" -eq 1 ] && [ ! -s "$TOKEN_FILE" ]; }; then
    token=$(new_token)
    write_token "$token"
    echo "$token"
fi

if [ "$CHANGED" -eq 1 ] && [ "$RESTART" -eq 1 ] && [ -d /run/systemd/system ]; then
    systemctl try-restart edge-agent.service || true
fi
exit 0
