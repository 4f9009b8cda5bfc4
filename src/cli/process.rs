//! Process tuning, set up before anything runs: the allocator, the thread
//! pool's spinning, mimalloc's purge delay and Polars' table printing.

/// mimalloc: the training and attack loops allocate and free tensors of megabytes
/// many times a second; glibc hands those to mmap and back, and the page
/// faults showed up as a third of the wall time (sys) on 2 cores.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// candle's CPU thread pool spins 25,000 rounds after every element-wise op
/// before it parks; on 2 cores that spinning thread takes a core from the
/// convolution threads that run next (a demo-sized training step was 10-25%
/// slower). 1,000 rounds keeps its quick hand-offs. Set before any thread
/// starts; a value in the environment wins.
const CANDLE_SPIN_LIMIT: &str = "1000";

/// mimalloc's index of its `purge_delay` option (`mi_option_e` in mimalloc
/// v3's mimalloc.h, as built by libmimalloc-sys 0.1.49, pinned in
/// Cargo.lock; the crate names only some options).
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;

/// Sets the process up: call it first in `main`, before any other thread
/// exists. A value in the environment wins over each setting.
pub fn tune() {
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        // SAFETY: called first in main, before any other thread exists.
        unsafe { std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", CANDLE_SPIN_LIMIT) };
    }
    // mimalloc gives freed memory back to the OS 10 ms after it is free; a
    // training step frees and reallocates tens of megabytes of tensors, and
    // taking them back cost page faults and the kernel's zeroing of each
    // page (5-9% of a ResNet-20 step). Keep it instead: the process holds its
    // peak, which it reaches in the first step anyway. The environment's
    // MIMALLOC_PURGE_DELAY wins.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_none() {
        // SAFETY: sets one option value; mimalloc reads it at each purge.
        unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
    }
    // Polars prints tables (`misfit query`) up to 40 rows and 60 columns,
    // 160 characters wide, unless the environment says otherwise.
    let options = [
        ("POLARS_FMT_MAX_ROWS", "40"),
        ("POLARS_FMT_MAX_COLS", "60"),
        ("POLARS_FMT_STR_LEN", "60"),
        ("POLARS_TABLE_WIDTH", "160"),
    ];
    for (key, value) in options {
        if std::env::var_os(key).is_none() {
            // SAFETY: still before any other thread exists.
            unsafe { std::env::set_var(key, value) };
        }
    }
}
