# Sourced by the bench scripts: `need COMMAND PACKAGE` installs the Debian
# PACKAGE when COMMAND is missing.
need() {
    command -v "$1" >/dev/null 2>&1 && return
    echo "installing $2 ..." >&2
    export DEBIAN_FRONTEND=noninteractive
    (apt-get update -qq && apt-get install -y -qq "$2") >/dev/null
}
