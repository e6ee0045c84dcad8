// How many bytes the server end of a loopback TCP connection has received but not read yet,
// asked of the kernel through netlink sock_diag (what `ss` uses; one exact lookup, however many
// sockets the machine has). The harness uses it to write a frame in two pieces and know that
// the server read the first piece before the second is sent, so a split lands where intended.

use std::cell::RefCell;
use std::mem::size_of;
use std::net::{SocketAddr, TcpStream};

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLM_F_REQUEST: u16 = 1;
const INET_DIAG_NOCOOKIE: u32 = !0;

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct NlMsgHdr {
    len: u32,
    kind: u16,
    flags: u16,
    seq: u32,
    pid: u32,
}

/// `struct inet_diag_sockid`: ports and addresses in network order.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct SockId {
    sport: u16,
    dport: u16,
    src: [u32; 4],
    dst: [u32; 4],
    ifindex: u32,
    cookie: [u32; 2],
}

/// `struct inet_diag_req_v2` behind its netlink header.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct Request {
    hdr: NlMsgHdr,
    family: u8,
    protocol: u8,
    ext: u8,
    pad: u8,
    states: u32,
    id: SockId,
}

/// The start of `struct inet_diag_msg`, up to the queue sizes.
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct DiagMsg {
    family: u8,
    state: u8,
    timer: u8,
    retrans: u8,
    id: SockId,
    expires: u32,
    rqueue: u32,
    wqueue: u32,
}

/// The address in the kernel's layout: IPv4 in the first word, IPv6 in all four.
fn words(a: &SocketAddr) -> [u32; 4] {
    let mut w = [0u32; 4];
    match a {
        SocketAddr::V4(v4) => w[0] = u32::from_ne_bytes(v4.ip().octets()),
        SocketAddr::V6(v6) => {
            for (i, c) in v6.ip().octets().chunks(4).enumerate() {
                w[i] = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
    }
    w
}

/// Bytes sent on `stream` that the server has not read yet (the receive queue of the server's
/// socket). `None` when the kernel cannot tell: no such socket any more (the server closed
/// it) or no sock_diag.
pub fn server_unread(stream: &TcpStream) -> Option<u32> {
    let (ours, server) = (stream.local_addr().ok()?, stream.peer_addr().ok()?);
    let family = if server.is_ipv4() {
        libc::AF_INET
    } else {
        libc::AF_INET6
    };
    let req = Request {
        hdr: NlMsgHdr {
            len: size_of::<Request>() as u32,
            kind: SOCK_DIAG_BY_FAMILY,
            flags: NLM_F_REQUEST,
            seq: 1,
            pid: 0,
        },
        family: family as u8,
        protocol: libc::IPPROTO_TCP as u8,
        ext: 0,
        pad: 0,
        states: !0,
        // The socket looked up is the server's end: its source is the server's address.
        id: SockId {
            sport: server.port().to_be(),
            dport: ours.port().to_be(),
            src: words(&server),
            dst: words(&ours),
            ifindex: 0,
            cookie: [INET_DIAG_NOCOOKIE; 2],
        },
    };
    thread_local! {
        static NETLINK: RefCell<Option<Netlink>> = const { RefCell::new(None) };
    }
    NETLINK.with(|nl| {
        let mut nl = nl.borrow_mut();
        if nl.is_none() {
            *nl = Netlink::open();
        }
        let answer = nl.as_mut()?.ask(req);
        if answer.is_none() {
            // Start afresh next time (a late answer must not be read as the next one's).
            *nl = None;
        }
        answer
    })
}

/// A netlink sock_diag socket, kept by a thread for its queries, closed when it ends.
struct Netlink {
    fd: i32,
    seq: u32,
}

impl Netlink {
    fn open() -> Option<Netlink> {
        // SAFETY: plain libc calls; the socket is owned by the Netlink returned (closed on
        // drop) or closed here; `tv` is live for the call.
        unsafe {
            let fd = libc::socket(
                libc::AF_NETLINK,
                libc::SOCK_DGRAM | libc::SOCK_CLOEXEC,
                libc::NETLINK_SOCK_DIAG,
            );
            if fd < 0 {
                return None;
            }
            let tv = libc::timeval {
                tv_sec: 1,
                tv_usec: 0,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                &tv as *const _ as *const libc::c_void,
                size_of::<libc::timeval>() as u32,
            );
            Some(Netlink { fd, seq: 0 })
        }
    }

    /// Sends `req` and reads its answer: the receive queue, or None (no such socket, error).
    fn ask(&mut self, mut req: Request) -> Option<u32> {
        self.seq = self.seq.wrapping_add(1);
        req.hdr.seq = self.seq;
        // SAFETY: the socket is ours; the buffers are live locals of the sizes given.
        unsafe {
            let mut kernel: libc::sockaddr_nl = std::mem::zeroed();
            kernel.nl_family = libc::AF_NETLINK as u16;
            let sent = libc::sendto(
                self.fd,
                &req as *const _ as *const libc::c_void,
                size_of::<Request>(),
                0,
                &kernel as *const _ as *const libc::sockaddr,
                size_of::<libc::sockaddr_nl>() as u32,
            );
            if sent < 0 {
                return None;
            }
            let mut buf = [0u64; 128];
            let got = libc::recv(
                self.fd,
                buf.as_mut_ptr() as *mut libc::c_void,
                size_of::<[u64; 128]>(),
                0,
            );
            if got < (size_of::<NlMsgHdr>() + size_of::<DiagMsg>()) as isize {
                return None;
            }
            let hdr = std::ptr::read_unaligned(buf.as_ptr() as *const NlMsgHdr);
            if hdr.kind != SOCK_DIAG_BY_FAMILY || hdr.seq != self.seq {
                return None;
            }
            let msg = std::ptr::read_unaligned(
                (buf.as_ptr() as *const u8).add(size_of::<NlMsgHdr>()) as *const DiagMsg,
            );
            Some(msg.rqueue)
        }
    }
}

impl Drop for Netlink {
    fn drop(&mut self) {
        // SAFETY: closes the socket this value owns, once.
        unsafe {
            libc::close(self.fd);
        }
    }
}
