//! `api` binary: not built yet (issue #5).

fn main() {
    eprintln!("api: not implemented yet (issue #5)");
    std::process::exit(2);
}
