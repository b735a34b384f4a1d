// Package plugins is the handler registry: it maps plugin names to module
// versions, stores modules content-addressed, validates a module before it
// becomes active, keeps history for rollback, and hot-loads modules from a
// watched directory. It imports host (to compile and trial modules), never
// api.
//
// # Usage
//
//	reg, err := plugins.Open(ctx, filepath.Join(dataDir, "plugins"), h, plugins.Options{})
//	res, err := reg.Deploy(ctx, "resize", wasm, manifest, "http")
//	err = reg.Watch(ctx, pluginDir, 0)         // NAME.wasm (+ NAME.json) files
//	exec := host.NewExecutor(h, reg.Resolve)   // dispatch.Executor
//
// # Contract
//
//  1. Modules are stored as sha256/<hex>.wasm, written atomically (tmp,
//     fsync, rename, dir fsync) and never modified; reads verify the hash.
//  2. Deploy validates (size, compile, import/export check, memory minimum,
//     trial instantiation) and only then flips the name's pointer in
//     registry.json (written atomically). A rejected module changes
//     nothing; its error is kept as the plugin's LastError.
//  3. Resolve("name") returns the active version at the moment of the call:
//     each attempt resolves once, so a new version never changes code under
//     a running attempt, and queued tasks pick it up at dispatch.
//     Resolve("name@sha256:<hex>") returns that version from the history.
//     A version whose manifest asks for "instances": "reuse" carries a
//     host.Pool of warm instances (instances.go); activating another
//     version of the name (deploy, rollback, a changed manifest) closes the
//     old version's pool, so its idle instances are released at once.
//  4. Rollback re-activates the previous version (or a named one).
//  5. Watch debounces file events and checks that a file is stable before
//     reading it, so a half-written module is never deployed. It reads the
//     folder through an os.Root: a relative symbolic link to a file inside
//     the folder is followed; any link leading outside it (absolute, or up
//     with "..") is refused without reading its target, and so are
//     non-regular files (FIFOs, devices). Errors about a file never quote
//     its content (ParseManifest reports positions, not bytes).
//  6. The last change wins, across restarts: registry.json records what was
//     last loaded from each watched file, and a file that did not change
//     since does not replace a later deploy or rollback. A changed file
//     older than the active version is a conflict: logged, shown as Info's
//     Conflict, and the active version stays (watched.go).
//
// # Errors
//
// *ValidationError{Plugin, Field, Reason} for a rejected deploy, ErrNotFound
// for an unknown plugin or version.
package plugins
