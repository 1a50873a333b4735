//! Disk full, for real: `bt get` into a small tmpfs mounted on its output folder. It
//! says "disk full writing ...; paused, retrying in 5 s" once, keeps running and connected, and
//! keeps its partial data and resume file; stopped on the full disk its last resume save fails
//! without harming the previous one; restarted, it goes on from what it had, and once the tmpfs is
//! given more room (`mount -o remount,size=...`) it completes with byte-identical data.
//!
//! Mounting needs root (as in CI) or passwordless `sudo -n`; without either the test fails saying
//! so. The tmpfs is unmounted by a guard, also when the test fails.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use bt_protocol::bencode::{self, DecodeLimits};
use bt_tests::{
    BtProc, SlowRelay, TempDir, field_u64, gen_files, is_event, make_torrent, tree_equal,
};

const FILES: &[(&str, usize)] = &[("full/a.bin", 6_291_461), ("full/b.bin", 2_097_143)];

/// The tmpfs first holds this much: well under the torrent's 8 MiB.
const SMALL: &str = "3m";

/// Runs a mount command as root: directly when we are root, else with `sudo -n`.
fn as_root(args: &[&str]) -> Result<(), String> {
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    let mut cmd = if root {
        Command::new(args[0])
    } else {
        let mut c = Command::new("sudo");
        c.args(["-n", args[0]]);
        c
    };
    cmd.args(&args[1..]).stdin(Stdio::null());
    let out = bt_tests::run_bounded(cmd, Duration::from_secs(30));
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{args:?} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// A tmpfs mounted on a folder; unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(at).expect("create the mount point");
        let target = at.to_str().expect("UTF-8 test paths");
        if let Err(e) = as_root(&[
            "mount",
            "-t",
            "tmpfs",
            "-o",
            &format!("size={size}"),
            "bt-disk-full",
            target,
        ]) {
            panic!(
                "this test mounts a small tmpfs and needs root or passwordless sudo (sudo -n): {e}"
            );
        }
        Tmpfs(at.to_owned())
    }

    fn resize(&self, size: &str) {
        let target = self.0.to_str().expect("UTF-8 test paths");
        as_root(&["mount", "-o", &format!("remount,size={size}"), target])
            .unwrap_or_else(|e| panic!("cannot give the tmpfs more room: {e}"));
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let target = self.0.to_str().expect("UTF-8 test paths");
        if as_root(&["umount", target]).is_err() {
            let _ = as_root(&["umount", "-l", target]);
        }
    }
}

/// The resume file's bytes, checked to be a whole one.
fn whole_resume(path: &Path) -> Vec<u8> {
    let bytes =
        std::fs::read(path).unwrap_or_else(|e| panic!("no resume file at {}: {e}", path.display()));
    let decoded = bencode::decode(&bytes, DecodeLimits::default())
        .unwrap_or_else(|e| panic!("the resume file is torn: {e:?}"));
    let root = decoded.value.as_dict().expect("a dict");
    assert!(root.get(b"bt resume").is_some() && root.get(b"pieces").is_some());
    bytes
}

#[test]
fn bt_get_on_a_full_tmpfs_pauses_keeps_its_state_and_completes_once_space_is_back() {
    let tmp = TempDir::new("disk-full");
    let src = tmp.path().join("src");
    gen_files(&src, FILES);
    let torrent = make_torrent(&src.join("full"), &[], "64K", &tmp.path().join("t.torrent"));
    let seeder = BtProc::seed(&torrent.path, &src, &[]);
    let out = tmp.path().join("out");
    let tmpfs = Tmpfs::mount(&out, SMALL);
    let resume = out.join(format!(".bt-resume-{}", torrent.info_hash));

    // First run, slowed down so it saves resume data (every second here) before the disk fills.
    let relay = SlowRelay::start(seeder.addr, 1 << 20);
    let mut first = BtProc::get(
        &torrent.path,
        &out,
        &[relay.addr()],
        &["--resume-interval", "1s"],
    );
    let paused = first.wait_for(|e| is_event(e, "writes_paused"), Duration::from_secs(60));
    let error = paused["error"].as_str().unwrap_or_default();
    let data = out.join("full");
    assert!(
        error.starts_with("disk full writing ") && error.contains(data.to_str().unwrap()),
        "the error names the disk full and the file: {paused}"
    );
    assert_eq!(field_u64(&paused, "retry_in_s"), 5, "{paused}");
    let saved = whole_resume(&resume);

    // It keeps running through a retry (5 s), still stalled, still connected, said once.
    let from = first.proc().event_count();
    let later = first.proc().wait_for_from(
        from,
        |e| is_event(e, "status") && e["writes_paused"] == true && field_u64(e, "peers") > 0,
        Duration::from_secs(10),
    );
    // A retry (5 s after the stall) that fails again, rather than a sleep past it.
    let retried = first.proc().wait_for_from(
        from,
        |e| is_event(e, "writes_still_failing"),
        Duration::from_secs(15),
    );
    assert!(field_u64(&retried, "retry_in_s") >= 5, "{retried}");
    let still = first.next_status(Duration::from_secs(10));
    assert!(still["writes_paused"] == true, "{still}");
    let events = first.proc().events();
    let said = events
        .iter()
        .filter(|e| is_event(e, "writes_paused"))
        .count();
    let errors = events.iter().filter(|e| is_event(e, "disk_error")).count();
    assert_eq!(
        (said, errors),
        (1, 0),
        "the stall is said once:\n{}",
        first.log()
    );
    // The pieces verified before the last status it printed, and that status's count of them.
    let last_status = events
        .iter()
        .rposition(|e| is_event(e, "status"))
        .expect("a status");
    let verified: Vec<u64> = events[..last_status]
        .iter()
        .filter(|e| is_event(e, "piece_verified"))
        .map(|e| field_u64(e, "piece"))
        .collect();
    let have = field_u64(&events[last_status], "have");
    assert!(
        !verified.is_empty() && have >= field_u64(&later, "have") && have >= verified.len() as u64,
        "verified pieces stay verified through the stall:\n{}",
        first.log()
    );

    // Stopped on the full disk: its last resume save cannot be written; the previous one stays.
    first.proc().signal("TERM");
    let status = first.proc().wait_exit(Duration::from_secs(30));
    assert!(!status.success(), "an incomplete download exits non-zero");
    let after = whole_resume(&resume);
    let log = first.log();
    println!("stalled: {paused}\nstill stalled after a retry: {still}");
    println!(
        "resume file after the stop on a full disk: {} ({} bytes); stderr: {}",
        if after == saved {
            "unchanged"
        } else {
            "replaced"
        },
        after.len(),
        log.lines()
            .filter(|l| l.contains("resume"))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    assert!(
        log.contains("could not save resume data") && log.contains("No space left on device"),
        "the last save on the full disk fails, saying why:\n{log}"
    );
    assert!(
        after == saved,
        "the failed save left the previous resume file as it was"
    );
    drop(relay);

    // Restarted on the still-full disk: it starts from what it had, stalls again, goes on.
    let mut second = BtProc::get(&torrent.path, &out, &[seeder.addr], &[]);
    let checked = second.wait_for(|e| is_event(e, "checked"), Duration::from_secs(30));
    assert!(
        field_u64(&checked, "have") >= verified.len() as u64,
        "the restart kept the {} pieces verified before: {checked}",
        verified.len()
    );
    second.wait_for(|e| is_event(e, "writes_paused"), Duration::from_secs(30));
    whole_resume(&resume);
    tmpfs.resize("64m");
    second.wait_for(|e| is_event(e, "writes_resumed"), Duration::from_secs(30));
    second.wait_success(Duration::from_secs(60));
    tree_equal(&src.join("full"), &data);
    let events = second.proc().events();
    let said = events
        .iter()
        .filter(|e| is_event(e, "writes_paused"))
        .count();
    assert_eq!(said, 1, "one stall, said once:\n{}", second.log());
    println!("restart: {checked}; completed once the tmpfs grew");
}
