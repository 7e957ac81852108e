//! Memory per idle puppet: the gateway's RSS with 1, 200, 1,000 and 10,000 puppet IRC
//! connections, each in its own channel and then left alone.
//!
//! Ten thousand XMPP accounts logged in over c2s would cost Prosody far more than the
//! gateways; instead the load generator attaches as one more component (`load.localhost`)
//! and joins from `idleN@load.localhost`, which Prosody routes to the gateway like any
//! user's presence. It speaks XEP-0114 itself and only counts the self-presences (status
//! 110) that come back.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;

use crate::component;
use crate::gateway::{Gateway, LOAD};
use crate::harness::xmpp_server::XmppServer;
use crate::wait_for;

/// Puppet counts at which RSS is read.
pub const PUPPETS: [usize; 4] = [1, 200, 1_000, 10_000];
/// Joins sent before waiting for their self-presences: ngircd listens with a backlog of 10,
/// and connections past it wait for TCP's SYN retries (1 s, then 3 s, …).
const WAVE: usize = 10;
/// Give up when no join completes for this long (past 8,000 connections ngircd accepts
/// slowly, and a refused connect waits for TCP's SYN retries).
const STALLED: Duration = Duration::from_secs(180);

/// The load generator's component connection.
pub struct LoadComponent {
    write: OwnedWriteHalf,
    joined: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LoadComponent {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LoadComponent {
    /// Connect and authenticate as `load.localhost`.
    pub async fn connect(xmpp: &XmppServer) -> LoadComponent {
        let (mut read, write, _) =
            component::connect(xmpp.component_port, LOAD, &xmpp.secret).await;
        let joined = Arc::new(AtomicUsize::new(0));
        let counter = joined.clone();
        let task = tokio::spawn(async move {
            // A self-presence carries status 110; a pattern may straddle two reads.
            let patterns = ["code=\"110\"", "code='110'"];
            let keep = patterns[0].len() - 1;
            let mut window: Vec<u8> = Vec::new();
            let mut chunk = vec![0; 64 * 1024];
            loop {
                let n = match read.read(&mut chunk).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                window.extend_from_slice(&chunk[..n]);
                let found: usize = patterns
                    .iter()
                    .map(|p| {
                        window
                            .windows(p.len())
                            .filter(|w| w == &p.as_bytes())
                            .count()
                    })
                    .sum();
                counter.fetch_add(found, Ordering::Relaxed);
                let cut = window.len().saturating_sub(keep);
                window.drain(..cut);
            }
        });
        LoadComponent {
            write,
            joined,
            task,
        }
    }

    /// Join `occupant` (room@domain/nick) as `from`.
    pub async fn join(&mut self, from: &str, occupant: &str) {
        self.write
            .write_all(
                format!(
                    "<presence from='{from}' to='{occupant}'>\
                     <x xmlns='http://jabber.org/protocol/muc'/></presence>"
                )
                .as_bytes(),
            )
            .await
            .unwrap();
    }

    /// Self-presences received so far.
    pub fn joined(&self) -> usize {
        self.joined.load(Ordering::Relaxed)
    }
}

/// The owners (bare JIDs) of the idle puppets, for biboumi's per-user options.
pub fn owners(max: usize) -> Vec<String> {
    (0..max).map(|i| format!("idle{i}@{LOAD}")).collect()
}

/// RSS of the gateway at each puppet count up to `max`: (puppets asked, puppets joined,
/// RSS KiB). Starts from no puppet; the first row is the gateway alone (0 puppets).
pub async fn memory(
    gateway: &Gateway,
    load: &mut LoadComponent,
    max: usize,
) -> Vec<(usize, usize, u64)> {
    let mut rows = vec![(0, 0, settled_rss(gateway).await)];
    let mut sent = 0;
    for target in PUPPETS.into_iter().filter(|&n| n <= max) {
        while sent < target {
            let wave_end = (sent + WAVE).min(target);
            for i in sent..wave_end {
                let occupant = format!("{}/idle{i}", gateway.kind.room(&format!("idle{i}")));
                load.join(&format!("idle{i}@{LOAD}/bench"), &occupant).await;
            }
            sent = wave_end;
            wait_for(|| load.joined(), sent, STALLED).await;
            if load.joined() < sent {
                let rss = settled_rss(gateway).await;
                eprintln!(
                    "{}: only {} of {sent} puppets joined; stopping at that (RSS {rss} KiB)\n{}",
                    gateway.kind.name(),
                    load.joined(),
                    gateway.log_tail()
                );
                rows.push((target, load.joined(), rss));
                return rows;
            }
        }
        rows.push((target, load.joined(), settled_rss(gateway).await));
        println!(
            "memory {:9}: {target:5} idle puppets, RSS {} KiB",
            gateway.kind.name(),
            rows.last().unwrap().2
        );
    }
    rows
}

/// RSS once it has stopped moving: two readings a second apart within 0.5 %, at most 15 s.
async fn settled_rss(gateway: &Gateway) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut last = gateway.rss_kib();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = gateway.rss_kib();
        if now.abs_diff(last) * 200 <= last || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}
