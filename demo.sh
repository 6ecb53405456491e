#!/usr/bin/env bash
# Builds the host and every plugin, gathers the plugin libraries in target/release/plugins
# (the folder `agency` looks in beside its binary), and runs the demo space from
# agency.toml on the local transport. Extra arguments go to `agency run`.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --workspace --exclude agency-tests --exclude agency-test-agents
mkdir -p target/release/plugins
cp target/release/libagency_transport_*.so target/release/libagency_plugin_*.so target/release/plugins/
exec target/release/agency run --plugins-dir target/release/plugins --config agency.toml "$@"
