#!/usr/bin/env bash
# Installs what mediafleet needs to build and test, when it is missing. Safe to run again.
# Debian/Ubuntu only (apt). Rust itself must already be installed (rustup; stable ≥ 1.89).
set -euo pipefail

# libde265-dev and g++: HEIC input (libheif-sys's `embedded-libheif` builds libheif 1.23, C++, with cmake and
# decodes HEVC with Debian's libde265; Debian 12's own libheif is 1.15, older than libheif-rs needs).
# ffmpeg and libvips-tools: the side-by-side benchmarks (`mediafleet bench video|image`) and fixtures.
need_apt=()
for pkg in libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev libavfilter-dev \
           libavdevice-dev libclang-dev pkg-config cmake nasm ffmpeg python3-venv curl \
           libde265-dev g++ libvips-tools; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ "${1:-}" = "--services" ]; then
  command -v psql >/dev/null 2>&1 || need_apt+=(postgresql)
  command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
  # The memcached cache backend: the server, and PHP's Memcached extension for the PHP reader test.
  command -v memcached >/dev/null 2>&1 || need_apt+=(memcached)
  command -v rabbitmq-server >/dev/null 2>&1 || need_apt+=(rabbitmq-server)
  # The upload snippets test runs the PHP example (ext-curl).
  command -v php >/dev/null 2>&1 || need_apt+=(php-cli)
  dpkg -s php-curl >/dev/null 2>&1 || need_apt+=(php-curl)
  dpkg -s php-memcached >/dev/null 2>&1 || need_apt+=(php-memcached)
  # The sandbox watch test traces what a media child opens.
  command -v strace >/dev/null 2>&1 || need_apt+=(strace)
  # The chaos tests: `ip netns` and veth pairs (tests/chaos_partition.rs).
  command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
  # The /ops dashboard test drives headless Chromium through ChromeDriver (tests/ops_dashboard.rs).
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
  command -v chromedriver >/dev/null 2>&1 || need_apt+=(chromium-driver)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
  echo "ensure-deps: installing ${need_apt[*]}" >&2
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need_apt[@]}" >&2
fi

if ! command -v cargo >/dev/null 2>&1; then
  echo "ensure-deps: cargo not found; install Rust stable (https://rustup.rs) and run again" >&2
  exit 1
fi
