//! spawn: submits one child task (handler "uppercase", the same input) and
//! outputs the child's id. The child is staged: it is created only when this
//! attempt succeeds.
use wasmtask::{ChildSpec, Level, Task};

fn spawn(t: &mut Task) -> wasmtask::Result {
    let child = ChildSpec {
        handler: "uppercase".into(),
        input: String::from_utf8_lossy(t.input()).into_owned(),
        ..Default::default()
    };
    let id = t.submit(&child)?;
    t.log(Level::Info, &format!("submitted child {}", id));
    t.output_str(&id)
}

wasmtask::handler!(spawn);
