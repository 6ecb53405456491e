//! What the operator's two front ends share: the console (`agency run`) and the web page
//! (`agency run --web`) read the same slash syntax, suggest the same ids, answer `/stats`
//! alike, and put permission questions through one [`Permissions`] hub, where the first
//! answer wins; and every view of the traffic analyses it alike ([`traffic`]).

#![warn(missing_docs)]

pub mod command;
pub mod permissions;
pub mod stats;
pub mod suggest;
pub mod traffic;

pub use command::{Command, ParseError};
pub use permissions::{Notice, Permissions, Question};
pub use suggest::closest;
