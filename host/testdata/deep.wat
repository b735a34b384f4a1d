;; deep: recurses input_len() * 10000 calls deep, then returns 0: a deep
;; but bounded stack (10,000 frames per input byte).
;; Build: wat2wasm deep.wat -o deep.wasm (make wasm)
(module
  (import "wasmtask_v1" "input_len" (func $input_len (result i32)))
  (memory (export "memory") 1)
  (func $r (param i32) (result i32)
    (if (result i32) (i32.eqz (local.get 0))
      (then (i32.const 0))
      (else (i32.add (call $r (i32.sub (local.get 0) (i32.const 1))) (i32.const 1)))))
  (func (export "wasmtask_handle") (result i32)
    (drop (call $r (i32.mul (call $input_len) (i32.const 10000))))
    (i32.const 0)))
