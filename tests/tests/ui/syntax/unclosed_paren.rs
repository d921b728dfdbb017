// Inside the attribute rustc itself rejects an unbalanced `(`; in a
// definition file it is the macro that finds it.
use nn_runtime::network;

#[network(file = "nets/unclosed_paren.nn")]
pub struct Net;

fn main() {}
