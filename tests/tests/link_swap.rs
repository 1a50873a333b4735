//! A folder of a download swapped for a symbolic link while `bt get` writes into it: bt refuses
//! the link at the moment it meets it, says so naming the link, and writes nothing outside its
//! output folder. Every process runs with `--no-dht` and its own HOME, is bounded in time and is
//! stopped by its PID.

use std::path::Path;
use std::time::Duration;

use bt_tests::{BtProc, SlowRelay, TempDir, gen_files, is_event, make_torrent};
use serde_json::Value;

/// The torrent's files, in the torrent's order (pieces of 16 KiB): `other.bin` is pieces 0-15,
/// `sub/a.bin` 16-80, `sub/b.bin` 80-208.
const FILES: &[(&str, usize)] = &[
    ("data/other.bin", 256 << 10),
    ("data/sub/a.bin", (1 << 20) + 1_234),
    ("data/sub/b.bin", 2 << 20),
];

/// The first piece holding bytes of `data/sub/a.bin`.
const FIRST_A_PIECE: u64 = 16;

/// The first piece holding bytes of `data/sub/b.bin`.
const FIRST_B_PIECE: u64 = 80;

/// The entries of `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list a folder")
        .map(|e| {
            e.expect("a folder entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

#[test]
fn a_folder_swapped_for_a_link_mid_download_is_refused_and_nothing_is_written_outside() {
    // Proves a sub-folder renamed away and replaced by a link to a folder outside, after some of
    // its pieces were verified, is refused when bt next opens a file there: the pause names the
    // link, nothing appears in the link's target, what was written before stays in the renamed
    // folder, and bt goes on running.
    let tmp = TempDir::new("link-swap");
    let src = tmp.path().join("src");
    gen_files(&src, FILES);
    let torrent = make_torrent(&src.join("data"), &[], "16K", &tmp.path().join("t.torrent"));
    let seeder = BtProc::seed(&torrent.path, &src, &[]);
    // 256 KiB/s: `sub/a.bin` takes some 4 s to arrive.
    let relay = SlowRelay::start(seeder.addr, 256 << 10);
    let out = tmp.path().join("out");
    let outside = tmp.path().join("outside");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    // In order, so the swap falls while `sub/a.bin` is open and before `sub/b.bin` is.
    let mut getter = BtProc::get(
        &torrent.path,
        &out,
        &[relay.addr()],
        &["--strategy", "sequential"],
    );

    let verified_from = |first: u64| {
        move |e: &Value| {
            is_event(e, "piece_verified") && e["piece"].as_u64().is_some_and(|p| p >= first)
        }
    };
    let in_a = getter.wait_for(verified_from(FIRST_A_PIECE), Duration::from_secs(60));
    assert!(
        in_a["piece"].as_u64().is_some_and(|p| p < FIRST_B_PIECE),
        "the download reached sub/b.bin before the swap: {in_a}"
    );
    std::fs::rename(out.join("data/sub"), out.join("data/sub.moved")).unwrap();
    std::os::unix::fs::symlink(&outside, out.join("data/sub")).unwrap();

    // bt names the link when it first opens `sub/b.bin`; had it followed the link, the pieces of
    // `sub/b.bin` would verify instead.
    let link = out.canonicalize().unwrap().join("data/sub");
    let link_text = link.to_str().expect("UTF-8 test paths").to_owned();
    let names_link = |e: &Value| {
        (is_event(e, "writes_paused") || is_event(e, "disk_error"))
            && e["error"].as_str().is_some_and(|s| s.contains(&link_text))
    };
    let wrote_b = verified_from(FIRST_B_PIECE);
    let met = getter.wait_for(|e| names_link(e) || wrote_b(e), Duration::from_secs(60));
    assert_eq!(
        names(&outside),
        Vec::<String>::new(),
        "bt wrote outside its output folder, through the link {link_text} (it printed {met})"
    );
    assert_eq!(
        met["error"].as_str(),
        Some(
            format!(
                "refusing to follow a symbolic link at {link_text}: nothing below the download \
                 folder may be a link"
            )
            .as_str()
        ),
        "{met}\n{}",
        getter.log()
    );

    // Still running, writes paused; and still nothing outside.
    let from = getter.proc().event_count();
    getter.proc().wait_for_from(
        from,
        |e| is_event(e, "status") && e["writes_paused"] == true,
        Duration::from_secs(10),
    );
    assert_eq!(names(&outside), Vec::<String>::new());
    // The handle opened before the swap wrote into the real file, now in the renamed folder.
    assert_eq!(names(&out.join("data/sub.moved")), ["a.bin"]);
    // Dropping the processes stops them by their PIDs.
}
