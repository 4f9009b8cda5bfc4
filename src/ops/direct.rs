//! Direct 3x3 convolution kernels (stride 1 and 2) for f32 on x86-64 CPUs
//! with AVX2 and FMA: the forward pass (which is also the input gradient of
//! a stride-1 convolution, see [`super::conv`]) and the weight gradient of
//! every convolution of a ResNet-20. Written by hand because im2col + GEMM
//! writes and re-reads a patch matrix nine times the size of its input for
//! every call, which cost as much as the multiply itself at these channel
//! counts (16-64); no crate offers a direct convolution for candle's CPU
//! tensors.
//!
//! Layout: each input channel is zero-padded into a plane of width
//! `wp = w + 2 * pad` and stored flat. Output pixel `(oy, ox)` gets flat
//! index `j = oy * wp + ox`, and kernel tap `(ky, kx)` reads the input at
//! `j + ky * wp + kx`: the 2-D convolution becomes a 1-D one over flat
//! planes, vectorised along `j`. Stride 2 splits the padded image into four
//! phase planes first (see [`Plane::new`]), which turns it into the same
//! pattern. Which positions each register covers is a list per geometry
//! ([`Positions`]): in row mode (output rows a whole number of registers
//! wide, as in 32x32, 16x16 and 8x8 images) only real output pixels, stored
//! straight into the output; in flat mode (other sizes) runs of 8 flat
//! positions, padding columns included, computed into a buffer and dropped
//! when the rows are copied out.
//!
//! Register tiles (accumulators held in registers): the forward pass sums
//! `co` output channels x `v` registers of 8 or 16 positions, the weight
//! gradient `fco` output channels x 3 kernel columns. With AVX-512 there
//! are 32 registers instead of 16, so the tiles are larger (fewer loads per
//! multiply-add), and the registers are 512 bits wide where output rows are
//! a whole number of 16 lanes (32x32 and 16x16 outputs), 256 bits
//! otherwise (see [`Isa::for_geometry`]). Every output element is summed in
//! a fixed order, whatever the number of threads; the forward pass sums
//! each lane in the same order in either width, the weight gradient's lane
//! sums depend on the instruction set.

use super::geometry::Geometry;
#[cfg(target_arch = "x86_64")]
use std::arch::x86_64::*;

/// Kernel size the direct kernels handle.
const K: usize = 3;
/// f32 lanes in a 256-bit register (also the block size of [`copy_row`]).
const LANES: usize = 8;
/// f32 lanes in a 512-bit register.
const LANES_512: usize = 16;

/// The instruction set the kernels run with, and its register tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isa {
    /// AVX2 + FMA: 16 registers.
    Avx2,
    /// AVX2 + FMA + AVX-512F/VL: 32 registers of 256 bits.
    Avx512,
    /// AVX-512F: 32 registers of 512 bits. Taken (see [`Isa::for_geometry`])
    /// where 16-lane registers cover real output pixels only.
    Avx512Zmm,
}

impl Isa {
    /// The best the CPU has, if any.
    fn detect() -> Option<Isa> {
        #[cfg(target_arch = "x86_64")]
        {
            if !(is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma")) {
                return None;
            }
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl") {
                return Some(Isa::Avx512);
            }
            Some(Isa::Avx2)
        }
        #[cfg(not(target_arch = "x86_64"))]
        None
    }
    /// The instruction set for convolution `g` on a CPU that has `self`:
    /// 512-bit registers where they can cover real output pixels only:
    /// output rows a whole number of 16 lanes wide (32x32 and 16x16
    /// outputs), or, with stride 1, whole registers of output pixels in all
    /// (8x8 outputs, on shifted planes, see [`Plane::new`]); 256-bit ones
    /// otherwise (flat mode's padding columns would waste up to a fifth of
    /// the work). Intel's AVX-512 cores run twice the multiply-adds per
    /// cycle with 512-bit vectors; Zen 4 runs the same in either width.
    fn for_geometry(self, g: &Geometry) -> Isa {
        match self {
            Isa::Avx512 if Plane::new(g, LANES_512).row_mode() => Isa::Avx512Zmm,
            isa => isa,
        }
    }
    /// f32 lanes per register.
    fn lanes(self) -> usize {
        match self {
            Isa::Avx2 | Isa::Avx512 => LANES,
            Isa::Avx512Zmm => LANES_512,
        }
    }
    /// The forward register tiles this instruction set has kernels for.
    fn forward_tiles(self) -> &'static [Tile] {
        match self {
            Isa::Avx2 => &[Tile { co: 4, v: 2 }],
            Isa::Avx512 | Isa::Avx512Zmm => &[Tile { co: 8, v: 3 }, Tile { co: 4, v: 5 }, Tile { co: 4, v: 4 }],
        }
    }
    /// The forward tile for `nv` vectors of positions and `cout` output
    /// channels: the least work, counting the positions and channels a
    /// tile computes beyond them, weighted by loads per multiply-add
    /// (`(v + co) / (v * co)`, half the weight of a multiply-add).
    fn forward_tile(self, nv: usize, cout: usize) -> Tile {
        let cost = |t: &Tile| {
            let work = (nv.div_ceil(t.v) * t.v * cout.div_ceil(t.co) * t.co) as f64;
            work * (1.0 + 0.5 * (t.v + t.co) as f64 / (t.v * t.co) as f64)
        };
        let tiles = self.forward_tiles();
        *tiles.iter().min_by(|a, b| cost(a).total_cmp(&cost(b))).expect("every instruction set has a tile")
    }
    /// Output channels per weight-gradient tile.
    fn fco(self) -> usize {
        match self {
            Isa::Avx2 => 3,
            Isa::Avx512 | Isa::Avx512Zmm => 8,
        }
    }
}

/// A forward register tile: `co` output channels x `v` registers of
/// positions (`co * v` accumulators).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Tile {
    co: usize,
    v: usize,
}

/// Whether the direct kernels take convolution `g`: 3x3, stride 1 or 2, on a CPU
/// with AVX2 and FMA.
pub fn supports(g: &Geometry) -> bool {
    g.k == K && (g.stride == 1 || g.stride == 2) && Isa::detect().is_some()
}

fn isa(g: &Geometry) -> Isa {
    match Isa::detect() {
        Some(isa) if g.k == K && (g.stride == 1 || g.stride == 2) => isa.for_geometry(g),
        _ => panic!(
            "direct convolution called for {g:?}: it takes 3x3 kernels, stride 1 or 2, on CPUs with AVX2 and FMA"
        ),
    }
}

/// Flat-plane sizes of one image of geometry `g` (see the module docs).
#[derive(Clone, Copy, Debug)]
struct Plane {
    /// Row pitch of the flat output and of the input planes: the padded
    /// width `wp` (stride 1), `ceil(wp / 2)` (stride 2, phase planes) or
    /// the output width (shifted planes).
    pitch: usize,
    /// Shifted planes (see [`Plane::new`]).
    shifted: bool,
    /// Output height and width.
    ho: usize,
    wo: usize,
    /// f32 lanes per register.
    lanes: usize,
    /// Flat output positions per channel: `ho * pitch` rounded up to whole registers.
    n_out: usize,
    /// Elements per input plane: every position a tile reads, zeros beyond the image.
    len: usize,
    /// Elements per input channel: one plane (stride 1), four phase planes
    /// (stride 2) or three shifted planes.
    chan: usize,
    /// Where kernel tap `(ky, kx)` reads for output position `j`: `j + offs[ky * 3 + kx]`
    /// from the start of the channel.
    offs: [usize; K * K],
}

impl Plane {
    /// The planes of geometry `g`.
    ///
    /// Stride 2: the padded image is split into four phase planes,
    /// `P[a][b](y, x) = padded(2y + a, 2x + b)`, so that tap `(ky, kx)` of
    /// output `(oy, ox)` reads `P[ky % 2][kx % 2](oy + ky / 2, ox + kx / 2)`:
    /// a stride-1 pattern again, over planes of half the width.
    ///
    /// Shifted planes (stride 1, 16 lanes, output rows narrower than a
    /// register or not a whole number of them, but whole registers of
    /// output pixels in all: 8x8 images): three copies of the padded image,
    /// `S[kx](y, x) = padded(y, x + kx)` for `x < wo`, so that the pitch is
    /// the output width and tap `(ky, kx)` of output `j = oy * wo + ox`
    /// reads `S[kx]` at `j + ky * wo`: a register covers consecutive output
    /// pixels across rows, with no padding columns among them.
    fn new(g: &Geometry, lanes: usize) -> Plane {
        let wp = g.w + 2 * g.pad;
        let (ho, wo) = (g.ho(), g.wo());
        let shifted = g.stride == 1 && lanes == LANES_512 && wo % lanes != 0 && (ho * wo) % lanes == 0;
        let pitch = if shifted {
            wo
        } else if g.stride == 1 {
            wp
        } else {
            wp.div_ceil(2)
        };
        let n_out = (ho * pitch).div_ceil(lanes) * lanes;
        let mut offs = [0; K * K];
        let (len, chan) = if shifted {
            // Rows of the padded image; the furthest read is tap (2, 2) of
            // the last register, which ends at the last row's end.
            let len = (g.h + 2 * g.pad) * wo;
            for (t, o) in offs.iter_mut().enumerate() {
                *o = (t % K) * len + (t / K) * pitch;
            }
            (len, K * len)
        } else if g.stride == 1 {
            for (t, o) in offs.iter_mut().enumerate() {
                *o = (t / K) * pitch + t % K;
            }
            // The last tile's last lane plus the furthest tap offset.
            let len = n_out + (K - 1) * (pitch + 1);
            (len, len)
        } else {
            let len = n_out + pitch + 1;
            for (t, o) in offs.iter_mut().enumerate() {
                let (ky, kx) = (t / K, t % K);
                *o = ((ky % 2) * 2 + kx % 2) * len + (ky / 2) * pitch + kx / 2;
            }
            (len, 4 * len)
        };
        Plane { pitch, shifted, ho, wo, lanes, n_out, len, chan, offs }
    }

    /// Row mode: registers cover real output pixels only (output rows a
    /// whole number of registers wide, or shifted planes), stored straight
    /// into the output and reading dy where it is. Flat mode otherwise:
    /// registers cover flat positions, padding columns included.
    fn row_mode(&self) -> bool {
        self.shifted || self.wo % self.lanes == 0
    }
}

/// `[cin, h, w]` image into `[cin, chan]` zero-padded flat planes (phase
/// planes for stride 2, shifted planes where [`Plane::shifted`]).
fn pad_image(x: &[f32], g: &Geometry, pl: &Plane, buf: &mut [f32]) {
    let (w, pad, wp) = (g.w, g.pad, pl.pitch);
    if pl.shifted {
        // Each padded row once into `row` (zeros at its ends), then its
        // three shifted windows into the three planes: whole-row copies
        // instead of a zero-copy-zero triple per plane row (which had made
        // this 30 times a plain copy of the image for 8x8 images).
        let (wo, wp) = (pl.wo, w + 2 * pad);
        if pad == 1 {
            // Padding 1 (output width = image width): shifted plane kx is
            // the image moved by kx - 1 columns, between a zero row above
            // and below, with the column that wrapped around zeroed.
            let n = g.h * w;
            for (planes, img) in buf.chunks_exact_mut(pl.chan).zip(x.chunks_exact(n)) {
                for (kx, plane) in planes.chunks_exact_mut(pl.len).enumerate() {
                    let (top, rest) = plane.split_at_mut(wo);
                    let (body, bottom) = rest.split_at_mut(n);
                    zero_row(top);
                    zero_row(bottom);
                    match kx {
                        0 => {
                            copy_row(&mut body[1..], &img[..n - 1]);
                            body.iter_mut().step_by(w).for_each(|v| *v = 0.0);
                        }
                        1 => copy_row(body, img),
                        _ => {
                            copy_row(&mut body[..n - 1], &img[1..]);
                            body[w - 1..].iter_mut().step_by(w).for_each(|v| *v = 0.0);
                        }
                    }
                }
            }
            return;
        }
        let mut row = vec![0f32; wp];
        for (planes, img) in buf.chunks_exact_mut(pl.chan).zip(x.chunks_exact(g.h * w)) {
            for py in 0..g.h + 2 * pad {
                let pixels = py >= pad && py < pad + g.h;
                if pixels {
                    copy_row(&mut row[pad..pad + w], &img[(py - pad) * w..][..w]);
                } else {
                    zero_row(&mut row[pad..pad + w]);
                }
                for kx in 0..K {
                    copy_row(&mut planes[kx * pl.len + py * wo..][..wo], &row[kx..kx + wo]);
                }
            }
        }
        return;
    }
    for (plane, img) in buf.chunks_exact_mut(pl.chan).zip(x.chunks_exact(g.h * w)) {
        if g.stride == 1 {
            // Zeros only where no pixel goes: above the first row, the
            // padding between rows, below the last row.
            zero_row(&mut plane[..pad * wp + pad]);
            for (y, row) in img.chunks_exact(w).enumerate() {
                let start = (y + pad) * wp + pad;
                copy_row(&mut plane[start..start + w], row);
                let end = if y + 1 < g.h { start + wp } else { plane.len() };
                zero_row(&mut plane[start + w..end]);
            }
            continue;
        }
        plane.fill(0.0);
        for (y, row) in img.chunks_exact(w).enumerate() {
            let py = y + pad;
            // Padded columns of parity `b` start at image column `x0` and
            // go to phase plane (py % 2, b), consecutively.
            for b in 0..2 {
                let x0 = (b + 2 - pad % 2) % 2;
                let start = ((py % 2) * 2 + b) * pl.len + (py / 2) * pl.pitch + (pad + x0) / 2;
                for (d, v) in plane[start..].iter_mut().zip(row[x0.min(w)..].iter().step_by(2)) {
                    *d = *v;
                }
            }
        }
    }
}

/// Zeros `dst` by copying from a block of zeros with [`copy_row`]: a
/// `fill` becomes a libc memset call per gap, which cost more than the
/// copies for gaps of 2-20 floats.
fn zero_row(dst: &mut [f32]) {
    const ZEROS: [f32; 64] = [0.0; 64];
    for chunk in dst.chunks_mut(ZEROS.len()) {
        copy_row(chunk, &ZEROS[..chunk.len()]);
    }
}

/// Copies a row of `src.len()` elements into `dst` (of equal length) in
/// blocks of 8, which the compiler inlines as vector moves;
/// `copy_from_slice` calls libc's memmove, whose per-call cost was 2-3% of
/// a training step in profiles for rows of 4-32 floats.
fn copy_row<T: Copy>(dst: &mut [T], src: &[T]) {
    assert_eq!(dst.len(), src.len());
    let (mut d, mut s) = (dst.chunks_exact_mut(LANES), src.chunks_exact(LANES));
    for (d, s) in (&mut d).zip(&mut s) {
        let block: [T; LANES] = s.try_into().expect("chunks_exact gives whole blocks");
        d.copy_from_slice(&block);
    }
    for (d, s) in d.into_remainder().iter_mut().zip(s.remainder()) {
        *d = *s;
    }
}

/// Initialised values seen as possibly uninitialised ones, to copy into
/// an output that is not zeroed first.
fn as_uninit(s: &[f32]) -> &[std::mem::MaybeUninit<f32>] {
    // SAFETY: `MaybeUninit<f32>` has the layout of `f32`, and every
    // initialised value is a valid possibly-uninitialised one.
    unsafe { &*(s as *const [f32] as *const [std::mem::MaybeUninit<f32>]) }
}

/// `[cout, cin, 3, 3]` weights as `[cout / co, cin, 9, co]` (zeros for the
/// channels past `cout` in the last block), so that a tile reads its
/// weights in order.
fn pack_weights(w: &[f32], g: &Geometry, co_tile: usize) -> Vec<f32> {
    let blocks = g.cout.div_ceil(co_tile);
    let mut packed = vec![0f32; blocks * g.cin * K * K * co_tile];
    for co in 0..g.cout {
        for ci in 0..g.cin {
            for t in 0..K * K {
                packed[(((co / co_tile) * g.cin + ci) * K * K + t) * co_tile + co % co_tile] =
                    w[(co * g.cin + ci) * K * K + t];
            }
        }
    }
    packed
}

/// Forward: `[b, cin, h, w]` x and `[cout, cin, 3, 3]` w to `[b, cout, ho, wo]`,
/// one image per task. Callers check [`supports`] first.
pub fn forward(x: &[f32], w: &[f32], g: &Geometry) -> Vec<f32> {
    forward_with(isa(g), x, w, g)
}

fn forward_with(isa: Isa, x: &[f32], w: &[f32], g: &Geometry) -> Vec<f32> {
    use rayon::prelude::*;
    let conv = Prepared::with(isa, w, g);
    let (in_len, out_len) = (conv.in_len(), conv.out_len());
    // Every element is written below, so the output is not zeroed first.
    let mut out: Vec<f32> = Vec::with_capacity(g.b * out_len);
    out.spare_capacity_mut()[..g.b * out_len]
        .par_chunks_mut(out_len)
        .enumerate()
        .for_each(|(i, o)| conv.run(&x[i * in_len..(i + 1) * in_len], o));
    // SAFETY: `run` writes every element of each image's output.
    unsafe { out.set_len(g.b * out_len) };
    out
}

thread_local! {
    /// Each thread's scratch for the kernels, kept from call to call:
    /// padded input planes (rewritten whole by [`pad_image`] on every use)
    /// and the flat-mode output buffer. Allocated and zero-filled per task
    /// they had cost about 2% of a training step (memset in profiles).
    static SCRATCH: std::cell::RefCell<(Vec<f32>, Vec<f32>)> = const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// A forward convolution made ready to run image by image: its instruction
/// set, planes, mode, register positions, tile and packed weights (built
/// once per call, reused for every image).
pub struct Prepared {
    isa: Isa,
    g: Geometry,
    pl: Plane,
    pos: Positions,
    tile: Tile,
    blocks: usize,
    packed: Vec<f32>,
}

impl Prepared {
    /// Convolution `g` (its batch size is not used) with `[cout, cin, 3, 3]`
    /// weights `w`. Callers check [`supports`] first.
    pub fn new(w: &[f32], g: &Geometry) -> Prepared {
        Prepared::with(isa(g), w, g)
    }

    fn with(isa: Isa, w: &[f32], g: &Geometry) -> Prepared {
        let pl = Plane::new(g, isa.lanes());
        let (_, pos, tile) = plan(isa, g, &pl);
        let blocks = g.cout.div_ceil(tile.co);
        let packed = pack_weights(w, g, tile.co);
        Prepared { isa, g: *g, pl, pos, tile, blocks, packed }
    }

    /// Elements of one input image, `cin * h * w`.
    pub fn in_len(&self) -> usize {
        self.g.cin * self.g.h * self.g.w
    }

    /// Elements of one output image, `cout * ho * wo`.
    pub fn out_len(&self) -> usize {
        self.g.cout * self.pl.ho * self.pl.wo
    }

    /// One `[cin, h, w]` image into its `[cout, ho, wo]` output, all of
    /// whose elements it writes, with the thread's [`SCRATCH`].
    pub fn run(&self, x: &[f32], out: &mut [std::mem::MaybeUninit<f32>]) {
        SCRATCH.with_borrow_mut(|(inp, flat)| self.run_with(x, out, inp, flat))
    }

    fn run_with(&self, x: &[f32], out: &mut [std::mem::MaybeUninit<f32>], inp: &mut Vec<f32>, flat: &mut Vec<f32>) {
        let (g, pl, tile) = (&self.g, &self.pl, self.tile);
        assert!(x.len() == self.in_len() && out.len() == self.out_len());
        // `pad_image` writes every element of its planes.
        inp.resize(g.cin * pl.chan, 0.0);
        pad_image(x, g, pl, inp);
        let plane_out = pl.ho * pl.wo;
        if pl.row_mode() {
            // Row mode (see `Plane::row_mode`) stores registers straight into the output.
            let dst = Dst { ptr: out.as_mut_ptr().cast(), len: out.len(), chan: plane_out, channels: g.cout };
            forward_image(self.isa, tile, inp, &self.packed, g.cin, self.blocks, pl, &self.pos, dst);
            return;
        }
        // Flat mode: into a buffer the rows are copied out of.
        flat.resize(self.blocks * tile.co * pl.n_out, 0.0);
        let dst = Dst { ptr: flat.as_mut_ptr(), len: flat.len(), chan: pl.n_out, channels: self.blocks * tile.co };
        forward_image(self.isa, tile, inp, &self.packed, g.cin, self.blocks, pl, &self.pos, dst);
        for (co, plane) in out.chunks_exact_mut(plane_out).enumerate() {
            for (oy, row) in plane.chunks_exact_mut(pl.wo).enumerate() {
                copy_row(row, as_uninit(&flat[co * pl.n_out + oy * pl.pitch..][..pl.wo]));
            }
        }
    }
}

/// The forward pass's mode (row mode or not), register positions and tile
/// for geometry `g`.
fn plan(isa: Isa, g: &Geometry, pl: &Plane) -> (bool, Positions, Tile) {
    let pos = Positions::of(pl);
    let tile = isa.forward_tile(pos.src.len(), g.cout);
    (pl.row_mode(), pos.tiled(tile.v), tile)
}

/// Where the kernels read and write, one entry per register of positions:
/// `src` the flat input position (before the tap offset), `dst` the offset
/// in an output channel. Lists are cut into tiles of `v`
/// registers; the last tile repeats the last register, which computes and
/// stores the same values twice (harmless) instead of running past the end.
#[derive(Clone, Debug)]
struct Positions {
    src: Vec<usize>,
    dst: Vec<usize>,
}

impl Positions {
    /// The positions of `pl`'s mode (see [`Plane::row_mode`]).
    fn of(pl: &Plane) -> Positions {
        if pl.row_mode() {
            Positions::rows(pl)
        } else {
            Positions::flat(pl)
        }
    }
    /// Flat mode: register `i` covers flat positions `i*l..(i+1)*l` of input
    /// and output (`l` lanes).
    fn flat(pl: &Plane) -> Positions {
        let p: Vec<usize> = (0..pl.n_out / pl.lanes).map(|i| i * pl.lanes).collect();
        Positions { src: p.clone(), dst: p }
    }
    /// Row mode: register `i` covers output pixels `i*l..(i+1)*l` of the
    /// `[ho, wo]` plane, which start at flat position `oy * pitch + ox`.
    fn rows(pl: &Plane) -> Positions {
        let dst: Vec<usize> = (0..pl.ho * pl.wo / pl.lanes).map(|i| i * pl.lanes).collect();
        let src = dst.iter().map(|o| (o / pl.wo) * pl.pitch + o % pl.wo).collect();
        Positions { src, dst }
    }
    /// Padded to whole tiles of `v` registers by repeating the last one.
    fn tiled(mut self, v: usize) -> Positions {
        let n = self.src.len().div_ceil(v) * v;
        let (s, d) = (*self.src.last().expect("images have pixels"), *self.dst.last().expect("images have pixels"));
        self.src.resize(n, s);
        self.dst.resize(n, d);
        self
    }
}

/// A forward kernel's output: channel `c` (for `c < channels`) starts at
/// `ptr + c * chan`; `len` elements in all.
struct Dst {
    ptr: *mut f32,
    len: usize,
    chan: usize,
    channels: usize,
}

/// One image's output (see [`Dst`]) from its padded planes `[cin, chan]`
/// and packed weights.
#[allow(clippy::too_many_arguments)]
fn forward_image(
    isa: Isa,
    tile: Tile,
    inp: &[f32],
    packed: &[f32],
    cin: usize,
    blocks: usize,
    pl: &Plane,
    pos: &Positions,
    dst: Dst,
) {
    let max_src = pos.src.iter().max().copied().unwrap_or(0);
    let max_dst = pos.dst.iter().max().copied().unwrap_or(0);
    let max_off = pl.offs.iter().max().copied().unwrap_or(0);
    assert!(
        pos.src.len() % tile.v == 0
            && pos.src.len() == pos.dst.len()
            && (cin - 1) * pl.chan + max_src + max_off + pl.lanes <= inp.len()
            && packed.len() >= blocks * cin * K * K * tile.co
            && dst.channels <= blocks * tile.co
            && (dst.channels - 1) * dst.chan + max_dst + pl.lanes <= dst.len
    );
    let (i, w) = (inp.as_ptr(), packed.as_ptr());
    let tiles = pos.src.len() / tile.v;
    let (s, d) = (pos.src.as_ptr(), pos.dst.as_ptr());
    // SAFETY: `isa` was detected on this CPU; the assert above bounds every
    // read (channel start + register position + tap offset + 8 lanes) and
    // every write (stored channels < `dst.channels`).
    #[cfg(target_arch = "x86_64")]
    unsafe {
        let o = &pl.offs;
        let (optr, chan, channels) = (dst.ptr, dst.chan, dst.channels);
        let kernel = match (isa, tile.co, tile.v) {
            (Isa::Avx2, 4, 2) => forward_avx2,
            (Isa::Avx512, 8, 3) => forward_avx512_8x3,
            (Isa::Avx512, 4, 5) => forward_avx512_4x5,
            (Isa::Avx512, 4, 4) => forward_avx512_4x4,
            (Isa::Avx512Zmm, 8, 3) => forward_zmm_8x3,
            (Isa::Avx512Zmm, 4, 5) => forward_zmm_4x5,
            (Isa::Avx512Zmm, 4, 4) => forward_zmm_4x4,
            _ => unreachable!("no kernel for {isa:?} {tile:?}"),
        };
        kernel(i, w, cin, blocks, pl.chan, o, s, d, tiles, optr, chan, channels)
    };
}

/// The forward tile loop, stamped out per instruction set: `$co` output
/// channels x `$v` registers of positions, with the register type and its
/// zero, load, broadcast, multiply-add and store.
macro_rules! forward_kernel {
    ($name:ident, $features:literal, $co:expr, $v:expr,
     $vt:ty, $zero:ident, $load:ident, $set1:ident, $fma:ident, $store:ident) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name(
            inp: *const f32,
            packed: *const f32,
            cin: usize,
            blocks: usize,
            chan: usize,
            offs: &[usize; K * K],
            src: *const usize,
            dst: *const usize,
            tiles: usize,
            out: *mut f32,
            out_chan: usize,
            channels: usize,
        ) {
            const CO: usize = $co;
            const V: usize = $v;
            for t in 0..tiles {
                let s: [usize; V] = std::array::from_fn(|v| *src.add(t * V + v));
                let d: [usize; V] = std::array::from_fn(|v| *dst.add(t * V + v));
                for cb in 0..blocks {
                    let mut acc = [[$zero(); V]; CO];
                    let mut wt = packed.add(cb * cin * K * K * CO);
                    for ci in 0..cin {
                        let base = inp.add(ci * chan);
                        for off in offs {
                            let p = base.add(*off);
                            let a: [$vt; V] = std::array::from_fn(|v| $load(p.add(s[v])));
                            for (c, row) in acc.iter_mut().enumerate() {
                                let wv = $set1(*wt.add(c));
                                for (r, av) in row.iter_mut().zip(a) {
                                    *r = $fma(wv, av, *r);
                                }
                            }
                            wt = wt.add(CO);
                        }
                    }
                    for (c, row) in acc.iter().enumerate() {
                        let co = cb * CO + c;
                        if co >= channels {
                            break;
                        }
                        for (v, r) in row.iter().enumerate() {
                            $store(out.add(co * out_chan + d[v]), *r);
                        }
                    }
                }
            }
        }
    };
}

/// [`forward_kernel`] with 256-bit registers.
macro_rules! forward_ymm {
    ($name:ident, $features:literal, $co:expr, $v:expr) => {
        forward_kernel!(
            $name,
            $features,
            $co,
            $v,
            __m256,
            _mm256_setzero_ps,
            _mm256_loadu_ps,
            _mm256_set1_ps,
            _mm256_fmadd_ps,
            _mm256_storeu_ps
        );
    };
}

/// [`forward_kernel`] with 512-bit registers.
macro_rules! forward_zmm {
    ($name:ident, $co:expr, $v:expr) => {
        forward_kernel!(
            $name,
            "avx2,fma,avx512f",
            $co,
            $v,
            __m512,
            _mm512_setzero_ps,
            _mm512_loadu_ps,
            _mm512_set1_ps,
            _mm512_fmadd_ps,
            _mm512_storeu_ps
        );
    };
}

forward_ymm!(forward_avx2, "avx2,fma", 4, 2);
forward_ymm!(forward_avx512_8x3, "avx2,fma,avx512f,avx512vl", 8, 3);
forward_ymm!(forward_avx512_4x5, "avx2,fma,avx512f,avx512vl", 4, 5);
forward_ymm!(forward_avx512_4x4, "avx2,fma,avx512f,avx512vl", 4, 4);
forward_zmm!(forward_zmm_8x3, 8, 3);
forward_zmm!(forward_zmm_4x5, 4, 5);
forward_zmm!(forward_zmm_4x4, 4, 4);

/// Images per partial weight gradient; fixed so that sums do not depend on threads.
const FILTER_CHUNK: usize = 8;

/// Weight gradient: x `[b, cin, h, w]` and dy `[b, cout, ho, wo]` to
/// `[cout, cin, 3, 3]`. Partial sums per chunk of FILTER_CHUNK images, added
/// in chunk order. Callers check [`supports`] first.
pub fn backward_filter(x: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
    backward_filter_with(isa(g), x, dy, g)
}

fn backward_filter_with(isa: Isa, x: &[f32], dy: &[f32], g: &Geometry) -> Vec<f32> {
    use rayon::prelude::*;
    let pl = Plane::new(g, isa.lanes());
    let (in_len, plane_out) = (g.cin * g.h * g.w, pl.ho * pl.wo);
    let out_len = g.cout * plane_out;
    // Row mode reads dy where it is; flat mode copies it into flat planes
    // with zeros at the padding columns.
    let (rows, pos) = (pl.row_mode(), Positions::of(&pl));
    let dw_len = g.cout * g.cin * K * K;
    let chans = g.cout.div_ceil(isa.fco()) * isa.fco();
    let dy_chan = if rows { plane_out } else { pl.n_out };
    let partials: Vec<Vec<f32>> = (0..g.b.div_ceil(FILTER_CHUNK))
        .into_par_iter()
        // The padded planes in the thread's SCRATCH; dy's copy per thread,
        // reused by its chunks: it has the same layout for every chunk of
        // this call, so its zeros stay where they are.
        .map_init(Vec::new, |dyf, c| {
            SCRATCH.with_borrow_mut(|(inp, _)| {
                inp.resize(FILTER_CHUNK * g.cin * pl.chan, 0.0);
                let images = c * FILTER_CHUNK..((c + 1) * FILTER_CHUNK).min(g.b);
                let n = images.len();
                for (j, i) in images.clone().enumerate() {
                    pad_image(&x[i * in_len..(i + 1) * in_len], g, &pl, &mut inp[j * g.cin * pl.chan..]);
                }
                let mut dw = vec![0f32; dw_len];
                if rows && g.cout % isa.fco() == 0 {
                    let d = &dy[images.start * out_len..images.end * out_len];
                    filter_chunk(isa, inp, d, plane_out, n, g, &pl, &pos, &mut dw);
                    return dw;
                }
                // dy with whole register tiles of channels (zeros past `cout`),
                // in flat layout (zeros at the padding columns) unless in row mode.
                if dyf.is_empty() {
                    dyf.resize(FILTER_CHUNK * chans * dy_chan, 0f32);
                }
                for (j, i) in images.enumerate() {
                    let (d, f) = (&dy[i * out_len..(i + 1) * out_len], &mut dyf[j * chans * dy_chan..]);
                    if rows {
                        copy_row(&mut f[..out_len], d);
                        continue;
                    }
                    for co in 0..g.cout {
                        for oy in 0..pl.ho {
                            copy_row(
                                &mut f[co * pl.n_out + oy * pl.pitch..][..pl.wo],
                                &d[(co * pl.ho + oy) * pl.wo..][..pl.wo],
                            );
                        }
                    }
                }
                filter_chunk(isa, inp, dyf, dy_chan, n, g, &pl, &pos, &mut dw);
                dw
            })
        })
        .collect();
    let mut dw = vec![0f32; dw_len];
    for part in partials {
        for (d, v) in dw.iter_mut().zip(part) {
            *d += v;
        }
    }
    dw
}

/// Adds the weight gradient of `n` images into `dw` `[cout, cin, 3, 3]`,
/// from their padded planes `[n, cin, chan]` and dy `[n, cout rounded up to
/// whole register tiles, dy_chan]` (register `i` of `pos` reads dy at
/// `i * lanes` in each channel, the input at `pos.src[i]`).
#[allow(clippy::too_many_arguments)]
fn filter_chunk(
    isa: Isa,
    inp: &[f32],
    dy: &[f32],
    dy_chan: usize,
    n: usize,
    g: &Geometry,
    pl: &Plane,
    pos: &Positions,
    dw: &mut [f32],
) {
    let blocks = g.cout.div_ceil(isa.fco());
    let nv = pos.src.len();
    let max_src = pos.src.iter().max().copied().unwrap_or(0);
    let max_off = pl.offs.iter().max().copied().unwrap_or(0);
    assert!(
        nv * pl.lanes <= dy_chan
            && (n * g.cin - 1) * pl.chan + max_src + max_off + pl.lanes <= inp.len()
            && n * blocks * isa.fco() * dy_chan <= dy.len()
            && dw.len() >= g.cout * g.cin * K * K
    );
    let (i, d) = (inp.as_ptr(), dy.as_ptr());
    // SAFETY: `isa` was detected on this CPU; the assert above bounds every
    // read (image channel start + register position + tap offset + lanes;
    // dy channel start + lanes * (register + 1)).
    #[cfg(target_arch = "x86_64")]
    unsafe {
        match isa {
            Isa::Avx2 => filter_avx2(i, d, dy_chan, n, g, blocks, pl, &pos.src, dw),
            Isa::Avx512 => filter_avx512(i, d, dy_chan, n, g, blocks, pl, &pos.src, dw),
            Isa::Avx512Zmm => filter_zmm(i, d, dy_chan, n, g, blocks, pl, &pos.src, dw),
        }
    };
}

/// Positions per weight-gradient pass (of one image, or of several small
/// ones): dy for one block of output channels over this many positions (8
/// channels x 512 positions x 4 bytes = 16 KB) stays in L1 while every
/// input channel and kernel row passes over it. Passes over all 8 images of
/// a chunk had re-read 256 KB of dy from L2 for each input channel and
/// kernel row at 32x32.
const JB: usize = 512;

/// The weight-gradient loop, stamped out per instruction set: `$co` output
/// channels x 3 kernel columns, for one input channel and kernel row, summed
/// over a block of positions (of one image or several small ones) into
/// vector partial sums, reduced to lanes once per block of channels; the register
/// type, its lanes, zero, load, multiply-add and lane sum.
macro_rules! filter_kernel {
    ($name:ident, $features:literal, $co:expr,
     $vt:ty, $lanes:expr, $zero:ident, $load:ident, $fma:ident, $hsum:ident) => {
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $features)]
        #[allow(clippy::too_many_arguments)]
        unsafe fn $name(
            inp: *const f32,
            dy: *const f32,
            dy_chan: usize,
            n: usize,
            g: &Geometry,
            blocks: usize,
            pl: &Plane,
            src: &[usize],
            dw: &mut [f32],
        ) {
            const CO: usize = $co;
            // Registers of positions per pass.
            const JBR: usize = JB / $lanes;
            let dy_img = blocks * CO * dy_chan;
            let zero = [[$zero(); K]; CO];
            // Adds the lane sums of one (channel block, input channel, kernel
            // row)'s registers into dw.
            #[target_feature(enable = $features)]
            #[inline]
            fn add_sums(acc: &[[$vt; K]; CO], cb: usize, ci: usize, ky: usize, g: &Geometry, dw: &mut [f32]) {
                for (c, accs) in acc.iter().enumerate() {
                    let co = cb * CO + c;
                    if co >= g.cout {
                        break;
                    }
                    for (kx, r) in accs.iter().enumerate() {
                        dw[((co * g.cin + ci) * K + ky) * K + kx] += $hsum(*r);
                    }
                }
            }
            // Images per pass: as many as fill JB positions (small images).
            let per_pass = (JBR / src.len().max(1)).max(1);
            // One pass covers the whole chunk (8x8 images): the registers are
            // reduced straight into dw, without the partial sums' round trip.
            let once = n <= per_pass && src.len() <= JBR;
            // Per (input channel, kernel row): CO x 3 vector partial sums.
            let mut sums = if once { Vec::new() } else { vec![zero; g.cin * K] };
            for cb in 0..blocks {
                if !once {
                    sums.fill(zero);
                }
                for first in (0..n).step_by(per_pass) {
                    let images = first..(first + per_pass).min(n);
                    for vb in (0..src.len()).step_by(JBR) {
                        let ve = (vb + JBR).min(src.len());
                        for ci in 0..g.cin {
                            for ky in 0..K {
                                let mut acc = if once { zero } else { sums[ci * K + ky] };
                                for img in images.clone() {
                                    let base = inp.add((img * g.cin + ci) * pl.chan);
                                    let taps: [*const f32; K] =
                                        std::array::from_fn(|kx| base.add(pl.offs[ky * K + kx]));
                                    let d = dy.add(img * dy_img + cb * CO * dy_chan);
                                    for i in vb..ve {
                                        let s = *src.get_unchecked(i);
                                        let a: [$vt; K] = std::array::from_fn(|kx| $load(taps[kx].add(s)));
                                        for (c, accs) in acc.iter_mut().enumerate() {
                                            let dv = $load(d.add(c * dy_chan + i * $lanes));
                                            for (r, av) in accs.iter_mut().zip(a) {
                                                *r = $fma(dv, av, *r);
                                            }
                                        }
                                    }
                                }
                                if once {
                                    add_sums(&acc, cb, ci, ky, g, dw);
                                } else {
                                    sums[ci * K + ky] = acc;
                                }
                            }
                        }
                    }
                }
                if once {
                    continue;
                }
                for ci in 0..g.cin {
                    for ky in 0..K {
                        add_sums(&sums[ci * K + ky], cb, ci, ky, g, dw);
                    }
                }
            }
        }
    };
}

/// [`filter_kernel`] with 256-bit registers.
macro_rules! filter_ymm {
    ($name:ident, $features:literal, $co:expr) => {
        filter_kernel!($name, $features, $co, __m256, LANES, _mm256_setzero_ps, _mm256_loadu_ps, _mm256_fmadd_ps, hsum);
    };
}

filter_ymm!(filter_avx2, "avx2,fma", 3);
filter_ymm!(filter_avx512, "avx2,fma,avx512f,avx512vl", 8);
filter_kernel!(
    filter_zmm,
    "avx2,fma,avx512f",
    8,
    __m512,
    LANES_512,
    _mm512_setzero_ps,
    _mm512_loadu_ps,
    _mm512_fmadd_ps,
    hsum_512
);

/// Sum of the 8 lanes, in a fixed order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    _mm_cvtss_f32(s)
}

/// Sum of the 16 lanes, in a fixed order: the two halves added, then [`hsum`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,avx512f")]
fn hsum_512(v: __m512) -> f32 {
    let hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1));
    hsum(_mm256_add_ps(_mm512_castps512_ps256(v), hi))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Forward and weight gradient in f64 by the definition.
    fn reference(x: &[f32], w: &[f32], dy: &[f32], g: &Geometry) -> (Vec<f64>, Vec<f64>) {
        let (ho, wo) = (g.ho(), g.wo());
        let mut out = vec![0f64; g.b * g.cout * ho * wo];
        let mut dw = vec![0f64; w.len()];
        for n in 0..g.b {
            for co in 0..g.cout {
                for oy in 0..ho {
                    for ox in 0..wo {
                        let o = ((n * g.cout + co) * ho + oy) * wo + ox;
                        for ci in 0..g.cin {
                            for ky in 0..K {
                                for kx in 0..K {
                                    let (iy, ix) = (
                                        (oy * g.stride + ky) as isize - g.pad as isize,
                                        (ox * g.stride + kx) as isize - g.pad as isize,
                                    );
                                    if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                        continue;
                                    }
                                    let xi = ((n * g.cin + ci) * g.h + iy as usize) * g.w + ix as usize;
                                    let wi = ((co * g.cin + ci) * K + ky) * K + kx;
                                    out[o] += x[xi] as f64 * w[wi] as f64;
                                    dw[wi] += dy[o] as f64 * x[xi] as f64;
                                }
                            }
                        }
                    }
                }
            }
        }
        (out, dw)
    }

    fn max_diff(a: &[f32], b: &[f64]) -> f64 {
        assert_eq!(a.len(), b.len());
        a.iter().zip(b).map(|(a, b)| (*a as f64 - b).abs()).fold(0.0, f64::max)
    }

    /// Every instruction set's kernels (those this CPU has) against the
    /// definition, over image sizes whose flat positions do and do not fill
    /// whole tiles, channel counts that do and do not fill whole register
    /// tiles, padding 0, 1 and 2, stride 1 and 2 (odd and even sizes).
    #[test]
    fn each_instruction_sets_kernels_match_the_definition() {
        let isas: Vec<Isa> = match Isa::detect() {
            Some(Isa::Avx512 | Isa::Avx512Zmm) => vec![Isa::Avx2, Isa::Avx512, Isa::Avx512Zmm],
            Some(Isa::Avx2) => vec![Isa::Avx2],
            None => {
                eprintln!("no AVX2 and FMA on this CPU: the direct kernels are not used, nothing to check");
                return;
            }
        };
        let mut tiles = std::collections::BTreeSet::new();
        let mut shifted = false;
        let mut seed = 7u32;
        let mut next = move || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5
        };
        for (b, cin, h, w, cout, stride, pad) in [
            (1, 3, 8, 8, 5, 1, 1),
            (3, 16, 16, 16, 16, 1, 1),
            (2, 8, 32, 32, 12, 1, 1),
            (1, 4, 32, 32, 16, 1, 1),
            (1, 3, 48, 48, 16, 1, 1),
            (9, 13, 7, 11, 9, 1, 0),
            (2, 4, 5, 6, 3, 1, 2),
            // Shifted planes (16 lanes) from padding 0 and 2 as well as 1.
            (2, 5, 10, 10, 6, 1, 0),
            (1, 3, 6, 6, 4, 1, 2),
            (3, 16, 32, 32, 32, 2, 1),
            (2, 8, 9, 7, 10, 2, 1),
            (9, 5, 8, 11, 7, 2, 0),
            (2, 4, 6, 5, 3, 2, 2),
        ] {
            let g = Geometry { b, cin, h, w, cout, k: K, stride, pad };
            let x: Vec<f32> = (0..b * cin * h * w).map(|_| next()).collect();
            let wt: Vec<f32> = (0..cout * cin * K * K).map(|_| next()).collect();
            let dy: Vec<f32> = (0..b * cout * g.ho() * g.wo()).map(|_| next()).collect();
            let (out, dw) = reference(&x, &wt, &dy, &g);
            for &isa in &isas {
                let pl = Plane::new(&g, isa.lanes());
                let (rows, _, t) = plan(isa, &g, &pl);
                tiles.insert((isa as u8, t.co, t.v, rows));
                shifted |= pl.shifted;
                // Sums of up to 9 * 16 products of values in [-0.5, 0.5).
                let e = max_diff(&forward_with(isa, &x, &wt, &g), &out);
                assert!(e < 1e-5, "forward {isa:?} {g:?}: {e}");
                let e = max_diff(&backward_filter_with(isa, &x, &dy, &g), &dw);
                assert!(e < 1e-4, "weight gradient {isa:?} {g:?}: {e}");
            }
        }
        // Every forward kernel ran, in row mode and in flat mode.
        let kernels: std::collections::BTreeSet<_> = tiles.iter().map(|t| (t.0, t.1, t.2)).collect();
        let expected = isas.iter().map(|isa| isa.forward_tiles().len()).sum::<usize>();
        assert_eq!(kernels.len(), expected, "{tiles:?}");
        assert!(tiles.iter().any(|t| t.3) && tiles.iter().any(|t| !t.3), "{tiles:?}");
        // And the shifted planes, where the CPU has 512-bit registers.
        assert_eq!(shifted, isas.contains(&Isa::Avx512Zmm));
    }
}
