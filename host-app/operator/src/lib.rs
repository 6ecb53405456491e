//! What the operator's front ends share: the console (`agency run`) and the web page
//! (`agency run --web`) each drive a [`Session`] (what was sent and awaits a reply, what
//! a message means, the [`Catalogue`] of agents, permission answers), read the same slash
//! syntax ([`command`]), suggest the same ids, answer `/stats` alike, and put permission
//! questions through one [`Permissions`] hub, where the first answer wins; and every view
//! of the traffic analyses it alike ([`traffic`]). A front end only reads input and
//! renders.

#![warn(missing_docs)]

pub mod catalogue;
pub mod command;
pub mod permissions;
pub mod session;
pub mod stats;
pub mod suggest;
pub mod traffic;

pub use catalogue::Catalogue;
pub use command::{Command, ParseError};
pub use permissions::{Notice, Permissions, Question, TooLate};
pub use session::{Event, Sent, Session};
pub use suggest::closest;
