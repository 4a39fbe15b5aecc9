//! Passing fds over a unix socket (SCM_RIGHTS), as clients hand buffers to each other.
//!
//! Through nix: AOSP's rustix 0.38 is built without `net`, and vm_account is a Soong test.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// Sends `fd` (and one byte) over `sock`.
pub fn send_fd(sock: &UnixStream, fd: BorrowedFd<'_>) {
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg::<()>(sock.as_raw_fd(), &[IoSlice::new(b"f")], &cmsg, MsgFlags::empty(), None)
        .expect("sendmsg");
}

/// Receives one fd sent by [`send_fd`].
pub fn recv_fd(sock: BorrowedFd<'_>) -> OwnedFd {
    let mut space = nix::cmsg_space!(RawFd);
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let msg =
        recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), MsgFlags::MSG_CMSG_CLOEXEC)
            .expect("recvmsg");
    let raw = msg
        .cmsgs()
        .expect("control messages")
        .find_map(|m| match m {
            ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
            _ => None,
        })
        .expect("an fd arrived");
    // SAFETY: SCM_RIGHTS installed `raw` in this process's fd table for this receiver alone.
    unsafe { OwnedFd::from_raw_fd(raw) }
}
