#!/usr/bin/env bash
# Prints the Debian mirror that carries bookworm's main component, read from this machine's apt
# sources (one-line .list and deb822 .sources files alike): never a hard-coded host. Used by
# the offline image builds (debootstrap). Prints nothing when there is none.
set -euo pipefail
# The mirror carrying bookworm's main component, from the apt sources (one-line .list and
# deb822 .sources files alike): never a hard-coded host.
mirror() {
  local f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list; do
    [ -f "$f" ] || continue
    awk '$1 == "deb" {
           i = 2; if ($i ~ /^\[/) { while ($i !~ /\]$/) i++; i++ }
           if ($(i+1) == "bookworm") { print $i; exit }
         }' "$f"
  done
  for f in /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] || continue
    # One stanza per blank-line-separated paragraph: a deb stanza whose Suites has bookworm.
    awk 'BEGIN { RS = ""; FS = "\n" }
         {
           types = ""; uris = ""; suites = ""; enabled = "yes"
           for (i = 1; i <= NF; i++) {
             line = $i; if (line ~ /^#/) continue
             key = tolower(substr(line, 1, index(line, ":") - 1)); val = substr(line, index(line, ":") + 1)
             gsub(/^[ \t]+|[ \t]+$/, "", val)
             if (key == "types") types = val; else if (key == "uris") uris = val
             else if (key == "suites") suites = val; else if (key == "enabled") enabled = tolower(val)
           }
           if (enabled == "no" || (" " types " ") !~ / deb /) next
           if ((" " suites " ") ~ / bookworm /) { split(uris, u, /[ \t]+/); print u[1]; exit }
         }' "$f"
  done
}
mirror | head -n 1
