//! `ingest` binary: not built yet (issue #4).

fn main() {
    eprintln!("ingest: not implemented yet (issue #4)");
    std::process::exit(2);
}
