//! Who may chat, and how fast: a public widget is an open door. `bans`
//! refuses visitors an agent banned (by visitor, address or network), on
//! every node of a cluster; `limits` caps how fast one visitor or address
//! starts sessions, conversations and messages; `client_ip` says which address a request comes
//! from (the forwarded one only behind a trusted proxy). No HTTP here: the
//! handlers pass in what they read from the request.

pub mod bans;
pub mod client_ip;
pub mod limits;
