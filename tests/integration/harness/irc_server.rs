//! IRC servers on loopback. ngircd is the default; InspIRCd joins with the IRC bridge.

use std::process::Command;
use std::time::Duration;

use super::process::{free_port, render, ServerProcess};

/// A running IRC server.
#[derive(Debug)]
pub struct IrcServer {
    pub port: u16,
    // Declared first so that it stops before its directory is removed.
    _process: ServerProcess,
    _dir: tempfile::TempDir,
}

impl IrcServer {
    /// ngircd with per-IP limits lifted (one connection per puppet, all from 127.0.0.1).
    pub fn ngircd() -> IrcServer {
        let dir = tempfile::Builder::new()
            .prefix("causeway-ngircd-")
            .tempdir()
            .unwrap();
        let port = free_port();
        let config = render(
            "ngircd.conf.in",
            &[
                ("DIR", dir.path().display().to_string()),
                ("PORT", port.to_string()),
            ],
        );
        let path = dir.path().join("ngircd.conf");
        std::fs::write(&path, config).unwrap();
        let mut command = Command::new("ngircd");
        command.arg("-n").arg("-f").arg(&path);
        let mut process = ServerProcess::spawn("ngircd", command, dir.path(), vec![]);
        process.wait_ports(&[port], Duration::from_secs(20));
        IrcServer {
            port,
            _dir: dir,
            _process: process,
        }
    }
}
