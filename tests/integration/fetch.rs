//! `data fetch`: download, checksum, and the offline message, against a
//! local HTTP server the test runs.

use misfit::data::fetch::{fetch, Fetched};
use std::io::{Read, Write};
use std::net::TcpListener;
use tempfile::tempdir;

/// Serves `body` to `n` requests on a local port; returns the URL.
fn serve(body: &'static [u8], n: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/cifar-10-binary.tar.gz", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(n) {
            let mut s = stream.unwrap();
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            s.write_all(head.as_bytes()).unwrap();
            s.write_all(body).unwrap();
        }
    });
    url
}

const BODY: &[u8] = b"pretend this is the CIFAR-10 archive";
/// MD5 of BODY.
fn body_md5() -> String {
    use md5::Digest;
    md5::Md5::digest(BODY).iter().map(|b| format!("{b:02x}")).collect()
}

#[test]
fn a_download_with_the_right_checksum_is_kept_and_not_fetched_twice() {
    let dir = tempdir().unwrap();
    let url = serve(BODY, 1);
    let got = fetch(&url, &body_md5(), dir.path(), "c.tar.gz", false).unwrap();
    assert_eq!(got, Fetched::Downloaded(dir.path().join("c.tar.gz")));
    assert_eq!(std::fs::read(dir.path().join("c.tar.gz")).unwrap(), BODY);
    let again = fetch(&url, &body_md5(), dir.path(), "c.tar.gz", false).unwrap();
    assert_eq!(again, Fetched::AlreadyPresent(dir.path().join("c.tar.gz")));
}

#[test]
fn a_download_with_the_wrong_checksum_leaves_nothing() {
    let dir = tempdir().unwrap();
    let url = serve(BODY, 1);
    let err = fetch(&url, "00000000000000000000000000000000", dir.path(), "c.tar.gz", false).unwrap_err().to_string();
    assert!(err.contains("MD5") && err.contains("nothing was kept"), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no file, not even a temporary one");
}

#[test]
fn an_unreachable_host_says_what_to_do_by_hand() {
    let dir = tempdir().unwrap();
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/cifar-10-binary.tar.gz");
    let err = fetch(&url, &body_md5(), dir.path(), "c.tar.gz", false).unwrap_err().to_string();
    assert!(err.contains("cannot download") && err.contains("by hand") && err.contains(&body_md5()), "{err}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
