# Sourced by the other .ci scripts: make sure .venv exists with the package and the extras named
# in $SANKOFA_EXTRAS installed, then put it first on PATH. Re-installs only when pyproject.toml
# changed since the last install, so a second run starts at once.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
extras="${SANKOFA_EXTRAS:-test}"
stamp=".venv/.installed-${extras//,/-}"
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  .venv/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -e ".[${extras}]"
  touch "$stamp"
fi
export PATH="$root/.venv/bin:$PATH"
