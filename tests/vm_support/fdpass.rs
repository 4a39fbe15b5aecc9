//! Passing fds over a unix socket (SCM_RIGHTS), as clients hand buffers to each other: over a
//! connected stream (vm_account, vm_handoff) or as datagrams to an address (vm_load).
//!
//! Through nix: AOSP's rustix 0.38 is built without `net`, and vm_account is a Soong test.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr};

/// Sends `fd` (and one byte) over the connected `sock`.
pub fn send_fd(sock: &UnixStream, fd: BorrowedFd<'_>) {
    send_fd_to(sock.as_fd(), None, fd, MsgFlags::empty()).expect("sendmsg");
}

/// Receives one fd sent by [`send_fd`].
pub fn recv_fd(sock: BorrowedFd<'_>) -> OwnedFd {
    try_recv_fd(sock, MsgFlags::empty()).expect("recvmsg").expect("an fd arrived")
}

/// Sends `fd` (and one byte) over `sock`, to `to` for an unconnected datagram socket.
pub fn send_fd_to(
    sock: BorrowedFd<'_>,
    to: Option<&UnixAddr>,
    fd: BorrowedFd<'_>,
    flags: MsgFlags,
) -> nix::Result<()> {
    let fds = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&fds)];
    sendmsg(sock.as_raw_fd(), &[IoSlice::new(b"f")], &cmsg, flags, to).map(drop)
}

/// Receives one byte and the fd sent with it (close-on-exec); `Ok(None)` when a message came
/// without one.
pub fn try_recv_fd(sock: BorrowedFd<'_>, flags: MsgFlags) -> nix::Result<Option<OwnedFd>> {
    let mut space = nix::cmsg_space!(RawFd);
    let mut byte = [0u8; 1];
    let mut iov = [IoSliceMut::new(&mut byte)];
    let flags = flags | MsgFlags::MSG_CMSG_CLOEXEC;
    let msg = recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut space), flags)?;
    let raw = msg.cmsgs()?.find_map(|m| match m {
        ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
        _ => None,
    });
    // SAFETY: SCM_RIGHTS installed `raw` in this process's fd table for this receiver alone.
    Ok(raw.map(|raw| unsafe { OwnedFd::from_raw_fd(raw) }))
}
