//! `bt`: the command-line client.

fn main() {}
