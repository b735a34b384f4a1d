// Package ui is the dashboard that `wasmtask serve` serves at /ui/: a small
// static app (one HTML page, one script, one stylesheet) embedded in the
// binary.
//
// Why a static app in plain JavaScript: it needs no build step, no npm
// install and no vendored framework (nothing to keep patched, nothing
// fetched from a CDN), and every byte of data it shows comes through the
// same HTTP API a client uses (/v1/...), with the same bearer token — so the
// dashboard cannot show or do anything the API does not allow, and the API's
// tests cover what it relies on. The files themselves hold no data and are
// served without the token; the page asks for the token once and keeps it in
// the browser's session storage.
//
// Live updates poll the API once a second for the page on screen (no more:
// a task list of 50 rows is one small request).
package ui
