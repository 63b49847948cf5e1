# Sourced by scripts/install_*.sh: install one Debian package with apt-get, as root or through
# sudo, or say why it cannot. Usage: apt_install SAY_PREFIX PACKAGE MANUAL_URL
# (the URL is shown where there is no apt-get). Returns non-zero when it cannot install.

apt_install() {
    local who="$1" package="$2" manual="$3" sudo=""
    if ! command -v apt-get >/dev/null 2>&1; then
        printf '%s: error: no apt-get; install %s by hand: %s\n' "$who" "$package" "$manual" >&2
        return 1
    fi
    if [[ $(id -u) -ne 0 ]]; then
        if command -v sudo >/dev/null 2>&1; then
            sudo="sudo"
        else
            printf '%s: error: need root (or sudo) to apt-get install %s\n' "$who" "$package" >&2
            return 1
        fi
    fi
    printf '%s: installing the Debian package %s\n' "$who" "$package"
    export DEBIAN_FRONTEND=noninteractive
    $sudo apt-get update -qq
    $sudo apt-get install -y -qq "$package" >/dev/null
}
