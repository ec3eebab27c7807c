# Sourced by the bench scripts: `need COMMAND PACKAGE` installs the Debian
# PACKAGE when COMMAND is missing.
need() {
    command -v "$1" >/dev/null 2>&1 && return
    echo "installing $2 ..." >&2
    export DEBIAN_FRONTEND=noninteractive
    (apt-get update -qq && apt-get install -y -qq "$2") >/dev/null
}

# `need_package PACKAGE` installs the Debian PACKAGE unless it is installed
# (for packages that bring no command of their own).
need_package() {
    dpkg -s "$1" >/dev/null 2>&1 && return
    echo "installing $1 ..." >&2
    export DEBIAN_FRONTEND=noninteractive
    (apt-get update -qq && apt-get install -y -qq "$1") >/dev/null
}
