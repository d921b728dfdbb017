use nn_runtime::network;

#[network(file = "nets/two_errors.nn")]
pub struct Net;

fn main() {}
