;; badhandlesig: exports wasmtask_handle with a parameter.
;; Build: wat2wasm badhandlesig.wat -o badhandlesig.wasm (make wasm)
(module
  (memory (export "memory") 1)
  (func (export "wasmtask_handle") (param i32) (result i32)
    (local.get 0)))
