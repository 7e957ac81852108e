//! The run's tables: causeway beside biboumi (and the bare relay), and the CPU shares.

use crate::gateway::{Kind, Usage};
use crate::{Percentiles, Results};

pub fn ratio(a: f64, b: f64) -> String {
    if a.is_finite() && b.is_finite() && b > 0.0 {
        format!("{:.2}", a / b)
    } else {
        "—".into()
    }
}

pub fn figure(value: Option<f64>, decimals: usize) -> String {
    match value {
        Some(v) if v.is_finite() => format!("{v:.decimals$}"),
        _ => "—".into(),
    }
}

pub fn print_table(all: &[(Kind, Results)]) {
    let none = Results::default();
    let of = |kind: Kind| {
        all.iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, r)| r)
            .unwrap_or(&none)
    };
    let (c, b) = (of(Kind::Causeway), of(Kind::Biboumi));
    println!("\n| scenario | causeway | biboumi | causeway/biboumi |\n|---|---|---|---|");
    let row = |name: &str, get: &dyn Fn(&Results) -> Option<f64>, decimals: usize| {
        let (cv, bv) = (get(c), get(b));
        println!(
            "| {name} | {} | {} | {} |",
            figure(cv, decimals),
            figure(bv, decimals),
            ratio(cv.unwrap_or(f64::NAN), bv.unwrap_or(f64::NAN))
        );
    };
    // The throughput figures, in this table and in the bare relay's below.
    type Getter = Box<dyn Fn(&Results) -> Option<f64>>;
    let mut throughput_rows: Vec<(String, Getter, usize)> = Vec::new();
    for history in ["on", "off"] {
        throughput_rows.push((
            format!("throughput, history {history} (msg/s)"),
            Box::new(move |r: &Results| r.throughput(history).map(|t| t.per_second)),
            0,
        ));
        throughput_rows.push((
            format!("CPU per 10,000 messages, history {history} (s)"),
            Box::new(move |r: &Results| {
                r.throughput(history)
                    .map(|t| t.usage.gateway * 10_000.0 / t.received.max(1) as f64)
            }),
            2,
        ));
    }
    throughput_rows.push((
        "Prosody's instructions per relayed message, history off (callgrind)".into(),
        Box::new(|r: &Results| r.prosody_instructions),
        0,
    ));
    for (name, get, decimals) in &throughput_rows {
        row(name, get, *decimals);
    }
    type Pick = fn(&Percentiles) -> f64;
    let stats: [(&str, Pick); 3] = [("p50", |p| p.p50), ("p99", |p| p.p99), ("max", |p| p.max)];
    for (way, first) in [("XMPP→IRC", true), ("IRC→XMPP", false)] {
        for (what, pick) in stats {
            row(
                &format!("latency {way} {what} at 1,000 msg/s (ms)"),
                &|r| {
                    r.latency
                        .map(|(to_irc, to_xmpp)| pick(if first { &to_irc } else { &to_xmpp }))
                },
                1,
            );
        }
    }
    row(
        "fan-out, 50 users in one channel (messages/s to all)",
        &|r| r.fan_out.as_ref().map(|f| f.per_second),
        0,
    );
    row(
        "fan-out deliveries/s",
        &|r| r.fan_out.as_ref().map(|f| f.deliveries_per_second),
        0,
    );
    for (what, pick) in &stats[..2] {
        row(
            &format!("fan-out latency {what} (ms)"),
            &|r| r.fan_out.as_ref().map(|f| pick(&f.latency)),
            1,
        );
    }
    for puppets in [0, 1, 200, 1_000, 10_000] {
        row(
            &format!("RSS with {puppets} idle puppets (MiB)"),
            &|r| r.rss_at(puppets).map(|kib| kib / 1024.0),
            1,
        );
    }
    row(
        "idle puppets reached (of 10,000)",
        &|r| r.memory.last().map(|(_, joined, _)| *joined as f64),
        0,
    );
    row(
        "RSS with the most idle puppets reached (MiB)",
        &|r| r.memory.last().map(|(_, _, rss)| *rss as f64 / 1024.0),
        1,
    );
    row("KiB per idle puppet", &|r| r.kib_per_puppet(), 1);
    for (way, first) in [("XMPP→Matrix", true), ("Matrix→XMPP", false)] {
        for (what, pick) in &stats[..2] {
            row(
                &format!("latency {way} {what} (ms), causeway only"),
                &|r| {
                    r.matrix
                        .map(|(to, from)| pick(if first { &to } else { &from }))
                },
                1,
            );
        }
    }
    let bare = of(Kind::Bare);
    if !bare.throughput.is_empty() || bare.prosody_instructions.is_some() {
        println!(
            "\n| against the bare relay | bare relay | causeway | biboumi | causeway/bare | biboumi/bare |\n|---|---|---|---|---|---|"
        );
        let row = |name: &str, get: &dyn Fn(&Results) -> Option<f64>, decimals: usize| {
            let [rv, cv, bv] = [bare, c, b].map(|r| get(r).unwrap_or(f64::NAN));
            println!(
                "| {name} | {} | {} | {} | {} | {} |",
                figure(Some(rv), decimals),
                figure(Some(cv), decimals),
                figure(Some(bv), decimals),
                ratio(cv, rv),
                ratio(bv, rv)
            );
        };
        for (name, get, decimals) in &throughput_rows {
            row(name, get, *decimals);
        }
    }
    println!("\n| CPU share of the run's wall time | gateway | load generator | Prosody | ngircd |\n|---|---|---|---|---|");
    for (kind, results) in all {
        let mut runs: Vec<(String, Usage, f64)> = results
            .throughput
            .iter()
            .map(|(h, t)| (format!("throughput, history {h}"), t.usage, t.usage_seconds))
            .collect();
        if let Some(f) = &results.fan_out {
            runs.push(("fan-out".into(), f.usage, f.seconds));
        }
        for (name, usage, seconds) in runs {
            let share = |cpu: f64| format!("{:.0}%", 100.0 * cpu / seconds.max(1e-9));
            println!(
                "| {} {name} | {} | {} | {} | {} |",
                kind.name(),
                share(usage.gateway),
                share(usage.load),
                share(usage.xmpp),
                share(usage.irc)
            );
        }
    }
}
