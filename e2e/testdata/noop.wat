;; noop: does nothing and succeeds; the benchmark handler.
;; Build: wat2wasm noop.wat -o noop.wasm (make wasm)
(module
  (memory (export "memory") 1)
  (func (export "wasmtask_handle") (result i32)
    (i32.const 0)))
