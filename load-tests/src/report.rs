//! Results as Markdown tables (stdout) and SVG plots of cost and latency against load.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use plotters::prelude::*;

use crate::common::Summary;
use crate::qa::QaReport;
use crate::video::VideoReport;

fn lat(s: &Summary) -> String {
    format!(
        "{:.1} / {:.1} / {:.1} / {:.1}",
        s.p50_ms, s.p95_ms, s.p99_ms, s.max_ms
    )
}

pub fn qa_markdown(r: &QaReport) -> String {
    let mut t = String::new();
    let c = &r.completeness;
    let rows: Vec<(&str, String)> = vec![
        ("nodes", r.nodes.to_string()),
        (
            "patients connected / failed",
            format!("{} / {}", r.patients_connected, r.connect_failures),
        ),
        ("connect rate reached", format!("{:.0}/s", r.connect_rate)),
        (
            "connect latency p50/p95/p99/max ms",
            lat(&r.connect_latency),
        ),
        (
            "asked / approved / rejected / votes sent",
            format!(
                "{} / {} / {} / {}",
                r.questions_asked, r.approvals, r.rejections, r.votes_sent
            ),
        ),
        (
            "ask → moderator p50/p95/p99/max ms",
            lat(&r.ask_to_moderator),
        ),
        (
            "approve → last patient p50/p95/p99/max ms",
            lat(&r.approval_to_last),
        ),
        (
            "approve → each patient p50/p95/p99/max ms",
            lat(&r.approval_to_each),
        ),
        (
            "deliveries (events to patients)",
            format!("{} ({:.0}/s)", r.deliveries, r.deliveries_per_s),
        ),
        (
            "session events / public",
            format!("{} / {}", r.events, r.public_events),
        ),
        (
            "vote updates per patient per s",
            format!("{:.2}", r.vote_updates_per_patient_s),
        ),
        (
            "completeness",
            format!(
                "{} ({} patients checked; missing {}, unexpected {}, out of order {}, reference gaps {}, snapshot fallbacks {})",
                if c.ok { "OK" } else { "VIOLATED" },
                c.checked_patients,
                c.missing,
                c.unexpected,
                c.out_of_order,
                c.reference_gaps,
                c.snapshot_fallbacks
            ),
        ),
        (
            "server CPU in load phase",
            format!(
                "{:.1} s ({:.2} cores)",
                r.server.cpu_s_load, r.server.cpu_cores_load
            ),
        ),
        (
            "server RSS before / idle / end",
            format!(
                "{:.1} / {:.1} / {:.1} MiB",
                r.server.rss_before_kib as f64 / 1024.0,
                r.server.rss_idle_kib as f64 / 1024.0,
                r.server.rss_end_kib as f64 / 1024.0
            ),
        ),
        (
            "server memory per idle patient",
            format!("{:.1} KiB", r.server.kib_per_idle_patient),
        ),
        (
            "generator CPU in load phase",
            format!(
                "{:.1} s ({:.2} cores)",
                r.generator.cpu_s_load, r.generator.cpu_cores_load
            ),
        ),
    ];
    let _ = writeln!(t, "| metric | value |\n|---|---|");
    for (k, v) in rows {
        let _ = writeln!(t, "| {k} | {v} |");
    }
    for s in &r.stalled {
        let _ = writeln!(
            t,
            "| stalled patient | dropped: {}, close code {:?}, {} messages buffered before the drop |",
            s.dropped, s.close_code, s.events_before_stall
        );
    }
    if let Some(s) = &r.storm {
        let _ = writeln!(
            t,
            "| reconnect storm ({} s window) | {} reconnected ({} resumed, {} snapshots), {} failed; {:.0} handshakes/s; handshake p50/p95/p99/max {} ms |",
            s.window_s,
            s.reconnected,
            s.resumed,
            s.snapshots,
            s.failed,
            s.handshakes_per_s,
            lat(&s.handshake_latency)
        );
    }
    if !r.errors_by_code.is_empty() {
        let _ = writeln!(t, "| error replies | {:?} |", r.errors_by_code);
    }
    if !r.unexpected_closes.is_empty() {
        let _ = writeln!(t, "| unexpected closes | {:?} |", r.unexpected_closes);
    }
    t
}

pub fn video_markdown(r: &VideoReport) -> String {
    let mut t = String::new();
    let rows: Vec<(&str, String)> = vec![
        (
            "viewers connected / failed",
            format!("{} / {}", r.viewers_connected, r.viewer_failures),
        ),
        (
            "publisher packets video / audio, keyframes, PLIs",
            format!(
                "{} / {}, {}, {}",
                r.publisher_video_packets,
                r.publisher_audio_packets,
                r.keyframes_sent,
                r.plis_received
            ),
        ),
        (
            "video packets expected / received (steady)",
            format!(
                "{} / {}",
                r.video_packets_expected, r.video_packets_received
            ),
        ),
        (
            "loss video / audio / worst viewer",
            format!(
                "{:.3}% / {:.3}% / {:.3}%",
                r.video_loss_pct, r.audio_loss_pct, r.worst_viewer_loss_pct
            ),
        ),
        (
            "jitter mean / max",
            format!("{:.2} / {:.2} ms", r.jitter_ms_mean, r.jitter_ms_max),
        ),
        ("one-way delay p50/p95/p99/max ms", lat(&r.delay)),
        (
            "WHEP POST → first packet p50/p95/p99/max ms",
            lat(&r.first_packet),
        ),
        (
            "WHEP POST → first keyframe p50/p95/p99/max ms",
            lat(&r.first_frame),
        ),
        (
            "forwarded payload",
            format!("{:.1} Mbit/s", r.forwarded_mbit_s),
        ),
        (
            "server CPU",
            format!(
                "{:.2} cores ({:.2} cores per forwarded Gbit/s)",
                r.server_cpu_cores, r.server_cores_per_gbit_s
            ),
        ),
        (
            "server RSS before / with viewers",
            format!(
                "{:.1} / {:.1} MiB ({:.0} KiB per viewer)",
                r.server_rss_idle_kib as f64 / 1024.0,
                r.server_rss_kib as f64 / 1024.0,
                r.server_kib_per_viewer
            ),
        ),
        (
            "generator CPU",
            format!("{:.2} cores", r.generator_cpu_cores),
        ),
    ];
    let _ = writeln!(t, "| metric | value |\n|---|---|");
    for (k, v) in rows {
        let _ = writeln!(t, "| {k} | {v} |");
    }
    if r.nodes.len() > 1 {
        let _ = writeln!(
            t,
            "\n| viewer node | viewers | video loss | one-way delay p50/p95/p99/max ms |\n|---|---|---|---|"
        );
        for n in &r.nodes {
            let _ = writeln!(
                t,
                "| {} | {} | {:.3}% | {} |",
                n.url,
                n.viewers,
                n.video_loss_pct,
                lat(&n.delay)
            );
        }
    }
    if r.pids.len() > 1 {
        let _ = writeln!(t, "\n| server pid | CPU cores | RSS MiB |\n|---|---|---|");
        for p in &r.pids {
            let _ = writeln!(
                t,
                "| {} | {:.2} | {:.1} |",
                p.pid,
                p.cpu_cores,
                p.rss_kib as f64 / 1024.0
            );
        }
    }
    t
}

enum Loaded {
    Qa(Box<QaReport>),
    Video(Box<VideoReport>),
}

fn load(path: &Path) -> anyhow::Result<Loaded> {
    let text = std::fs::read_to_string(path).with_context(|| path.display().to_string())?;
    let value: serde_json::Value = serde_json::from_str(&text)?;
    if value.get("viewers_connected").is_some() {
        Ok(Loaded::Video(Box::new(serde_json::from_value(value)?)))
    } else {
        Ok(Loaded::Qa(Box::new(serde_json::from_value(value)?)))
    }
}

type Series = (String, Vec<(f64, f64)>);

fn line_chart(
    out: &Path,
    title: &str,
    x_label: &str,
    y_label: &str,
    series: &[Series],
) -> anyhow::Result<()> {
    let x_max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(x, _)| *x))
        .fold(1.0, f64::max);
    let y_max = series
        .iter()
        .flat_map(|(_, p)| p.iter().map(|(_, y)| *y))
        .fold(0.001, f64::max);
    let root = SVGBackend::new(out, (720, 420)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..x_max * 1.05, 0.0..y_max * 1.15)?;
    chart
        .configure_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .draw()?;
    let colors = [&BLUE, &RED, &GREEN, &MAGENTA, &BLACK, &CYAN];
    for (i, (name, points)) in series.iter().enumerate() {
        let color = colors[i % colors.len()];
        chart
            .draw_series(LineSeries::new(points.iter().cloned(), color))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color));
        chart.draw_series(points.iter().map(|p| Circle::new(*p, 3, color.filled())))?;
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()?;
    root.present()?;
    Ok(())
}

/// Plots every result file given: Q&A runs against patients, video runs against viewers.
/// Writes `PREFIX-qa-latency.svg`, `PREFIX-qa-cost.svg`, `PREFIX-video.svg` as applicable.
pub fn plot(files: &[PathBuf], prefix: &str) -> anyhow::Result<Vec<PathBuf>> {
    let mut qa = Vec::new();
    let mut video = Vec::new();
    for f in files {
        match load(f)? {
            Loaded::Qa(r) if r.nodes == 1 && r.storm.is_none() && r.stalled.is_empty() => {
                qa.push(*r)
            }
            Loaded::Qa(_) => {}
            Loaded::Video(r) => video.push(*r),
        }
    }
    let mut written = Vec::new();
    if !qa.is_empty() {
        qa.sort_by_key(|r| r.patients_connected);
        let xs = |f: &dyn Fn(&QaReport) -> f64| -> Vec<(f64, f64)> {
            qa.iter()
                .map(|r| (r.patients_connected as f64, f(r)))
                .collect()
        };
        let out = PathBuf::from(format!("{prefix}-qa-latency.svg"));
        line_chart(
            &out,
            "Approval → last patient, one node",
            "patients in the session",
            "ms",
            &[
                ("p50".into(), xs(&|r| r.approval_to_last.p50_ms)),
                ("p95".into(), xs(&|r| r.approval_to_last.p95_ms)),
                ("p99".into(), xs(&|r| r.approval_to_last.p99_ms)),
            ],
        )?;
        written.push(out);
        let out = PathBuf::from(format!("{prefix}-qa-cost.svg"));
        line_chart(
            &out,
            "Server cost, one node",
            "patients in the session",
            "cores / KiB per patient / k deliveries per s",
            &[
                (
                    "server cores (load)".into(),
                    xs(&|r| r.server.cpu_cores_load),
                ),
                (
                    "generator cores (load)".into(),
                    xs(&|r| r.generator.cpu_cores_load),
                ),
                (
                    "KiB per idle patient / 10".into(),
                    xs(&|r| r.server.kib_per_idle_patient / 10.0),
                ),
                (
                    "deliveries/s / 10k".into(),
                    xs(&|r| r.deliveries_per_s / 10_000.0),
                ),
            ],
        )?;
        written.push(out);
    }
    if !video.is_empty() {
        video.sort_by_key(|r| r.viewers_connected);
        let xs = |f: &dyn Fn(&VideoReport) -> f64| -> Vec<(f64, f64)> {
            video
                .iter()
                .map(|r| (r.viewers_connected as f64, f(r)))
                .collect()
        };
        let out = PathBuf::from(format!("{prefix}-video.svg"));
        line_chart(
            &out,
            "Video relay, 1 publisher at ~1 Mbit/s",
            "viewers",
            "ms / % / cores×100",
            &[
                (
                    "first keyframe p95 (ms)".into(),
                    xs(&|r| r.first_frame.p95_ms),
                ),
                ("delay p99 (ms)".into(), xs(&|r| r.delay.p99_ms)),
                ("video loss (%)".into(), xs(&|r| r.video_loss_pct)),
                (
                    "server cores × 100".into(),
                    xs(&|r| r.server_cpu_cores * 100.0),
                ),
            ],
        )?;
        written.push(out);
    }
    Ok(written)
}
