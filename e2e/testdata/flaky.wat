;; flaky: the crash-test handler; the first input byte picks the behaviour:
;; 'r' followed by a digit d fails retryably while the attempt number (read
;; from task_info) is below d, 's' spins 200,000 loop iterations (a few
;; milliseconds), 'h' hangs (loops until the attempt is stopped) on attempt 1
;; and succeeds on later attempts, anything else succeeds at once. On success it outputs its
;; input (at most 4 KiB).
;; Build: wat2wasm flaky.wat -o flaky.wasm (make wasm)
(module
  (import "wasmtask_v1" "input_read" (func $input_read (param i32 i32 i32) (result i32)))
  (import "wasmtask_v1" "output_write" (func $output_write (param i32 i32) (result i32)))
  (import "wasmtask_v1" "task_info" (func $task_info (param i32 i32) (result i32)))
  (import "wasmtask_v1" "fail" (func $fail (param i32 i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 16) "\"attempt\":")          ;; 10 bytes
  (data (i32.const 32) "flaky: failing on purpose") ;; 25 bytes
  ;; $attempt returns the attempt number from task_info (0 if not found).
  (func $attempt (result i32)
    (local $n i32) (local $p i32) (local $end i32) (local $k i32) (local $v i32) (local $c i32)
    (local.set $n (call $task_info (i32.const 8192) (i32.const 8192)))
    (if (i32.le_s (local.get $n) (i32.const 10)) (then (return (i32.const 0))))
    (local.set $p (i32.const 8192))
    (local.set $end (i32.add (i32.const 8192) (i32.sub (local.get $n) (i32.const 10))))
    (block $found
      (loop $scan
        (br_if $found (i32.eqz (call $matches (local.get $p))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br_if $scan (i32.lt_u (local.get $p) (local.get $end)))
        (return (i32.const 0))))
    (local.set $p (i32.add (local.get $p) (i32.const 10)))
    (block $done
      (loop $digits
        (local.set $c (i32.load8_u (local.get $p)))
        (br_if $done (i32.or (i32.lt_u (local.get $c) (i32.const 48)) (i32.gt_u (local.get $c) (i32.const 57))))
        (local.set $v (i32.add (i32.mul (local.get $v) (i32.const 10)) (i32.sub (local.get $c) (i32.const 48))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $digits)))
    (local.get $v))
  ;; $matches returns 0 when the 10 bytes at $p are "\"attempt\":".
  (func $matches (param $p i32) (result i32)
    (local $k i32)
    (loop $cmp
      (if (i32.ne (i32.load8_u (i32.add (local.get $p) (local.get $k))) (i32.load8_u (i32.add (i32.const 16) (local.get $k))))
        (then (return (i32.const 1))))
      (local.set $k (i32.add (local.get $k) (i32.const 1)))
      (br_if $cmp (i32.lt_u (local.get $k) (i32.const 10))))
    (i32.const 0))
  (func (export "wasmtask_handle") (result i32)
    (local $n i32) (local $c i32) (local $i i32)
    (local.set $n (call $input_read (i32.const 0) (i32.const 1024) (i32.const 4096)))
    (local.set $c (i32.load8_u (i32.const 1024)))
    (if (i32.and (i32.eq (local.get $c) (i32.const 114)) (i32.ge_s (local.get $n) (i32.const 2))) ;; 'r'
      (then
        (if (i32.lt_s (call $attempt) (i32.sub (i32.load8_u (i32.const 1025)) (i32.const 48)))
          (then
            (call $fail (i32.const 1) (i32.const 32) (i32.const 25))
            (return (i32.const 1))))))
    (if (i32.and (i32.eq (local.get $c) (i32.const 104)) (i32.le_s (call $attempt) (i32.const 1))) ;; 'h'
      (then (loop $hang (br $hang))))
    (if (i32.eq (local.get $c) (i32.const 115)) ;; 's'
      (then
        (loop $spin
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $spin (i32.lt_u (local.get $i) (i32.const 200000))))))
    (drop (call $output_write (i32.const 1024) (local.get $n)))
    (i32.const 0)))
