;; hugememory: declares a minimum memory of 1025 pages (64 MiB + 64 KiB),
;; above the default limit of 1024 pages.
;; Build: wat2wasm hugememory.wat -o hugememory.wasm (make wasm)
(module
  (memory (export "memory") 1025)
  (func (export "wasmtask_handle") (result i32) (i32.const 0)))
