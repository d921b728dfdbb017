use nn_runtime::network;

#[network {
    fn f0(z) = sigmoid(z) * z;
    fn f1(z) = f0(f0(z));
    fn f2(z) = f1(f1(z));
    fn f3(z) = f2(f2(z));
    fn f4(z) = f3(f3(z));
    fn f5(z) = f4(f4(z));
    fn f6(z) = f5(f5(z));
    fn f7(z) = f6(f6(z));
    fn f8(z) = f7(f7(z));
    fn f9(z) = f8(f8(z));
    fn f10(z) = f9(f9(z));
    fn f11(z) = f10(f10(z));
    fn f12(z) = f11(f11(z));
    fn f13(z) = f12(f12(z));
    fn f14(z) = f13(f13(z));
    fn f15(z) = f14(f14(z));
    fn f16(z) = f15(f15(z));
    fn f17(z) = f16(f16(z));
    fn f18(z) = f17(f17(z));
    fn f19(z) = f18(f18(z));
    fn f20(z) = f19(f19(z));
    fn f21(z) = f20(f20(z));
    fn f22(z) = f21(f21(z));
    fn f23(z) = f22(f22(z));
    fn f24(z) = f23(f23(z));
    fn f25(z) = f24(f24(z));
    fn f26(z) = f25(f25(z));
    fn f27(z) = f26(f26(z));
    fn f28(z) = f27(f27(z));
    fn f29(z) = f28(f28(z));
    fn f30(z) = f29(f29(z));
    fn f31(z) = f30(f30(z));
    fn f32(z) = f31(f31(z));
    fn f33(z) = f32(f32(z));
    fn f34(z) = f33(f33(z));
    fn f35(z) = f34(f34(z));
    fn f36(z) = f35(f35(z));
    fn f37(z) = f36(f36(z));
    fn f38(z) = f37(f37(z));
    fn f39(z) = f38(f38(z));
    input x[2]; target y[1];
    out = dense(f39(x), 1);
    loss = mse(out, y);
}]
struct Net;

fn main() {}
