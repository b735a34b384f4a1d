//! uppercase: returns its input with ASCII letters upper-cased (other bytes,
//! UTF-8 included, pass through unchanged). The input "!fail" fails the
//! attempt permanently, to show a failure that is not retried.
use wasmtask::{Error, Level, Task};

fn upper(t: &mut Task) -> wasmtask::Result {
    t.log(Level::Info, &format!("upper-casing {} bytes", t.input().len()));
    if t.input() == b"!fail" {
        return Err(Error::permanent("the input asked to fail"));
    }
    t.output(&t.input().to_ascii_uppercase())
}

wasmtask::handler!(upper);
