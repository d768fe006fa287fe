//! `aggregator` binary: not built yet (issue #5).

fn main() {
    eprintln!("aggregator: not implemented yet (issue #5)");
    std::process::exit(2);
}
