#!/usr/bin/env bash
# Fails when the gas figures differ from the committed ones, listing every difference.
#
# forge 1.7's `snapshot --check` reports differences but exits 0, so the comparison is done here:
# both records are regenerated into a temporary directory and compared with the committed files,
# which are left untouched.
#   .gas-snapshot            per-test totals (forge snapshot --isolate)
#   snapshots/GasTest.json   per-call figures taken inside the tests with vm.snapshotGas*
# Refresh both with `make gas` after a deliberate change.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp="$(mktemp -d)"
cp snapshots/GasTest.json "$tmp/GasTest.committed.json"
restore() { cp "$tmp/GasTest.committed.json" snapshots/GasTest.json; rm -rf "$tmp"; }
trap restore EXIT

if ! FORGE_SNAPSHOT_EMIT=true bin/forge snapshot --isolate \
  --match-path test/Gas.t.sol --snap "$tmp/gas-snapshot" >"$tmp/log" 2>&1; then
  cat "$tmp/log" >&2
  echo "error: gas tests failed (a target in test/Gas.t.sol is exceeded?)" >&2
  exit 1
fi
cp snapshots/GasTest.json "$tmp/GasTest.new.json"
# forge can find no tests at all and still exit 0 (forge 1.7.1 does so after a `forge lint` that
# compiled changed files, until the next forced build); an empty record is no check.
if ! grep -q '^GasTest:' "$tmp/gas-snapshot"; then
  cat "$tmp/log" >&2
  echo "error: no gas test ran (stale forge cache? try 'bin/forge build --force')" >&2
  exit 1
fi

status=0
if ! diff -u .gas-snapshot "$tmp/gas-snapshot"; then status=1; fi
if ! diff -u "$tmp/GasTest.committed.json" "$tmp/GasTest.new.json"; then status=1; fi
if [[ $status -ne 0 ]]; then
  echo "error: gas differs from the committed figures (diff above); if intended, run 'make gas' and commit" >&2
  exit 1
fi
echo "gas: all figures match the committed snapshots"
