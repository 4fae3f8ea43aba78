//! `im-admin sync backfill --app APP --cloud tencent`: every live group of the app brought
//! into a cloud added after the groups were made, with a progress bar on a terminal (plain
//! progress lines otherwise), and a summary. Ctrl-C stops starting groups and lets those
//! started finish; a later run goes on where this one stopped (see `im_sync::backfill`).

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Result;
use im_shared::model::CloudId;
use im_sync::backfill::{Outcome, Summary};
use im_sync::Syncer;
use indicatif::{ProgressBar, ProgressStyle};

/// A plain progress line at most this often (and at the end).
const LINE_EVERY: Duration = Duration::from_secs(2);

pub async fn run(syncer: &Syncer, app_id: &str, cloud: CloudId) -> Result<Summary> {
    let groups = syncer.backfill_groups(app_id).await?;
    let total = groups.len() as u64;
    eprintln!(
        "backfill of {total} live group(s) of {app_id} into {}",
        cloud.as_str()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            eprintln!("stopping: the groups started finish; run the same command again to go on");
            on_signal.store(true, Ordering::Relaxed);
        }
    });
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new(total);
        bar.set_style(
            ProgressStyle::with_template(
                "{elapsed_precise} [{bar:40}] {pos}/{len} groups ({per_sec}, {eta} left) {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
        );
        bar
    });
    let started = Instant::now();
    let mut last_line = Instant::now();
    let mut done = 0u64;
    let mut failed = 0u64;
    let summary = syncer
        .backfill(app_id, cloud, &groups, &stop, |group_id, outcome| {
            done += 1;
            if let Outcome::Failed { why } = outcome {
                failed += 1;
                let line = format!("group {group_id}: failed: {why}");
                match &bar {
                    Some(bar) => bar.println(line),
                    None => eprintln!("{line}"),
                }
            }
            match &bar {
                Some(bar) => {
                    bar.set_position(done);
                    if failed > 0 {
                        bar.set_message(format!("{failed} failed"));
                    }
                }
                None if last_line.elapsed() >= LINE_EVERY || done == total => {
                    last_line = Instant::now();
                    let rate = done as f64 / started.elapsed().as_secs_f64().max(0.001);
                    eprintln!("{done}/{total} groups ({rate:.1}/s), {failed} failed");
                }
                None => {}
            }
        })
        .await?;
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} created, {} already there, {} gone, {} failed, {} not started, in {secs:.1} s",
        summary.created, summary.already_there, summary.gone, summary.failed, summary.not_started
    );
    Ok(summary)
}
