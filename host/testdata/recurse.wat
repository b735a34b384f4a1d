;; recurse: unbounded recursion; wazero stops it with a stack overflow,
;; which is the guest's trap, not a host error.
;; Build: wat2wasm recurse.wat -o recurse.wasm (make wasm)
(module
  (memory (export "memory") 1)
  (func $r (param i32) (result i32)
    (i32.add (call $r (i32.add (local.get 0) (i32.const 1))) (i32.const 1)))
  (func (export "wasmtask_handle") (result i32)
    (drop (call $r (i32.const 0)))
    (i32.const 0)))
