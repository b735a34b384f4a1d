// Package api will hold the HTTP JSON API of INTERFACE.md (routes under /v1)
// and the Go client the CLI uses. It imports dispatch and plugins.
//
// Not written yet: see issue 6 ("wasmtask serve").
package api
