use nn_runtime::network;

#[network(file = "nets/unterminated_comment.nn")]
struct Net;

fn main() {}
