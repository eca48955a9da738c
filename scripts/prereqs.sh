# Sourced by the other scripts: installs what a bare Debian machine lacks for building rota
# (libclang for RocksDB's bindings, protoc for prost, cargo-nextest for the test run, Chromium
# and chromedriver for the dashboard's browser test), and
# points cargo at a target directory outside the clone so later runs reuse the build.

# Installs the Debian packages named (those not installed yet).
ensure_packages() {
  local missing=()
  if command -v dpkg >/dev/null 2>&1; then
    for pkg in "$@"; do
      dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
    done
  else
    echo "==> not a Debian machine: make sure these are installed: $*" >&2
  fi
  if [ ${#missing[@]} -gt 0 ]; then
    echo "==> installing ${missing[*]}"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
}

BUILD_PACKAGES=(libclang-dev protobuf-compiler)

ensure_build_prereqs() {
  ensure_packages "${BUILD_PACKAGES[@]}"
}

ensure_prereqs() {
  # The dashboard's browser test drives Debian's headless Chromium through chromedriver.
  ensure_packages "${BUILD_PACKAGES[@]}" chromium chromium-driver
  if ! cargo nextest --version >/dev/null 2>&1; then
    echo "==> installing cargo-nextest"
    cargo install --locked cargo-nextest
  fi
}

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/rota/target}"
# Two cores: keep the build from starving the machine.
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-2}"
# A RUSTFLAGS variable replaces .cargo/config.toml's rustflags; keep tokio_unstable in it
# so simulations still replay by seed (see docs/simulations.md).
if [ -n "${RUSTFLAGS:-}" ] && [[ "$RUSTFLAGS" != *tokio_unstable* ]]; then
  export RUSTFLAGS="$RUSTFLAGS --cfg tokio_unstable"
fi
