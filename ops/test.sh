#!/usr/bin/env bash
# Set up everything the tests need on a fresh Debian machine, then run the checks and tests.
# Installs: the package (non-editable) with its dev extras, sipp, and a Redis server if none
# answers on 127.0.0.1:6379. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

apt_install() {
  if [ -z "${_APT_UPDATED:-}" ]; then apt-get update -qq; _APT_UPDATED=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

if ! redis-cli -h 127.0.0.1 -p 6379 ping 2>/dev/null | grep -q PONG; then
  command -v redis-server >/dev/null || apt_install redis-server redis-tools
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --logfile /tmp/sessiond-test-redis.log
  for _ in $(seq 50); do redis-cli -p 6379 ping 2>/dev/null | grep -q PONG && break; sleep 0.1; done
fi
command -v redis-server >/dev/null || apt_install redis-server redis-tools  # tests/chaos runs its own
command -v sipp >/dev/null || apt_install sip-tester
command -v baresip >/dev/null || apt_install baresip-core   # softphone for media interop tests
command -v linphonec >/dev/null || apt_install linphone-cli   # tests/net: the second make of phone
command -v unshare >/dev/null && command -v ip >/dev/null || apt_install util-linux iproute2
command -v nft >/dev/null || apt_install nftables   # tests/net: the NATs of the multi-host bed
command -v dumpcap >/dev/null || apt_install tshark   # tests/net: RTP reaching the phone behind NAT

# exact versions from ops/constraints.txt: a new upstream release cannot turn CI red by itself
python3 -m pip install -q --disable-pip-version-check -c ops/constraints.txt ".[dev,codecs]" atheris

# The installed (non-editable) package must find its bundled tables (default, gateway) and scripts.
( cd /tmp && sessiond table check $(python3 -c \
    'from sessiond.core.resources import bundled_table_paths; print(*bundled_table_paths())') )
( cd /tmp && python3 -c 'from sessiond.core.resources import lua_dir; \
    assert (lua_dir() / "transition.lua").is_file(), lua_dir()' )

sessiond table check state_tables/*.yaml
ruff check service tests
ruff format --check service tests
mypy
# coverage-guided fuzzing of the SIP, SDP and RTP parsers, bounded: 20 s per target, in
# parallel (fuzz/run.sh 600 is the 10-minute run; it exits 1 if any target crashed)
FUZZ_WORK=$(mktemp -d) bash fuzz/run.sh 20
python3 -m pytest "$@"
