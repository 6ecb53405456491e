//! The host app's own threads: a panic in any of them ends the process with exit code
//! [`PANIC_EXIT_CODE`], instead of leaving a process that no longer reads its input or
//! watches its plugins but never exits. (Agents' threads are the runtime's: a panic in an
//! agent is an error reply, and the agent goes on.)

use std::panic::{catch_unwind, AssertUnwindSafe};

/// The exit code after a panic in the host app (Rust's own for a panicking `main`).
pub const PANIC_EXIT_CODE: i32 = 101;

/// Runs `body`; if it panics (the panic message is already on standard error), says which
/// part of the host failed and ends the process.
pub fn guarded<T>(name: &str, body: impl FnOnce() -> T) -> T {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(value) => value,
        Err(_) => {
            report!("error: the {name} failed (see the panic above); agency stops");
            std::process::exit(PANIC_EXIT_CODE)
        }
    }
}

/// Starts a thread named `name` that runs `body` [`guarded`].
pub fn spawn(name: &'static str, body: impl FnOnce() + Send + 'static) {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || guarded(name, body))
        .expect("the system can start a thread");
}
