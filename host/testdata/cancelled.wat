;; cancelled: sends one heartbeat (so a test knows it runs), then polls
;; cancelled() until it returns 1, logs "cancelled: stopping" and returns 1.
;; Build: wat2wasm cancelled.wat -o cancelled.wasm (make wasm)
(module
  (import "wasmtask_v1" "heartbeat" (func $heartbeat (param i32 i32) (result i32)))
  (import "wasmtask_v1" "cancelled" (func $cancelled (result i32)))
  (import "wasmtask_v1" "log" (func $log (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 32) "cancelled: stopping")  ;; 19 bytes
  (func (export "wasmtask_handle") (result i32)
    (drop (call $heartbeat (i32.const 0) (i32.const 0)))
    (loop $poll
      (br_if $poll (i32.eqz (call $cancelled))))
    (call $log (i32.const 0) (i32.const 32) (i32.const 19))
    (i32.const 1)))
