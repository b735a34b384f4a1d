;; submit: the input is a child task spec. Submits it with a 2-byte id
;; buffer (-3, nothing staged), twice with room (the ids), then a spec that
;; is not JSON (-1). Outputs the four results (i32 LE) and the ids written.
;; Returns 1 when the spec starts with a space (still valid JSON), else 0.
;; Build: wat2wasm submit.wat -o submit.wasm (make wasm)
(module
  (import "wasmtask_v1" "input_read" (func $input_read (param i32 i32 i32) (result i32)))
  (import "wasmtask_v1" "submit" (func $submit (param i32 i32 i32 i32) (result i32)))
  (import "wasmtask_v1" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 512) "{not json")  ;; 9 bytes
  (func $out32 (param $v i32)
    (i32.store (i32.const 60000) (local.get $v))
    (drop (call $output_write (i32.const 60000) (i32.const 4))))
  (func (export "wasmtask_handle") (result i32)
    (local $len i32) (local $r2 i32) (local $r3 i32)
    (local.set $len (call $input_read (i32.const 0) (i32.const 4096) (i32.const 8192)))
    (call $out32 (call $submit (i32.const 4096) (local.get $len) (i32.const 1024) (i32.const 2)))
    (local.set $r2 (call $submit (i32.const 4096) (local.get $len) (i32.const 1024) (i32.const 64)))
    (call $out32 (local.get $r2))
    (local.set $r3 (call $submit (i32.const 4096) (local.get $len) (i32.const 1100) (i32.const 64)))
    (call $out32 (local.get $r3))
    (call $out32 (call $submit (i32.const 512) (i32.const 9) (i32.const 1200) (i32.const 64)))
    (if (i32.gt_s (local.get $r2) (i32.const 0))
      (then (drop (call $output_write (i32.const 1024) (local.get $r2)))))
    (if (i32.gt_s (local.get $r3) (i32.const 0))
      (then (drop (call $output_write (i32.const 1100) (local.get $r3)))))
    (i32.eq (i32.load8_u (i32.const 4096)) (i32.const 32))))
