//! Agent id rules.

/// The routing key that transports may use for broadcasts; no agent may take it.
pub const RESERVED_BROADCAST_KEY: &str = "__broadcast__";

/// Checks an agent id: 1 to 255 characters, not `*`, not starting with `amq.`, not
/// `__broadcast__`, and no dot-separated word that is `*` or `#` (such ids would act as
/// wildcards when a transport uses ids as topic routing keys).
///
/// ```
/// use agency_runtime::validate_id;
/// assert!(validate_id("Calculator").is_ok());
/// assert!(validate_id("team.alice").is_ok());
/// assert!(validate_id("").is_err());
/// assert!(validate_id("amq.gen").is_err());
/// assert!(validate_id("a.#").is_err());
/// ```
pub fn validate_id(id: &str) -> Result<(), String> {
    let length = id.chars().count();
    if length == 0 || length > 255 {
        return Err(format!("must be 1 to 255 characters long, not {length}"));
    }
    if id == "*" {
        return Err("\"*\" means every agent".into());
    }
    if id.starts_with("amq.") {
        return Err("ids starting with \"amq.\" are reserved by AMQP".into());
    }
    if id == RESERVED_BROADCAST_KEY {
        return Err("reserved for broadcasts".into());
    }
    if id.split('.').any(|word| word == "*" || word == "#") {
        return Err("a dot-separated word may not be \"*\" or \"#\"".into());
    }
    Ok(())
}
