#!/usr/bin/env bash
# Install what the bt test suite needs and this machine lacks.
# Idempotent: prints nothing and changes nothing when everything is present.
set -euo pipefail

# Debian packages the tests use.
DEB_PACKAGES=(
    python3-libtorrent   # reference client + metainfo oracle (tests/scripts/lt_*.py, /usr/bin/python3)
    # issue 4: interop with other real clients and a tracker (tests/tests/interop*.rs)
    aria2                # aria2c, a second client (tests/src/clients.rs)
    opentracker          # HTTP + UDP tracker, whitelist mode (tests/src/clients.rs)
    transmission-cli     # transmission-create made fixtures; transmission-cli seeds to bt (tests/src/transmission.rs)
    qbittorrent-nox      # qBittorrent driven through its Web API (tests/src/qbittorrent.rs)
    # bt get --serve: HTTP clients reading files while they download (tests/tests/serve.rs)
    curl                 # ranges, HEAD, the index and the playlist
    ffmpeg               # makes a test video, then decodes it over HTTP during the download
)

# Cargo subcommands: "<binary-crate> <subcommand>"
CARGO_TOOLS=(
    "cargo-nextest nextest"
    "cargo-fuzz fuzz"
)

die() { echo "install-test-deps: $*" >&2; exit 1; }

# Run a command as root: directly if we are root, else through sudo.
as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        die "need root to run '$*' (not root and sudo is not available)"
    fi
}

deb_installed() {
    [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" = "install ok installed" ]
}

missing=()
for pkg in "${DEB_PACKAGES[@]}"; do
    deb_installed "$pkg" || missing+=("$pkg")
done

if [ "${#missing[@]}" -gt 0 ]; then
    for pkg in "${missing[@]}"; do
        echo "install-test-deps: installing Debian package $pkg"
    done
    as_root apt-get update -qq >/dev/null
    as_root env DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

for entry in "${CARGO_TOOLS[@]}"; do
    read -r crate sub <<<"$entry"
    if ! cargo "$sub" --version >/dev/null 2>&1; then
        echo "install-test-deps: installing $crate (cargo install --locked)"
        cargo install --locked --quiet "$crate"
    fi
done
