;; heartbeat: with an input of n bytes, sends n heartbeats ("tick") and
;; outputs their results (i32 LE); with an empty input, heartbeats until the
;; host answers 1. Whenever heartbeat returns 1 it logs "heartbeat: stop
;; requested" and returns 1.
;; Build: wat2wasm heartbeat.wat -o heartbeat.wasm (make wasm)
(module
  (import "wasmtask_v1" "input_len" (func $input_len (result i32)))
  (import "wasmtask_v1" "heartbeat" (func $heartbeat (param i32 i32) (result i32)))
  (import "wasmtask_v1" "log" (func $log (param i32 i32 i32)))
  (import "wasmtask_v1" "output_write" (func $output_write (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "tick")
  (data (i32.const 32) "heartbeat: stop requested")  ;; 25 bytes
  (func $out32 (param $v i32)
    (i32.store (i32.const 60000) (local.get $v))
    (drop (call $output_write (i32.const 60000) (i32.const 4))))
  (func (export "wasmtask_handle") (result i32)
    (local $n i32) (local $i i32) (local $r i32)
    (local.set $n (call $input_len))
    (loop $beat
      (local.set $r (call $heartbeat (i32.const 16) (i32.const 4)))
      (if (i32.eq (local.get $r) (i32.const 1))
        (then
          (call $log (i32.const 1) (i32.const 32) (i32.const 25))
          (return (i32.const 1))))
      (call $out32 (local.get $r))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $beat (i32.or (i32.eqz (local.get $n)) (i32.lt_u (local.get $i) (local.get $n)))))
    (i32.const 0)))
