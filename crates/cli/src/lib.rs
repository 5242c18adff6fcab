//! The `tether` command line as a library: its client, checks, output and exit codes, so
//! that the tests (and other tools) can use the same signer and the same rules.

pub mod api;
pub mod cmd;
pub mod exit;
pub mod input;
pub mod output;
pub mod target;
