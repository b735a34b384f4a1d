;; loop: an infinite loop that never calls the host; only the runtime can
;; stop it.
;; Build: wat2wasm loop.wat -o loop.wasm (make wasm)
(module
  (memory (export "memory") 1)
  (func (export "wasmtask_handle") (result i32)
    (loop $forever (br $forever))
    (i32.const 0)))
