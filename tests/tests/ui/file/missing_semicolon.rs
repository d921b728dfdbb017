use nn_runtime::network;

#[network(file = "nets/file_missing_semicolon.nn")]
pub struct Net;

fn main() {}
