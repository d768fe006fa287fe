//! Prints the API's OpenAPI document (what `/v1/openapi.json` serves) to
//! standard output, without running the API: for client generators and
//! reviews of the document.
//!
//!     cargo run -q -p api --example openapi > openapi.json

fn main() {
    println!("{:#}", api::openapi::document());
}
