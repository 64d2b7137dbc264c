#!/usr/bin/env bash
# The one entry point of the suite. See ./reproduce.sh --help.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.installed-stamp"
PYTHON_BIN="${PYTHON:-python3}"

usage() {
  cat <<'USAGE'
Usage: ./reproduce.sh [COMMAND] [OPTIONS]

Set-up (always first): creates .venv if it is missing or stale (the stamp is a hash of pyproject.toml and
the Python version), installs this project with its pinned dependencies into it, and writes the stamp only
after a successful install, so a failed install is redone on the next call.

Commands:
  (none)        set-up, then the main job: `sparse-repro reproduce` with the OPTIONS given
                (smoke preset on a CPU, small preset on a GPU; then the report). See
                `./reproduce.sh --help-main` for its options (--preset, --only, --data-dir, ...).
  test [ARGS]   set-up, then the whole test suite (pytest ARGS are passed through)
  setup         set-up only
  env           set-up, then print the environment report (Python, torch, triton, CUDA, GPU, ...)
  --help        this text
  --help-main   the main job's options
USAGE
}

stamp_value() {
  { cat "$ROOT/pyproject.toml"; "$PYTHON_BIN" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1
}

setup() {
  local want
  want="$(stamp_value)"
  if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
    return 0
  fi
  echo "[reproduce] setting up $VENV (takes about 2 minutes the first time)" >&2
  rm -f "$STAMP"
  if [[ ! -x "$VENV/bin/python" ]]; then
    rm -rf "$VENV"
    "$PYTHON_BIN" -m venv "$VENV"
  fi
  if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e "$ROOT[dev]" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); then
    echo "[reproduce] install failed; .venv is left unstamped and will be redone on the next call" >&2
    exit 1
  fi
  echo "$want" > "$STAMP"
  echo "[reproduce] set-up done" >&2
}

cmd="${1:-}"
case "$cmd" in
  -h|--help) usage; exit 0 ;;
esac

setup
export PATH="$VENV/bin:$PATH"
cd "$ROOT"

case "$cmd" in
  test)
    shift
    set +e
    "$VENV/bin/python" -m pytest "$@"
    rc=$?
    set -e
    exit $rc
    ;;
  setup) exit 0 ;;
  env) exec "$VENV/bin/sparse-repro" env ;;
  --help-main) exec "$VENV/bin/sparse-repro" reproduce --help ;;
  *) exec "$VENV/bin/sparse-repro" reproduce "$@" ;;
esac
