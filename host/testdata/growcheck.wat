;; growcheck: outputs, as i32 LE, memory.grow by 15 pages, memory.grow by
;; 1 more, and memory.size, then traps out of bounds only when its input is
;; "trap" (a trap with no refused grow before it is not an oom).
;; Build: wat2wasm growcheck.wat -o growcheck.wasm (make wasm)
(module
  (import "wasmtask_v1" "input_len" (func $input_len (result i32)))
  (import "wasmtask_v1" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func $out32 (param $v i32)
    (i32.store (i32.const 60000) (local.get $v))
    (drop (call $output_write (i32.const 60000) (i32.const 4))))
  (func (export "wasmtask_handle") (result i32)
    (call $out32 (memory.grow (i32.const 15)))
    (call $out32 (memory.grow (i32.const 1)))
    (call $out32 (memory.size))
    (if (i32.eq (call $input_len) (i32.const 4))
      (then (drop (i32.load (i32.const 0x7ffffff0)))))
    (i32.const 0)))
