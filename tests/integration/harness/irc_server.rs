//! IRC servers on loopback. ngircd is the default; InspIRCd joins with the IRC bridge.

use std::process::Command;
use std::time::Duration;

use super::process::{free_port, render, ServerProcess};

/// A running (or, between restarts, stopped) IRC server.
#[derive(Debug)]
pub struct IrcServer {
    pub port: u16,
    // Declared first so that it stops before its directory is removed.
    process: Option<ServerProcess>,
    dir: tempfile::TempDir,
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
        std::fs::write(dir.path().join("ngircd.conf"), config).unwrap();
        let mut server = IrcServer {
            port,
            process: None,
            dir,
        };
        server.resume();
        server
    }

    /// Start again on the same port (after [`stop`](Self::stop)).
    pub fn resume(&mut self) {
        assert!(self.process.is_none(), "already running");
        let mut command = Command::new("ngircd");
        command
            .arg("-n")
            .arg("-f")
            .arg(self.dir.path().join("ngircd.conf"));
        let mut process = ServerProcess::spawn("ngircd", command, self.dir.path(), vec![]);
        process.wait_ports(&[self.port], Duration::from_secs(20));
        self.process = Some(process);
    }

    /// Stop the server: every connection to it drops.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop();
        }
    }
}
