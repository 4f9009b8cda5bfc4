//! `misfit data fetch cifar10`: downloads the official CIFAR-10 binary release
//! into `data/`, checks it against its published MD5, and says what to do by
//! hand when the machine is offline.

use md5::{Digest, Md5};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::atomic::AtomicFile;
use crate::error::{Error, Result};

/// Where the official CIFAR-10 binary release is published.
pub const CIFAR10_URL: &str = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz";
/// Its published MD5 (on the CIFAR-10 page).
pub const CIFAR10_MD5: &str = "c32a1d4ab5d03f1284b67883e8d87530";
/// The file name it is saved under.
pub const CIFAR10_FILE: &str = "cifar-10-binary.tar.gz";

/// A dataset misfit knows how to fetch.
#[derive(Clone, Copy, Debug)]
pub struct Remote {
    pub url: &'static str,
    pub md5: &'static str,
    pub file: &'static str,
}

/// The datasets `misfit data fetch` knows, by name.
pub fn remote(name: &str) -> Result<Remote> {
    match name {
        "cifar10" => Ok(Remote { url: CIFAR10_URL, md5: CIFAR10_MD5, file: CIFAR10_FILE }),
        other => Err(Error::Usage(format!("unknown dataset '{other}' to fetch (known: cifar10)"))),
    }
}

fn md5_of(path: &Path) -> Result<String> {
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| Error::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What `fetch` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Fetched {
    /// The file was already there with the right checksum.
    AlreadyPresent(PathBuf),
    /// The file was downloaded and checked.
    Downloaded(PathBuf),
}

/// Downloads `url` to `dir/file` unless a file with the right MD5 is there;
/// the download is written under a temporary name and kept only if its MD5
/// is `md5`.
pub fn fetch(url: &str, md5: &str, dir: &Path, file: &str, progress: bool) -> Result<Fetched> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let dest = dir.join(file);
    if dest.exists() {
        if md5_of(&dest)? == md5 {
            return Ok(Fetched::AlreadyPresent(dest));
        }
        return Err(Error::Fetch(format!(
            "{} exists but its MD5 is not the published {md5}: delete it and fetch again",
            dest.display()
        )));
    }
    let offline = |e: &dyn std::fmt::Display| {
        Error::Fetch(format!(
            "cannot download {url}: {e}\n\
             This machine seems to be offline or cannot reach that host. To fetch by hand: download {url} \
             on a machine that can, check that its MD5 is {md5}, copy it to {}, and run misfit with that path.",
            dest.display()
        ))
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(20)))
        .timeout_recv_body(Some(Duration::from_secs(120)))
        .build()
        .into();
    let response = agent.get(url).call().map_err(|e| offline(&e))?;
    let total = response.body().content_length();
    let mut body = response.into_body();
    let mut reader = body.as_reader();
    let bar = match total {
        Some(n) => crate::progress::bar(progress, n, "downloading"),
        None => crate::progress::counter(progress, "downloading bytes"),
    };
    let mut out = AtomicFile::create(&dest)?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).map_err(|e| offline(&e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        out.writer().write_all(&buf[..n]).map_err(|e| Error::io(&dest, e))?;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    let got = hex(&h.finalize());
    if got != md5 {
        return Err(Error::Fetch(format!(
            "downloaded {url} but its MD5 is {got}, not the published {md5}: the download is corrupt or not the \
             official file; nothing was kept"
        )));
    }
    out.commit()?;
    Ok(Fetched::Downloaded(dest))
}
