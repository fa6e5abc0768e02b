#!/usr/bin/env bash
# A contract mock of Twilio's REST API (api.twilio.com, 2010-04-01) from Twilio's own OpenAPI
# description, served by Prism with request validation on: a request that the description does
# not allow is answered with an error status instead of a made-up resource.
#
# Usage: scripts/prism-twilio.sh install     fetch Prism and the description, patch it, and exit
#        scripts/prism-twilio.sh PORT        the same (once), then serve on 127.0.0.1:PORT
#        scripts/prism-twilio.sh installed   exit 0 if the pinned versions are installed, 1 if not
#
# Everything lands in .cache/prism (gitignored, about 95 MB); versions are pinned below.
# The tests only ask `installed` and never install: `.ci/run` installs, or a person does.
set -euo pipefail
cd "$(dirname "$0")/.."

# 5.14.2 is the newest Prism that runs on Node 20 (5.15 and later ask for Node 24).
PRISM_VERSION=5.14.2
# Twilio publishes its OpenAPI descriptions inside this package (twilio-oai/spec/json/).
SPEC_PACKAGE=@twilio-alpha/mcp
SPEC_VERSION=0.7.0
SPEC_PATH=package/twilio-oai/spec/json/twilio_api_v2010.json

DIR=.cache/prism
SPEC="$DIR/twilio_api_v2010.json"
# Bumped when patch_spec changes, so an older install is patched again.
PATCH_VERSION=2
STAMP="$DIR/.installed-$PRISM_VERSION-$SPEC_VERSION-p$PATCH_VERSION"

install() {
    [[ -f "$STAMP" ]] && return 0
    command -v npm >/dev/null || { echo "prism-twilio: npm not found" >&2; return 1; }
    rm -f "$DIR"/.installed-*
    mkdir -p "$DIR"
    printf '{ "private": true, "dependencies": { "@stoplight/prism-cli": "%s" } }\n' "$PRISM_VERSION" >"$DIR/package.json"
    npm install --prefix "$DIR" --no-audit --no-fund --loglevel=error >&2
    # Only the description is needed, not the package's own server and its dependencies:
    # `npm pack` fetches the published tarball (integrity-checked like an install) and we keep one file.
    local tgz
    tgz=$(cd "$DIR" && npm pack "$SPEC_PACKAGE@$SPEC_VERSION" --silent | tail -n1)
    tar -xzf "$DIR/$tgz" -C "$DIR" "$SPEC_PATH"
    cp "$DIR/$SPEC_PATH" "$DIR/twilio_api_v2010.orig.json"
    rm -rf "$DIR/package" "$DIR/$tgz"
    patch_spec "$DIR/twilio_api_v2010.orig.json" "$SPEC"
    touch "$STAMP"
}

# Twilio takes a list field as the same name repeated (StatusCallbackEvent=initiated&
# StatusCallbackEvent=ringing…), but its description declares no form encoding for these arrays,
# and Prism then refuses a repeated name. Declare `style: form, explode: true` for every array
# property of every form-encoded request body: StatusCallbackEvent on Calls (the one list we send),
# and the others (RecordingStatusCallbackEvent, MediaUrl, …) so the mock matches the real API.
patch_spec() {
    node - "$1" "$2" <<'JS'
const fs = require("fs");
const [src, dst] = process.argv.slice(2);
const spec = JSON.parse(fs.readFileSync(src, "utf8"));
let patched = 0;
for (const item of Object.values(spec.paths)) {
  for (const op of Object.values(item)) {
    const media = op?.requestBody?.content?.["application/x-www-form-urlencoded"];
    if (!media?.schema?.properties) continue;
    for (const [name, prop] of Object.entries(media.schema.properties)) {
      if (prop.type !== "array") continue;
      media.encoding ??= {};
      media.encoding[name] = { ...media.encoding[name], style: "form", explode: true };
      patched++;
    }
  }
}
if (patched === 0) throw new Error("no array field found: has the description changed?");
// A list page's `uri`, `first_page_uri`, `next_page_uri` and `previous_page_uri` are relative
// (`/2010-04-01/Accounts/…/Messages.json?PageSize=50&Page=0`), in Twilio's answers and in the
// description's own examples, but are declared `format: uri` (absolute): Prism, which checks
// its answers too, then refuses every list. Drop that format from list pages.
let pages = 0;
for (const item of Object.values(spec.paths)) {
  for (const op of Object.values(item)) {
    const schema = op?.responses?.["200"]?.content?.["application/json"]?.schema;
    const props = schema?.properties;
    if (!props?.first_page_uri) continue;
    for (const name of ["uri", "first_page_uri", "next_page_uri", "previous_page_uri"]) {
      if (props[name]?.format === "uri") { delete props[name].format; pages++; }
    }
  }
}
if (pages === 0) throw new Error("no list page found: has the description changed?");
fs.writeFileSync(dst, JSON.stringify(spec));
console.error(`prism-twilio: form encoding declared for ${patched} list fields; ${pages} page links made relative`);
JS
}

case "${1:-}" in
    install) install ;;
    installed) [[ -f "$STAMP" ]] ;;
    '' | *[!0-9]*) sed -n '6,8p' "$0" >&2; exit 2 ;;
    *)
        install
        # exec: the caller's process (group) is Prism's, so stopping it stops the mock.
        exec "$DIR/node_modules/.bin/prism" mock --host 127.0.0.1 --port "$1" --errors "$SPEC"
        ;;
esac
