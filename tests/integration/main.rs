//! End-to-end tests against real servers on loopback: one binary, a module per area.
//!
//! Servers are started by the harness from private temp dirs on fresh ports and stopped by
//! PID. `tests/run.sh` installs them first; with `CAUSEWAY_REQUIRE_SERVERS=1` (as in CI) a
//! missing server fails the run instead of being skipped.

mod adhoc;
mod architecture;
mod avatars;
mod cli;
mod component;
mod conformance;
mod faults;
mod harness;
mod history;
mod hostile;
mod irc;
mod irc_connection;
mod irc_pacing;
mod keeper;
mod keeper_link;
mod limits;
mod matrix;
mod matrix_encrypted;
mod matrix_personal;
mod matrix_puppets;
mod matrix_restart;
mod matrix_server;
mod media;
mod native;
mod privileges;
mod servers;
