#!/usr/bin/env bash
# The main job, end to end on the local stack. Today: brings the stack up,
# migrates, builds every stage and shows the engines healthy. The edge, ingest,
# aggregator and api join here as their issues land (#3, #4, #5), followed by
# the load generator and the summary.
source "$(dirname "$0")/lib.sh"

"$DEPLOY/up.sh"
log "building the workspace (release)"
(cd "$ROOT" && cargo build --release --locked --workspace --bins)
log "stack is up; stop it with deploy/local/down.sh"
