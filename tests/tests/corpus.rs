//! Definitions made by the macro's generator (`nn-macro/src/fuzz.rs`,
//! written by its ignored test `write_corpus`): each must expand to
//! code that compiles, and its passes must run. The generator's long
//! run compiles many more (README, "Limits").

#![allow(clippy::all)]

use nn_runtime::prelude::*;

/// Runs every pass once on zero inputs (the values are beside the point).
fn exercise<N: Network>() -> f64
where
    N::Input: Default,
    N::Target: Default,
{
    let net = N::new(1);
    let (x, y) = (N::Input::default(), N::Target::default());
    let mut tape = N::new_tape();
    let mut grads = N::new_grads();
    let loss = net.forward(&x, &y, &mut tape);
    net.backward(&tape, &mut grads);
    let _ = net.predict(&x);
    loss.to_f64()
}

/// Generated from seed 1.
#[network { param w5[1, 5] = xavier; param w6[4, 1] = uniform(-0.5, 0.5); dtype f64; input x1[3]; input x2[5]; fn f3(z0) = softsign(z0) * z0 + 2.5; h4 = (w6 @ (w5 @ x2)); h7 = abs(relu(dense(h4, 4))); target y[4]; output h7; loss = mse(h7, y) + 0.001 * sum(x1) + 0.001 * sum(x2); }]
pub struct Gen0;

/// Generated from seed 2.
#[network { dtype f64; param p2 = xavier_normal; param p3[4] = xavier_normal; input x1[3]; fn f4(z0, z1) = hardtanh(z0 - z1) + z1 * 10; fn f5(z0) = gelu_exact(z0) * z0 + 2; h6 = clamp((relu(p3) * mish(dense(x1, 4))), -1, 1); target y[4]; output h6; loss = mse(h6, y) + 0.01 * sum(square(h6)) + 0.001 * sum(x1) + 0.001 * sum(p2) + 0.001 * sum(p3); }]
pub struct Gen1;

/// Generated from seed 3.
#[network { param p5[2] = he_uniform; param p6[4] = constant(0.1); input x1[3, 4]; input x2[4, 3]; fn f3(z0, z1) = log1p(z0 - z1) + z1 * 2; h4 = square(((p6 + 2) / tanh(p6))); h7 = p6; h8 = ((softplus(leaky_relu(dense(p5, 6))) * mean(h7)) - log_softmax((silu(dense(h7, 6)) - 1e30))); h9 = square(p6); target y[4]; output h9; loss = mse(h9, y) + 0.01 * sum(square(h9)) + 0.001 * sum(x1) + 0.001 * sum(x2) + 0.001 * sum(p5) + 0.001 * sum(p6); }]
pub struct Gen2;

/// Generated from seed 4.
#[network { dtype f64; param p2 = xavier_normal; input x1[4]; fn f3(z0, z1) = softsign(z0 - z1) + z1 * 2.5; fn f4(z0, z1) = exp(z0 - z1) + z1 * 0; h5 = tanh(tanh(relu(dense(x1, 3)))); h6 = dense(x1, 4); h7 = expm1(dense(h6, 6)); h8 = relu(h6[0:3]); target y: class[3]; output h8; loss = softmax_cross_entropy(h8, y) + 0.001 * sum(x1) + 0.001 * sum(p2); }]
pub struct Gen3;

/// Generated from seed 5.
#[network { dtype f64; param p2[4] = constant(0.1); input x1[4]; fn f3(z0) = expm1(z0) * z0 + 2; fn f4(z0) = sigmoid(z0) * z0 + 7.29; h5 = concat(hardtanh(dense(x1, 1)), max(exp(dense(x1, 2)), dense(p2, 2))); h6 = (h5 - softmax(h5)); h7 = (softplus(dense(p2, 6)) - softsign(10)); target y[6]; output h7; loss = bce_with_logits(h7, y) + 0.001 * sum(x1) + 0.001 * sum(p2); }]
pub struct Gen4;

/// Generated from seed 6.
#[network { steps 4; input x1[t][2]; state s2[3] = zeros; s2[t] = softsign(dense(s2[t-1], 3) + dense(x1[t], 3)); target y[3]; o3 = dense(s2[last], 3); loss = mse(o3, y); }]
pub struct Gen5;

/// Generated from seed 7.
#[network { steps 2; input x1[t][1]; state s2[3] = constant(0.5); s2[t] = sigmoid(dense(x1[t], 3)); target y[t][4]; o3[t] = dense(s2[t], 4); loss = sum_steps(mse(o3[t], y[t])); }]
pub struct Gen6;

/// Generated from seed 9.
#[network { param p5[1] = he_uniform; param p8[3] = he; param p9[4] = constant(0.1); dtype f64; param p2[5] = xavier_normal; input x1[6]; h3 = ((mish(dense(x1, 2)) + abs(dense(x1, 2))) - dense(p2, 2)); h4 = concat(where((clamp(p5, -1, 1) - (10 - 2.5)) > square(max(p5, p5)), (clamp(p5, -1, 1) - (10 - 2.5)), (p5 + gelu_exact(dense(h3, 1)))), p5); h6 = p2; h7 = (dense(x1, 5, he) * concat(tanh(dense(p5, 1)), (concat(p8, p5) + square(p9)))); target y: class[5]; output h7; loss = softmax_cross_entropy(h7, y) + 0.001 * sum(x1) + 0.001 * sum(p2) + 0.001 * sum(p5) + 0.001 * sum(p8) + 0.001 * sum(p9); }]
pub struct Gen7;

/// Generated from seed 10.
#[network { param w7[4, 6] = normal(0, 0.1); param p3 = normal(0, 0.1); param p4[5] = zeros; input x1[6]; input x2[3]; fn f5(z0, z1) = hard_sigmoid(z0 - z1) + z1 * 2.5; h6 = (w7 @ x1); h8 = (x2[0:2] * tanh(dense(h6, 2))); target y[2]; output h8; loss = bce_with_logits(h8, y) + 0.001 * sum(x1) + 0.001 * sum(x2) + 0.001 * sum(p3) + 0.001 * sum(p4); }]
pub struct Gen8;

/// Generated from seed 11.
#[network { param p9[1] = he_uniform; param p11[5] = xavier; param p3[4] = he_uniform; input x1[1, 1]; input x2[4]; fn f4(z0, z1) = silu(z0 - z1) + z1 * 1.52; fn f5(z0) = tanh(z0) * z0 + 2.5; h6 = dense(x2, 6); h7 = min(x2, x2); h8 = gelu_exact(concat(square(elu(p9)), ((p9 - p9) / p9))); h10 = softmax((concat(silu(dense(p11, 2)), (h8 * 3)) - relu(log_softmax(h7)))); target y[4]; output h10; loss = mse(h10, y) + 0.001 * sum(x1) + 0.001 * sum(x2) + 0.001 * sum(p3) + 0.001 * sum(p9) + 0.001 * sum(p11); }]
pub struct Gen9;

/// Generated from seed 12.
#[network { param p7[2] = uniform(-0.5, 0.5); param p8[3] = xavier_normal; param p9[5] = constant(0.1); param p12[1] = normal(0, 0.1); param w13[4, 5] = xavier_normal; param w14[4, 6] = zeros; input x1; input x2[6]; const k3 = 2; fn f4(z0) = relu(z0) * z0 + 1e-3; fn f5(z0, z1) = silu(z0 - z1) + z1 * 7; h6 = (f4((x2[0:6] - (x1 - x1))) - concat((concat(p7, p8) * log_softmax(p9)), dense(p9, 1, xavier))); h10 = (leaky_relu(p8) + log_softmax((f4(p8) * x1))); h11 = ((hardtanh(concat(p12, h10)) - (w13 @ p9)) + max((w14 @ h6), elu(dense(h10, 4)))); target y[4]; output h11; loss = mse(h11, y) + 0.001 * sum(x1) + 0.001 * sum(x2) + 0.001 * sum(p7) + 0.001 * sum(p8) + 0.001 * sum(p9) + 0.001 * sum(p12); }]
pub struct Gen10;

/// Generated from seed 13.
#[network { dtype f64; param p4[3] = he; param p5 = he_uniform; input x1[2]; input x2[5]; const k3 = 55; h6 = sigmoid(x1); h7 = hard_sigmoid(x1); target y[2]; output h7; loss = bce_with_logits(h7, y) + 0.001 * sum(x1) + 0.001 * sum(x2) + 0.001 * sum(p4) + 0.001 * sum(p5); }]
pub struct Gen11;

/// Generated from seed 14.
#[network { param p3 = zeros; input x1[6]; const k2 = 2.32; fn f4(z0) = silu(z0) * z0 + 3.88; h5 = where(softplus(dense(x1, 6)) > x1[0:6], softplus(dense(x1, 6)), x1); h6 = dense(h5, 4); target y[4]; output h6; loss = mse(h6, y) + 0.01 * sum(square(h6)) + 0.001 * sum(x1) + 0.001 * sum(p3); }]
pub struct Gen12;

/// Generated from seed 16.
#[network { steps 1; input x1[t][1]; state s2[5] = constant(0.5); s2[t] = softsign(dense(x1[t], 5)); target y[3]; o3 = dense(s2[last], 3); loss = mse(o3, y); }]
pub struct Gen13;

/// Generated from seed 17.
#[network { param p6[5] = uniform(-0.5, 0.5); dtype f64; param p3[3] = constant(0.1); param p4[1] = he_uniform; input x1; input x2; h5 = concat(exp(exp(p6[1:2])), exp(dense(p4, 2))); h7 = concat(log_softmax(hardtanh(dense(p6, 2))), p4); target y[3]; output h7; loss = bce_with_logits(h7, y) + 0.001 * sum(x1) + 0.001 * sum(x2) + 0.001 * sum(p3) + 0.001 * sum(p4) + 0.001 * sum(p6); }]
pub struct Gen14;

/// Generated from seed 18.
#[network { param p6[5] = zeros; param p3 = xavier_normal; input x1[3]; input x2; fn f4(z0) = hardtanh(z0) * z0 + 1e30; h5 = (log_softmax((log_softmax(p6) + x2)) / (f4(softplus(p6)) - p6)); h7 = x1; h8 = h7; target y[3]; output h8; loss = bce_with_logits(h8, y) + 0.001 * sum(x1) + 0.001 * sum(x2) + 0.001 * sum(p3) + 0.001 * sum(p6); }]
pub struct Gen15;

/// Generated from seed 19.
#[network { param p4[1] = zeros; input x1[4]; input x2[5]; const k3 = 72; fn f5(z0) = silu(z0) * z0 + 0.1; fn f6(z0, z1) = softplus(z0 - z1) + z1 * 0.1; h7 = (x2 * dot(x1, x1)); h8 = elu((gelu(abs(x2)) + relu(expm1(0)))); target y[5]; output h8; loss = mse(h8, y) + 0.001 * sum(x1) + 0.001 * sum(x2) + 0.001 * sum(p4); }]
pub struct Gen16;

/// Generated from seed 20.
#[network { dtype f64; steps 3; input x1[t][2]; state s2[2] = zeros; s2[t] = softsign(dense(x1[t], 2)); target y[3]; o3 = dense(s2[last], 3); loss = mse(o3, y); }]
pub struct Gen17;

/// Generated from seed 21.
#[network { input x1[2]; fn f2(z0) = silu(z0) * z0 + 8.1; fn f3(z0) = softsign(z0) * z0 + 0.1; h4 = concat((x1 + expm1((x1 / x1))), hard_sigmoid(dense(x1, 1))); h5 = exp(silu(dense(h4, 6))); target y[6]; output h5; loss = mse(h5, y) + 0.01 * sum(square(h5)) + 0.001 * sum(x1); }]
pub struct Gen18;

/// Generated from seed 24.
#[network { input x1[2]; const k2 = 0; fn f3(z0) = relu(z0) * z0 + 81; h4 = (exp(dense(x1, 4)) * elu(((0.1 * 2) - 10))); target y[4]; output h4; loss = mse(h4, y) + 0.01 * sum(square(h4)) + 0.001 * sum(x1); }]
pub struct Gen19;

/// Generated from seed 26.
#[network { param p2 = uniform(-0.5, 0.5); input x1[4]; h3 = x1; h4 = exp(dense(h3, 2)); target y: class[2]; output h4; loss = softmax_cross_entropy(h4, y) + 0.001 * sum(x1) + 0.001 * sum(p2); }]
pub struct Gen20;

/// Generated from seed 27.
#[network { steps 2; input x1[t][5]; state s2[5] = zeros; s2[t] = softsign(dense(x1[t], 5)); target y[t][2]; o3[t] = dense(s2[t], 2); loss = mean_steps(mse(o3[t], y[t])); }]
pub struct Gen21;

/// Generated from seed 29.
#[network { param p8[5] = constant(0.1); param p9[1] = uniform(-0.5, 0.5); dtype f64; param p3 = he_uniform; param p4[2] = uniform(-0.5, 0.5); input x1[4]; const k2 = 0.1; fn f5(z0) = expm1(z0) * z0 + 1; fn f6(z0, z1) = hardtanh(z0 - z1) + z1 * 0.5; h7 = (clamp(leaky_relu((p8 + p8)), -1, 1) - softmax(concat((p9 - p3), max(x1, x1)))); h10 = tanh(dense(p9, 6)); target y[6]; output h10; loss = mse(h10, y) + 0.001 * sum(x1) + 0.001 * sum(p3) + 0.001 * sum(p4) + 0.001 * sum(p8) + 0.001 * sum(p9); }]
pub struct Gen22;

/// Generated from seed 30.
#[network { steps 3; input x1[t][5]; state s2[5] = zeros; s2[t] = softsign(dense(x1[t], 5)); target y[t][4]; o3[t] = dense(s2[t], 4); loss = sum_steps(mse(o3[t], y[t])); }]
pub struct Gen23;

/// Generated from seed 31.
#[network { param p6[1] = he_uniform; dtype f64; param p3[3] = constant(0.1); input x1; const k2 = 0.1; fn f4(z0, z1) = tanh(z0 - z1) + z1 * 1; h5 = (dense((p6 + p6), 6, xavier) / softmax(hardtanh(dense(p6, 6)))); target y: class[6]; output h5; loss = softmax_cross_entropy(h5, y) + 0.001 * sum(x1) + 0.001 * sum(p3) + 0.001 * sum(p6); }]
pub struct Gen24;

/// Generated from seed 32.
#[network { steps 3; truncate 1; input x1[t][1]; state s2[5] = constant(0.5); s2[t] = softsign(dense(x1[t], 5)); target y[5]; o3 = dense(s2[last], 5); loss = mse(o3, y); }]
pub struct Gen25;

/// Generated from seed 34.
#[network { param p7[4] = xavier; param w8[5, 4] = xavier; param p3[3] = normal(0, 0.1); input x1[2]; input x2; fn f4(z0) = tanh(z0) * z0 + 4.14; fn f5(z0) = softplus(z0) * z0 + 10; h6 = relu(exp(((w8 @ p7) * (x2 * x2)))); target y[5]; output h6; loss = mse(h6, y) + 0.01 * sum(square(h6)) + 0.001 * sum(x1) + 0.001 * sum(x2) + 0.001 * sum(p3) + 0.001 * sum(p7); }]
pub struct Gen26;

/// Generated from seed 35.
#[network { param w5[4, 5] = normal(0, 0.1); param p2 = xavier_normal; param p3[5] = uniform(-0.5, 0.5); input x1[5]; h4 = ((w5 @ p3) + softsign(dense(hardtanh(dense(p3, 1)), 4))); h6 = softmax(log1p(dense(h4, 4))); h7 = hard_sigmoid(dense(h4, 6)); h8 = h7; target y[6]; output h8; loss = mse(h8, y) + 0.001 * sum(x1) + 0.001 * sum(p2) + 0.001 * sum(p3); }]
pub struct Gen27;

/// Generated from seed 36.
#[network { param w6[3, 2] = uniform(-0.5, 0.5); param p7[4] = he_uniform; param p3[2] = normal(0, 0.1); param p4 = normal(0, 0.1); input x1[5]; const k2 = 3; h5 = concat((w6 @ p3), p7[1:4]); target y[6]; output h5; loss = mse(h5, y) + 0.01 * sum(square(h5)) + 0.001 * sum(x1) + 0.001 * sum(p3) + 0.001 * sum(p4) + 0.001 * sum(p7); }]
pub struct Gen28;

/// Generated from seed 37.
#[network { param p4[2] = xavier_normal; param p5[3] = he; input x1[4, 2]; input x2[6]; h3 = tanh((concat((p4 * p4), softsign(p5)) + 7.92)); h6 = (dense(max(p4, p4), 2) + softmax(tanh(dense(p5, 2)))); h7 = log_softmax(dense(p5, 6, he_uniform)); target y: class[6]; output h7; loss = softmax_cross_entropy(h7, y) + 0.001 * sum(x1) + 0.001 * sum(x2) + 0.001 * sum(p4) + 0.001 * sum(p5); }]
pub struct Gen29;

/// Generated from seed 40.
#[network { param p7[3] = uniform(-0.5, 0.5); param p3 = xavier_normal; input x1[4]; input x2[5]; h4 = hardtanh(elu(dense(x2, 2))); h5 = (x1 * x1); h6 = max(concat(hard_sigmoid(dense(p7, 1)), softmax(p7)), ((dense(h5, 4, xavier_normal) + p3) + h5)); target y[4]; output h6; loss = mse(h6, y) + 0.001 * sum(x1) + 0.001 * sum(x2) + 0.001 * sum(p3) + 0.001 * sum(p7); }]
pub struct Gen30;

/// Generated from seed 43.
#[network { param w6[4, 5] = he; param p3[5] = xavier_normal; input x1[2]; input x2[3]; h4 = sigmoid(dense(x1, 6)); h5 = (w6 @ p3[0:5]); target y[4]; output h5; loss = bce_with_logits(h5, y) + 0.001 * sum(x1) + 0.001 * sum(x2) + 0.001 * sum(p3); }]
pub struct Gen31;

/// Generated from seed 44.
#[network { param p9[4] = he_uniform; param p3[5] = constant(0.1); param p4[5] = xavier_normal; input x1[6]; input x2[3]; fn f5(z0, z1) = hardtanh(z0 - z1) + z1 * 1e-3; h6 = hardtanh(p4[1:3]); h7 = min(((softmax(p3) - (p4 / p4)) / ((p3 - p3) * (p4 * p4))), hard_sigmoid(dense(p4, 5))); h8 = mish(mish(max(log1p(p9), p3[1:5]))); h10 = x2; target y[3]; output h10; loss = mse(h10, y) + 0.01 * sum(square(h10)) + 0.001 * sum(x1) + 0.001 * sum(x2) + 0.001 * sum(p3) + 0.001 * sum(p4) + 0.001 * sum(p9); }]
pub struct Gen32;

/// Generated from seed 45.
#[network { param p7[1] = zeros; param w9[6, 1] = uniform(-0.5, 0.5); param w11[2, 6] = normal(0, 0.1); param p2[4] = xavier_normal; param p3[5] = xavier_normal; input x1[4, 4]; fn f4(z0) = softplus(z0) * z0 + 28; fn f5(z0, z1) = softsign(z0 - z1) + z1 * 1; h6 = (log_softmax(concat(softsign(p7), hard_sigmoid(dense(p3, 2)))) / dense(p3, 3, zeros)); h8 = (w9 @ p7); h10 = log_softmax((w11 @ h8)); target y[2]; output h10; loss = bce_with_logits(h10, y) + 0.001 * sum(x1) + 0.001 * sum(p2) + 0.001 * sum(p3) + 0.001 * sum(p7); }]
pub struct Gen33;

/// Generated from seed 46.
#[network { param p5[1] = normal(0, 0.1); param w6[6, 1] = he_uniform; param p9[3] = xavier; input x1[4]; input x2[4]; const k3 = 7.5; h4 = log_softmax((w6 @ p5)); h7 = dense(p5, 4, constant(0.1)); h8 = (clamp(dense(h4, 3), -1, 1) / p9[0:3]); target y[3]; output h8; loss = mse(h8, y) + 0.01 * sum(square(h8)) + 0.001 * sum(x1) + 0.001 * sum(x2) + 0.001 * sum(p5) + 0.001 * sum(p9); }]
pub struct Gen34;

/// Generated from seed 47.
#[network { param p6[5] = xavier; param w7[5, 5] = xavier; dtype f64; param p3 = uniform(-0.5, 0.5); param p4[3] = xavier; input x1[2]; input x2[2]; h5 = sigmoid(where((gelu_exact(p6) * p6) > p6, (gelu_exact(p6) * p6), (w7 @ p6))); target y[5]; output h5; loss = mse(h5, y) + 0.01 * sum(square(h5)) + 0.001 * sum(x1) + 0.001 * sum(x2) + 0.001 * sum(p3) + 0.001 * sum(p4) + 0.001 * sum(p6); }]
pub struct Gen35;

/// Generated from seed 49.
#[network { param p5[2] = constant(0.1); dtype f64; input x1[1, 1]; fn f2(z0) = mish(z0) * z0 + 3.46; fn f3(z0) = hard_sigmoid(z0) * z0 + 0; h4 = ((elu((p5 / p5)) - where(p5[0:2] > dense(p5, 2, xavier_normal), p5[0:2], p5)) / (log1p(dense(p5, 2)) * 1e30)); target y[2]; output h4; loss = mse(h4, y) + 0.01 * sum(square(h4)) + 0.001 * sum(x1) + 0.001 * sum(p5); }]
pub struct Gen36;

/// Generated from seed 52.
#[network { param p6[5] = zeros; dtype f64; input x1[4]; h2 = concat(abs(dense(x1, 1)), softplus(dense(x1, 2))); h3 = x1; h4 = mish(softplus(dense(h3, 2))); h5 = log1p(where(hardtanh(exp(dense(x1, 5))) > dense(h3, 5), hardtanh(exp(dense(x1, 5))), (sigmoid(dense(h2, 5)) + (p6 + 1e-3)))); target y: class[5]; output h5; loss = softmax_cross_entropy(h5, y) + 0.001 * sum(x1) + 0.001 * sum(p6); }]
pub struct Gen37;

/// Generated from seed 53.
#[network { input x1; input x2[4]; fn f3(z0, z1) = sigmoid(z0 - z1) + z1 * 2.5; fn f4(z0) = mish(z0) * z0 + 2; h5 = sigmoid(square(dense(x2, 2))); target y[2]; output h5; loss = mse(h5, y) + 0.001 * sum(x1) + 0.001 * sum(x2); }]
pub struct Gen38;

/// Generated from seed 54.
#[network { steps 1; input x1[t][5]; state s2[1] = zeros; s2[t] = softsign(dense(s2[t-1], 1) + dense(x1[t], 1)); target y[t][5]; o3[t] = dense(s2[t], 5); loss = sum_steps(mse(o3[t], y[t])); }]
pub struct Gen39;

#[test]
fn generated_definitions_compile_and_run() {
    let _ = exercise::<Gen0>();
    let _ = exercise::<Gen1>();
    let _ = exercise::<Gen2>();
    let _ = exercise::<Gen3>();
    let _ = exercise::<Gen4>();
    let _ = exercise::<Gen5>();
    let _ = exercise::<Gen6>();
    let _ = exercise::<Gen7>();
    let _ = exercise::<Gen8>();
    let _ = exercise::<Gen9>();
    let _ = exercise::<Gen10>();
    let _ = exercise::<Gen11>();
    let _ = exercise::<Gen12>();
    let _ = exercise::<Gen13>();
    let _ = exercise::<Gen14>();
    let _ = exercise::<Gen15>();
    let _ = exercise::<Gen16>();
    let _ = exercise::<Gen17>();
    let _ = exercise::<Gen18>();
    let _ = exercise::<Gen19>();
    let _ = exercise::<Gen20>();
    let _ = exercise::<Gen21>();
    let _ = exercise::<Gen22>();
    let _ = exercise::<Gen23>();
    let _ = exercise::<Gen24>();
    let _ = exercise::<Gen25>();
    let _ = exercise::<Gen26>();
    let _ = exercise::<Gen27>();
    let _ = exercise::<Gen28>();
    let _ = exercise::<Gen29>();
    let _ = exercise::<Gen30>();
    let _ = exercise::<Gen31>();
    let _ = exercise::<Gen32>();
    let _ = exercise::<Gen33>();
    let _ = exercise::<Gen34>();
    let _ = exercise::<Gen35>();
    let _ = exercise::<Gen36>();
    let _ = exercise::<Gen37>();
    let _ = exercise::<Gen38>();
    let _ = exercise::<Gen39>();
}
