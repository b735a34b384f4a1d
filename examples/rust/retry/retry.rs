//! retry: fails retryably until the attempt named by the plugin config
//! "succeed_on" (default 3), then outputs "succeeded on attempt N".
use wasmtask::{Error, Level, Task};

fn flaky(t: &mut Task) -> wasmtask::Result {
    let succeed_on = t.config("succeed_on").and_then(|v| v.parse::<i64>().ok()).unwrap_or(3);
    let info = t.info();
    if info.attempt < succeed_on {
        t.log(Level::Info, &format!("attempt {} of {}: failing on purpose", info.attempt, info.max_attempts));
        return Err(Error::retryable(format!(
            "transient failure on attempt {} (succeeds on attempt {})",
            info.attempt, succeed_on
        )));
    }
    t.output_str(&format!("succeeded on attempt {}", info.attempt))
}

wasmtask::handler!(flaky);
