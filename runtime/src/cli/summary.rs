//! The summary at the end of `bt get` and `bt seed`, as aria2c's "Download Results": how the run
//! ended, how long it took, the bytes received and sent with their average rates, the peers that
//! exchanged data, and the files complete and skipped. Text for a person (stdout), or one
//! `summary` event with the same fields under `--json`.

use std::time::Duration;

use bt_protocol::metainfo::Metainfo;
use bt_protocol::torrent::{Bitfield, FilePriority};
use bt_runtime::driver::{Outcome, TorrentFinished};
use bt_runtime::units::format_bytes;

/// What one run did.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RunSummary {
    /// The torrent's name, once its metadata is known.
    name: Option<String>,
    /// How it ended: `complete`, `interrupted`, `failed` or `seed_goal_reached`.
    result: &'static str,
    /// From the start of the transfer (after the data check) to its end.
    elapsed: Duration,
    /// Block bytes received.
    downloaded: u64,
    /// Block bytes sent.
    uploaded: u64,
    /// Peer addresses that sent or received block data.
    peers_used: usize,
    /// Peer addresses connected at all.
    peers_met: usize,
    /// The files, once the metadata is known.
    files: Option<FileCounts>,
}

/// The torrent's files at the end of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FileCounts {
    /// Wanted files whose every piece is verified.
    complete: usize,
    /// Files not downloaded by choice (`--select`, `--only`, a magnet's `so=`).
    skipped: usize,
    /// Wanted files still missing pieces.
    incomplete: usize,
}

impl FileCounts {
    /// Counts `meta`'s files against `have` under `priorities` (`None`: every file wanted).
    pub(crate) fn new(
        meta: &Metainfo,
        priorities: Option<&[FilePriority]>,
        have: &Bitfield,
    ) -> Self {
        let layout = &meta.info.layout;
        let mut counts = FileCounts::default();
        for file in 0..layout.file_count() {
            let skipped = priorities
                .and_then(|p| p.get(file))
                .is_some_and(|p| *p == FilePriority::Skip);
            if skipped {
                counts.skipped += 1;
            } else if layout.file_pieces(file).all(|p| have.get(p)) {
                counts.complete += 1;
            } else {
                counts.incomplete += 1;
            }
        }
        counts
    }
}

impl RunSummary {
    /// The summary of `finished` after `elapsed`, ended by `outcome`.
    pub(crate) fn new(
        outcome: Outcome,
        finished: &TorrentFinished,
        elapsed: Duration,
        meta: Option<&Metainfo>,
        priorities: Option<&[FilePriority]>,
    ) -> Self {
        let by_addr = &finished.peers.by_addr;
        RunSummary {
            name: meta.map(|m| m.info.name.clone()),
            result: match outcome {
                Outcome::Complete => "complete",
                Outcome::Interrupted => "interrupted",
                Outcome::Failed => "failed",
                Outcome::SeedGoalsReached => "seed_goal_reached",
            },
            elapsed,
            downloaded: finished.status.downloaded,
            uploaded: finished.status.uploaded,
            peers_used: by_addr
                .values()
                .filter(|t| t.downloaded > 0 || t.uploaded > 0)
                .count(),
            peers_met: by_addr.len(),
            files: meta.map(|m| FileCounts::new(m, priorities, &finished.have)),
        }
    }

    /// Bytes per second over the whole run.
    fn average(&self, bytes: u64) -> u64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            (bytes as f64 / secs) as u64
        } else {
            0
        }
    }

    /// The `summary` event.
    pub(crate) fn json(&self) -> serde_json::Value {
        serde_json::json!({
            "event": "summary", "name": self.name, "result": self.result,
            "elapsed_s": self.elapsed.as_secs_f64(),
            "downloaded": self.downloaded, "uploaded": self.uploaded,
            "average_download_rate": self.average(self.downloaded),
            "average_upload_rate": self.average(self.uploaded),
            "peers_used": self.peers_used, "peers_met": self.peers_met,
            "files": self.files.map(|f| serde_json::json!({
                "complete": f.complete, "skipped": f.skipped, "incomplete": f.incomplete,
            })),
        })
    }

    /// The text for a person: a heading and one aligned line per figure.
    pub(crate) fn text(&self) -> String {
        let result = match self.result {
            "seed_goal_reached" => "seeding goal reached",
            other => other,
        };
        let whole_secs = Duration::from_secs(self.elapsed.as_secs());
        let mut lines = vec![
            format!(
                "Results{}:",
                self.name
                    .as_ref()
                    .map_or_else(String::new, |n| format!(" for {n}"))
            ),
            format!("  result    {result}"),
            format!("  elapsed   {}", humantime::format_duration(whole_secs)),
            format!(
                "  received  {} ({}/s on average)",
                format_bytes(self.downloaded),
                format_bytes(self.average(self.downloaded))
            ),
            format!(
                "  sent      {} ({}/s on average)",
                format_bytes(self.uploaded),
                format_bytes(self.average(self.uploaded))
            ),
            format!(
                "  peers     {} exchanged data, {} met",
                self.peers_used, self.peers_met
            ),
        ];
        if let Some(f) = self.files {
            let mut files = format!("  files     {} complete", f.complete);
            if f.skipped > 0 {
                files.push_str(&format!(", {} skipped", f.skipped));
            }
            if f.incomplete > 0 {
                files.push_str(&format!(", {} incomplete", f.incomplete));
            }
            lines.push(files);
        }
        lines.join("\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(files: Option<FileCounts>) -> RunSummary {
        RunSummary {
            name: Some("ubuntu.iso".into()),
            result: "complete",
            elapsed: Duration::from_millis(72_500),
            downloaded: 300 << 20,
            uploaded: 12 << 20,
            peers_used: 3,
            peers_met: 5,
            files,
        }
    }

    #[test]
    fn the_summary_reads_as_a_table_and_its_json_has_the_same_figures() {
        // Proves what a person sees at the end of a run (snapshot) and that the JSON event
        // carries the same figures, averages over the elapsed time included.
        let s = sample(Some(FileCounts {
            complete: 3,
            skipped: 2,
            incomplete: 0,
        }));
        insta::assert_snapshot!(s.text());
        let j = s.json();
        assert_eq!(j["event"], "summary");
        assert_eq!(j["downloaded"], 300u64 << 20);
        assert_eq!(j["average_download_rate"], (300u64 << 20) * 1000 / 72_500);
        assert_eq!(j["files"]["skipped"], 2);
        assert_eq!(j["peers_used"], 3);
        assert!(sample(None).json()["files"].is_null());
    }
}
