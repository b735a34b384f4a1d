;; spawn: submits one child task (handler "uppercase", the same input) and
;; outputs the child's id. The child is staged: it is created only when this
;; attempt succeeds.
;;
;; No SDK: it writes the JSON task spec itself, escaping the input (quote,
;; backslash and control characters; other bytes are copied, so the input
;; must be UTF-8). Layout: constants below 256, the child id at 256, the log
;; line at 512, the input from 1024 and the spec right after it.
(module
  (import "wasmtask_v1" "input_len" (func $input_len (result i32)))
  (import "wasmtask_v1" "input_read" (func $input_read (param i32 i32 i32) (result i32)))
  (import "wasmtask_v1" "output_write" (func $output_write (param i32 i32) (result i32)))
  (import "wasmtask_v1" "fail" (func $fail (param i32 i32 i32)))
  (import "wasmtask_v1" "log" (func $log (param i32 i32 i32)))
  (import "wasmtask_v1" "submit" (func $submit (param i32 i32 i32 i32) (result i32)))

  (memory (export "memory") 1)
  (data (i32.const 0) "{\"handler\":\"uppercase\",\"input\":\"")  ;; 32
  (data (i32.const 64) "\"}")                                      ;; 2
  (data (i32.const 80) "submitted child ")                         ;; 16
  (data (i32.const 96) "submit failed")                            ;; 13
  (data (i32.const 112) "0123456789abcdef")
  (global $id i32 (i32.const 256))
  (global $line i32 (i32.const 512))
  (global $buf i32 (i32.const 1024))
  (global $pos (mut i32) (i32.const 0))

  (func $reserve (param $end i32)
    (local $pages i32)
    (local.set $pages (i32.shr_u (i32.add (local.get $end) (i32.const 65535)) (i32.const 16)))
    (if (i32.gt_u (local.get $pages) (memory.size))
      (then
        (if (i32.eq (memory.grow (i32.sub (local.get $pages) (memory.size))) (i32.const -1))
          (then unreachable)))))

  ;; put appends one byte at $pos.
  (func $put (param $c i32)
    (i32.store8 (global.get $pos) (local.get $c))
    (global.set $pos (i32.add (global.get $pos) (i32.const 1))))

  (func $emit (param $src i32) (param $n i32)
    (block $done
      (loop $byte
        (br_if $done (i32.eqz (local.get $n)))
        (call $put (i32.load8_u (local.get $src)))
        (local.set $src (i32.add (local.get $src) (i32.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $byte))))

  ;; emit_json appends [src, src+n) escaped for a JSON string.
  (func $emit_json (param $src i32) (param $n i32)
    (local $c i32)
    (block $done
      (loop $byte
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $c (i32.load8_u (local.get $src)))
        (if (i32.or (i32.eq (local.get $c) (i32.const 34)) (i32.eq (local.get $c) (i32.const 92)))
          (then (call $put (i32.const 92)) (call $put (local.get $c)))
          (else
            (if (i32.lt_u (local.get $c) (i32.const 32))
              (then
                (call $put (i32.const 92)) (call $put (i32.const 117))   ;; \u
                (call $put (i32.const 48)) (call $put (i32.const 48))    ;; 00
                (call $put (i32.load8_u (i32.add (i32.const 112) (i32.shr_u (local.get $c) (i32.const 4)))))
                (call $put (i32.load8_u (i32.add (i32.const 112) (i32.and (local.get $c) (i32.const 15))))))
              (else (call $put (local.get $c))))))
        (local.set $src (i32.add (local.get $src) (i32.const 1)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $byte))))

  (func (export "wasmtask_handle") (result i32)
    (local $n i32) (local $got i32) (local $i i32) (local $spec i32) (local $idlen i32)
    ;; read the whole input into $buf, with room for the spec (at most 6
    ;; bytes per input byte, plus 34) after it
    (local.set $n (call $input_len))
    (call $reserve (i32.add (i32.add (global.get $buf) (i32.mul (local.get $n) (i32.const 7))) (i32.const 64)))
    (block $done
      (loop $read
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $got (call $input_read (local.get $i) (i32.add (global.get $buf) (local.get $i))
                                          (i32.sub (local.get $n) (local.get $i))))
        (br_if $done (i32.le_s (local.get $got) (i32.const 0)))
        (local.set $i (i32.add (local.get $i) (local.get $got)))
        (br $read)))
    (local.set $n (local.get $i))

    ;; {"handler":"uppercase","input":"<input>"}
    (local.set $spec (i32.add (global.get $buf) (local.get $n)))
    (global.set $pos (local.get $spec))
    (call $emit (i32.const 0) (i32.const 32))
    (call $emit_json (global.get $buf) (local.get $n))
    (call $emit (i32.const 64) (i32.const 2))

    ;; submit writes the child's id (fits or nothing) and returns its length
    (local.set $idlen (call $submit (local.get $spec) (i32.sub (global.get $pos) (local.get $spec))
                                    (global.get $id) (i32.const 256)))
    (if (i32.lt_s (local.get $idlen) (i32.const 0))
      (then
        (call $fail (i32.const 0) (i32.const 96) (i32.const 13))
        (return (i32.const 1))))

    ;; log "submitted child <id>", output the id
    (global.set $pos (global.get $line))
    (call $emit (i32.const 80) (i32.const 16))
    (call $emit (global.get $id) (local.get $idlen))
    (call $log (i32.const 0) (global.get $line) (i32.sub (global.get $pos) (global.get $line)))
    (if (i32.lt_s (call $output_write (global.get $id) (local.get $idlen)) (i32.const 0))
      (then (return (i32.const 1))))
    (i32.const 0))
)
