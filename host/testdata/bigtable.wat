;; bigtable: declares a table of 134,217,728 funcref elements (1 GiB in
;; wazero) and a 1-page memory: it must be rejected at load (issue 18).
;; Build: wat2wasm bigtable.wat -o bigtable.wasm (make wasm)
(module
  (memory (export "memory") 1)
  (table 134217728 funcref)
  (func (export "wasmtask_handle") (result i32)
    (i32.const 0)))
