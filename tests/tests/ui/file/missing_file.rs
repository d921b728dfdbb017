use nn_runtime::network;

#[network(file = "nets/missing.nn")]
pub struct Net;

fn main() {}
