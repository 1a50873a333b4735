//! The seeding goals a user sets on `bt seed` and `bt get` (`--seed-ratio`, `--seed-time`): when
//! a seeding torrent stops by itself. The decision is the protocol's
//! ([`bt_protocol::client::Client::set_seed_goal`]); this module only parses the options, and a
//! value that is not a ratio or a duration is refused by clap in one line (exit code 2).

use std::time::Duration;

use bt_protocol::client::{SeedGoal, SeedRatio};

/// Seeding goals shared by `bt get` and `bt seed`.
#[derive(Debug, clap::Args)]
pub(crate) struct GoalArgs {
    /// Stop seeding once the bytes uploaded reach RATIO times the data held (`1`, `0.5`, `2`);
    /// with `bt get`, keep seeding after the download until then. The first goal reached wins.
    #[arg(long, value_name = "RATIO", value_parser = SeedRatio::parse, allow_negative_numbers = true)]
    seed_ratio: Option<SeedRatio>,
    /// Stop after seeding this long (`30m`, `2h`, `90s`; paused time does not count); with
    /// `bt get`, keep seeding after the download until then. The first goal reached wins.
    #[arg(long, value_name = "DURATION", value_parser = seed_time)]
    seed_time: Option<Duration>,
}

fn seed_time(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("`{text}` is not a duration (say 90s, 30m or 2h): {e}"))
}

impl GoalArgs {
    /// The goal set, if any.
    pub(crate) fn goal(&self) -> Option<SeedGoal> {
        let goal = SeedGoal {
            ratio: self.seed_ratio,
            time: self.seed_time,
        };
        (goal != SeedGoal::default()).then_some(goal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        goals: GoalArgs,
    }

    fn parse(args: &[&str]) -> Result<Option<SeedGoal>, clap::Error> {
        <Cli as clap::Parser>::try_parse_from(["bt"].iter().chain(args)).map(|c| c.goals.goal())
    }

    #[test]
    fn goals_parse_and_bad_values_are_refused() {
        // Proves both options reach the goal (none set: no goal), and that a negative or
        // non-numeric ratio and a duration with an unknown unit are refused as bad values.
        assert_eq!(parse(&[]).unwrap(), None);
        assert_eq!(
            parse(&["--seed-ratio", "1.5", "--seed-time", "2h"]).unwrap(),
            Some(SeedGoal {
                ratio: Some(SeedRatio::from_thousandths(1500)),
                time: Some(Duration::from_secs(7200)),
            })
        );
        for bad in [
            &["--seed-ratio", "-1"][..],
            &["--seed-ratio", "abc"],
            &["--seed-time", "5x"],
            &["--seed-time", "soon"],
        ] {
            let err = parse(bad).expect_err("refused");
            assert_eq!(
                err.kind(),
                clap::error::ErrorKind::ValueValidation,
                "{bad:?}"
            );
        }
    }
}
