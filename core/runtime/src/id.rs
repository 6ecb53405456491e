//! Agent id rules.

use agency_protocol::message::BROADCAST_KEY;

/// The longest agent id, in bytes of UTF-8: an AMQP queue name holds 255 bytes, and an
/// agent's broadcast queue is named `<id>-broadcast` (as in Python Agency).
pub const MAX_ID_BYTES: usize = 245;

/// Checks an agent id, the same rule on every transport: 1 to [`MAX_ID_BYTES`] bytes, no
/// control characters (C0, DEL, C1: an id is printed and used as a routing key), not `*`,
/// not starting with `amq.`, not `__broadcast__`, and no dot-separated word that is `*`
/// or `#` (such ids would act as wildcards when a transport uses ids as topic routing
/// keys).
///
/// ```
/// use agency_runtime::validate_id;
/// assert!(validate_id("Calculator").is_ok());
/// assert!(validate_id("team.alice").is_ok());
/// assert!(validate_id("").is_err());
/// assert!(validate_id("amq.gen").is_err());
/// assert!(validate_id("a.#").is_err());
/// assert!(validate_id("line\nbreak").is_err());
/// assert!(validate_id(&"x".repeat(246)).is_err());
/// ```
pub fn validate_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_ID_BYTES {
        return Err(format!(
            "must be 1 to {MAX_ID_BYTES} bytes long (in UTF-8), not {}",
            id.len()
        ));
    }
    if let Some(control) = id.chars().find(|c| c.is_control()) {
        return Err(format!(
            "may not contain control characters ({:?} is one)",
            control
        ));
    }
    if id == "*" {
        return Err("\"*\" means every agent".into());
    }
    if id.starts_with("amq.") {
        return Err("ids starting with \"amq.\" are reserved by AMQP".into());
    }
    if id == BROADCAST_KEY {
        return Err("reserved for broadcasts".into());
    }
    if id.split('.').any(|word| word == "*" || word == "#") {
        return Err("a dot-separated word may not be \"*\" or \"#\"".into());
    }
    Ok(())
}
