// Package plugins will hold the handler registry: a content-addressed module
// store, manifests, validation before activation, history and rollback, and a
// watched plugin directory for hot-loading. It imports host, never api.
//
// Not written yet: see issue 6 ("wasmtask serve").
package plugins
