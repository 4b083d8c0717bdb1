#!/usr/bin/env bash
# Every Rust test, the service tests included: those need RabbitMQ, the local
# cluster or PyPI, so they are #[ignore]d for plain `cargo test` and run here with
# --include-ignored. Benchmarks (test names starting with `bench_`) are left to
# `make bench`. Fails when any test was ignored: under `make test` nothing may skip.
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .local
log=.local/cargo-test.log
"${CARGO:-cargo}" test --workspace --all-targets --locked --no-fail-fast -- --include-ignored --skip bench_ 2>&1 | tee "$log"
if grep -E '^test result: .* [1-9][0-9]* ignored' "$log"; then
  echo "some tests were ignored above; make test runs every test" >&2
  exit 1
fi
