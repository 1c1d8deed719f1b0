#!/usr/bin/env bash
# Host settings that limit how many connections ringcast (and loadgen) can hold: prints the
# current and the recommended value of each; with --apply (as root) sets the ones below the
# recommendation now and keeps them across reboots (/etc/sysctl.d, /etc/security/limits.d).
#
#   scripts/tune-host.sh            # print only, changes nothing
#   sudo scripts/tune-host.sh --apply
#
# What and why:
#   net.core.somaxconn           accept queue cap; ringcast asks for --backlog 4096 per core and
#                                the kernel silently cuts it to this
#   net.ipv4.ip_local_port_range source ports for outgoing connections: one loadgen host opens
#                                one port per client connection (~28k by default)
#   nofile                       open files per process (one per connection): the hard limit
#                                for login sessions; ringcast raises its soft limit to the hard
#                                one at start; under systemd LimitNOFILE= sets it instead
#                                (scripts/ringcast.service)
#   net.ipv4.tcp_wmem            per-socket send buffer (min default max): the default stays
#                                16 KiB (memory per idle connection); the max is raised so a
#                                reader far away can autotune to its bandwidth-delay product
#
# A value already above the recommendation is left alone. TUNE_HOST_ETC (default /etc) moves
# the persisted files, for trying --apply in a scratch directory.
set -euo pipefail

readonly SOMAXCONN=4096
readonly PORT_RANGE="1024 65535"
readonly NOFILE=1048576
readonly TCP_WMEM="4096 16384 16777216"
etc_dir=${TUNE_HOST_ETC:-/etc}
readonly SYSCTL_FILE="$etc_dir/sysctl.d/90-ringcast.conf"
readonly LIMITS_FILE="$etc_dir/security/limits.d/90-ringcast.conf"

usage() {
  sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'
}

apply=false
case "${1:-}" in
  "") ;;
  --apply) apply=true ;;
  -h | --help) usage; exit 0 ;;
  *) echo "tune-host.sh: unknown argument '$1' (use --apply or --help)" >&2; exit 2 ;;
esac
if $apply && [ "$(id -u)" -ne 0 ]; then
  echo "tune-host.sh: --apply changes kernel settings and /etc: run it as root (sudo $0 --apply);" \
    "without --apply it only prints" >&2
  exit 1
fi

# The value of sysctl $1 with tabs squeezed to single spaces, or "unavailable".
current() {
  local value
  value=$(sysctl -n "$1" 2>/dev/null) || { echo unavailable; return; }
  tr -s '\t ' ' ' <<<"$value"
}

# True when every field of $1 is >= the same field of $2 (port range: low <= and high >=).
good_enough() {
  local name=$1 have=$2 want=$3
  [ "$have" = unavailable ] && return 1
  read -r -a h <<<"$have"
  read -r -a w <<<"$want"
  if [ "$name" = net.ipv4.ip_local_port_range ]; then
    [ "${h[0]}" -le "${w[0]}" ] && [ "${h[1]}" -ge "${w[1]}" ]
    return
  fi
  local i
  for i in "${!w[@]}"; do
    [ "${h[$i]:-0}" -ge "${w[$i]}" ] || return 1
  done
}

changes=()
report() {
  local name=$1 have=$2 want=$3 verdict=ok
  if ! good_enough "$name" "$have" "$want"; then
    verdict="below the recommendation"
    changes+=("$name")
  fi
  printf '%-29s current: %-24s recommended: %-24s %s\n' "$name" "$have" "$want" "$verdict"
}

# fs.nr_open: a hard nofile above it cannot be set at all.
declare -A want=(
  [net.core.somaxconn]=$SOMAXCONN
  [net.ipv4.ip_local_port_range]=$PORT_RANGE
  [net.ipv4.tcp_wmem]=$TCP_WMEM
  [fs.nr_open]=$NOFILE
)
sysctls=(net.core.somaxconn net.ipv4.ip_local_port_range net.ipv4.tcp_wmem fs.nr_open)
for name in "${sysctls[@]}"; do
  report "$name" "$(current "$name")" "${want[$name]}"
done
report nofile "$(ulimit -Hn)" "$NOFILE"

if ! $apply; then
  if [ ${#changes[@]} -gt 0 ]; then
    echo "run 'sudo $0 --apply' to set: ${changes[*]}"
  fi
  exit 0
fi

mkdir -p "$(dirname "$SYSCTL_FILE")" "$(dirname "$LIMITS_FILE")"
failed=0
persisted=()
for name in "${changes[@]}"; do
  [ "$name" = nofile ] && continue
  if sysctl -q -w "$name=${want[$name]}"; then
    echo "set $name = ${want[$name]}"
    persisted+=("$name = ${want[$name]}")
  else
    echo "tune-host.sh: could not set $name (read-only /proc/sys in a container?)" >&2
    failed=1
  fi
done
if [ ${#persisted[@]} -gt 0 ]; then
  printf '# Written by ringcast scripts/tune-host.sh --apply.\n' >"$SYSCTL_FILE"
  printf '%s\n' "${persisted[@]}" >>"$SYSCTL_FILE"
  echo "kept in $SYSCTL_FILE"
fi
if [[ " ${changes[*]} " == *" nofile "* ]]; then
  printf '# Written by ringcast scripts/tune-host.sh --apply.\n* soft nofile %s\n* hard nofile %s\n' \
    "$NOFILE" "$NOFILE" >"$LIMITS_FILE"
  echo "nofile $NOFILE for new login sessions: $LIMITS_FILE (systemd services: LimitNOFILE=)"
fi
exit "$failed"
