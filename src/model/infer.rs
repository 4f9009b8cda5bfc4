//! Inference on the CPU: the eval-mode forward pass of a ResNet's
//! convolutional trunk (stem and residual blocks) run image by image, each
//! thread taking one image through every layer. Written by hand because
//! layer by layer (one candle op per convolution, batch norm and residual
//! sum), every activation of the batch is written to memory and read back
//! three times per layer (padding copy, batch norm, residual sum), which
//! took about a third of an inference pass in profiles; one image's
//! activations (64 KB at 16 x 32 x 32) stay in the core's cache here.
//!
//! Only when nothing tracks gradients (a frozen model and a plain input,
//! see `ResNet::forward`), f32 on CPUs the direct kernels run on, and
//! option-A or identity shortcuts; otherwise the layer-by-layer ops run.
//! Each step is the same arithmetic in the same order as those ops (the
//! same per-image convolution, `x * scale + shift`, `relu(out + shortcut)`),
//! so the results are the same bits either way, whatever the thread count.

use rayon::prelude::*;
use std::mem::MaybeUninit;

use crate::ops::direct::Prepared;
use crate::ops::residual::add_relu;

/// A convolution followed by eval-mode batch norm, `y = conv(x) * scale + shift`
/// per output channel (`scale`, `shift`: `[cout]`), then ReLU where asked.
pub struct Layer {
    pub conv: Prepared,
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
}

pub use crate::ops::Shortcut;

/// A basic block: `relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`.
pub struct Block {
    pub conv1: Layer,
    pub conv2: Layer,
    pub shortcut: Shortcut,
    /// The block input's `[c, h, w]` (what option A subsamples).
    pub input: [usize; 3],
}

/// Per-thread buffers, reused from image to image.
#[derive(Default)]
struct Scratch {
    /// The current block's input.
    cur: Vec<f32>,
    /// The block's middle activation.
    mid: Vec<f32>,
    /// The block's output.
    next: Vec<f32>,
}

/// `[b, 3, h, w]` normalised images through `stem` (with ReLU) and
/// `blocks`: the last block's `[b, c, ho, wo]` output.
pub fn trunk(x: &[f32], b: usize, stem: &Layer, blocks: &[Block]) -> Vec<f32> {
    let in_len = stem.conv.in_len();
    let out_len = blocks.last().map_or(stem.conv.out_len(), |bl| bl.conv2.conv.out_len());
    assert_eq!(x.len(), b * in_len);
    let mut out = vec![0f32; b * out_len];
    out.par_chunks_mut(out_len).enumerate().for_each_init(Scratch::default, |s, (i, o)| {
        conv_bn(stem, &x[i * in_len..(i + 1) * in_len], &mut s.cur);
        relu_in_place(&mut s.cur);
        for block in blocks {
            conv_bn(&block.conv1, &s.cur, &mut s.mid);
            relu_in_place(&mut s.mid);
            conv_bn(&block.conv2, &s.mid, &mut s.next);
            add_shortcut_relu(&mut s.next, &s.cur, block.shortcut, block.input);
            std::mem::swap(&mut s.cur, &mut s.next);
        }
        o.copy_from_slice(&s.cur);
    });
    out
}

/// `layer` on one image into `out` (resized to the output): the
/// convolution, then `v * scale + shift` per channel.
fn conv_bn(layer: &Layer, x: &[f32], out: &mut Vec<f32>) {
    out.resize(layer.conv.out_len(), 0.0);
    layer.conv.run(x, as_uninit_mut(out));
    let hw = out.len() / layer.scale.len();
    for ((plane, &s), &t) in out.chunks_exact_mut(hw).zip(&layer.scale).zip(&layer.shift) {
        for v in plane {
            *v = *v * s + t;
        }
    }
}

/// ReLU as the batch-norm op applies it: `v` where `v > 0`, else 0.
fn relu_in_place(v: &mut [f32]) {
    for v in v {
        *v = if *v > 0.0 { *v } else { 0.0 };
    }
}

/// `out = relu(out + shortcut(x))` on one image by the residual op's
/// [`add_relu`], in its order (block output first; zeros for option A's added channels
/// and skipped pixels, as its tensor holds them).
fn add_shortcut_relu(out: &mut [f32], x: &[f32], shortcut: Shortcut, [c, h, w]: [usize; 3]) {
    match shortcut {
        Shortcut::Identity => {
            for (o, &v) in out.iter_mut().zip(x) {
                *o = add_relu(*o, v);
            }
        }
        Shortcut::A(pad) => {
            let (h2, w2) = (h.div_ceil(2), w.div_ceil(2));
            for (co, plane) in out.chunks_exact_mut(h2 * w2).enumerate() {
                let src = co.checked_sub(pad).filter(|&ch| ch < c).map(|ch| &x[ch * h * w..(ch + 1) * h * w]);
                for (y, row) in plane.chunks_exact_mut(w2).enumerate() {
                    for (xo, o) in row.iter_mut().enumerate() {
                        let v = src.map_or(0.0, |s| s[2 * y * w + 2 * xo]);
                        *o = add_relu(*o, v);
                    }
                }
            }
        }
    }
}

/// An initialised buffer seen as one to be overwritten.
fn as_uninit_mut(s: &mut [f32]) -> &mut [MaybeUninit<f32>] {
    // SAFETY: same layout; the only writer here, `Prepared::run`, stores
    // initialised f32 values, so the buffer stays initialised.
    unsafe { &mut *(s as *mut [f32] as *mut [MaybeUninit<f32>]) }
}
