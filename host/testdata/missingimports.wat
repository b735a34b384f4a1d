;; missingimports: imports three functions this host does not provide
;; (env.now, env.random, wasmtask_v1.fetch) and one it does; the host names
;; all three at once.
;; Build: wat2wasm missingimports.wat -o missingimports.wasm (make wasm)
(module
  (import "env" "now" (func (result i64)))
  (import "wasmtask_v1" "input_len" (func (result i32)))
  (import "env" "random" (func (result i32)))
  (import "wasmtask_v1" "fetch" (func (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "wasmtask_handle") (result i32) (i32.const 0)))
